//! The seam between chapter 6's quantized matrices and the model: a projection's weight
//! can be a [`QMatrix`] ([`Weight::Quant`]), which [`super::Linear::forward`] multiplies
//! through the integer kernels of [`crate::quant::kernels`]. Quantized weights are for
//! inference: the model's backward, the trainer and the checkpoint writer refuse them
//! with an error naming the layer ([`Params::check_f32`]).
//!
//! ```
//! use llm_lessons::gpt::{Gpt, GptConfig};
//! use llm_lessons::quant::matrix::Format;
//! let mut model = Gpt::init(GptConfig::llama_tiny(), 1).unwrap();
//! let n = model.params.quantize(Format::Q8_0, |_| true).unwrap();
//! // q, k, v, o, gate and up in each layer, and the untied head; down_proj's rows hold
//! // d_ff = 344 values, not a whole number of 32-value blocks, so it stays f32
//! assert_eq!(n, 6 * model.cfg.n_layers + 1);
//! assert!(model.params.check_f32("training").is_err());
//! ```

use super::linear::Weight;
use super::params::Params;
use crate::quant::matrix::{Format, QMatrix};
use crate::{Error, Result};

impl Params {
    /// The names (`…q_proj.weight`) and shapes `(d_out, d_in)` of the quantized weights.
    pub fn quantized_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        self.visit_linears(|name, l| {
            if let Weight::Quant(q) = &l.weight {
                out.push((format!("{name}.weight"), vec![q.rows, q.cols]));
            }
        });
        out
    }

    /// Errors, naming the first quantized layer, if any weight is quantized (or the token
    /// embedding holds no f32 values, its rows being looked up in a quantized table):
    /// `what` (training, a backward, saving a checkpoint) needs every weight in f32.
    pub fn check_f32(&self, what: &str) -> Result<()> {
        if self.tok_emb.data.len() != self.tok_emb.shape.iter().product::<usize>() {
            return Err(Error::InvalidArgument(format!(
                "{what} needs f32 weights, but model.embed_tokens.weight is quantized (the \
                 model looks its rows up in the quantized table): quantized weights are for \
                 inference"
            )));
        }
        match self.quantized_shapes().first() {
            None => Ok(()),
            Some((name, _)) => Err(Error::InvalidArgument(format!(
                "{what} needs f32 weights, but {name} is quantized: quantized weights are for \
                 inference"
            ))),
        }
    }

    /// Quantizes to `format` every projection whose name `keep` accepts, whose weight is
    /// f32 and whose `d_in` is a whole number of blocks (a multiple of 32 for the block
    /// formats); norms and embeddings stay f32. Returns how many it quantized. Errors if a
    /// layer has a LoRA adapter (merge it first).
    pub fn quantize(&mut self, format: Format, keep: impl Fn(&str) -> bool) -> Result<usize> {
        let mut count = 0;
        let mut err = None;
        self.visit_linears_mut(|name, l| {
            let Weight::F32(w) = &l.weight else { return };
            if err.is_some() || !keep(name) || l.d_in % format.block_values() != 0 {
                return;
            }
            if l.adapter.is_some() {
                err = Some(Error::InvalidArgument(format!(
                    "{name} has a LoRA adapter: merge it before quantizing"
                )));
                return;
            }
            match QMatrix::quantize(format, l.d_out, l.d_in, w) {
                Ok(q) => {
                    l.weight = Weight::Quant(q);
                    count += 1;
                }
                Err(e) => err = Some(e),
            }
        });
        err.map_or(Ok(count), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::{Activations, Gpt, GptConfig};

    /// A quantized llama-tiny gives the f32 model's logits within a stated tolerance, and
    /// its loss within 1%; training and saving it are errors that name the layer.
    #[test]
    fn a_q8_0_model_stays_close_to_f32() {
        let cfg = GptConfig::llama_tiny();
        let f32_model = Gpt::init(cfg.clone(), 3).unwrap();
        let (b, t) = (2, 16);
        let ids: Vec<u32> = (0..b * t)
            .map(|i| ((i * 37 + 11) % cfg.vocab_size) as u32)
            .collect();
        let targets: Vec<u32> = ids
            .iter()
            .map(|&i| (i + 1) % cfg.vocab_size as u32)
            .collect();
        let run = |m: &Gpt| {
            let mut acts = Activations::new(&m.cfg, b, t);
            let loss = m.forward_loss(&mut acts, &ids, &targets).unwrap();
            (loss, acts.logits.clone())
        };
        let (loss, logits) = run(&f32_model);
        for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
            let mut q = f32_model.clone();
            let n = q.params.quantize(format, |_| true).unwrap();
            assert!(n > 0);
            let q = Gpt::new(q.cfg.clone(), q.params).unwrap(); // the shapes still check
            let (q_loss, q_logits) = run(&q);
            let worst = logits
                .iter()
                .zip(&q_logits)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            let scale = logits.iter().map(|v| v.abs()).fold(0.0, f32::max);
            let rel = (q_loss - loss).abs() / loss;
            eprintln!("{format}: loss {loss} -> {q_loss} ({rel:.2e}), worst logit error {worst} of max {scale}");
            if format == Format::Q8_0 {
                // Q8_0 weights and activations each carry ≤ 1/254 relative rounding per
                // block; through 2 layers that stays far below 2% of the logits' range
                assert!(worst <= 0.02 * scale, "{format}: {worst} vs {scale}");
                assert!(rel < 0.01, "{format}: loss {loss} vs {q_loss}");
            } else {
                assert!(rel < 0.05, "{format}: loss {loss} vs {q_loss}");
            }
            assert!(q
                .params
                .check_f32("training")
                .unwrap_err()
                .to_string()
                .contains("q_proj"));
        }
    }

    /// A tied head multiplied through its Q8_0 blocks gives the f32 head's logits within
    /// the same tolerance; an untied model or a wrong shape cannot take one, and a backward
    /// or training refuses a model that has one.
    #[test]
    fn a_quantized_tied_head_stays_close_and_cannot_train() {
        use crate::quant::matrix::QMatrix;
        let mut cfg = GptConfig::llama_tiny();
        cfg.tied_head = true;
        let model = Gpt::init(cfg.clone(), 5).unwrap();
        let (v, c) = (cfg.vocab_size, cfg.d_model);
        let head = QMatrix::quantize(Format::Q8_0, v, c, &model.params.tok_emb).unwrap();
        let quantized = model
            .clone()
            .with_quantized_tied_head(head.clone())
            .unwrap();
        let (b, t) = (2, 16);
        let ids: Vec<u32> = (0..b * t).map(|i| ((i * 29 + 3) % v) as u32).collect();
        let logits = |m: &Gpt| {
            let mut acts = Activations::new(&m.cfg, b, t);
            m.forward(&mut acts, &ids).unwrap();
            acts.logits
        };
        let (exact, q) = (logits(&model), logits(&quantized));
        let worst = exact
            .iter()
            .zip(&q)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let scale = exact.iter().map(|x| x.abs()).fold(0.0, f32::max);
        assert!(worst > 0.0 && worst <= 0.02 * scale, "{worst} of {scale}");
        assert!(quantized
            .check_f32("training")
            .unwrap_err()
            .to_string()
            .contains("tied head"));
        let untied = Gpt::init(GptConfig::llama_tiny(), 5).unwrap();
        assert!(untied.with_quantized_tied_head(head).is_err());
        let wrong = QMatrix::quantize(Format::Q8_0, v - 1, c, &model.params.tok_emb[..(v - 1) * c])
            .unwrap();
        assert!(model.with_quantized_tied_head(wrong).is_err());
    }

    /// A model that looks its embedding rows up in the quantized table computes the same
    /// bits as one holding the table's values in f32 (tied and untied, with and without
    /// the cache), keeps no f32 table, and cannot train or be saved.
    #[test]
    fn a_quantized_embedding_is_looked_up_row_by_row() {
        use crate::gpt::generate::KvCache;
        use crate::quant::matrix::QMatrix;
        for tied in [true, false] {
            let mut cfg = GptConfig::llama_tiny();
            cfg.tied_head = tied;
            let model = Gpt::init(cfg.clone(), 8).unwrap();
            let (v, c) = (cfg.vocab_size, cfg.d_model);
            let q = QMatrix::quantize(Format::Q4_1, v, c, &model.params.tok_emb).unwrap();
            let mut f32_table = model.clone();
            f32_table.params.tok_emb.data = q.dequantize();
            if tied {
                f32_table = f32_table.with_quantized_tied_head(q.clone()).unwrap();
            }
            let lookup =
                Gpt::new_with_quantized_embedding(cfg.clone(), model.params, q.clone()).unwrap();
            assert!(lookup.params.tok_emb.is_empty());
            assert_eq!(lookup.quantized_embedding(), Some(&q));
            let ids: Vec<u32> = (0..12).map(|i| ((i * 31 + 7) % v) as u32).collect();
            let logits = |m: &Gpt| {
                let mut acts = Activations::new(&m.cfg, 1, ids.len());
                m.forward(&mut acts, &ids).unwrap();
                let mut cache = KvCache::new(&m.cfg);
                let mut cached = m.forward_cached(&mut cache, &ids[..5]).unwrap();
                cached.extend(m.forward_cached(&mut cache, &ids[5..]).unwrap());
                (acts.logits, cached)
            };
            assert_eq!(logits(&lookup), logits(&f32_table), "tied {tied}");
            let e = lookup.check_f32("training").unwrap_err().to_string();
            assert!(e.contains("embed_tokens"), "{e}");
            let wrong = QMatrix::quantize(Format::Q8_0, v, 32, &vec![0.0; v * 32]).unwrap();
            let e = Gpt::new_with_quantized_embedding(cfg.clone(), lookup.params.clone(), wrong)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("({v}, 32)")), "{e}");
        }
    }
}
