//! Generation: a key/value cache so that each new token costs one position's work, and
//! sampling (greedy, temperature, top-k, top-p).
//!
//! Without a cache, generating token `t` reruns the model on all `t` positions. With it,
//! each layer keeps the keys and values of the positions done so far, and a new token
//! computes only its own query, key and value. The cache holds `2 L kv_dim` numbers per
//! position, `2 L context kv_dim` when full: grouped-query attention shrinks it by
//! `n_heads / n_kv_heads` ([`KvCache::bytes`]). It grows with the positions added, from
//! room reserved for what the call needs ([`KvCache::with_capacity`]), instead of taking
//! the whole context up front (SmolLM2's 8192 positions would be 377 MB).

use super::block::{norm_forward, BlockActs, FwdScratch, KvSink};
use super::config::GptConfig;
use super::mla::MlaAbsorbed;
use super::model::Gpt;
use super::params::Attention;
use super::residual::add_into;
use crate::{Error, Result};
use ndarray_rand::rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ANCHOR: kv_cache
/// The keys and values of every position processed so far, per layer.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Per layer, `(len, kv_dim)`: [`Gpt::forward_cached`] appends the new positions' rows.
    /// With MLA, `k` holds the latents `[c^KV; k^R]`, `(len, d_c + d_h^R)`, and `v` nothing.
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    /// Positions cached.
    pub len: usize,
    /// MLA's absorbed matrices per layer, made from the model's weights on first use: a
    /// cache serves the one model it was filled by.
    absorbed: Vec<MlaAbsorbed>,
}

impl KvCache {
    /// An empty cache, which grows as positions are added.
    pub fn new(cfg: &GptConfig) -> Self {
        KvCache::with_capacity(cfg, 0)
    }

    /// An empty cache with room reserved for `positions` (at most the context): a prompt
    /// and the tokens to generate after it, so that it never moves while it grows. Only
    /// what is written is touched: reserved pages cost no memory until then.
    pub fn with_capacity(cfg: &GptConfig, positions: usize) -> Self {
        let (kw, vw) = Self::widths(cfg);
        let layers = |w: usize| {
            (0..cfg.n_layers)
                .map(|_| Vec::with_capacity(positions.min(cfg.context) * w))
                .collect()
        };
        KvCache {
            k: layers(kw),
            v: layers(vw),
            len: 0,
            absorbed: Vec::new(),
        }
    }

    /// An empty cache for the MTP depth's one block.
    pub fn for_mtp(cfg: &GptConfig) -> Self {
        KvCache::with_capacity(
            &GptConfig {
                n_layers: 1,
                ..cfg.clone()
            },
            0,
        )
    }

    /// Numbers per position and layer in `k` and in `v`: `kv_dim` each, or MLA's
    /// `d_c + d_h^R` and none.
    fn widths(cfg: &GptConfig) -> (usize, usize) {
        match &cfg.mla {
            Some(m) => (m.kv_lora_rank + m.qk_rope_head_dim, 0),
            None => (cfg.kv_dim(), cfg.kv_dim()),
        }
    }

    /// Bytes of a full cache (the whole context) in f32:
    /// `L * context * cache_floats_per_token * 4`, where a token keeps `2 n_kv_heads hs`
    /// numbers per layer, or MLA's `d_c + d_h^R` ([`GptConfig::cache_floats_per_token`]).
    pub fn bytes(cfg: &GptConfig) -> usize {
        cfg.n_layers * cfg.context * cfg.cache_floats_per_token() * std::mem::size_of::<f32>()
    }
}
// ANCHOR_END: kv_cache

impl Gpt {
    // ANCHOR: forward_cached
    /// Runs `tokens` at positions `cache.len..`, appends their keys and values to the
    /// cache, and returns their logits, `(tokens.len(), V)`. The logits are those
    /// [`Gpt::forward`] gives for the same positions of the whole sequence.
    pub fn forward_cached(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        self.run_cached(cache, tokens, tokens.len())
    }

    /// [`Gpt::forward_cached`] returning only the last position's logits, `(V,)`: what a
    /// prompt needs before generating. The output head is the largest matrix of a small
    /// model (SmolLM2's is a fifth of its weights), so a prompt of `n` tokens skips `n - 1`
    /// of its products.
    pub fn forward_cached_last(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        self.run_cached(cache, tokens, 1)
    }

