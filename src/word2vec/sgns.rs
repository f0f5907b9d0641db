//! Skip-gram with negative sampling (SGNS), the trainer word2vec.c and gensim run.
//!
//! Instead of normalising over the whole vocabulary, each (centre c, context o) pair becomes
//! k + 1 binary questions: "is o a real context of c?" (yes) and, for k words n_1..n_k drawn
//! from the noise distribution, "is n_i?" (no). The loss of a pair is
//!
//! L = −log σ(u_o · v_c) − Σ_i log σ(−u_{n_i} · v_c)
//!
//! so a step touches k + 2 vectors instead of |V| + 1. Around it, word2vec's recipe: drop
//! words seen fewer than `min_count` times, thin out frequent words (sub-sampling), shrink
//! each window to a random size in 1..=window (near words count more), and decay the
//! learning rate linearly from `alpha` to `min_alpha` over the whole run.
//!
//! Threads share the two tables without locks (Hogwild, as word2vec.c and gensim do): two
//! threads may update the same row at once and one update may be partly lost; with sparse
//! updates that is rare and harmless to the result. With `threads = 1` a seed gives the same
//! vectors every run.
//!
//! As on the slides, v is the centre word's vector and u the context word's. word2vec.c and
//! gensim swap the two roles (the context word's input vector predicts the centre word);
//! every pair occurs in both directions, so the two train the same model.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::vocab::{AliasTable, EncodedCorpus, Vocab};
use super::{sigmoid, Embeddings};
use crate::simd::{Kernel, Portable};
use crate::{Error, Result};

// ANCHOR: sgns_loss
/// The negative-sampling loss of one pair and its gradients, in f64 (for teaching and
/// checking; the trainer computes the same in f32):
///
/// L = −log σ(u_o · v_c) − Σ_i log σ(−u_{n_i} · v_c)
///
/// ∂L/∂v_c = (σ(u_o·v_c) − 1) u_o + Σ_i σ(u_{n_i}·v_c) u_{n_i},
/// ∂L/∂u_o = (σ(u_o·v_c) − 1) v_c,  ∂L/∂u_{n_i} = σ(u_{n_i}·v_c) v_c.
///
/// Returns (L, ∂L/∂v_c, ∂L/∂u_o, [∂L/∂u_{n_i}]).
pub fn sgns_loss_and_grads(
    v_c: &[f64],
    u_o: &[f64],
    u_neg: &[&[f64]],
) -> (f64, Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let s_o = dot(u_o, v_c);
    // −log σ(x) = log(1 + e^(−x)), written to stay finite for large |x|.
    let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
    let mut loss = softplus(-s_o);
    let g_o = sigmoid(s_o) - 1.0;
    let mut grad_v: Vec<f64> = u_o.iter().map(|&u| g_o * u).collect();
    let grad_u_o = v_c.iter().map(|&v| g_o * v).collect();
    let mut grad_u_neg = Vec::with_capacity(u_neg.len());
    for u_n in u_neg {
        let s_n = dot(u_n, v_c);
        loss += softplus(s_n);
        let g_n = sigmoid(s_n);
        for (gv, &u) in grad_v.iter_mut().zip(u_n.iter()) {
            *gv += g_n * u;
        }
        grad_u_neg.push(v_c.iter().map(|&v| g_n * v).collect());
    }
    (loss, grad_v, grad_u_o, grad_u_neg)
}
// ANCHOR_END: sgns_loss

/// Settings of the negative-sampling trainer. The defaults are gensim's (`Word2Vec(sg=1)`),
/// which are word2vec.c's but for the learning-rate floor.
#[derive(Debug, Clone)]
pub struct SgnsConfig {
    /// Vector size d.
    pub dim: usize,
    /// Largest window: each position draws its window from 1..=window.
    pub window: usize,
    /// Draw each position's window from 1..=window (word2vec.c, gensim; near words then
    /// count more); `false` uses the full window everywhere, to measure what the draw buys.
    pub shrink_window: bool,
    /// Noise words k per pair.
    pub negative: usize,
    /// Words seen fewer times are dropped.
    pub min_count: u64,
    /// Sub-sampling threshold t (0: keep every word).
    pub sample: f64,
    /// Learning rate at the start.
    pub alpha: f64,
    /// Learning rate at the end (gensim: 1e-4; word2vec.c: alpha · 1e-4).
    pub min_alpha: f64,
    /// Passes over the corpus.
    pub epochs: usize,
    /// Exponent of the noise distribution.
    pub ns_exponent: f64,
    /// Worker threads (0: all of rayon's).
    pub threads: usize,
    /// Seed of the initial vectors and of every random choice.
    pub seed: u64,
}

