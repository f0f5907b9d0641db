//! A trained model in every format: what each costs (bits per weight, bytes) and what it
//! loses (the weights' error, measured and predicted, and the held-out cross-entropy), and
//! how many bytes a generated token reads ([`bytes_per_token`]), the limit on its speed.
//!
//! The ggml formats ([`Scheme::Ggml`]) run as the model would run them:
//! [`Params::quantize`](crate::gpt::params::Params::quantize) stores the blocks and every
//! product goes through the integer kernels, activations rounded to Q8_0 or Q8_1 on the
//! fly. The int8 schemes with one step per tensor or per row ([`Scheme::PerTensorInt8`],
//! [`Scheme::PerRowInt8`]), chapter 6's first quantizers, have no kernel here: their
//! weights are rounded and multiplied back in f32 ("fake quantization"), which isolates
//! the weights' rounding.
//!
//! ```
//! use llm_lessons::gpt::{Gpt, GptConfig};
//! use llm_lessons::quant::matrix::Format;
//! use llm_lessons::quant::report::{quantize_model, Scheme};
//! let model = Gpt::init(GptConfig::llama_tiny(), 1).unwrap();
//! let q = quantize_model(&model, Scheme::Ggml(Format::Q8_0)).unwrap();
//! // down_proj's rows are 344 values, not whole 32-value blocks: it stays f32
//! assert_eq!(q.kept_f32.len(), 4);
//! assert_eq!(q.bits_per_weight(), 8.5);
//! assert!(q.error.snr_db > 35.0);
//! ```

use std::time::Instant;

use super::absmax::{AbsmaxInt8, PerRowInt8};
use super::blocks::QK;
use super::f16::f16_to_f32;
use super::matrix::{Format, QMatrix};
use super::stats::{quant_error, rounding_noise_variance, QuantError};
use crate::gpt::linear::Weight;
use crate::gpt::{Gpt, GptConfig};
use crate::{Error, Result};

/// How a model's projections are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// A ggml format, stored as blocks and run by the integer kernels.
    Ggml(Format),
    /// Symmetric int8, one step `Δ = max|W| / 127` per weight matrix.
    PerTensorInt8,
    /// Symmetric int8, one step per row (per output channel).
    PerRowInt8,
}

impl Scheme {
    /// The report's rows: f32, f16, the three ways to spend 8 bits, then 4 bits.
    pub const REPORT: [Scheme; 7] = [
        Scheme::Ggml(Format::F32),
        Scheme::Ggml(Format::F16),
        Scheme::PerTensorInt8,
        Scheme::PerRowInt8,
        Scheme::Ggml(Format::Q8_0),
        Scheme::Ggml(Format::Q4_1),
        Scheme::Ggml(Format::Q4_0),
    ];