    /// Runs `tokens` through the cache and returns the logits of the last `keep` positions.
    fn run_cached(&self, cache: &mut KvCache, tokens: &[u32], keep: usize) -> Result<Vec<f32>> {
        self.run_cached_hidden(cache, tokens, keep)
            .map(|(logits, _)| logits)
    }

    /// [`Gpt::forward_cached`], also returning the new positions' last hidden states (the
    /// last block's output, before the final norm), `(n, C)`: what an MTP depth reads.
    pub fn forward_cached_with_hidden(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.run_cached_hidden(cache, tokens, tokens.len())
    }

    fn run_cached_hidden(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        keep: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let cfg = &self.cfg;
        let (n, pos0) = (tokens.len(), cache.len);
        if n == 0 {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        if pos0 + n > cfg.context {
            return Err(Error::InvalidArgument(format!(
                "{} positions do not fit the model's context of {}",
                pos0 + n,
                cfg.context
            )));
        }
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {id} is out of range for vocab_size {}",
                cfg.vocab_size
            )));
        }
        if (cache.k.len(), cache.v.len()) != (cfg.n_layers, cfg.n_layers) {
            return Err(Error::InvalidArgument(format!(
                "the cache has {} layers of keys and {} of values, the model {}",
                cache.k.len(),
                cache.v.len(),
                cfg.n_layers
            )));
        }
        let p = &self.params;
        let c = cfg.d_model;
        let shape = self.attn_shape_of(1, n);
        let mut x = vec![0.0f32; n * c];
        self.embed(&mut x, tokens);
        if let Some(wpe) = &p.pos_emb {
            for (i, row) in x.chunks_exact_mut(c).enumerate() {
                add_into(row, &wpe[(pos0 + i) * c..][..c]);
            }
        }
        // room for the new rows (within the reserve, the buffers do not move)
        let (kw, vw) = KvCache::widths(cfg);
        cache
            .k
            .iter_mut()
            .for_each(|k| k.resize((pos0 + n) * kw, 0.0));
        cache
            .v
            .iter_mut()
            .for_each(|v| v.resize((pos0 + n) * vw, 0.0));
        if let (Some(m), true) = (&cfg.mla, cache.absorbed.is_empty()) {
            cache.absorbed = p
                .blocks
                .iter()
                .map(|b| match &b.attn {
                    Attention::Mla(a) => MlaAbsorbed::new(a, m, cfg.n_heads),
                    Attention::Mha(_) => unreachable!("an MLA config has MLA blocks"),
                })
                .collect();
        }
        // one block's buffers, reused by every layer: generation keeps nothing for a backward
        let mut acts = BlockActs::new(cfg, 1, n, false);
        let mut scratch = FwdScratch::new(cfg, n);
        let mut x_out = vec![0.0f32; n * c];
        for l in 0..cfg.n_layers {
            let sink = match cache.absorbed.get(l) {
                Some(absorbed) => KvSink::Latent {
                    k: &mut cache.k[l],
                    absorbed,
                    pos0,
                },
                None => KvSink::Cache {
                    k: &mut cache.k[l],
                    v: &mut cache.v[l],
                    pos0,
                },
            };
            let blk = &p.blocks[l];
            self.block_forward(blk, &x, &mut x_out, &mut acts, &mut scratch, sink, shape);
            std::mem::swap(&mut x, &mut x_out);
        }
        // the final norm and the head for the positions whose logits are asked for
        let keep = keep.min(n);
        let last = &x[(n - keep) * c..];
        let (mut ln, mut mean, mut rstd) = (vec![0.0; keep * c], vec![0.0; keep], vec![0.0; keep]);
        norm_forward(
            cfg.norm,
            &p.final_norm,
            &mut ln,
            &mut mean,
            &mut rstd,
            last,
            c,
        );
        let mut logits = vec![0.0; keep * cfg.vocab_size];
        self.head_forward(&mut logits, &ln);
        cache.len += n;
        Ok((logits, x))
    }
    // ANCHOR_END: forward_cached

    // ANCHOR: mtp_cached
    /// The MTP depth at positions `cache.len..`, for generation: position `i` reads the main
    /// model's last hidden state there (`hidden`, `(n, C)`, from
    /// [`Gpt::forward_cached_with_hidden`]) and the token after it (`next`), and its logits
    /// (`(n, V)`, returned) guess the token after that. `cache` is the depth's own
    /// ([`KvCache::for_mtp`]). Errors without an MTP depth.
    pub fn mtp_forward_cached(
        &self,
        cache: &mut KvCache,
        hidden: &[f32],
        next: &[u32],
    ) -> Result<Vec<f32>> {
        let (cfg, p) = (&self.cfg, &self.params);
        let Some(mp) = &p.mtp else {
            return Err(Error::InvalidArgument("the model has no MTP depth".into()));
        };
        let (n, c, pos0) = (next.len(), cfg.d_model, cache.len);
        if n == 0 || hidden.len() != n * c || cache.k.len() != 1 {
            return Err(Error::InvalidArgument(format!(
                "the MTP depth takes (n, C) hidden states for n next tokens and its one-layer \
                 cache: {} hidden values, {n} tokens, {} cache layers",
                hidden.len(),
                cache.k.len()
            )));
        }
        if pos0 + n > cfg.context {
            return Err(Error::InvalidArgument(format!(
                "{} positions do not fit the model's context of {}",
                pos0 + n,
                cfg.context
            )));
        }
        if let Some(&id) = next.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {id} is out of range for vocab_size {}",
                cfg.vocab_size
            )));
        }
        let norm = |w, x: &[f32]| {
            let (mut y, mut mean, mut rstd) = (vec![0.0; x.len()], vec![0.0; n], vec![0.0; n]);
            norm_forward(cfg.norm, w, &mut y, &mut mean, &mut rstd, x, c);
            y
        };
        let mut emb = vec![0.0; n * c];
        self.embed(&mut emb, next);
        let (en, hn) = (norm(&mp.enorm, &emb), norm(&mp.hnorm, hidden));
        let cat: Vec<f32> = en
            .chunks_exact(c)
            .zip(hn.chunks_exact(c))
            .flat_map(|(e, h)| e.iter().chain(h).copied())
            .collect();
        let mut x = vec![0.0; n * c];
        mp.eh_proj.forward(&mut x, &cat);
        let (kw, vw) = KvCache::widths(cfg);
        cache.k[0].resize((pos0 + n) * kw, 0.0);
        cache.v[0].resize((pos0 + n) * vw, 0.0);
        if let (Some(m), Attention::Mla(a), true) =
            (&cfg.mla, &mp.block.attn, cache.absorbed.is_empty())
        {
            cache.absorbed = vec![MlaAbsorbed::new(a, m, cfg.n_heads)];
        }
        let sink = match cache.absorbed.first() {
            Some(absorbed) => KvSink::Latent {
                k: &mut cache.k[0],
                absorbed,
                pos0,
            },
            None => KvSink::Cache {
                k: &mut cache.k[0],
                v: &mut cache.v[0],
                pos0,
            },
        };
        let mut acts = BlockActs::new(cfg, 1, n, false);
        let mut scratch = FwdScratch::new(cfg, n);
        let mut x_out = vec![0.0; n * c];
        let shape = self.attn_shape_of(1, n);
        self.block_forward(
            &mp.block,
            &x,
            &mut x_out,
            &mut acts,
            &mut scratch,
            sink,
            shape,
        );
        let xn = norm(&mp.norm, &x_out);
        let mut logits = vec![0.0; n * cfg.vocab_size];
        self.head_forward(&mut logits, &xn);
        cache.len += n;
        Ok(logits)
    }
    // ANCHOR_END: mtp_cached
}

