//! # Chapter 2 exercises: word2vec
//!
//! You write nine small functions. They follow the chapter: the (centre, context) pairs of
//! skip-gram, the full softmax P(o|c) and one of its gradients, the negative-sampling loss,
//! cosine similarity, the sub-sampling of frequent words, an analogy, and then the
//! negative-sampling gradients and the update that word2vec makes for one pair. The tests at the
//! bottom of this file check them, first against answers worked out by hand (the arithmetic
//! is in the comments), then against the crate on vectors trained on the toy world.
//!
//! ## How to work
//!
//! 1. Write your code in `mod learner`, just below. Each function starts as a stub that fails
//!    with `not implemented: Exercise N (...)` and a hint. Replace the body and keep the
//!    signature. The stubs' parameters start with `_` so that they don't warn while unused:
//!    remove the `_` when you use one. Your functions may call each other, and you may add
//!    helper functions.
//! 2. Run the tests against your code, all of them or one exercise at a time:
//!
//!    ```text
//!    cargo test --features learner --test 02_word2vec
//!    cargo test --features learner --test 02_word2vec exercise_3
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::word2vec`). `cargo test --test 02_word2vec` always passes and shows
//!    what "done" looks like. Try an exercise before you read its reference. The crate's
//!    source file that each hint names, in `src/word2vec/`, is the real answer.
//!
//! The book's page "How to do the exercises" (`book/src/lessons.md`) describes this workflow.
//! Chapter 2 of the book explains the ideas behind each exercise.
//!
//! ## Conventions (the crate's)
//!
//! - A word is an id, a `u32`, its row in the vocabulary; a sentence is a `&[u32]`.
//! - Every word w has two vectors: v_w when it is the centre word, u_w when it is a context
//!   word. `u: &[Vec<f64>]` holds the context vectors, `u[w]` for word w.
//! - The loss of one (centre c, context o) pair is a negative log probability, in nats
//!   (natural logs, `f64::ln`).
//! - Trained vectors are `f32`, as the crate stores them; the losses and gradients are `f64`.

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    /// Exercise 1: the (centre, context) pairs of skip-gram.
    ///
    /// Every word of `sentence` is a centre once, paired with each word at most `window`
    /// positions away on either side (never with itself, and never past the sentence's
    /// edges). The order: centre by centre from left to right, and for each centre its
    /// contexts from left to right. `[0, 1, 2]` with window 1 gives
    /// `[(0, 1), (1, 0), (1, 2), (2, 1)]`.
    pub fn context_pairs(_sentence: &[u32], _window: usize) -> Vec<(u32, u32)> {
        unimplemented!(
            "Exercise 1 (context_pairs): implement `fn context_pairs` in lessons/02_word2vec.rs \
             — for each position t, push (sentence[t], sentence[j]) for every j from \
             t.saturating_sub(window) to min(t + window, len - 1), skipping j == t; the \
             crate's version: `context_pairs` in src/word2vec/mod.rs"
        )
    }

    /// Exercise 2: the full softmax of skip-gram, P(o | c) for every word o.
    ///
    /// P(o | c) = exp(u_o · v_c) / Σ_w exp(u_w · v_c), where `v_c` is the centre word's
    /// vector and `u[w]` the context vector of word w. Return one probability per row of `u`.
    /// Scores can be large (1000): exp(1000) is infinite in f64, so subtract the largest
    /// score from every score first. That changes no probability, since the factor
    /// exp(−max) cancels between the top and the bottom of the fraction.
    pub fn probabilities(_u: &[Vec<f64>], _v_c: &[f64]) -> Vec<f64> {
        unimplemented!(
            "Exercise 2 (probabilities): implement `fn probabilities` in lessons/02_word2vec.rs \
             — scores s_w = u[w] · v_c, m = the largest, e_w = exp(s_w − m), then e_w / Σ e; \
             the crate's version: `SoftmaxSkipGram::probabilities` in src/word2vec/softmax.rs"
        )
    }

    /// Exercise 3: the gradient of the full-softmax loss with respect to the centre vector.
    ///
    /// The loss of the pair (c, o) is L = −ln P(o | c) (exercise 2). Return ∂L/∂v_c, a vector
    /// of the same length as `v_c`. Derive it first.
    ///
    /// - Hint 1: write L = −u_o · v_c + ln Σ_w exp(u_w · v_c). The first term's gradient
    ///   with respect to v_c is one vector; for the second, differentiate ln of a sum of
    ///   exponentials: a weighted average of the u_w appears, with weights you computed in
    ///   exercise 2.
    /// - Hint 2: the book's chapter 2, section "The loss and its gradients", derives it.
    pub fn centre_gradient(_u: &[Vec<f64>], _v_c: &[f64], _o: usize) -> Vec<f64> {
        unimplemented!(
            "Exercise 3 (centre_gradient): implement `fn centre_gradient` in \
             lessons/02_word2vec.rs — derive ∂L/∂v_c from L = −u_o · v_c + \
             ln Σ_w exp(u_w · v_c); p = probabilities(u, v_c) (exercise 2) gives the weights \
             it needs; the crate's version: `SoftmaxSkipGram::loss_and_grads` in \
             src/word2vec/softmax.rs"
        )
    }

    /// Exercise 4: the negative-sampling loss of one pair.
    ///
    /// L = −ln σ(u_o · v_c) − Σ_i ln σ(−u_{n_i} · v_c), with σ(x) = 1 / (1 + e^(−x)): the
    /// real context word o should score high, each noise word n_i (the rows of `u_neg`)
    /// low. Each term is −ln σ(x) = ln(1 + e^(−x)), which overflows for large negative x
    /// (e^800 is infinite): write it as max(0, −x) + ln(1 + e^(−|x|)) (`f64::ln_1p`), which
    /// is the same number and always finite.
    pub fn negative_sampling_loss(_v_c: &[f64], _u_o: &[f64], _u_neg: &[Vec<f64>]) -> f64 {
        unimplemented!(
            "Exercise 4 (negative_sampling_loss): implement `fn negative_sampling_loss` in \
             lessons/02_word2vec.rs — with f(x) = −ln σ(x) = max(0, −x) + ln_1p(exp(−|x|)): \
             f(u_o · v_c) plus f(−u_n · v_c) for every noise vector u_n; the crate's version: \
             `sgns_loss_and_grads` in src/word2vec/sgns.rs"
        )
    }

    /// Exercise 5: cosine similarity, cos(a, b) = a · b / (|a| |b|).
    ///
    /// It is 1 for vectors pointing the same way, 0 for perpendicular ones, −1 for opposite
    /// ones; the lengths do not matter. Return 0 when either vector is all zeros (it has no
    /// direction).
    pub fn cosine_similarity(_a: &[f32], _b: &[f32]) -> f32 {
        unimplemented!(
            "Exercise 5 (cosine_similarity): implement `fn cosine_similarity` in \
             lessons/02_word2vec.rs — the dot product divided by the product of the two \
             lengths (sqrt of the sum of squares), 0.0 if a length is 0; the crate's \
             version: `cosine_similarity` in src/word2vec/vectors.rs"
        )
    }

    /// Exercise 6: the sub-sampling of frequent words.
    ///
    /// An occurrence of a word that makes up a fraction f = count / total of the corpus is
    /// kept with probability min(1, (sqrt(f / t) + 1) · t / f), where t is `sample`
    /// (word2vec.c's and gensim's formula; the paper's is sqrt(t / f)). `sample` ≤ 0 keeps
    /// everything (1.0), and so does a count of 0.
    pub fn keep_probability(_count: u64, _total: u64, _sample: f64) -> f64 {
        unimplemented!(
            "Exercise 6 (keep_probability): implement `fn keep_probability` in \
             lessons/02_word2vec.rs — f = count / total (as f64), then \
             ((f / sample).sqrt() + 1.0) * sample / f, at most 1.0; 1.0 if sample <= 0 or \
             count == 0; the crate's version: `keep_probability` in src/word2vec/vocab.rs"
        )
    }

    /// Exercise 7: an analogy, "b is to a as c is to ?", answered by a − b + c (the book's
    /// form: "man is to king as woman is to ?" is `analogy(.., "king", "man", "woman")`,
    /// which gensim writes `most_similar(positive=[a, c], negative=[b])`).
    ///
    /// `vectors[i]` is the vector of `words[i]`. Divide the vectors of a, b and c by their
    /// lengths, form the query q = â − b̂ + ĉ, and return the word whose vector has the
    /// largest cosine similarity with q (exercise 5), leaving out a, b and c themselves
    /// (otherwise the answer is often c). On a tie, the word that comes first. With good
    /// vectors, `analogy(.., "king", "man", "woman")` is "queen".
    pub fn analogy(
        _words: &[String],
        _vectors: &[Vec<f32>],
        _a: &str,
        _b: &str,
        _c: &str,
    ) -> String {
        unimplemented!(
            "Exercise 7 (analogy): implement `fn analogy` in lessons/02_word2vec.rs — find the \
             rows of a, b, c; q[j] = a[j]/|a| − b[j]/|b| + c[j]/|c|; then the row i (not a, \
             b or c) with the largest cosine_similarity(vectors[i], q); the crate's version: \
             `Embeddings::analogy` in src/word2vec/vectors.rs"
        )
    }

    /// Exercise 8: the gradients of the negative-sampling loss of one pair.
    ///
    /// The loss is exercise 4's, `L = −ln σ(u_o · v_c) − Σ_i ln σ(−u_{n_i} · v_c)`, with
    /// `u_neg[i]` = u_{n_i}. Return `(∂L/∂v_c, ∂L/∂u_o, [∂L/∂u_{n_i} for each i])`, each a
    /// vector of the length of `v_c`. Derive them on paper; the tests check them against
    /// finite differences.
    ///
    /// - Hint 1: `L` depends on the vectors only through the scores `s_o = u_o · v_c` and
    ///   `s_i = u_{n_i} · v_c`. First find `σ'(x)` in terms of `σ(x)`, then `d/dx ln σ(x)`
    ///   and `d/dx ln σ(−x)`, then `∂L/∂s_o` and `∂L/∂s_i`. Last, the chain rule: what is
    ///   `∂s/∂v_c`, and `∂s/∂u`? `v_c` is in every score.
    /// - Hint 2: the book's chapter 2, section "Negative sampling", paragraph "The
    ///   gradients", derives them.
    #[allow(clippy::type_complexity)]
    pub fn sgns_gradients(
        _v_c: &[f64],
        _u_o: &[f64],
        _u_neg: &[Vec<f64>],
    ) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
        unimplemented!(
            "Exercise 8 (sgns_gradients): implement `fn sgns_gradients` in \
             lessons/02_word2vec.rs — derive ∂L/∂s for each score s = u · v_c (using \
             σ'(x) = σ(x)(1 − σ(x)), which you can show), then the chain rule for v_c (in \
             every score), u_o and each u_n; the crate's version: `sgns_loss_and_grads` in \
             src/word2vec/sgns.rs"
        )
    }

    /// Exercise 9: word2vec's update for one (centre, context) pair, with noise words.
    ///
    /// `v[w]` is word w's centre vector and `u[w]` its context vector. One step of SGD with
    /// learning rate `alpha` on the pair's loss (exercise 8): every vector the loss depends
    /// on, `v[centre]`, `u[context]` and `u[n]` for each `n` in `noise`, moves by `−alpha`
    /// times its gradient, all gradients taken at the vectors *before* the step (as
    /// word2vec.c does: it sums `v_c`'s gradient while it updates the context vectors, and
    /// applies it last). Return the pair's loss before the step. In the tests the noise
    /// words are distinct and differ from `context`.
    pub fn sgns_update(
        _v: &mut [Vec<f64>],
        _u: &mut [Vec<f64>],
        _centre: usize,
        _context: usize,
        _noise: &[usize],
        _alpha: f64,
    ) -> f64 {
        unimplemented!(
            "Exercise 9 (sgns_update): implement `fn sgns_update` in lessons/02_word2vec.rs — \
             compute the loss (exercise 4) and the gradients (exercise 8) at the old vectors, \
             then subtract alpha times each gradient from v[centre], u[context] and every \
             u[noise[i]]; the crate's version: `Context::sgns_step` in src/word2vec/sgns.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use llm_lessons::word2vec::{self, sgns, vectors, vocab, Embeddings, SoftmaxSkipGram};
    use ndarray::Array2;

    /// A crate model with one centre vector (row 0 of v) and the context vectors `u`.
    pub fn one_centre_model(u: &[Vec<f64>], v_c: &[f64]) -> SoftmaxSkipGram {
        let d = v_c.len();
        let flat: Vec<f64> = u.iter().flatten().copied().collect();
        SoftmaxSkipGram {
            v: Array2::from_shape_vec((1, d), v_c.to_vec()).expect("one row of d numbers"),
            u: Array2::from_shape_vec((u.len(), d), flat).expect("every row has d numbers"),
        }
    }

    pub fn context_pairs(sentence: &[u32], window: usize) -> Vec<(u32, u32)> {
        word2vec::context_pairs(sentence, window)
    }

    pub fn probabilities(u: &[Vec<f64>], v_c: &[f64]) -> Vec<f64> {
        one_centre_model(u, v_c).probabilities(0).to_vec()
    }

    pub fn centre_gradient(u: &[Vec<f64>], v_c: &[f64], o: usize) -> Vec<f64> {
        // A batch of one pair, (centre 0, context o): row 0 of ∂L/∂v is ∂L/∂v_c.
        let grads = one_centre_model(u, v_c).loss_and_grads(&[(0, o as u32)]);
        grads.v.row(0).to_vec()
    }

    pub fn negative_sampling_loss(v_c: &[f64], u_o: &[f64], u_neg: &[Vec<f64>]) -> f64 {
        let u_neg: Vec<&[f64]> = u_neg.iter().map(Vec::as_slice).collect();
        sgns::sgns_loss_and_grads(v_c, u_o, &u_neg).0
    }

    pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
        vectors::cosine_similarity(a, b)
    }

    pub fn keep_probability(count: u64, total: u64, sample: f64) -> f64 {
        vocab::keep_probability(count, total, sample)
    }

    pub fn analogy(words: &[String], vectors: &[Vec<f32>], a: &str, b: &str, c: &str) -> String {
        let dim = vectors[0].len();
        let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
        let emb = Embeddings::new(words.to_vec(), dim, flat).expect("one vector per word");
        emb.analogy(a, b, c, 1).expect("a, b and c have vectors")[0]
            .word
            .clone()
    }

    #[allow(clippy::type_complexity)]
    pub fn sgns_gradients(
        v_c: &[f64],
        u_o: &[f64],
        u_neg: &[Vec<f64>],
    ) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
        let u_neg: Vec<&[f64]> = u_neg.iter().map(Vec::as_slice).collect();
        let (_, grad_v, grad_u_o, grad_u_neg) = sgns::sgns_loss_and_grads(v_c, u_o, &u_neg);
        (grad_v, grad_u_o, grad_u_neg)
    }

    /// The crate's f32 trainer keeps its step private (`Context::sgns_step`); its f64
    /// gradients are public, and the tests check the trainer's step against this.
    pub fn sgns_update(
        v: &mut [Vec<f64>],
        u: &mut [Vec<f64>],
        centre: usize,
        context: usize,
        noise: &[usize],
        alpha: f64,
    ) -> f64 {
        let u_neg: Vec<&[f64]> = noise.iter().map(|&n| u[n].as_slice()).collect();
        let (loss, grad_v, grad_u_o, grad_u_neg) =
            sgns::sgns_loss_and_grads(&v[centre], &u[context], &u_neg);
        let step =
            |x: &mut [f64], g: &[f64]| x.iter_mut().zip(g).for_each(|(x, g)| *x -= alpha * g);
        step(&mut v[centre], &grad_v);
        step(&mut u[context], &grad_u_o);
        for (&n, g) in noise.iter().zip(&grad_u_neg) {
            step(&mut u[n], g);
        }
        loss
    }
}