impl Default for SgnsConfig {
    fn default() -> SgnsConfig {
        SgnsConfig {
            dim: 100,
            window: 5,
            shrink_window: true,
            negative: 5,
            min_count: 5,
            sample: 1e-3,
            alpha: 0.025,
            min_alpha: 1e-4,
            epochs: 5,
            ns_exponent: 0.75,
            threads: 0,
            seed: 1,
        }
    }
}

impl SgnsConfig {
    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(msg));
        if self.dim == 0 || self.window == 0 || self.epochs == 0 {
            return bad(format!(
                "dim, window and epochs must be at least 1 (got {}, {}, {})",
                self.dim, self.window, self.epochs
            ));
        }
        if !(self.alpha > 0.0
            && self.alpha.is_finite()
            && (0.0..=self.alpha).contains(&self.min_alpha))
        {
            return bad(format!(
                "need 0 <= min_alpha <= alpha, alpha > 0 (got alpha {}, min_alpha {})",
                self.alpha, self.min_alpha
            ));
        }
        if self.negative >= MAX_TARGETS {
            return bad(format!(
                "negative must be below {MAX_TARGETS}, got {}",
                self.negative
            ));
        }
        if !(self.sample >= 0.0 && self.sample.is_finite()) {
            return bad(format!("sample must be >= 0, got {}", self.sample));
        }
        Ok(())
    }
}

/// What a training run did.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Words read per epoch times epochs, out-of-vocabulary words included.
    pub raw_words: u64,
    /// Words trained on, after min_count and sub-sampling (gensim's "effective words").
    pub effective_words: u64,
    /// (centre, context) pairs trained on.
    pub pairs: u64,
    /// Wall time of the training loop, in seconds (vocabulary building excluded).
    pub seconds: f64,
    /// Mean loss L per pair, epoch by epoch.
    pub epoch_losses: Vec<f64>,
    /// Worker threads used.
    pub threads: usize,
}

impl TrainReport {
    /// Raw words per second, as word2vec.c reports.
    pub fn raw_words_per_second(&self) -> f64 {
        self.raw_words as f64 / self.seconds
    }

    /// Effective words per second, as gensim reports.
    pub fn effective_words_per_second(&self) -> f64 {
        self.effective_words as f64 / self.seconds
    }
}

/// A trained SGNS model: the vocabulary and both tables.
#[derive(Debug, Clone)]
pub struct Sgns {
    /// The vocabulary trained on.
    pub vocab: Vocab,
    /// Vector size d.
    pub dim: usize,
    /// Centre ("input") vectors v, |V| × d row-major: the word vectors.
    pub v: Vec<f32>,
    /// Context ("output") vectors u, |V| × d row-major.
    pub u: Vec<f32>,
    /// The run.
    pub report: TrainReport,
}

impl Sgns {
    /// The word vectors (the centre vectors v), for neighbours, analogies and saving.
    pub fn embeddings(&self) -> Embeddings {
        Embeddings::new(self.vocab.words.clone(), self.dim, self.v.clone())
            .expect("one vector of d numbers per word")
    }
}

/// Builds the vocabulary of `sentences` and trains on them. `on_words` is called from the
/// workers with the number of (raw) words just processed, for a progress bar.
///
/// Errors: a bad setting, an empty corpus, a vocabulary left empty by min_count, a corpus
/// with no two words in one sentence, or a loss that is no longer finite.
pub fn train_sgns<S: AsRef<str>>(
    sentences: &[Vec<S>],
    config: &SgnsConfig,
    on_words: &(dyn Fn(u64) + Sync),
) -> Result<Sgns> {
    config.check()?;
    let vocab = Vocab::build(sentences, config.min_count)?;
    let corpus = vocab.encode(sentences);
    train_encoded(vocab, &corpus, config, on_words)
}