/// How the next token is chosen from the logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0 is greedy: always the most likely token. Otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the fewest most likely tokens whose probabilities sum to at least `top_p` (1: all).
    pub top_p: f32,
    pub seed: u64,
}

impl Sampling {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

// ANCHOR: sample
/// Picks a token id from one position's logits.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || {
        (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0) as u32
    };
    if s.temperature <= 0.0 || s.top_k == 1 {
        return argmax();
    }
    // candidates, most likely first
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if s.top_k > 0 {
        ids.truncate(s.top_k);
    }
    let max = logits[ids[0]];
    let mut probs: Vec<f32> = ids
        .iter()
        .map(|&i| ((logits[i] - max) / s.temperature).exp())
        .collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    // top-p: the shortest head of the list whose mass reaches top_p
    let mut mass = 0.0;
    let keep = probs.iter().position(|&p| {
        mass += p;
        mass >= s.top_p
    });
    let keep = keep.map_or(probs.len(), |i| i + 1);
    let kept = &probs[..keep];
    let mut u = rng.gen::<f32>() * kept.iter().sum::<f32>();
    for (&id, &p) in ids.iter().zip(kept) {
        if u < p {
            return id as u32;
        }
        u -= p;
    }
    ids[keep - 1] as u32
}
// ANCHOR_END: sample