    /// "q8_0", "int8/tensor", "int8/row".
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Ggml(f) => f.name(),
            Scheme::PerTensorInt8 => "int8/tensor",
            Scheme::PerRowInt8 => "int8/row",
        }
    }

    /// Whether `d_in` columns can be stored this way: whole 32-value blocks for the block
    /// formats (the same tensors for the int8 schemes, so that the three 8-bit rows
    /// compare the same weights).
    fn takes(self, d_in: usize) -> bool {
        let block = match self {
            Scheme::Ggml(f) => f.block_values(),
            Scheme::PerTensorInt8 | Scheme::PerRowInt8 => QK,
        };
        d_in % block == 0
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A model with its projections stored in one [`Scheme`], and what that cost.
#[derive(Clone, Debug)]
pub struct QuantizedModel {
    pub scheme: Scheme,
    pub model: Gpt,
    /// The projections stored in the scheme.
    pub quantized: Vec<String>,
    /// The projections left in f32 (rows that are not whole blocks).
    pub kept_f32: Vec<String>,
    /// Values and bytes of the quantized projections.
    pub quantized_values: usize,
    pub quantized_bytes: usize,
    /// The error of the quantized projections' values, all together.
    pub error: QuantError,
    /// The SNR (dB) the uniform rounding model predicts for them ([`predicted_noise`]).
    pub predicted_snr_db: f64,
}

impl QuantizedModel {
    /// Bits per weight of the quantized projections, their scales included.
    pub fn bits_per_weight(&self) -> f64 {
        8.0 * self.quantized_bytes as f64 / self.quantized_values.max(1) as f64
    }

    /// The bytes of all the model's tensors: the quantized projections as stored, every
    /// other tensor (embeddings, norms, the projections kept) in f32.
    pub fn weight_bytes(&self) -> usize {
        let mut f32_values = 0;
        self.model.params.visit(|_, t| f32_values += t.data.len());
        // f32 and fake quantization keep the projections as f32 tensors, which `visit`
        // counted: count what their storage in the scheme takes instead
        let in_f32 = match self.scheme {
            Scheme::Ggml(f) => f == Format::F32,
            Scheme::PerTensorInt8 | Scheme::PerRowInt8 => true,
        };
        4 * f32_values - if in_f32 { 4 * self.quantized_values } else { 0 } + self.quantized_bytes
    }
}

// ANCHOR: predicted_noise
/// The noise power the uniform model predicts for `q`'s values: `Δ²/12` per value, `Δ` the
/// grid step where the value sits. A block's step is its scale `d` (the first two bytes
/// of every Q8_0, Q4_0 and Q4_1 block, an f16); an f16's step is its unit in the last
/// place, `2^(e − 10)` for `2^e ≤ |x| < 2^(e+1)` (`2^−24` below `2^−14`). Returns
/// `Σ_i Δ_i²/12`.
pub fn predicted_noise(q: &QMatrix, x: &[f32]) -> f64 {
    match q.format {
        Format::F32 => 0.0,
        Format::F16 => x
            .iter()
            .map(|&v| {
                let e = (v.abs().max(f32::MIN_POSITIVE) as f64)
                    .log2()
                    .floor()
                    .max(-14.0);
                rounding_noise_variance((e - 10.0).exp2())
            })
            .sum(),
        Format::Q8_0 | Format::Q4_0 | Format::Q4_1 => q
            .bytes()
            .chunks_exact(q.format.block_bytes())
            .map(|b| QK as f64 * rounding_noise_variance(block_scale(b) as f64))
            .sum(),
    }
}
// ANCHOR_END: predicted_noise

/// A Q8_0, Q4_0 or Q4_1 block's scale `d`: its first two bytes, an f16.
fn block_scale(block: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[0], block[1]]))
}

/// Each value's rounding error in units of its grid step, `(x − x') / |d|`: uniform on
/// `[−1/2, 1/2]` if the uniform model holds (values at a block's extreme, which ggml maps
/// exactly, give 0; Q4_0's codes reach −8 but only +7, so a value near the block's
/// largest magnitude on the other side is clamped, up to a whole step off). For the block
/// formats only; errors otherwise.
pub fn normalized_errors(q: &QMatrix, x: &[f32]) -> Result<Vec<f32>> {
    if !matches!(q.format, Format::Q8_0 | Format::Q4_0 | Format::Q4_1) {
        return Err(Error::InvalidArgument(format!(
            "normalized errors are per block: {} has no blocks",
            q.format
        )));
    }
    if x.len() != q.rows * q.cols {
        return Err(Error::InvalidArgument(format!(
            "{} values for a {} x {} matrix",
            x.len(),
            q.rows,
            q.cols
        )));
    }
    let back = q.dequantize();
    Ok(q.bytes()
        .chunks_exact(q.format.block_bytes())
        .zip(x.chunks_exact(QK).zip(back.chunks_exact(QK)))
        .flat_map(|(b, (xs, ys))| {
            // Q4_0's d carries the sign of the block's largest value
            let d = block_scale(b).abs();
            xs.iter()
                .zip(ys)
                .map(move |(a, y)| if d == 0.0 { 0.0 } else { (a - y) / d })
        })
        .collect())
}

/// The model's f32 projections: `(name, d_out, d_in, weight)`, the weight row-major
/// `(d_out, d_in)`.
pub fn f32_projections(model: &Gpt) -> Vec<(String, usize, usize, Vec<f32>)> {
    let mut out = Vec::new();
    model.params.visit_linears(|name, l| {
        if let Weight::F32(w) = &l.weight {
            out.push((name.to_string(), l.d_out, l.d_in, w.data.clone()));
        }
    });
    out
}