/// Trains on a corpus already encoded with `vocab`.
pub fn train_encoded(
    vocab: Vocab,
    corpus: &EncodedCorpus,
    config: &SgnsConfig,
    on_words: &(dyn Fn(u64) + Sync),
) -> Result<Sgns> {
    config.check()?;
    if corpus.n_sentences() == 0 || corpus.ids.len() == corpus.n_sentences() {
        return Err(Error::TooSmall {
            what: "the corpus".into(),
            why: "no sentence has two vocabulary words, so there is no (centre, context) pair"
                .into(),
        });
    }
    let (n, d) = (vocab.len(), config.dim);
    // gensim's initialisation: v uniform in [−1, 1) / d, u zero. (word2vec.c draws v in
    // [−0.5, 0.5) / d; on the State of the Union the wider start scored closer to gensim on
    // the analogy questions, 0.069-0.077 against 0.064-0.065.)
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut v: Vec<f32> = (0..n * d)
        .map(|_| (rng.gen::<f32>() * 2.0 - 1.0) / d as f32)
        .collect();
    let mut u = vec![0f32; n * d];

    let keep: Vec<f32> = vocab
        .keep_probabilities(config.sample)
        .into_iter()
        .map(|p| p as f32)
        .collect();
    let noise = vocab.noise_table(config.ns_exponent);
    let chunks = chunk_corpus(corpus, CHUNK_WORDS);
    let threads = if config.threads == 0 {
        rayon::current_num_threads()
    } else {
        config.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start {threads} threads: {e}")))?;

    let ctx = Context {
        corpus,
        keep: &keep,
        noise: &noise,
        table: SigmoidTable::new(),
        config,
        v: SharedRows::new(&mut v, d),
        u: SharedRows::new(&mut u, d),
    };
    let total_words = corpus.ids.len() as u64 * config.epochs as u64;
    let start = Instant::now();
    let mut report = TrainReport {
        raw_words: corpus.raw_words * config.epochs as u64,
        effective_words: 0,
        pairs: 0,
        seconds: 0.0,
        epoch_losses: Vec::with_capacity(config.epochs),
        threads,
    };
    for epoch in 0..config.epochs {
        let (loss, pairs, words) = pool.install(|| {
            chunks
                .par_iter()
                .enumerate()
                .map(|(i, chunk)| {
                    // The learning rate falls with the words done before this chunk, so it
                    // does not depend on which thread runs the chunk when.
                    let done = epoch as u64 * corpus.ids.len() as u64 + chunk.first_word as u64;
                    let progress = done as f64 / total_words as f64;
                    let alpha = config.alpha - (config.alpha - config.min_alpha) * progress;
                    let seed = config.seed
                        ^ ((epoch as u64) << 40)
                        ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let out = ctx.train_chunk(chunk, alpha as f32, seed);
                    on_words(chunk.raw_words);
                    (out.loss, out.pairs, out.words)
                })
                .reduce(|| (0.0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
        });
        let mean = loss / pairs.max(1) as f64;
        if !mean.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "the loss became {mean} in epoch {} (alpha {} too high?)",
                epoch + 1,
                config.alpha
            )));
        }
        report.epoch_losses.push(mean);
        report.pairs += pairs;
        report.effective_words += words;
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(Sgns {
        vocab,
        dim: d,
        v,
        u,
        report,
    })
}

/// Most targets one step may have: the context word and up to 63 noise words.
const MAX_TARGETS: usize = 64;

/// Words per work item: word2vec.c and gensim also hand out about 10,000 words at a time.
const CHUNK_WORDS: usize = 10_000;

/// A run of whole sentences, the unit a worker takes.
struct Chunk {
    /// Sentences `first_sentence..end_sentence` of the corpus.
    first_sentence: usize,
    end_sentence: usize,
    /// Position of its first word in the corpus.
    first_word: usize,
    /// Raw words these sentences held (for progress).
    raw_words: u64,
}

fn chunk_corpus(corpus: &EncodedCorpus, words: usize) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut first = 0;
    let n = corpus.n_sentences();
    let raw_per_word = corpus.raw_words as f64 / corpus.ids.len().max(1) as f64;
    while first < n {
        let mut end = first;
        while end < n && corpus.starts[end] - corpus.starts[first] < words {
            end += 1;
        }
        let len = corpus.starts[end] - corpus.starts[first];
        chunks.push(Chunk {
            first_sentence: first,
            end_sentence: end,
            first_word: corpus.starts[first],
            raw_words: (len as f64 * raw_per_word).round() as u64,
        });
        first = end;
    }
    chunks
}