impl KvCache {
    /// Forgets the positions from `len` on, keeping the first `len` (a conversation
    /// that reuses the part of its prompt that did not change).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// Why [`generate_streaming`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The model chose this stop token (an end of turn): it was not handed over.
    EndOfTurn(u32),
    /// `max_new` tokens were handed over.
    MaxNew,
    /// The cache holds the whole context: the last token handed over has no room to run.
    Context,
}

// ANCHOR: generate_streaming
/// Generation that hands each token to `on_token` as soon as it is chosen. `prompt`
/// continues what `cache` already holds (a fresh cache: from the start) and runs in one
/// pass; then each chosen token is handed over and run to choose the next. Stops when the
/// model chooses a token of `stop_at` (not handed over), after `max_new` tokens, or when the
/// context is full; an error from `on_token` stops it too and is returned. With `max_new`
/// 0 only the prompt runs. The loop runs on a rayon worker, hence `Send`.
///
/// Errors before any work on an empty prompt or one that does not fit the context after
/// the cached positions; [`Gpt::forward_cached`] checks the ids.
pub fn generate_streaming<F>(
    model: &Gpt,
    cache: &mut KvCache,
    prompt: &[u32],
    max_new: usize,
    sampling: &Sampling,
    stop_at: &[u32],
    mut on_token: F,
) -> Result<Stop>
where
    F: FnMut(u32) -> Result<()> + Send,
{
    let context = model.cfg.context;
    if prompt.is_empty() {
        return Err(Error::InvalidArgument(
            "the prompt is empty: give at least one token".into(),
        ));
    }
    if cache.len + prompt.len() > context {
        let cached = match cache.len {
            0 => String::new(),
            n => format!(" after {n} cached ones"),
        };
        return Err(Error::InvalidArgument(format!(
            "the prompt has {} tokens{cached}: more than the model's context of {context}",
            prompt.len()
        )));
    }
    // run on a rayon worker, so that the layers' parallel loops on one token's tiny
    // tensors stay on this thread instead of each waking the pool
    rayon::scope(|_| {
        let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        let v = model.cfg.vocab_size;
        let mut logits = model.forward_cached_last(cache, prompt)?;
        for n in 1..=max_new {
            let next = sample(&logits[logits.len() - v..], sampling, &mut rng);
            if stop_at.contains(&next) {
                return Ok(Stop::EndOfTurn(next));
            }
            on_token(next)?;
            if n == max_new {
                break;
            }
            if cache.len == context {
                return Ok(Stop::Context);
            }
            logits = model.forward_cached(cache, &[next])?;
        }
        Ok(Stop::MaxNew)
    })
}
// ANCHOR_END: generate_streaming