/// `model` with its projections stored in `scheme` (norms and embeddings stay f32, as do
/// projections whose rows are not whole blocks), and the error that cost.
///
/// # Errors
/// If the model has LoRA adapters (merge them first) or a weight is already quantized.
pub fn quantize_model(model: &Gpt, scheme: Scheme) -> Result<QuantizedModel> {
    model.params.check_f32("quantize_model")?;
    let originals = f32_projections(model);
    let (mut quantized, mut kept_f32) = (Vec::new(), Vec::new());
    for (name, _, d_in, _) in &originals {
        if scheme.takes(*d_in) {
            quantized.push(name.clone());
        } else {
            kept_f32.push(name.clone());
        }
    }
    let mut out = model.clone();
    let (mut x_all, mut y_all) = (Vec::new(), Vec::new());
    let (mut bytes, mut noise) = (0usize, 0.0f64);
    match scheme {
        Scheme::Ggml(format) => {
            if format != Format::F32 {
                out.params.quantize(format, |_| true)?;
            }
            let mut err = None;
            out.params.visit_linears(|name, l| {
                let Some((_, _, _, x)) = originals.iter().find(|o| o.0 == name) else {
                    return;
                };
                if let Weight::Quant(q) = &l.weight {
                    bytes += q.bytes().len();
                    noise += predicted_noise(q, x);
                    x_all.extend_from_slice(x);
                    y_all.extend(q.dequantize());
                } else if format == Format::F32 {
                    bytes += 4 * x.len();
                    x_all.extend_from_slice(x);
                    y_all.extend_from_slice(x);
                } else if scheme.takes(l.d_in) {
                    err = Some(Error::InvalidArgument(format!("{name} was not quantized")));
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
        Scheme::PerTensorInt8 | Scheme::PerRowInt8 => {
            out.params.visit_linears_mut(|_, l| {
                if !scheme.takes(l.d_in) {
                    return;
                }
                let Weight::F32(w) = &mut l.weight else {
                    return;
                };
                let x = w.data.clone();
                let (y, scales, steps) = if scheme == Scheme::PerTensorInt8 {
                    let t = AbsmaxInt8::quantize(&x);
                    (t.dequantize(), 1, vec![t.step; l.d_out])
                } else {
                    let t = PerRowInt8::quantize(&x, l.d_out, l.d_in)
                        .expect("a projection's weight is (d_out, d_in)");
                    (t.dequantize(), l.d_out, t.steps)
                };
                bytes += x.len() + 4 * scales;
                noise += steps
                    .iter()
                    .map(|&s| l.d_in as f64 * rounding_noise_variance(s as f64))
                    .sum::<f64>();
                w.data.copy_from_slice(&y);
                x_all.extend(x);
                y_all.extend(y);
            });
        }
    }
    let error = quant_error(&x_all, &y_all);
    let signal: f64 = x_all.iter().map(|&v| v as f64 * v as f64).sum();
    Ok(QuantizedModel {
        scheme,
        model: out,
        quantized,
        kept_f32,
        quantized_values: x_all.len(),
        quantized_bytes: bytes,
        error,
        predicted_snr_db: 10.0 * (signal / noise).log10(),
    })
}

/// One row of [`report`].
#[derive(Clone, Debug)]
pub struct ReportRow {
    pub scheme: Scheme,
    /// Bits per weight of the quantized projections.
    pub bits_per_weight: f64,
    /// The bytes of all the model's tensors ([`QuantizedModel::weight_bytes`]).
    pub weight_bytes: usize,
    pub error: QuantError,
    pub predicted_snr_db: f64,
    /// What `eval` returned: the held-out cross-entropy, nats per token.
    pub cross_entropy: f64,
    /// Tokens `eval` scored per second.
    pub tokens_per_s: f64,
    pub kept_f32: Vec<String>,
}

/// Stores `model` in each of `schemes` and scores it with `eval`, which returns the
/// held-out cross-entropy and how many tokens it scored (timed, for tokens/s).
///
/// # Errors
/// As [`quantize_model`], or `eval`'s.
pub fn report(
    model: &Gpt,
    schemes: &[Scheme],
    eval: impl Fn(&Gpt) -> Result<(f64, usize)>,
) -> Result<Vec<ReportRow>> {
    schemes
        .iter()
        .map(|&scheme| {
            let q = quantize_model(model, scheme)?;
            let start = Instant::now();
            let (cross_entropy, tokens) = eval(&q.model)?;
            let seconds = start.elapsed().as_secs_f64();
            Ok(ReportRow {
                scheme,
                bits_per_weight: q.bits_per_weight(),
                weight_bytes: q.weight_bytes(),
                error: q.error,
                predicted_snr_db: q.predicted_snr_db,
                cross_entropy,
                tokens_per_s: tokens as f64 / seconds,
                kept_f32: q.kept_f32,
            })
        })
        .collect()
}

/// The report as a table, one line per scheme; `unit` heads the cross-entropy's column.
pub fn table(rows: &[ReportRow], unit: &str) -> String {
    let mut s = format!(
        "  {:<12} {:>9} {:>12} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10}\n",
        "format",
        "bits/wt",
        "weight bytes",
        "max |e|",
        "RMS e",
        "SNR dB",
        "Δ²/12 dB",
        unit,
        "tokens/s"
    );
    for r in rows {
        let snr = |v: f64| {
            if v.is_finite() {
                format!("{v:.1}")
            } else {
                "exact".into()
            }
        };
        s.push_str(&format!(
            "  {:<12} {:>9.2} {:>12} {:>10.2e} {:>10.2e} {:>9} {:>9} {:>10.4} {:>10.0}\n",
            r.scheme.name(),
            r.bits_per_weight,
            r.weight_bytes,
            r.error.max_abs,
            r.error.rms,
            snr(r.error.snr_db),
            snr(r.predicted_snr_db),
            r.cross_entropy,
            r.tokens_per_s
        ));
    }
    s
}

// ANCHOR: bytes_per_token
/// Bytes of weights one generated token reads: every projection once (a matrix-vector
/// product per layer), in `format` where its rows are whole blocks and in f32 otherwise;
/// the norms in f32; one row of the token embedding; and the output head, `vocab × d_model`
/// in `head` (with a tied head it is the embedding matrix, read whole).
pub fn bytes_per_token(cfg: &GptConfig, format: Format, head: Format) -> usize {
    let matrix = |f: Format, rows: usize, cols: usize| -> usize {
        match f.row_bytes(cols) {
            Ok(b) => rows * b,
            Err(_) => rows * cols * 4,
        }
    };
    let (c, ff, kv) = (cfg.d_model, cfg.d_ff, cfg.kv_dim());
    let mlp = match cfg.mlp {
        crate::gpt::Mlp::SwiGlu => 2 * matrix(format, ff, c) + matrix(format, c, ff),
        crate::gpt::Mlp::Gelu => matrix(format, ff, c) + matrix(format, c, ff),
    };
    let layer = 2 * matrix(format, c, c) + 2 * matrix(format, kv, c) + mlp + 2 * 4 * c;
    cfg.n_layers * layer + 4 * c + 4 * c + matrix(head, cfg.vocab_size, c)
}

/// Bytes of the key/value cache one token reads at position `t` (f32 keys and values of
/// the `t` tokens before it, in every layer): `2 · n_layers · t · kv_dim · 4`.
pub fn kv_bytes_per_token(cfg: &GptConfig, t: usize) -> usize {
    2 * cfg.n_layers * t * cfg.kv_dim() * 4
}
// ANCHOR_END: bytes_per_token

/// SmolLM2-135M's shapes (Hugging Face's `config.json`): 30 layers of width 576, 9 query
/// heads sharing 3 key/value heads, SwiGLU of width 1536, 49152 tokens, tied head.
pub fn smollm2_135m() -> GptConfig {
    GptConfig {
        vocab_size: 49152,
        d_model: 576,
        n_layers: 30,
        n_heads: 9,
        n_kv_heads: 3,
        d_ff: 1536,
        context: 8192,
        positions: crate::gpt::Positions::Rope { theta: 100000.0 },
        tied_head: true,
        ..GptConfig::llama_tiny()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Gpt {
        Gpt::init(GptConfig::llama_tiny(), 7).unwrap()
    }

    /// Bits per weight are the formats' (8.5, 5, 4.5; 8 and a scale for int8), the bytes
    /// add up, and the error ranks as the step sizes say: f32 exact, f16 below Q8_0 below
    /// Q4_1 below Q4_0, and Q8_0's blocks below one step per row below one per tensor.
    #[test]
    fn every_scheme_costs_and_loses_what_it_should() {
        let m = model();
        let n_params = m.cfg.n_params();
        let q: Vec<QuantizedModel> = Scheme::REPORT
            .iter()
            .map(|&s| quantize_model(&m, s).unwrap())
            .collect();
        let by = |s: Scheme| q.iter().find(|x| x.scheme == s).unwrap();
        let f32m = by(Scheme::Ggml(Format::F32));
        assert_eq!(f32m.weight_bytes(), 4 * n_params);
        assert_eq!(f32m.error.max_abs, 0.0);
        assert_eq!(f32m.bits_per_weight(), 32.0);
        assert!(by(Scheme::Ggml(Format::F16)).kept_f32.is_empty());
        for (f, bits) in [
            (Format::Q8_0, 8.5),
            (Format::Q4_1, 5.0),
            (Format::Q4_0, 4.5),
        ] {
            let x = by(Scheme::Ggml(f));
            assert_eq!(x.bits_per_weight(), bits);
            assert_eq!(x.kept_f32.len(), m.cfg.n_layers, "{f}: the down_projs");
            assert!(x.kept_f32.iter().all(|n| n.ends_with("down_proj")));
            // the f32 tensors plus the blocks
            let kept: usize = 4 * (n_params - x.quantized_values);
            assert_eq!(x.weight_bytes(), kept + x.quantized_bytes);
        }
        let t = by(Scheme::PerTensorInt8);
        assert_eq!(
            t.quantized_bytes,
            t.quantized_values + 4 * t.quantized.len()
        );
        let snr = |s: Scheme| by(s).error.snr_db;
        assert!(snr(Scheme::Ggml(Format::F16)) > snr(Scheme::Ggml(Format::Q8_0)));
        assert!(snr(Scheme::Ggml(Format::Q8_0)) > snr(Scheme::PerRowInt8));
        assert!(snr(Scheme::PerRowInt8) >= snr(Scheme::PerTensorInt8));
        assert!(snr(Scheme::PerTensorInt8) > snr(Scheme::Ggml(Format::Q4_1)));
        assert!(snr(Scheme::Ggml(Format::Q4_1)) > snr(Scheme::Ggml(Format::Q4_0)));
    }

    /// The uniform model predicts each scheme's SNR on a model's weights within 0.5 dB;
    /// values that sit exactly on the grid (a block's extremes) make the measured noise a
    /// little lower, never much higher.
    #[test]
    fn measured_error_matches_the_uniform_prediction() {
        let m = model();
        for s in Scheme::REPORT.iter().skip(1) {
            let q = quantize_model(&m, *s).unwrap();
            let gap = q.error.snr_db - q.predicted_snr_db;
            assert!(
                (-0.5..1.0).contains(&gap),
                "{s}: measured {:.2} dB, predicted {:.2} dB",
                q.error.snr_db,
                q.predicted_snr_db
            );
        }
    }

    #[test]
    fn normalized_errors_stay_within_their_bounds() {
        let m = model();
        let w = f32_projections(&m);
        let (_, rows, cols, x) = &w[0];
        for f in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
            let q = QMatrix::quantize(f, *rows, *cols, x).unwrap();
            let e = normalized_errors(&q, x).unwrap();
            assert_eq!(e.len(), x.len());
            // the codes are computed with d before its f16 rounding (relative error up to
            // 2^-11), which moves level q by up to q 2^-11 steps: 127/2048 for Q8_0, 15/2048
            // for Q4_1 (and m's rounding, smaller); Q4_0 clamps at +7 steps what rounds to +8
            let bound = match f {
                Format::Q8_0 => 0.5 + 128.0 / 2048.0,
                Format::Q4_1 => 0.5 + 16.0 / 2048.0,
                _ => 1.0 + 16.0 / 2048.0,
            };
            let worst = e.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(worst <= bound, "{f}: {worst}");
        }
        let q = QMatrix::quantize(Format::F16, *rows, *cols, x).unwrap();
        assert!(normalized_errors(&q, x).is_err());
    }

    /// SmolLM2-135M: 134.5 M parameters; a token reads them all once except the embedding
    /// (one row), and the tied head reads the embedding matrix whole.
    #[test]
    fn bytes_per_token_by_hand() {
        let cfg = smollm2_135m();
        assert_eq!(cfg.n_params(), 134_515_008);
        let f32_bytes = bytes_per_token(&cfg, Format::F32, Format::F32);
        // everything once, plus one embedding row read for the input
        assert_eq!(f32_bytes, 4 * (cfg.n_params() + cfg.d_model));
        let q8 = bytes_per_token(&cfg, Format::Q8_0, Format::Q8_0);
        // the matrices (the head included once, as the embedding is) at 34 bytes per 32
        // values; the 2L + 1 norms and the input's embedding row in f32
        let (l, c) = (cfg.n_layers, cfg.d_model);
        let norms = (2 * l + 1) * c;
        assert_eq!(q8, (cfg.n_params() - norms) / 32 * 34 + 4 * (norms + c));
        assert_eq!(kv_bytes_per_token(&cfg, 100), 2 * 30 * 100 * 192 * 4);
    }
}