/// σ(x) and log σ(x) looked up in a table over [−MAX_EXP, MAX_EXP] (word2vec.c's trick:
/// exp is the slowest thing in the loop otherwise). Beyond the range σ is taken as 0 or 1,
/// as word2vec.c does (gensim skips such pairs instead).
struct SigmoidTable {
    sigma: Vec<f32>,
    log_sigma: Vec<f32>,
}

const MAX_EXP: f32 = 6.0;
const TABLE_SIZE: usize = 1000;

impl SigmoidTable {
    fn new() -> SigmoidTable {
        let xs =
            (0..=TABLE_SIZE).map(|i| (i as f64 / TABLE_SIZE as f64 * 2.0 - 1.0) * MAX_EXP as f64);
        let sigma: Vec<f32> = xs.clone().map(|x| sigmoid(x) as f32).collect();
        let log_sigma = xs.map(|x| sigmoid(x).ln() as f32).collect();
        SigmoidTable { sigma, log_sigma }
    }

    /// (σ(x), log σ(x)).
    #[inline(always)]
    fn get(&self, x: f32) -> (f32, f32) {
        if x >= MAX_EXP {
            (1.0, 0.0)
        } else if x <= -MAX_EXP {
            // log σ(x) → x as x → −∞.
            (0.0, x)
        } else {
            let i = ((x + MAX_EXP) * (TABLE_SIZE as f32 / MAX_EXP / 2.0)) as usize;
            (self.sigma[i], self.log_sigma[i])
        }
    }
}

/// One table (`rows` × `dim`, row-major) as the workers share it: a raw pointer, through
/// which the kernels read and write the rows.
///
/// Hogwild (as word2vec.c and gensim train): the workers update the tables without locks.
/// Two threads may read and write one row at the same moment, and an update may then be
/// partly lost. The updates are sparse (a step touches k + 2 rows out of 2|V|), so that is
/// rare, and a lost update costs little next to the noise SGD already has; locks would cost
/// on every step. What Rust forbids even with the races accepted is a `&mut [f32]` (or a
/// `&[f32]`) to a row another thread may be writing: so no reference to a row is ever
/// made, only pointers. (Two unsynchronised accesses to one float remain a data race in
/// Rust's memory model; only atomics would avoid that, at the cost of the SIMD kernels.)
/// With one thread nothing races, and a seed gives the same vectors bit for bit.
#[derive(Clone, Copy)]
struct SharedRows {
    ptr: *mut f32,
    rows: usize,
    dim: usize,
}

// SAFETY: the table outlives the workers (they are joined before `train_encoded` returns
// it), nothing else touches it meanwhile, and the workers reach it only through the
// pointer; their concurrent updates of one row are the races Hogwild accepts.
unsafe impl Send for SharedRows {}
unsafe impl Sync for SharedRows {}

impl SharedRows {
    /// `table` holds `rows` × `dim` floats; it must not be used otherwise while the pointer is.
    fn new(table: &mut [f32], dim: usize) -> SharedRows {
        SharedRows {
            ptr: table.as_mut_ptr(),
            rows: table.len() / dim,
            dim,
        }
    }

    /// The first of the `dim` floats of row `i`.
    ///
    /// # Safety
    /// `i < rows`, and the table is alive.
    #[inline(always)]
    unsafe fn row(self, i: u32) -> *mut f32 {
        debug_assert!((i as usize) < self.rows);
        self.ptr.add(i as usize * self.dim)
    }
}

struct Context<'a> {
    corpus: &'a EncodedCorpus,
    keep: &'a [f32],
    noise: &'a AliasTable,
    table: SigmoidTable,
    config: &'a SgnsConfig,
    /// The centre vectors v and the context vectors u.
    v: SharedRows,
    u: SharedRows,
}

/// The rows of u one pair updates: `ids[0]` is the context word, the rest noise words.
#[derive(Clone, Copy)]
struct Targets {
    ids: [u32; MAX_TARGETS],
    n: usize,
}

struct ChunkOutcome {
    loss: f64,
    pairs: u64,
    words: u64,
}