/// `max_new` tokens after `prompt`, with the cache: the prompt runs in one pass, then one
/// token per step ([`generate_streaming`] with no stop token). Errors on an empty prompt,
/// unknown ids, or more tokens than the context holds.
pub fn generate(
    model: &Gpt,
    prompt: &[u32],
    max_new: usize,
    sampling: &Sampling,
) -> Result<Vec<u32>> {
    if prompt.len() + max_new > model.cfg.context {
        return Err(Error::InvalidArgument(format!(
            "{} prompt tokens and {max_new} new ones exceed the model's context of {}",
            prompt.len(),
            model.cfg.context
        )));
    }
    let mut cache = KvCache::with_capacity(&model.cfg, prompt.len() + max_new);
    let mut out = Vec::with_capacity(max_new);
    generate_streaming(model, &mut cache, prompt, max_new, sampling, &[], |id| {
        out.push(id);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::{Activations, Mlp, Norm, Positions};

    fn configs() -> Vec<GptConfig> {
        let llama = shrunk(GptConfig::llama_tiny(), [40, 32, 2, 48, 16]);
        let gpt2 = shrunk(GptConfig::gpt2_tiny(), [40, 32, 2, 64, 16]);
        let mqa = GptConfig {
            n_kv_heads: 1,
            norm: Norm::LayerNorm { eps: 1e-5 },
            mlp: Mlp::Gelu,
            ..llama.clone()
        };
        assert_eq!(mqa.positions, Positions::Rope { theta: 10000.0 });
        vec![llama, gpt2, mqa]
    }

    /// The cache changes the work, not the answer: a prompt of 5 in one pass, then 1, 3
    /// and 1 tokens, give the logits of one forward over all 10.
    #[test]
    fn logits_with_the_cache_equal_logits_without() {
        for cfg in configs() {
            let mut model = Gpt::init(cfg.clone(), 4).unwrap();
            // larger weights than the init, so that attention is not uniform
            model
                .params
                .tensors_mut()
                .into_iter()
                .for_each(|t| t.iter_mut().for_each(|x| *x *= 10.0));
            let ids: Vec<u32> = (0..10).map(|i| (i * 7 + 3) % 40).collect();
            let mut acts = Activations::new(&cfg, 1, 10);
            model.forward(&mut acts, &ids).unwrap();
            let mut cache = KvCache::new(&cfg);
            let mut cached = Vec::new();
            for part in [&ids[..5], &ids[5..6], &ids[6..9], &ids[9..]] {
                cached.extend(model.forward_cached(&mut cache, part).unwrap());
            }
            let scale = acts.logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let diff = acts
                .logits
                .iter()
                .zip(&cached)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff < 1e-5 * scale, "{cfg:?}: {diff} of {scale}");
            // the last position alone: the same values (up to the head's summation order
            // for one row instead of five), the same cache
            let close = |a: &[f32], b: &[f32]| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5 * scale)
            };
            let mut short = KvCache::new(&cfg);
            let last = model.forward_cached_last(&mut short, &ids[..5]).unwrap();
            assert!(close(
                &last,
                &cached[4 * cfg.vocab_size..5 * cfg.vocab_size]
            ));
            let rest = model.forward_cached(&mut short, &ids[5..]).unwrap();
            assert!(close(&rest, &cached[5 * cfg.vocab_size..]));
            assert!(
                model.forward_cached(&mut cache, &[1; 7]).is_err(),
                "10 + 7 > context 16"
            );
        }
    }

    /// The cache holds the positions added so far, no more: it starts empty, grows by
    /// the rows of each call, and within the room reserved its buffers stay put.
    #[test]
    fn the_cache_grows_with_the_positions() {
        let cfg = configs().remove(0);
        let model = Gpt::init(cfg.clone(), 2).unwrap();
        let kvd = cfg.kv_dim();
        let mut grown = KvCache::new(&cfg);
        assert!(grown.k.iter().chain(&grown.v).all(|l| l.capacity() == 0));
        let mut reserved = KvCache::with_capacity(&cfg, 9);
        let at = reserved.k[1].as_ptr();
        for (part, len) in [(&[3u32, 1, 4][..], 3), (&[1], 4), (&[5, 9, 2, 6, 5], 9)] {
            let a = model.forward_cached(&mut grown, part).unwrap();
            let b = model.forward_cached(&mut reserved, part).unwrap();
            assert_eq!(a, b);
            for cache in [&grown, &reserved] {
                assert_eq!(cache.len, len);
                assert!(cache.k.iter().chain(&cache.v).all(|l| l.len() == len * kvd));
            }
        }
        assert_eq!(reserved.k[1].as_ptr(), at, "the reserve held 9 positions");
        // no more than the context, however much is asked for
        let huge = KvCache::with_capacity(&cfg, usize::MAX);
        assert_eq!(huge.k[0].capacity(), cfg.context * kvd);
        let mut other = KvCache::new(&cfg);
        other.v.pop();
        assert!(model.forward_cached(&mut other, &[1]).is_err());
    }

    #[test]
    fn cache_sizes_for_mha_gqa_mqa() {
        let mut cfg = GptConfig::llama_tiny();
        let gqa = KvCache::bytes(&cfg);
        assert_eq!(gqa, 2 * 4 * 128 * 64 * 4); // 2 KV heads of 32
        cfg.n_kv_heads = 4;
        assert_eq!(KvCache::bytes(&cfg), 2 * gqa);
        cfg.n_kv_heads = 1;
        assert_eq!(KvCache::bytes(&cfg), gqa / 2);
    }

    #[test]
    fn sampling_rules() {
        let logits = [1.0, 3.0, 2.0, -1.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(sample(&logits, &Sampling::greedy(), &mut rng), 1);
        let t1 = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        };
        assert_eq!(sample(&logits, &Sampling { top_k: 1, ..t1 }, &mut rng), 1);
        assert_eq!(sample(&logits, &Sampling { top_p: 0.1, ..t1 }, &mut rng), 1);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[sample(&logits, &Sampling { top_k: 2, ..t1 }, &mut rng) as usize] += 1;
        }
        // only ids 1 and 2, in the ratio e^3 : e^2
        assert_eq!(counts[0] + counts[3], 0);
        let ratio = counts[1] as f32 / counts[2] as f32;
        assert!((ratio - 1f32.exp()).abs() < 0.3, "{counts:?}");
        let mut all = [0usize; 4];
        for _ in 0..4000 {
            all[sample(&logits, &t1, &mut rng) as usize] += 1;
        }
        assert!(all.iter().all(|&c| c > 0), "every id can come: {all:?}");
    }

    #[test]
    fn generation_is_seeded_and_checks_its_input() {
        let cfg = configs().remove(0);
        let model = Gpt::init(cfg, 5).unwrap();
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            seed: 7,
        };
        let a = generate(&model, &[1, 2, 3], 8, &s).unwrap();
        assert_eq!(a.len(), 8);
        assert_eq!(generate(&model, &[1, 2, 3], 8, &s).unwrap(), a);
        // greedy generation is what the full forward's argmax gives, step by step
        let g = generate(&model, &[1, 2, 3], 4, &Sampling::greedy()).unwrap();
        let mut seq = vec![1u32, 2, 3];
        for &next in &g {
            let mut acts = Activations::new(&model.cfg, 1, seq.len());
            model.forward(&mut acts, &seq).unwrap();
            let last = &acts.logits[(seq.len() - 1) * 40..];
            let best = (0..40)
                .max_by(|&a, &b| last[a].total_cmp(&last[b]))
                .unwrap() as u32;
            assert_eq!(next, best);
            seq.push(next);
        }
        assert!(generate(&model, &[], 4, &s)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(generate(&model, &[40], 4, &s).is_err());
        assert!(generate(&model, &[1; 10], 7, &s).is_err());
    }

    /// Streaming hands over what `generate` returns, stops at a stop token, at the
    /// context's end and on the callback's error, and continues a cache.
    #[test]
    fn streaming_stops_where_it_should_and_continues_a_cache() {
        let cfg = configs().remove(0);
        let model = Gpt::init(cfg, 5).unwrap();
        let greedy = Sampling::greedy();
        let stream = |cache: &mut KvCache, prompt: &[u32], max_new: usize, stop: &[u32]| {
            let mut out = Vec::new();
            let why = generate_streaming(&model, cache, prompt, max_new, &greedy, stop, |id| {
                out.push(id);
                Ok(())
            });
            (out, why)
        };
        let whole = generate(&model, &[1, 2, 3], 6, &greedy).unwrap();
        let mut cache = KvCache::new(&model.cfg);
        let (out, why) = stream(&mut cache, &[1, 2, 3], 6, &[]);
        assert_eq!((out, why.unwrap()), (whole.clone(), Stop::MaxNew));
        // the first token that did not come before stops it, unhanded
        let at = (1..6).find(|&i| !whole[..i].contains(&whole[i])).unwrap();
        let (out, why) = stream(&mut KvCache::new(&model.cfg), &[1, 2, 3], 6, &[whole[at]]);
        assert_eq!(
            (out, why.unwrap()),
            (whole[..at].to_vec(), Stop::EndOfTurn(whole[at]))
        );
        // a prompt run alone, then continued from the cache: as if given whole
        let mut cache = KvCache::new(&model.cfg);
        assert_eq!(stream(&mut cache, &[1, 2], 0, &[]).1.unwrap(), Stop::MaxNew);
        assert_eq!(cache.len, 2);
        let (out, _) = stream(&mut cache, &[3], 6, &[]);
        assert_eq!(out, whole);
        // context 16: a prompt of 10 leaves room to run 6 tokens; the 7th is handed over
        let prompt: Vec<u32> = (0..10).collect();
        let (out, why) = stream(&mut KvCache::new(&model.cfg), &prompt, 100, &[]);
        assert_eq!(why.unwrap(), Stop::Context);
        assert_eq!(out.len(), 7);
        assert_eq!(out[..6], generate(&model, &prompt, 6, &greedy).unwrap());
        let mut cache = KvCache::new(&model.cfg);
        stream(&mut cache, &prompt, 0, &[]).1.unwrap();
        let e = stream(&mut cache, &[1; 7], 1, &[])
            .1
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("7 tokens after 10 cached") && e.contains("context of 16"),
            "{e}"
        );
        let e = stream(&mut cache, &[], 1, &[]).1.unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let mut n = 0;
        let e = generate_streaming(
            &model,
            &mut KvCache::new(&model.cfg),
            &[1],
            5,
            &greedy,
            &[],
            |_| {
                n += 1;
                Err(Error::InvalidArgument("the reader left".into()))
            },
        );
        assert!(e.unwrap_err().to_string().contains("the reader left"));
        assert_eq!(n, 1);
    }
}