// The tests call `solution::...`: your code with `--features learner`, the reference without.
#[cfg(feature = "learner")]
use learner as solution;
#[cfg(not(feature = "learner"))]
use reference as solution;

// ============================================================================================
// The tests. You don't need to change anything below.
// ============================================================================================

use llm_lessons::data::grammar::Grammar;
use llm_lessons::word2vec::{train_sgns, SgnsConfig, SoftmaxSkipGram, Vocab};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` sentences written by the toy-world grammar (the same ones on every machine).
fn toy_world(n: usize, seed: u64) -> Vec<Vec<String>> {
    Grammar::toy_world().corpus(n, seed)
}

/// `actual` equals `expected` up to rounding.
#[track_caller]
fn assert_close(actual: f64, expected: f64, what: &str) {
    let ok = (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0);
    assert!(ok, "{what}: got {actual}, expected {expected}");
}

/// Two vectors agree component by component up to rounding.
#[track_caller]
fn assert_all_close(actual: &[f64], expected: &[f64], what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: got {} numbers, expected {}",
        actual.len(),
        expected.len()
    );
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert_close(a, e, &format!("{what}[{i}]"));
    }
}

/// The running example of exercises 2 and 3: three words in two dimensions, and a centre
/// vector whose scores u_w · v_c are (ln 2, 0, 0).
fn three_words() -> (Vec<Vec<f64>>, Vec<f64>) {
    let u = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, -1.0]];
    let v_c = vec![2f64.ln(), 0.0];
    (u, v_c)
}

/// The rows of a table as vectors.
fn rows(table: &ndarray::Array2<f64>) -> Vec<Vec<f64>> {
    table.rows().into_iter().map(|r| r.to_vec()).collect()
}

/// A full-softmax model trained for a few epochs on 300 toy-world sentences, with its
/// vocabulary and corpus: vectors that mean something, to compare with the crate on.
fn trained_softmax() -> (Vocab, SoftmaxSkipGram) {
    let sentences = toy_world(300, 2);
    let vocab = Vocab::build(&sentences, 1).unwrap();
    let corpus = vocab.encode(&sentences);
    let mut model = SoftmaxSkipGram::new(vocab.len(), 8, 1);
    model.train(&corpus, 2, 3, 32, 0.5, 1).unwrap();
    (vocab, model)
}

#[test]
fn exercise_1_context_pairs() {
    // "the cat sat" as ids [0, 1, 2], window 1: each word with its direct neighbours.
    assert_eq!(
        solution::context_pairs(&[0, 1, 2], 1),
        [(0, 1), (1, 0), (1, 2), (2, 1)],
        "pairs of [0, 1, 2], window 1"
    );
    // Window 2 on five words: the centres have 2, 3, 4, 3 and 2 neighbours, 14 pairs.
    let pairs = solution::context_pairs(&[10, 11, 12, 13, 14], 2);
    assert_eq!(
        pairs,
        [
            (10, 11),
            (10, 12),
            (11, 10),
            (11, 12),
            (11, 13),
            (12, 10),
            (12, 11),
            (12, 13),
            (12, 14),
            (13, 11),
            (13, 12),
            (13, 14),
            (14, 12),
            (14, 13),
        ],
        "pairs of [10, 11, 12, 13, 14], window 2"
    );
    // A window wider than the sentence stops at its edges: every other word, 3 · 2 = 6 pairs.
    assert_eq!(
        solution::context_pairs(&[5, 6, 7], 10),
        [(5, 6), (5, 7), (6, 5), (6, 7), (7, 5), (7, 6)],
        "pairs of [5, 6, 7], window 10"
    );
    // A repeated word is paired with its other occurrence (a different position).
    assert_eq!(
        solution::context_pairs(&[3, 3], 1),
        [(3, 3), (3, 3)],
        "pairs of [3, 3], window 1"
    );
    // One word has no neighbour; no word, no pair.
    assert!(solution::context_pairs(&[7], 5).is_empty(), "one word");
    assert!(solution::context_pairs(&[], 5).is_empty(), "no word");

    // Property: a sentence of m ≥ 1 words has Σ_t (min(t, w) + min(m − 1 − t, w)) pairs.
    // On the toy world, the pairs are the crate's, in the same order.
    let sentences = toy_world(200, 1);
    let vocab = Vocab::build(&sentences, 1).unwrap();
    let corpus = vocab.encode(&sentences);
    for window in 1..=4 {
        for i in 0..corpus.n_sentences() {
            let sentence = corpus.sentence(i);
            let mine = solution::context_pairs(sentence, window);
            let m = sentence.len();
            let expected_len: usize = (0..m)
                .map(|t| t.min(window) + (m - 1 - t).min(window))
                .sum();
            assert_eq!(
                mine.len(),
                expected_len,
                "toy world, sentence {i}, window {window}: number of pairs"
            );
            assert_eq!(
                mine,
                llm_lessons::word2vec::context_pairs(sentence, window),
                "toy world, sentence {i}, window {window}"
            );
        }
    }
}

#[test]
fn exercise_2_softmax_probabilities() {
    let (u, v_c) = three_words();
    // Scores (ln 2, 0, 0), so exp gives (2, 1, 1), which sum to 4: P = (1/2, 1/4, 1/4).
    assert_all_close(
        &solution::probabilities(&u, &v_c),
        &[0.5, 0.25, 0.25],
        "P(· | c), scores (ln 2, 0, 0)",
    );
    // A zero centre vector scores every word 0: the uniform distribution, 1/3 each.
    assert_all_close(
        &solution::probabilities(&u, &[0.0, 0.0]),
        &[1.0 / 3.0; 3],
        "P(· | c), v_c = 0",
    );
    // Doubling v_c doubles the scores: (2 ln 2, 0, 0), exp (4, 1, 1): P = (2/3, 1/6, 1/6).
    // Longer vectors make the distribution sharper.
    let doubled: Vec<f64> = v_c.iter().map(|x| 2.0 * x).collect();
    assert_all_close(
        &solution::probabilities(&u, &doubled),
        &[2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0],
        "P(· | c), v_c doubled",
    );
    // Scores (1000, 999, −1000): exp(1000) is infinite in f64, but subtracting the largest
    // score gives exp (1, e^−1, e^−2000) and P(0) = 1 / (1 + e^−1) = e / (e + 1) ≈ 0.731.
    let big = solution::probabilities(&u, &[1000.0, 999.0]);
    let e = std::f64::consts::E;
    assert_all_close(
        &big,
        &[e / (e + 1.0), 1.0 / (e + 1.0), 0.0],
        "P(· | c), scores (1000, 999, −1000): subtract the largest score before exp",
    );

    // On vectors trained on the toy world, every word's distribution is the crate's.
    let (vocab, model) = trained_softmax();
    let u = rows(&model.u);
    for word in ["king", "queen", "the", "sword", "who"] {
        let c = vocab.id(word).expect("a toy-world word") as usize;
        let v_c = model.v.row(c).to_vec();
        let mine = solution::probabilities(&u, &v_c);
        assert_all_close(
            &mine,
            &model.probabilities(c as u32).to_vec(),
            &format!("toy world, P(· | {word})"),
        );
        assert_close(mine.iter().sum(), 1.0, &format!("Σ_o P(o | {word})"));
    }
}

#[test]
fn exercise_3_centre_gradient() {
    let (u, v_c) = three_words();
    // P = (1/2, 1/4, 1/4) (exercise 2), so the expected context vector is
    // Σ_w P(w) u_w = 1/2 (1, 0) + 1/4 (0, 1) + 1/4 (0, −1) = (1/2, 0).
    // o = 1: −u_1 + (1/2, 0) = (0, −1) + (1/2, 0) = (1/2, −1).
    assert_all_close(
        &solution::centre_gradient(&u, &v_c, 1),
        &[0.5, -1.0],
        "∂L/∂v_c for o = 1",
    );
    // o = 0: −(1, 0) + (1/2, 0) = (−1/2, 0). A descent step v_c − lr · ∂L/∂v_c moves v_c
    // towards u_0, which raises u_0 · v_c and so P(0 | c).
    assert_all_close(
        &solution::centre_gradient(&u, &v_c, 0),
        &[-0.5, 0.0],
        "∂L/∂v_c for o = 0",
    );
    // Property: averaged over o drawn from the model's own P(o | c), the gradient is 0:
    // Σ_o P(o) (−u_o + Σ_w P(w) u_w) = −E[u] + E[u]. (1/2 (−1/2, 0) + 1/4 (1/2, −1) +
    // 1/4 (1/2, 1) = (0, 0).)
    let p = [0.5, 0.25, 0.25];
    let mut mean = [0.0; 2];
    for (o, &p_o) in p.iter().enumerate() {
        let g = solution::centre_gradient(&u, &v_c, o);
        for (m, x) in mean.iter_mut().zip(&g) {
            *m += p_o * x;
        }
    }
    assert_all_close(&mean, &[0.0, 0.0], "Σ_o P(o | c) ∂L_o/∂v_c");

    // Finite differences: (L(v_c + h e_j) − L(v_c − h e_j)) / 2h ≈ ∂L/∂v_c[j], with the
    // loss L = −ln P(o | c) computed by the crate.
    let loss = |u: &[Vec<f64>], v_c: &[f64], o: usize| -> f64 {
        reference::one_centre_model(u, v_c).pair_loss(0, o as u32)
    };
    let check_numerically = |u: &[Vec<f64>], v_c: &[f64], o: usize, what: &str| {
        let g = solution::centre_gradient(u, v_c, o);
        assert_eq!(
            g.len(),
            v_c.len(),
            "{what}: one number per coordinate of v_c"
        );
        let h = 1e-5;
        for j in 0..v_c.len() {
            let (mut plus, mut minus) = (v_c.to_vec(), v_c.to_vec());
            plus[j] += h;
            minus[j] -= h;
            let numeric = (loss(u, &plus, o) - loss(u, &minus, o)) / (2.0 * h);
            assert!(
                (numeric - g[j]).abs() < 1e-6,
                "{what}, coordinate {j}: got {}, the finite difference says {numeric}",
                g[j]
            );
        }
    };
    for o in 0..3 {
        check_numerically(&u, &v_c, o, &format!("three words, o = {o}"));
    }

    // On vectors trained on the toy world: the finite differences, and the crate's gradient.
    let (vocab, model) = trained_softmax();
    let u = rows(&model.u);
    for (centre, context) in [("king", "queen"), ("the", "king"), ("sword", "his")] {
        let (c, o) = (vocab.id(centre).unwrap(), vocab.id(context).unwrap());
        let v_c = model.v.row(c as usize).to_vec();
        let what = format!("toy world, ∂L/∂v_c for ({centre}, {context})");
        check_numerically(&u, &v_c, o as usize, &what);
        let expected = model.loss_and_grads(&[(c, o)]).v.row(c as usize).to_vec();
        assert_all_close(
            &solution::centre_gradient(&u, &v_c, o as usize),
            &expected,
            &what,
        );
    }
}

#[test]
fn exercise_4_negative_sampling_loss() {
    let ln = f64::ln;
    // Zero vectors score 0, and σ(0) = 1/2: each of the k + 1 questions costs ln 2.
    let zero = vec![0.0; 3];
    assert_close(
        solution::negative_sampling_loss(&zero, &zero, &[zero.clone(), zero.clone()]),
        3.0 * ln(2.0),
        "zero vectors, k = 2",
    );
    // No noise word: only −ln σ(u_o · v_c). Score ln 3: σ(ln 3) = 3 / (3 + 1) = 3/4.
    let v_c = vec![1.0, 0.0];
    let u_o = vec![ln(3.0), 0.0];
    assert_close(
        solution::negative_sampling_loss(&v_c, &u_o, &[]),
        ln(4.0 / 3.0),
        "score ln 3, no noise word",
    );
    // Two noise words, scoring ln 3 and −ln 3. A noise word should score low:
    // −ln σ(−ln 3) = −ln(1/4) = ln 4 (a bad guess, it costs), and
    // −ln σ(ln 3) = ln(4/3) (a good one). In all ln(4/3) + ln 4 + ln(4/3) = ln(64/9).
    let noise = vec![vec![ln(3.0), 5.0], vec![-ln(3.0), 0.0]];
    assert_close(
        solution::negative_sampling_loss(&v_c, &u_o, &noise),
        ln(64.0 / 9.0),
        "scores ln 3 (context), ln 3 and −ln 3 (noise)",
    );
    // A noise word with score 800: σ(−800) is below the smallest f64, and −ln σ(−800)
    // = ln(1 + e^800) = 800 + ln(1 + e^−800), which is 800 to the last digit. A naive
    // −(σ(−800)).ln() gives infinity.
    let far = vec![vec![800.0, 0.0]];
    assert_close(
        solution::negative_sampling_loss(&v_c, &[800.0, 0.0], &far),
        800.0,
        "scores 800 (context) and 800 (noise): write −ln σ(x) so that it stays finite",
    );

    // Against the crate, on rows of a model's random initialisation, scaled up so that the
    // scores are not all near 0.
    let mut model = SoftmaxSkipGram::new(12, 6, 7);
    model.v.mapv_inplace(|x| 30.0 * x);
    model.u.mapv_inplace(|x| 30.0 * x);
    let (v, u) = (rows(&model.v), rows(&model.u));
    for c in 0..4 {
        for k in [0, 1, 5] {
            let noise: Vec<Vec<f64>> = u[6..6 + k].to_vec();
            assert_close(
                solution::negative_sampling_loss(&v[c], &u[c + 1], &noise),
                reference::negative_sampling_loss(&v[c], &u[c + 1], &noise),
                &format!("random vectors, centre {c}, k = {k}"),
            );
        }
    }
}

#[test]
fn exercise_5_cosine_similarity() {
    let close = |a: f32, b: f32, what: &str| {
        assert!((a - b).abs() < 1e-6, "{what}: got {a}, expected {b}");
    };
    // (1, 0) and (1, 1) are 45° apart: cos 45° = 1/√2 ≈ 0.707.
    close(
        solution::cosine_similarity(&[1.0, 0.0], &[1.0, 1.0]),
        0.5f32.sqrt(),
        "cos((1, 0), (1, 1))",
    );
    // Perpendicular: 0. Opposite: −1. Same direction, other length: 1.
    close(
        solution::cosine_similarity(&[1.0, 0.0], &[0.0, 3.0]),
        0.0,
        "perpendicular",
    );
    close(
        solution::cosine_similarity(&[1.0, 2.0, 3.0], &[-2.0, -4.0, -6.0]),
        -1.0,
        "opposite",
    );
    close(
        solution::cosine_similarity(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]),
        1.0,
        "same direction",
    );
    // (3, 4) · (4, 3) = 24, and both have length 5: 24 / 25.
    close(
        solution::cosine_similarity(&[3.0, 4.0], &[4.0, 3.0]),
        0.96,
        "cos((3, 4), (4, 3))",
    );
    // A zero vector has no direction: 0, not NaN.
    close(
        solution::cosine_similarity(&[0.0, 0.0], &[1.0, 2.0]),
        0.0,
        "zero vector",
    );
    // One-hot vectors: every two different words are at 0, "cat" as far from "dog" as
    // from "democracy". That is what dense vectors fix.
    let one_hot =
        |i: usize| -> Vec<f32> { (0..5).map(|j| if i == j { 1.0 } else { 0.0 }).collect() };
    close(
        solution::cosine_similarity(&one_hot(0), &one_hot(1)),
        0.0,
        "one-hot 0 and 1",
    );
    close(
        solution::cosine_similarity(&one_hot(0), &one_hot(4)),
        0.0,
        "one-hot 0 and 4",
    );

    // On vectors trained on the toy world, it agrees with `Embeddings::similarity`.
    let emb = trained_sgns().embeddings();
    for (a, b) in [
        ("king", "queen"),
        ("king", "man"),
        ("dog", "horse"),
        ("sword", "castle"),
    ] {
        let mine = solution::cosine_similarity(emb.vector(a).unwrap(), emb.vector(b).unwrap());
        close(
            mine,
            emb.similarity(a, b).unwrap(),
            &format!("toy world, cos({a}, {b})"),
        );
    }
}

/// Negative sampling on 3,000 toy-world sentences, one thread (the same vectors every run).
fn trained_sgns() -> llm_lessons::word2vec::sgns::Sgns {
    let config = SgnsConfig {
        dim: 24,
        min_count: 1,
        epochs: 5,
        threads: 1,
        seed: 1,
        ..SgnsConfig::default()
    };
    train_sgns(&toy_world(3000, 1), &config, &|_| {}).unwrap()
}

#[test]
fn exercise_6_keep_probability() {
    let total = 1_000_000;
    // A word that is 1% of the corpus, t = 1e-3: f / t = 10, so (√10 + 1) · 1e-3 / 0.01
    // = (√10 + 1) / 10 ≈ 0.416. Almost 6 in 10 of its occurrences are dropped.
    assert_close(
        solution::keep_probability(10_000, total, 1e-3),
        (10f64.sqrt() + 1.0) / 10.0,
        "f = 1%, t = 1e-3",
    );
    // 4%: (√40 + 1) / 40 ≈ 0.183. The more frequent, the more is dropped.
    assert_close(
        solution::keep_probability(40_000, total, 1e-3),
        (40f64.sqrt() + 1.0) / 40.0,
        "f = 4%, t = 1e-3",
    );
    // f = t: (1 + 1) · 1 = 2, capped at 1. Rarer words are always kept.
    assert_close(solution::keep_probability(1_000, total, 1e-3), 1.0, "f = t");
    assert_close(
        solution::keep_probability(5, total, 1e-3),
        1.0,
        "a rare word",
    );
    // A smaller t drops more: f = 1%, t = 1e-5: (√1000 + 1) · 1e-3 ≈ 0.0326.
    assert_close(
        solution::keep_probability(10_000, total, 1e-5),
        (1000f64.sqrt() + 1.0) * 1e-3,
        "f = 1%, t = 1e-5",
    );
    // t = 0 turns sub-sampling off.
    assert_close(
        solution::keep_probability(500_000, total, 0.0),
        1.0,
        "t = 0",
    );
    assert_close(solution::keep_probability(0, total, 1e-3), 1.0, "count 0");

    // Properties: never below the paper's sqrt(t / f), and never rising with the count.
    let mut previous = 1.0;
    for count in [100, 1_000, 2_000, 10_000, 50_000, 200_000, 1_000_000] {
        let p = solution::keep_probability(count, total, 1e-3);
        let f = count as f64 / total as f64;
        assert!(
            p >= (1e-3 / f).sqrt().min(1.0) - 1e-12,
            "count {count}: {p} is below the paper's sqrt(t / f)"
        );
        assert!(p <= previous, "count {count}: {p} > {previous}");
        previous = p;
    }

    // On the toy world's vocabulary, every word's probability is the crate's. With t = 1e-3
    // "the" is mostly dropped; with t = 1e-2 far fewer words are touched.
    let sentences = toy_world(2000, 3);
    let vocab = Vocab::build(&sentences, 1).unwrap();
    let total = vocab.total_count();
    for sample in [1e-2, 1e-3, 1e-4] {
        let expected = vocab.keep_probabilities(sample);
        for (id, &count) in vocab.counts.iter().enumerate() {
            assert_close(
                solution::keep_probability(count, total, sample),
                expected[id],
                &format!("toy world, t = {sample}, {:?}", vocab.words[id]),
            );
        }
    }
}

#[test]
fn exercise_7_analogy() {
    // Hand-made vectors. Axis 0: royalty, axis 1: gender (+ male, − female), axis 2: fruit.
    let words: Vec<String> = ["king", "queen", "man", "woman", "apple"]
        .map(String::from)
        .to_vec();
    let vectors = vec![
        vec![1.0, 1.0, 0.0],
        vec![1.0, -1.0, 0.0],
        vec![0.1, 1.0, 0.0],
        vec![0.1, -1.0, 0.0],
        vec![0.0, 0.0, 1.0],
    ];
    // Unit vectors: king (0.707, 0.707, 0), man (0.0995, 0.995, 0), woman (0.0995, −0.995, 0).
    // king − man + woman = (0.707, 0.707 − 1.990, 0) = (0.707, −1.283, 0), of length 1.465.
    // Its cosine with queen (0.707, −0.707, 0) is (0.5 + 0.907) / 1.465 ≈ 0.96; with apple 0.
    assert_eq!(
        solution::analogy(&words, &vectors, "king", "man", "woman"),
        "queen",
        "king − man + woman"
    );
    // The other way round: queen − woman + man = king.
    assert_eq!(
        solution::analogy(&words, &vectors, "queen", "woman", "man"),
        "king",
        "queen − woman + man"
    );

    // Why a, b and c are left out: "big" and "large" are nearly the same vector, so
    // big − large + small ≈ small, whose cosine with itself is ≈ 1. Left out, the answer is
    // the word nearest to small: tiny (cos ≈ 0.96), not apple (≈ 0.29).
    let words: Vec<String> = ["big", "large", "small", "tiny", "apple"]
        .map(String::from)
        .to_vec();
    let vectors = vec![
        vec![1.0, 0.0, 0.0],
        vec![1.0, 0.01, 0.0],
        vec![0.0, 1.0, 0.0],
        vec![0.0, 1.0, 0.3],
        vec![0.0, 0.0, 1.0],
    ];
    assert_eq!(
        solution::analogy(&words, &vectors, "big", "large", "small"),
        "tiny",
        "big − large + small (leave out a, b and c)"
    );
    // Lengths do not count: scaling a vector changes no answer, because a, b and c are
    // divided by their lengths and the candidates are compared by cosine.
    let scaled: Vec<Vec<f32>> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| v.iter().map(|x| x * (1 + 3 * i) as f32).collect())
        .collect();
    assert_eq!(
        solution::analogy(&words, &scaled, "big", "large", "small"),
        "tiny",
        "big − large + small, vectors scaled"
    );

    // On vectors trained on the toy world, the answers are the crate's (where its best
    // answer is not a near-tie with its second).
    let emb = trained_sgns().embeddings();
    let words = emb.words().to_vec();
    let vectors: Vec<Vec<f32>> = words
        .iter()
        .map(|w| emb.vector(w).unwrap().to_vec())
        .collect();
    let mut compared = 0;
    for (a, b, c) in [
        ("king", "man", "woman"),
        ("prince", "boy", "girl"),
        ("queen", "woman", "man"),
        ("lord", "man", "woman"),
        ("princess", "girl", "boy"),
        ("king", "queen", "princess"),
        ("dog", "horse", "sword"),
    ] {
        let top = emb.analogy(a, b, c, 2).unwrap();
        if top[0].similarity - top[1].similarity < 1e-4 {
            continue;
        }
        assert_eq!(
            solution::analogy(&words, &vectors, a, b, c),
            top[0].word,
            "toy world, {a} − {b} + {c}"
        );
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} analogies compared");
}

/// Central differences of `f` at `x`, coordinate by coordinate.
fn numeric_gradient(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|j| {
            let (mut plus, mut minus) = (x.to_vec(), x.to_vec());
            plus[j] += h;
            minus[j] -= h;
            (f(&plus) - f(&minus)) / (2.0 * h)
        })
        .collect()
}

/// The negative-sampling loss, written out in f64 for the finite differences.
fn sgns_loss64(v_c: &[f64], u_o: &[f64], u_neg: &[Vec<f64>]) -> f64 {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let minus_ln_sigma = |x: f64| (1.0 + (-x).exp()).ln();
    minus_ln_sigma(dot(u_o, v_c))
        + u_neg
            .iter()
            .map(|u| minus_ln_sigma(-dot(u, v_c)))
            .sum::<f64>()
}

#[test]
fn exercise_8_sgns_gradients() {
    // v_c = (1, 0), u_o = (ln 3, 0), one noise word u_n = (−ln 3, 1). Scores: s_o = ln 3,
    // σ(ln 3) = 3/(3 + 1) = 3/4; s_n = −ln 3, σ(−ln 3) = 1/4. ∂L/∂s_o = σ(s_o) − 1 = −1/4 and
    // ∂L/∂s_n = σ(s_n) = 1/4, so
    //   ∂L/∂v_c = −1/4 · (ln 3, 0) + 1/4 · (−ln 3, 1) = (−ln 3 / 2, 1/4)
    //   ∂L/∂u_o = −1/4 · v_c = (−1/4, 0),   ∂L/∂u_n = 1/4 · v_c = (1/4, 0).
    let ln3 = 3f64.ln();
    let (g_v, g_o, g_n) = solution::sgns_gradients(&[1.0, 0.0], &[ln3, 0.0], &[vec![-ln3, 1.0]]);
    assert_all_close(&g_v, &[-ln3 / 2.0, 0.25], "∂L/∂v_c");
    assert_all_close(&g_o, &[-0.25, 0.0], "∂L/∂u_o");
    assert_eq!(g_n.len(), 1, "one gradient per noise word");
    assert_all_close(&g_n[0], &[0.25, 0.0], "∂L/∂u_n");
    // At zero vectors every score is 0 and σ = 1/2: ∂L/∂u_o = −v_c / 2, ∂L/∂u_n = v_c / 2,
    // and with u = 0 the centre vector gets no gradient.
    let v_c = [0.3, -0.6];
    let (g_v, g_o, g_n) = solution::sgns_gradients(&v_c, &[0.0; 2], &vec![vec![0.0; 2]; 2]);
    assert_all_close(&g_v, &[0.0, 0.0], "∂L/∂v_c at u = 0");
    assert_all_close(&g_o, &[-0.15, 0.3], "∂L/∂u_o at u_o = 0");
    assert_all_close(&g_n[1], &[0.15, -0.3], "∂L/∂u_n2 at u = 0");

    // Finite differences, with three noise words and d = 5.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut random = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let (v_c, u_o) = (random(5), random(5));
    let u_neg: Vec<Vec<f64>> = (0..3).map(|_| random(5)).collect();
    let (g_v, g_o, g_n) = solution::sgns_gradients(&v_c, &u_o, &u_neg);
    let close = |a: &[f64], e: &[f64], what: &str| {
        for (j, (a, e)) in a.iter().zip(e).enumerate() {
            assert!(
                (a - e).abs() < 1e-7,
                "{what}, coordinate {j}: got {a}, the finite difference says {e}"
            );
        }
    };
    close(
        &g_v,
        &numeric_gradient(&v_c, |x| sgns_loss64(x, &u_o, &u_neg)),
        "∂L/∂v_c",
    );
    close(
        &g_o,
        &numeric_gradient(&u_o, |x| sgns_loss64(&v_c, x, &u_neg)),
        "∂L/∂u_o",
    );
    for i in 0..3 {
        let numeric = numeric_gradient(&u_neg[i], |x| {
            let mut u = u_neg.clone();
            u[i] = x.to_vec();
            sgns_loss64(&v_c, &u_o, &u)
        });
        close(&g_n[i], &numeric, &format!("∂L/∂u_n{i}"));
    }
    // And against the crate's `sgns_loss_and_grads`.
    let (c_v, c_o, c_n) = reference::sgns_gradients(&v_c, &u_o, &u_neg);
    assert_all_close(&g_v, &c_v, "∂L/∂v_c against the crate");
    assert_all_close(&g_o, &c_o, "∂L/∂u_o against the crate");
    for i in 0..3 {
        assert_all_close(&g_n[i], &c_n[i], &format!("∂L/∂u_n{i} against the crate"));
    }
}

#[test]
fn exercise_9_sgns_update() {
    // Exercise 8's numbers with alpha = 1: word 0 is the centre, word 1 the context, word 2
    // the noise word. Every vector moves by minus its gradient, taken before the step:
    //   v_0 = (1, 0) − (−ln 3 / 2, 1/4) = (1 + ln 3 / 2, −1/4)
    //   u_1 = (ln 3, 0) − (−1/4, 0) = (ln 3 + 1/4, 0),  u_2 = (−ln 3, 1) − (1/4, 0).
    // The loss before the step: −ln σ(ln 3) − ln σ(ln 3) = 2 ln(4/3).
    let ln3 = 3f64.ln();
    let mut v = vec![vec![1.0, 0.0], vec![5.0, 5.0], vec![7.0, 7.0]];
    let mut u = vec![vec![9.0, 9.0], vec![ln3, 0.0], vec![-ln3, 1.0]];
    let loss = solution::sgns_update(&mut v, &mut u, 0, 1, &[2], 1.0);
    assert_close(loss, 2.0 * (4.0f64 / 3.0).ln(), "the loss before the step");
    assert_all_close(&v[0], &[1.0 + ln3 / 2.0, -0.25], "v_0 after the step");
    assert_all_close(
        &u[1],
        &[ln3 + 0.25, 0.0],
        "u_1 (the context word) after the step",
    );
    assert_all_close(
        &u[2],
        &[-ln3 - 0.25, 1.0],
        "u_2 (the noise word) after the step",
    );
    // Vectors the pair does not use stay as they were.
    assert_all_close(&v[1], &[5.0, 5.0], "v_1, not in the pair");
    assert_all_close(&u[0], &[9.0, 9.0], "u_0, not in the pair");

    // Against the crate's trainer: a corpus of one sentence "a b", window 1, no noise words,
    // no sub-sampling and a constant alpha gives exactly the pairs (a, b) then (b, a) per
    // epoch. The trainer starts u at 0, so its first epoch leaves v as it was: one epoch shows
    // the starting v (and u after epoch 1), two epochs what the second epoch's steps did.
    let config = |epochs| SgnsConfig {
        dim: 3,
        window: 1,
        negative: 0,
        min_count: 1,
        sample: 0.0,
        alpha: 0.5,
        min_alpha: 0.5,
        epochs,
        threads: 1,
        seed: 3,
        ..SgnsConfig::default()
    };
    let sentences = [vec!["a", "b"]];
    let rows = |x: &[f32]| -> Vec<Vec<f64>> {
        x.chunks(3)
            .map(|r| r.iter().map(|&y| y as f64).collect())
            .collect()
    };
    let trained = |epochs| train_sgns(&sentences, &config(epochs), &|_| {}).unwrap();
    let (one, two) = (trained(1), trained(2));
    assert_eq!(one.vocab.words, ["a", "b"]);
    let (mut v, mut u) = (rows(&one.v), vec![vec![0.0; 3]; 2]);
    for epoch in 1..=2 {
        solution::sgns_update(&mut v, &mut u, 0, 1, &[], 0.5); // (a, b)
        solution::sgns_update(&mut v, &mut u, 1, 0, &[], 0.5); // (b, a)
        let crate_model = if epoch == 1 { &one } else { &two };
        // The trainer's σ comes from a table with steps of 0.012 and runs in f32: agreement
        // to about 1e-3.
        for (mine, theirs, name) in [
            (&v, rows(&crate_model.v), "v"),
            (&u, rows(&crate_model.u), "u"),
        ] {
            for (w, (a, b)) in mine.iter().zip(&theirs).enumerate() {
                for j in 0..3 {
                    assert!(
                        (a[j] - b[j]).abs() < 2e-3,
                        "after epoch {epoch}, {name}[{w}][{j}]: got {}, the crate's trainer has {}",
                        a[j],
                        b[j]
                    );
                }
            }
        }
    }
}