impl Context<'_> {
    fn train_chunk(&self, chunk: &Chunk, alpha: f32, seed: u64) -> ChunkOutcome {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = crate::simd::Avx2::detect() {
            // SAFETY: `detect` found AVX2 and FMA.
            return unsafe { self.train_chunk_avx2(k, chunk, alpha, seed) };
        }
        self.train_chunk_with(Portable, chunk, alpha, seed)
    }

    /// The same loop, compiled with AVX2 and FMA so the kernels inline into it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn train_chunk_avx2(
        &self,
        k: crate::simd::Avx2,
        chunk: &Chunk,
        alpha: f32,
        seed: u64,
    ) -> ChunkOutcome {
        self.train_chunk_with(k, chunk, alpha, seed)
    }

    // ANCHOR: sgns_chunk
    #[inline(always)]
    fn train_chunk_with<K: Kernel>(
        &self,
        k: K,
        chunk: &Chunk,
        alpha: f32,
        seed: u64,
    ) -> ChunkOutcome {
        let mut rng = SmallRng::seed_from_u64(seed);
        let (window, shrink) = (self.config.window, self.config.shrink_window);
        let mut kept: Vec<u32> = Vec::new();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut grad_v = vec![0f32; self.v.dim];
        let mut out = ChunkOutcome {
            loss: 0.0,
            pairs: 0,
            words: 0,
        };
        for s in chunk.first_sentence..chunk.end_sentence {
            // Sub-sampling: each occurrence is kept with its word's keep probability.
            kept.clear();
            kept.extend(self.corpus.sentence(s).iter().copied().filter(|&w| {
                self.keep[w as usize] >= 1.0 || self.keep[w as usize] > rng.gen::<f32>()
            }));
            out.words += kept.len() as u64;
            // The (centre, context) pairs, each centre with a window of random size
            // 1..=window.
            pairs.clear();
            for t in 0..kept.len() {
                let b = if shrink {
                    window - rng.gen_range(0..window)
                } else {
                    window
                };
                let lo = t.saturating_sub(b);
                let hi = (t + b).min(kept.len() - 1);
                pairs.extend((lo..=hi).filter(|&j| j != t).map(|j| (kept[t], kept[j])));
            }
            // Each pair's targets are drawn (and their rows requested from memory) one
            // pair ahead, so the memory works while the previous pair computes.
            let Some(&(_, first)) = pairs.first() else {
                continue;
            };
            let mut next = self.draw_targets(k, first, &mut rng);
            for (p, &(centre, _)) in pairs.iter().enumerate() {
                let targets = next;
                if let Some(&(c, o)) = pairs.get(p + 1) {
                    // SAFETY: ids come from the vocabulary.
                    k.prefetch(unsafe { self.v.row(c) }, self.v.dim);
                    next = self.draw_targets(k, o, &mut rng);
                }
                out.loss += self.sgns_step(k, centre, &targets, alpha, &mut grad_v) as f64;
            }
            out.pairs += pairs.len() as u64;
        }
        out
    }
    // ANCHOR_END: sgns_chunk

    /// The targets of one pair: the context word, then `negative` noise words (a noise
    /// word equal to the context word is skipped, as word2vec.c does); their rows of u
    /// are requested from memory.
    #[inline(always)]
    fn draw_targets<K: Kernel>(&self, k: K, context: u32, rng: &mut SmallRng) -> Targets {
        let mut t = Targets {
            ids: [0; MAX_TARGETS],
            n: 1,
        };
        t.ids[0] = context;
        for _ in 0..self.config.negative {
            let n = self.noise.sample(rng);
            if n != context {
                t.ids[t.n] = n;
                t.n += 1;
            }
        }
        for &id in &t.ids[..t.n] {
            // SAFETY: ids come from the vocabulary.
            k.prefetch(unsafe { self.u.row(id) }, self.u.dim);
        }
        t
    }

    // ANCHOR: sgns_step
    /// One pair's update with learning rate alpha: the first target (the context word o)
    /// is the positive one, the others are noise words. Returns the pair's loss L.
    #[inline(always)]
    fn sgns_step<K: Kernel>(
        &self,
        k: K,
        centre: u32,
        targets: &Targets,
        alpha: f32,
        grad_v: &mut [f32],
    ) -> f32 {
        // Rows of the shared tables are pointers (`SharedRows`: other threads may be updating
        // them); grad_v is this thread's own. SAFETY (every kernel call below): ids come
        // from the vocabulary, each pointer is to d floats, and v, u and grad_v are three
        // different buffers.
        let d = self.v.dim;
        debug_assert_eq!(grad_v.len(), d);
        let v_c = unsafe { self.v.row(centre) };
        grad_v.fill(0.0);
        let grad = grad_v.as_mut_ptr();
        let mut loss = 0.0;
        for (i, &target) in targets.ids[..targets.n].iter().enumerate() {
            let label = if i == 0 { 1.0 } else { 0.0 };
            let u_t = unsafe { self.u.row(target) };
            let score = unsafe { k.dot_raw(v_c, u_t, d) };
            let (sigma, log_sigma) = self.table.get(score);
            // −log σ(s) for the positive target, −log σ(−s) = −log σ(s) + s for a noise word.
            loss -= if i == 0 { log_sigma } else { log_sigma - score };
            // g = −α ∂L/∂s: α (1 − σ) for the positive, −α σ for a negative.
            let g = (label - sigma) * alpha;
            unsafe {
                k.axpy_raw(g, u_t, grad, d); // accumulate −α ∂L/∂v_c
                k.axpy_raw(g, v_c, u_t, d); // u_t ← u_t − α ∂L/∂u_t
            }
        }
        // v_c ← v_c − α ∂L/∂v_c, after every target has used it.
        unsafe { k.axpy_raw(1.0, grad, v_c, d) };
        loss
    }
    // ANCHOR_END: sgns_step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgns_gradients_match_finite_differences() {
        let v_c = [0.3, -0.2, 0.5, 0.1];
        let u_o = [0.4, 0.1, -0.3, 0.2];
        let n1 = [-0.5, 0.2, 0.1, 0.7];
        let n2 = [0.9, -0.4, 0.3, -0.1];
        let (loss, g_v, g_o, g_n) = sgns_loss_and_grads(&v_c, &u_o, &[&n1, &n2]);
        let h = 1e-6;
        let f = |v: &[f64], o: &[f64], a: &[f64], b: &[f64]| sgns_loss_and_grads(v, o, &[a, b]).0;
        for i in 0..4 {
            let bump = |x: &[f64; 4], s: f64| {
                let mut y = *x;
                y[i] += s;
                y
            };
            let num_v = (f(&bump(&v_c, h), &u_o, &n1, &n2) - f(&bump(&v_c, -h), &u_o, &n1, &n2))
                / (2.0 * h);
            let num_o = (f(&v_c, &bump(&u_o, h), &n1, &n2) - f(&v_c, &bump(&u_o, -h), &n1, &n2))
                / (2.0 * h);
            let num_n = (f(&v_c, &u_o, &n1, &bump(&n2, h)) - f(&v_c, &u_o, &n1, &bump(&n2, -h)))
                / (2.0 * h);
            assert!(
                (num_v - g_v[i]).abs() < 1e-8,
                "v_c[{i}]: {num_v} vs {}",
                g_v[i]
            );
            assert!((num_o - g_o[i]).abs() < 1e-8, "u_o[{i}]");
            assert!((num_n - g_n[1][i]).abs() < 1e-8, "u_n2[{i}]");
        }
        // At zero vectors every question is a coin flip: L = (k + 1) ln 2.
        let z = [0.0; 4];
        assert!((sgns_loss_and_grads(&z, &z, &[&z, &z]).0 - 3.0 * 2f64.ln()).abs() < 1e-12);
        assert!(loss > 0.0);
    }

    #[test]
    fn the_f32_step_follows_the_f64_gradients() {
        // One step of the trainer on one pair (no noise words) equals θ − α ∂L/∂θ.
        let vocab = Vocab::from_counts(vec![("a".into(), 5), ("b".into(), 5)]);
        let corpus = vocab.encode(&[vec!["a", "b"]]);
        let config = SgnsConfig {
            dim: 3,
            negative: 0,
            ..Default::default()
        };
        let mut v = vec![0.1f32, -0.2, 0.3, 0.05, 0.4, -0.1];
        let mut u = vec![0.2f32, 0.1, -0.3, -0.2, 0.3, 0.1];
        let (v0, u0) = (v.clone(), u.clone());
        let keep = [1.0, 1.0];
        let noise = vocab.noise_table(0.75);
        let ctx = Context {
            corpus: &corpus,
            keep: &keep,
            noise: &noise,
            table: SigmoidTable::new(),
            config: &config,
            v: SharedRows::new(&mut v, 3),
            u: SharedRows::new(&mut u, 3),
        };
        let mut rng = SmallRng::seed_from_u64(0);
        let mut scratch = vec![0f32; 3];
        let alpha = 0.5;
        let targets = ctx.draw_targets(Portable, 1, &mut rng);
        assert_eq!(targets.n, 1, "no noise words with negative = 0");
        let loss = ctx.sgns_step(Portable, 0, &targets, alpha, &mut scratch);
        let f64s = |x: &[f32]| x.iter().map(|&y| y as f64).collect::<Vec<f64>>();
        let (l, g_v, g_o, _) = sgns_loss_and_grads(&f64s(&v0[0..3]), &f64s(&u0[3..6]), &[]);
        // The sigmoid table has steps of 0.012, so agreement is to about 1e-2 relative.
        assert!((loss as f64 - l).abs() < 1e-2, "{loss} vs {l}");
        for i in 0..3 {
            assert!((v[i] as f64 - (v0[i] as f64 - alpha as f64 * g_v[i])).abs() < 2e-3);
            assert!((u[3 + i] as f64 - (u0[3 + i] as f64 - alpha as f64 * g_o[i])).abs() < 2e-3);
        }
    }

    fn toy_sentences(n: usize) -> Vec<Vec<String>> {
        crate::data::grammar::Grammar::toy_world().corpus(n, 1)
    }

    #[test]
    fn training_lowers_the_loss_and_one_thread_is_deterministic() {
        let sentences = toy_sentences(3000);
        let config = SgnsConfig {
            dim: 20,
            epochs: 4,
            threads: 1,
            min_count: 1,
            ..Default::default()
        };
        let a = train_sgns(&sentences, &config, &|_| {}).unwrap();
        let b = train_sgns(&sentences, &config, &|_| {}).unwrap();
        // One thread: no races, so the same seed gives the same tables, bit for bit.
        let bits = |x: &[f32]| x.iter().map(|y| y.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&a.v), bits(&b.v));
        assert_eq!(bits(&a.u), bits(&b.u));
        assert_eq!(a.report.epoch_losses, b.report.epoch_losses);
        let l = &a.report.epoch_losses;
        assert!(l[3] < l[0], "{l:?}");
        assert!(a.report.effective_words <= a.report.raw_words);
        let other = train_sgns(&sentences, &SgnsConfig { seed: 2, ..config }, &|_| {}).unwrap();
        assert_ne!(a.v, other.v);
        // Two threads share the tables (Hogwild): not reproducible, but they train as well.
        let two = train_sgns(
            &sentences,
            &SgnsConfig {
                threads: 2,
                ..config
            },
            &|_| {},
        )
        .unwrap();
        let l2 = &two.report.epoch_losses;
        assert!(
            l2[3] < l2[0] && (l2[3] - l[3]).abs() < 0.1,
            "{l2:?} vs {l:?}"
        );
    }

    #[test]
    fn bad_settings_and_corpora_are_errors() {
        let s = toy_sentences(10);
        let cfg = |f: fn(&mut SgnsConfig)| {
            let mut c = SgnsConfig::default();
            f(&mut c);
            c
        };
        for c in [
            cfg(|c| c.dim = 0),
            cfg(|c| c.window = 0),
            cfg(|c| c.alpha = -1.0),
            cfg(|c| c.sample = f64::NAN),
        ] {
            assert!(matches!(
                train_sgns(&s, &c, &|_| {}),
                Err(Error::InvalidArgument(_))
            ));
        }
        let one_word: Vec<Vec<String>> = vec![vec!["a".into()]; 10];
        let err = train_sgns(&one_word, &cfg(|c| c.min_count = 1), &|_| {}).unwrap_err();
        assert!(err.to_string().contains("no sentence has two"), "{err}");
        let empty: Vec<Vec<String>> = vec![];
        assert!(matches!(
            train_sgns(&empty, &SgnsConfig::default(), &|_| {}),
            Err(Error::EmptyCorpus { .. })
        ));
    }
}
