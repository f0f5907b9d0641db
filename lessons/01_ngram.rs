//! # Chapter 1 exercises: n-gram language models
//!
//! You write nine small functions. They start with the naive whole-sentence estimate and end
//! with Kneser-Ney: its continuation counts, its interpolated probability, and modified
//! Kneser-Ney's three discounts. Do them in order: exercise 4 builds on exercises 2 and 3,
//! and exercise 8 takes the counts that exercises 2 and 7 compute. The tests at the bottom of this file check them, first
//! against answers worked out by hand (the arithmetic is in the comments), then against the
//! crate on a corpus from the toy-world grammar.
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
//!    cargo test --features learner --test 01_ngram
//!    cargo test --features learner --test 01_ngram exercise_3
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::ngram`). `cargo test --test 01_ngram` always passes and shows what
//!    "done" looks like. Try an exercise before you read its reference. The crate's source
//!    file that each hint names, in `src/ngram/`, is the real answer.
//!
//! The book's page "How to do the exercises" (`book/src/lessons.md`) describes this workflow.
//! Chapter 1 of the book explains the ideas behind each exercise.
//!
//! ## Conventions (the crate's standard style)
//!
//! - A sentence is a `Vec<String>` of words and a corpus is a `&[Vec<String>]`.
//! - Before counting, each sentence is padded with one `<s>` in front and one `</s>` behind,
//!   whatever n is: `the cat sat` becomes `<s> the cat sat </s>`.
//! - `</s>` is predicted like a word. `<s>` is only ever a context and is never predicted.
//! - Logs are natural logs (`f64::ln`).

use std::collections::HashMap;

/// n-gram counts: each n-gram (a `Vec` of n words) mapped to how often it occurs.
/// `vec!["the", "cat"]` (as `String`s) ↦ 2 means "the cat" occurs twice.
pub type Counts = HashMap<Vec<String>, usize>;

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    use super::Counts;
    use std::collections::HashMap;

    /// Exercise 1: the naive estimate that the chapter starts from.
    ///
    /// P(sentence) = (how many sentences of `corpus` are exactly `sentence`) / (number of
    /// sentences in `corpus`). A sentence that is not in the corpus gets 0, however sensible it is.
    pub fn whole_sentence_probability(_corpus: &[Vec<String>], _sentence: &[&str]) -> f64 {
        unimplemented!(
            "Exercise 1 (whole_sentence_probability): implement `fn whole_sentence_probability` \
             in lessons/01_ngram.rs — count the sentences of the corpus equal to `sentence`, \
             divide by the number of sentences"
        )
    }

    /// Exercise 2: count every n-gram.
    ///
    /// Pad each sentence (`<s> w1 .. wm </s>`), then count every run of `n` consecutive tokens,
    /// the padding included. For n = 1 that counts `<s>` and `</s>` too. A padded sentence shorter
    /// than n has no n-gram. `n` is at least 1.
    pub fn count_ngrams(_sentences: &[Vec<String>], _n: usize) -> Counts {
        unimplemented!(
            "Exercise 2 (count_ngrams): implement `fn count_ngrams` in lessons/01_ngram.rs — pad \
             each sentence as <s> w1 .. wm </s>, then count every window of n tokens \
             (`slice.windows(n)`); the crate's version: `count_order` in src/ngram/counts.rs"
        )
    }

    /// Exercise 3: the maximum-likelihood estimate P(word | context) = c(context word) / c(context •).
    ///
    /// `counts` holds the n-grams of one order n = `context.len() + 1`, as `count_ngrams`
    /// returns them. c(context •) is the total count of the n-grams that start with `context`.
    /// Return 0.0 when `context` was never seen, which makes c(context •) = 0.
    pub fn mle_probability(_counts: &Counts, _context: &[&str], _word: &str) -> f64 {
        unimplemented!(
            "Exercise 3 (mle_probability): implement `fn mle_probability` in lessons/01_ngram.rs \
             — c(context word) / c(context •), where c(context •) sums the counts of every \
             n-gram starting with `context` (0.0 if there is none); the crate's version: \
             `smoothing::mle` in src/ngram/smoothing.rs"
        )
    }

    /// Exercise 4: the chain rule with the Markov assumption, under a bigram MLE model.
    ///
    /// ln P(sentence) = Σ_t ln P(w_t | w_{t−1}) over `<s> w1 .. wm </s>`: one prediction per
    /// word and one more for `</s>`, each conditioned on the token before it. The probabilities
    /// are maximum-likelihood bigram estimates from the sentences of `train`. A prediction with
    /// probability 0 makes the result −∞ (`f64::NEG_INFINITY`, which is what `0.0_f64.ln()` is).
    ///
    /// This exercise builds on exercises 2 and 3 (`count_ngrams`, `mle_probability`): do them
    /// first, then call them here.
    pub fn sentence_log_prob(_train: &[Vec<String>], _sentence: &[&str]) -> f64 {
        unimplemented!(
            "Exercise 4 (sentence_log_prob): implement `fn sentence_log_prob` in \
             lessons/01_ngram.rs — count the bigrams of `train`, then add up \
             ln P(w_t | w_(t-1)) over <s> w1 .. wm </s> (your exercises 2 and 3 do most of it); \
             the crate's version: `NgramModel::sentence_log_prob` in src/ngram/model.rs"
        )
    }

    /// Exercise 5: add-k smoothing, P(word | context) = (c(context word) + k) / (c(context •) + k |V|).
    ///
    /// `counts` and `context` are as in exercise 3. `vocab_size` is |V|, the number of outcomes
    /// that a prediction ranges over. An unseen context gets the uniform distribution 1/|V|.
    /// k = 1 is Laplace smoothing.
    pub fn add_k_probability(
        _counts: &Counts,
        _context: &[&str],
        _word: &str,
        _k: f64,
        _vocab_size: usize,
    ) -> f64 {
        unimplemented!(
            "Exercise 5 (add_k_probability): implement `fn add_k_probability` in \
             lessons/01_ngram.rs — (c(context word) + k) / (c(context •) + k * vocab_size); \
             the crate's version: `smoothing::add_k` in src/ngram/smoothing.rs"
        )
    }

    /// Exercise 6: perplexity from the natural log probabilities of N predictions.
    ///
    /// Cross-entropy H = −(1/N) Σ ln P, and perplexity = exp(H). It is the number of equally
    /// likely words that the model hesitates between. A log probability of −∞ makes it +∞.
    /// `log_probs` is not empty.
    pub fn perplexity(_log_probs: &[f64]) -> f64 {
        unimplemented!(
            "Exercise 6 (perplexity): implement `fn perplexity` in lessons/01_ngram.rs — \
             exp of minus the mean of the log probabilities; the crate's version: \
             `Evaluation::perplexity` in src/ngram/model.rs"
        )
    }

    /// Exercise 7: Kneser-Ney's continuation counts N1+(• w).
    ///
    /// For every token w of the padded sentences, N1+(• w) is the number of *distinct* tokens
    /// seen just before w, with `<s>` counting as a token. Nothing precedes `<s>`, so `<s>` is
    /// not in the map. `</s>` is in it.
    pub fn continuation_counts(_sentences: &[Vec<String>]) -> HashMap<String, usize> {
        unimplemented!(
            "Exercise 7 (continuation_counts): implement `fn continuation_counts` in \
             lessons/01_ngram.rs — for each token, the number of distinct tokens seen just \
             before it in <s> w1 .. wm </s> (a set of predecessors per word); the crate's \
             version: `continuation_counts` in src/ngram/counts.rs"
        )
    }

    /// Exercise 8: the interpolated Kneser-Ney probability of a bigram model.
    ///
    /// Kneser-Ney takes a discount `D` off every seen count and gives the mass it freed to a
    /// lower order, recursively down to the uniform distribution over the |V| outcomes
    /// (`vocab_size`). For a bigram model, with `D2 = discounts[1]` at the bigram level and
    /// `D1 = discounts[0]` at the unigram level:
    ///
    /// ```text
    /// P(w | v)  = max(c(v w) − D2, 0) / c(v •)  +  γ(v) P1(w)
    /// P1(w)     = max(N1+(• w) − D1, 0) / N1+(• •)  +  γ1 / |V|
    /// ```
    ///
    /// The bigram level uses the raw counts c(v w) of the padded sentences, `bigrams` (as
    /// exercise 2 returns them); the unigram level uses the *continuation counts*
    /// N1+(• w), `continuation` (as exercise 7 returns them), and N1+(• •) = Σ_w N1+(• w). A context `v` never seen (c(v •) = 0, `</s>` or an unknown
    /// word) gives all the mass to the lower order: P(w | v) = P1(w). A word never seen gets
    /// only the share of the uniform floor.
    ///
    /// γ(v) and γ1 are yours to work out: each level must sum to 1 over the |V| outcomes.
    ///
    /// - Hint 1: sum the first term over the words seen after `v`. How much less than 1 is it?
    ///   Each seen follower lost exactly `D2` (the discounts are below 1, and every seen
    ///   count is at least 1). The same argument at the unigram level gives γ1.
    /// - Hint 2: the book's chapter 1, section "Kneser-Ney smoothing", writes γ(h) and shows
    ///   that each distribution sums to 1.
    pub fn kneser_ney_probability(
        _bigrams: &Counts,
        _continuation: &HashMap<String, usize>,
        _context: &str,
        _word: &str,
        _discounts: [f64; 2],
        _vocab_size: usize,
    ) -> f64 {
        unimplemented!(
            "Exercise 8 (kneser_ney_probability): implement `fn kneser_ney_probability` in \
             lessons/01_ngram.rs — the bigram level discounts the raw counts c(v w) by \
             discounts[1], the unigram level the continuation counts N1+(• w) by \
             discounts[0], the lowest level is 1 / vocab_size; work out each level's γ so \
             that it sums to 1; an unseen context falls through to the unigram level; the \
             crate's version: `smoothing::kneser_ney` in src/ngram/smoothing.rs and \
             `NgramModel::kneser_ney` in src/ngram/model.rs"
        )
    }

    /// Exercise 9: modified Kneser-Ney's three discounts from the counts of counts.
    ///
    /// Chen and Goodman discount an n-gram seen once by D1, twice by D2, three times or more
    /// by D3+, all estimated from n_r, the number of n-grams in `counts` whose count is
    /// exactly r (for r = 1, 2, 3, 4):
    ///
    /// ```text
    /// Y = n1 / (n1 + 2 n2),  D1 = 1 − 2Y n2/n1,  D2 = 2 − 3Y n3/n2,  D3+ = 3 − 4Y n4/n3
    /// ```
    ///
    /// Return `[D1, D2, D3+]`. `counts` holds the n-grams of one order n ≥ 2 (as
    /// `count_ngrams` returns them), and n1 .. n4 are all above 0 in the tests.
    pub fn modified_kn_discounts(_counts: &Counts) -> [f64; 3] {
        unimplemented!(
            "Exercise 9 (modified_kn_discounts): implement `fn modified_kn_discounts` in \
             lessons/01_ngram.rs — n_r = how many n-grams have count exactly r (r = 1..4; a \
             count of 5 is in none of them), then Y, D1, D2, D3+ as in the doc comment; the \
             crate's version: `smoothing::modified_kn_discounts` in src/ngram/smoothing.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use super::Counts;
    use llm_lessons::ngram::{
        self,
        smoothing::{self, Discounts},
        Evaluation, NgramConfig, NgramCounts, NgramModel, Smoothing, Style, Vocab,
    };
    use std::collections::HashMap;

    pub fn whole_sentence_probability(corpus: &[Vec<String>], sentence: &[&str]) -> f64 {
        ngram::whole_sentence_probability(corpus, sentence)
    }

    pub fn count_ngrams(sentences: &[Vec<String>], n: usize) -> Counts {
        // The crate counts word ids, so map words to ids, count, then map the ids back.
        let vocab = Vocab::build(sentences, 1);
        let ids: Vec<Vec<u32>> = sentences.iter().map(|s| vocab.encode(s)).collect();
        let counts = NgramCounts::build(&ids, &vocab, n, Style::Standard.padding(n))
            .expect("n is at least 1");
        counts.by_order[n - 1]
            .iter()
            .map(|(&key, &count)| {
                let ids = counts.packer.unpack(key, n);
                let words = ids.iter().map(|&id| vocab.word(id).to_string()).collect();
                (words, count as usize)
            })
            .collect()
    }

    /// (c(context word), c(context •)) read off n-gram counts of order `context.len() + 1`.
    fn context_counts(counts: &Counts, context: &[&str], word: &str) -> (f64, f64) {
        let starts_with_context = |ngram: &Vec<String>| {
            ngram.len() == context.len() + 1 && ngram.iter().zip(context).all(|(a, b)| a == b)
        };
        let c_h: usize = counts
            .iter()
            .filter(|(ngram, _)| starts_with_context(ngram))
            .map(|(_, &c)| c)
            .sum();
        let ngram: Vec<String> = context
            .iter()
            .chain([&word])
            .map(|w| w.to_string())
            .collect();
        let c_hw = counts.get(&ngram).copied().unwrap_or(0);
        (c_hw as f64, c_h as f64)
    }

    pub fn mle_probability(counts: &Counts, context: &[&str], word: &str) -> f64 {
        let (c_hw, c_h) = context_counts(counts, context, word);
        if c_h == 0.0 {
            0.0 // context never seen: 0/0, and 0 by convention
        } else {
            smoothing::mle(c_hw, c_h)
        }
    }

    pub fn sentence_log_prob(train: &[Vec<String>], sentence: &[&str]) -> f64 {
        NgramModel::train(train, &[], NgramConfig::new(2, Smoothing::Mle))
            .expect("a training corpus with at least one word")
            .sentence_log_prob(sentence)
    }

    pub fn add_k_probability(
        counts: &Counts,
        context: &[&str],
        word: &str,
        k: f64,
        vocab_size: usize,
    ) -> f64 {
        let (c_hw, c_h) = context_counts(counts, context, word);
        smoothing::add_k(c_hw, c_h, k, vocab_size as f64)
    }

    pub fn perplexity(log_probs: &[f64]) -> f64 {
        Evaluation {
            sentences: 0,
            events: log_probs.len() as u64,
            log_prob: log_probs.iter().sum(),
            zero_prob_events: log_probs.iter().filter(|lp| lp.is_infinite()).count() as u64,
            oov: 0,
        }
        .perplexity()
    }

    pub fn continuation_counts(sentences: &[Vec<String>]) -> HashMap<String, usize> {
        let config = NgramConfig::new(2, Smoothing::KneserNey(None));
        let model =
            NgramModel::train(sentences, &[], config).expect("a corpus with at least one word");
        model
            .vocab
            .words()
            .iter()
            .filter(|w| !matches!(w.as_str(), "<unk>" | "<s>"))
            .map(|w| (w.clone(), model.continuation_count(&[w]) as usize))
            .filter(|&(_, c)| c > 0)
            .collect()
    }

    pub fn kneser_ney_probability(
        bigrams: &Counts,
        continuation: &HashMap<String, usize>,
        context: &str,
        word: &str,
        discounts: [f64; 2],
        vocab_size: usize,
    ) -> f64 {
        // Each level is the crate's formula, `smoothing::kneser_ney`.
        let unigram = Discounts([discounts[0]; 3]);
        let a_w = continuation.get(word).copied().unwrap_or(0);
        let p1 = smoothing::kneser_ney(
            a_w as f64,
            unigram.for_count(a_w as u32),
            unigram.0[0] * continuation.len() as f64, // D1 N1+(•): one discount per word seen
            continuation.values().sum::<usize>() as f64,
            1.0 / vocab_size as f64,
        );
        let followers: Vec<usize> = bigrams
            .iter()
            .filter(|(g, _)| g[0] == context)
            .map(|(_, &c)| c)
            .collect();
        if followers.is_empty() {
            return p1; // v never seen: all the mass goes to the lower order
        }
        let bigram = Discounts([discounts[1]; 3]);
        let key = vec![context.to_string(), word.to_string()];
        let c_vw = bigrams.get(&key).copied().unwrap_or(0);
        smoothing::kneser_ney(
            c_vw as f64,
            bigram.for_count(c_vw as u32),
            bigram.0[0] * followers.len() as f64,
            followers.iter().sum::<usize>() as f64,
            p1,
        )
    }

    pub fn modified_kn_discounts(counts: &Counts) -> [f64; 3] {
        let mut n = [0u64; 4];
        for &c in counts.values() {
            if (1..=4).contains(&c) {
                n[c - 1] += 1;
            }
        }
        smoothing::modified_kn_discounts(n)
            .expect("counts of counts that give discounts in (0, i]")
            .0
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
use llm_lessons::ngram::{NgramConfig, NgramModel, Smoothing};

/// One sentence from a line of space-separated words.
fn sentence(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// Sentences from lines of space-separated words.
fn corpus(lines: &[&str]) -> Vec<Vec<String>> {
    lines.iter().map(|line| sentence(line)).collect()
}

/// The running example: three sentences, eight distinct bigrams.
fn cats() -> Vec<Vec<String>> {
    corpus(&["the cat sat", "the dog sat", "the cat ran"])
}

/// Counts from (n-gram as space-separated words, count) pairs.
fn counts(entries: &[(&str, usize)]) -> Counts {
    entries
        .iter()
        .map(|&(ngram, c)| (ngram.split(' ').map(String::from).collect(), c))
        .collect()
}

/// The bigram counts of `cats()`, written out by hand (exercise 2 checks that they are right).
fn cat_bigrams() -> Counts {
    counts(&[
        ("<s> the", 3),
        ("the cat", 2),
        ("the dog", 1),
        ("cat sat", 1),
        ("cat ran", 1),
        ("dog sat", 1),
        ("sat </s>", 2),
        ("ran </s>", 1),
    ])
}

/// `n` sentences written by the toy-world grammar (the same ones on every machine).
fn toy_world(n: usize, seed: u64) -> Vec<Vec<String>> {
    Grammar::toy_world()
        .generate(n, seed)
        .into_iter()
        .map(|s| s.words)
        .collect()
}

fn as_strs(sentence: &[String]) -> Vec<&str> {
    sentence.iter().map(String::as_str).collect()
}

/// `actual` equals `expected` up to rounding (or both are the same infinity).
#[track_caller]
fn assert_close(actual: f64, expected: f64, what: &str) {
    let ok = if expected.is_finite() {
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0)
    } else {
        actual == expected
    };
    assert!(ok, "{what}: got {actual}, expected {expected}");
}

/// Like `assert_eq!` on two `Counts`, but lists the differences, sorted, when they differ.
#[track_caller]
fn assert_counts_eq(actual: &Counts, expected: &Counts, what: &str) {
    let mut diffs: Vec<String> = Vec::new();
    for (ngram, &e) in expected {
        match actual.get(ngram) {
            None => diffs.push(format!("  missing {ngram:?} (expected count {e})")),
            Some(&a) if a != e => diffs.push(format!("  {ngram:?}: got {a}, expected {e}")),
            _ => {}
        }
    }
    for (ngram, &a) in actual {
        if !expected.contains_key(ngram) {
            diffs.push(format!("  unexpected {ngram:?} (count {a})"));
        }
    }
    diffs.sort();
    assert!(
        diffs.is_empty(),
        "{what}: the counts differ:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn exercise_1_whole_sentence_probability() {
    let corpus = corpus(&[
        "the mut is tinning the tebn",
        "a tebn is tinning a mut",
        "the mut is tinning the tebn",
        "a mut is tinning",
    ]);
    let p = |s: &str| solution::whole_sentence_probability(&corpus, &as_strs(&sentence(s)));

    // Seen 2 times in 4 sentences: 2/4. Seen once: 1/4.
    assert_close(
        p("the mut is tinning the tebn"),
        0.5,
        "P(the mut is tinning the tebn)",
    );
    assert_close(p("a mut is tinning"), 0.25, "P(a mut is tinning)");
    // Its scramble was never seen: 0, rightly so...
    assert_close(
        p("tinning the is tebn mut the"),
        0.0,
        "P(tinning the is tebn mut the)",
    );
    // ...but a perfectly sensible new sentence gets 0 too. Every word and every pair of
    // neighbours in it was seen, which is what exercise 4 uses.
    assert_close(
        p("the tebn is tinning the mut"),
        0.0,
        "P(the tebn is tinning the mut)",
    );
    // A prefix of a sentence is a different sentence.
    assert_close(p("the mut is tinning"), 0.0, "P(the mut is tinning)");

    // The probabilities of the distinct sentences sum to 1.
    let distinct = [
        "the mut is tinning the tebn",
        "a tebn is tinning a mut",
        "a mut is tinning",
    ];
    let total: f64 = distinct.iter().map(|s| p(s)).sum();
    assert_close(total, 1.0, "sum over the distinct sentences of the corpus");

    // On the toy world, it agrees with the crate's `whole_sentence_probability`.
    let toy = toy_world(500, 1);
    for sentence in toy.iter().take(20) {
        let words = as_strs(sentence);
        let expected = llm_lessons::ngram::whole_sentence_probability(&toy, &words);
        let actual = solution::whole_sentence_probability(&toy, &words);
        assert_close(
            actual,
            expected,
            &format!("toy world, P({})", sentence.join(" ")),
        );
    }
}

#[test]
fn exercise_2_count_ngrams() {
    // Padded: "<s> the cat sat </s>", "<s> the dog sat </s>", "<s> the cat ran </s>".
    let unigrams = counts(&[
        ("<s>", 3),
        ("the", 3),
        ("cat", 2),
        ("dog", 1),
        ("sat", 2),
        ("ran", 1),
        ("</s>", 3),
    ]);
    assert_counts_eq(
        &solution::count_ngrams(&cats(), 1),
        &unigrams,
        "unigrams of cats()",
    );

    // 4 bigrams per sentence (5 tokens, 4 windows): 12 in all, 8 distinct.
    assert_counts_eq(
        &solution::count_ngrams(&cats(), 2),
        &cat_bigrams(),
        "bigrams of cats()",
    );

    // Still one <s> whatever n: 3 trigrams per sentence, 9 in all.
    let trigrams = counts(&[
        ("<s> the cat", 2),
        ("<s> the dog", 1),
        ("the cat sat", 1),
        ("the dog sat", 1),
        ("the cat ran", 1),
        ("cat sat </s>", 1),
        ("dog sat </s>", 1),
        ("cat ran </s>", 1),
    ]);
    assert_counts_eq(
        &solution::count_ngrams(&cats(), 3),
        &trigrams,
        "trigrams of cats()",
    );

    // A one-word sentence pads to "<s> hi </s>": 3 tokens, so no 4-gram.
    let short = corpus(&["hi", "hi there you"]);
    let fourgrams = counts(&[("<s> hi there you", 1), ("hi there you </s>", 1)]);
    assert_counts_eq(
        &solution::count_ngrams(&short, 4),
        &fourgrams,
        "4-grams, short sentences",
    );

    // Property: a sentence of m words has m + 2 tokens and max(0, m + 3 − n) n-grams.
    let toy = toy_world(300, 2);
    for n in 1..=4 {
        let total: usize = solution::count_ngrams(&toy, n).values().sum();
        let expected: usize = toy.iter().map(|s| (s.len() + 3).saturating_sub(n)).sum();
        assert_eq!(
            total, expected,
            "total count of the {n}-grams of the toy world"
        );
    }

    // On the toy world, every count agrees with the crate's model.
    for n in 1..=3 {
        let model = NgramModel::train(&toy, &[], NgramConfig::new(n, Smoothing::Mle)).unwrap();
        let mine = solution::count_ngrams(&toy, n);
        assert_eq!(
            mine.len(),
            model.counts.by_order[n - 1].len(),
            "number of distinct {n}-grams of the toy world"
        );
        for (ngram, &c) in &mine {
            assert_eq!(
                c,
                model.count_words(ngram) as usize,
                "toy world, c({ngram:?})"
            );
        }
    }
}

#[test]
fn exercise_3_mle_probability() {
    let bigrams = cat_bigrams();
    let p = |context: &str, word: &str| solution::mle_probability(&bigrams, &[context], word);

    // "the" is followed by cat (2 times) and dog (1 time): c(the •) = 3.
    assert_close(p("the", "cat"), 2.0 / 3.0, "P(cat | the)");
    assert_close(p("the", "dog"), 1.0 / 3.0, "P(dog | the)");
    // Every sentence starts with "the": P(the | <s>) = 3/3.
    assert_close(p("<s>", "the"), 1.0, "P(the | <s>)");
    // "cat" is followed by sat (1) and ran (1).
    assert_close(p("cat", "sat"), 0.5, "P(sat | cat)");
    assert_close(p("sat", "</s>"), 1.0, "P(</s> | sat)");
    // Seen context, unseen bigram: 0. This zero is what smoothing is for.
    assert_close(p("cat", "dog"), 0.0, "P(dog | cat)");
    // Context never seen: 0 by convention (0/0 has no answer).
    assert_close(p("zebra", "the"), 0.0, "P(the | zebra)");
    assert_close(p("</s>", "the"), 0.0, "P(the | </s>)");

    // Longer contexts work the same way. "<s> the" is followed by cat (2) and dog (1).
    let trigrams = counts(&[("<s> the cat", 2), ("<s> the dog", 1), ("the cat sat", 1)]);
    let p3 = |context: &[&str], word| solution::mle_probability(&trigrams, context, word);
    assert_close(p3(&["<s>", "the"], "cat"), 2.0 / 3.0, "P(cat | <s> the)");
    assert_close(p3(&["the", "cat"], "sat"), 1.0, "P(sat | the cat)");
    assert_close(
        p3(&["the", "dog"], "sat"),
        0.0,
        "P(sat | the dog), unseen context",
    );

    // Property: for every seen context, the probabilities of its followers sum to 1.
    let words = ["the", "cat", "dog", "sat", "ran", "</s>"];
    for context in ["<s>", "the", "cat", "dog", "sat", "ran"] {
        let total: f64 = words.iter().map(|w| p(context, w)).sum();
        assert_close(total, 1.0, &format!("Σ_w P(w | {context})"));
    }

    // On the toy world, it agrees with the crate's bigram and trigram models.
    let toy = toy_world(300, 3);
    let vocab: Vec<String> = toy_model(&toy, 1, Smoothing::Mle).vocab.words().to_vec();
    for n in [2, 3] {
        let model = toy_model(&toy, n, Smoothing::Mle);
        let counts = reference::count_ngrams(&toy, n); // the input: built by the crate
        for context in toy_contexts(&toy, n - 1) {
            for word in &vocab {
                let expected = model.prob_words(without_bos(&context), word);
                let actual = solution::mle_probability(&counts, &context, word);
                assert_close(
                    actual,
                    expected,
                    &format!("toy world, P({word} | {context:?})"),
                );
            }
        }
    }
}

/// A model trained on `sentences`, with the crate's standard conventions.
fn toy_model(sentences: &[Vec<String>], n: usize, smoothing: Smoothing) -> NgramModel {
    NgramModel::train(sentences, &[], NgramConfig::new(n, smoothing)).unwrap()
}

/// Contexts of `len` tokens to test on: every run of `len` tokens in the first sentences of
/// `sentences` padded with `<s>`, and one context never seen ("zebra zebra ...").
fn toy_contexts(sentences: &[Vec<String>], len: usize) -> Vec<Vec<&str>> {
    let mut contexts: Vec<Vec<&str>> = vec![vec!["zebra"; len]];
    for sentence in sentences.iter().take(8) {
        let padded: Vec<&str> = ["<s>"].into_iter().chain(as_strs(sentence)).collect();
        for window in padded.windows(len) {
            if !contexts.iter().any(|c| c == window) {
                contexts.push(window.to_vec());
            }
        }
    }
    contexts
}

/// The context as `NgramModel::prob_words` takes it: without a leading `<s>`, which it adds.
fn without_bos<'a>(context: &'a [&'a str]) -> &'a [&'a str] {
    context.strip_prefix(&["<s>"]).unwrap_or(context)
}

#[test]
fn exercise_4_sentence_log_prob() {
    let train = cats();
    let lp = |s: &str| solution::sentence_log_prob(&train, &as_strs(&sentence(s)));

    // P(the | <s>) · P(cat | the) · P(sat | cat) · P(</s> | sat) = 1 · 2/3 · 1/2 · 1 = 1/3.
    assert_close(lp("the cat sat"), (1.0_f64 / 3.0).ln(), "ln P(the cat sat)");
    // 1 · 1/3 · 1 · 1 = 1/3.
    assert_close(lp("the dog sat"), (1.0_f64 / 3.0).ln(), "ln P(the dog sat)");
    // Not in the training text, and P(ran | dog) = 0: "dog" was only ever followed by "sat".
    // One zero makes the whole product 0.
    assert_close(lp("the dog ran"), f64::NEG_INFINITY, "ln P(the dog ran)");
    // The end of sentence is predicted too. P(</s> | the) = 0: "the" never ended a sentence.
    assert_close(lp("the"), f64::NEG_INFINITY, "ln P(the)");

    // The sentences of exercise 1. The bigram model gives the new sentence a probability.
    let train = corpus(&["the mut is tinning the tebn", "a tebn is tinning a mut"]);
    let lp = |s: &str| solution::sentence_log_prob(&train, &as_strs(&sentence(s)));
    // P(the|<s>) P(tebn|the) P(is|tebn) P(tinning|is) P(the|tinning) P(mut|the) P(</s>|mut)
    //   = 1/2 · 1/2 · 1/2 · 1 · 1/2 · 1/2 · 1/2 = 1/64. For instance "tebn" is followed once
    //   by "is" and once by "</s>".
    let new_sentence = "the tebn is tinning the mut";
    assert_close(
        lp(new_sentence),
        (1.0_f64 / 64.0).ln(),
        "ln P(the tebn is tinning the mut)",
    );
    // Its scramble starts with the unseen bigram "<s> tinning": probability 0.
    let scramble = "tinning the is tebn mut the";
    assert_close(
        lp(scramble),
        f64::NEG_INFINITY,
        "ln P(tinning the is tebn mut the)",
    );
    // The training sentence: 1/2 · 1/2 · 1/2 · 1 · 1/2 · 1/2 · 1/2 = 1/64 as well.
    let seen = "the mut is tinning the tebn";
    assert_close(
        lp(seen),
        (1.0_f64 / 64.0).ln(),
        "ln P(the mut is tinning the tebn)",
    );

    // On the toy world, it agrees with the crate's bigram MLE model, −∞ included.
    let train = toy_world(300, 4);
    let model = toy_model(&train, 2, Smoothing::Mle);
    for sentence in toy_world(30, 5) {
        let words = as_strs(&sentence);
        let expected = model.sentence_log_prob(&words);
        let actual = solution::sentence_log_prob(&train, &words);
        assert_close(
            actual,
            expected,
            &format!("toy world, ln P({})", sentence.join(" ")),
        );
    }
}

#[test]
fn exercise_5_add_k_probability() {
    let bigrams = cat_bigrams();
    // The outcomes of a prediction: the 5 words and </s> (never <s>), so |V| = 6.
    let outcomes = ["the", "cat", "dog", "sat", "ran", "</s>"];
    let v = outcomes.len();
    let p = |context: &str, word: &str, k: f64| {
        solution::add_k_probability(&bigrams, &[context], word, k, v)
    };

    // Laplace (k = 1): P(cat | the) = (2 + 1) / (3 + 6) = 1/3, down from 2/3 under MLE.
    assert_close(p("the", "cat", 1.0), 1.0 / 3.0, "add-1 P(cat | the)");
    // P(sat | cat) = (1 + 1) / (2 + 6) = 1/4.
    assert_close(p("cat", "sat", 1.0), 0.25, "add-1 P(sat | cat)");
    // The unseen bigram gets some mass: P(dog | cat) = (0 + 1) / (2 + 6) = 1/8.
    assert_close(p("cat", "dog", 1.0), 0.125, "add-1 P(dog | cat)");
    // k = 0.5: P(cat | the) = (2 + 0.5) / (3 + 0.5 · 6) = 2.5 / 6 = 5/12.
    assert_close(p("the", "cat", 0.5), 5.0 / 12.0, "add-0.5 P(cat | the)");
    // An unseen context gets the uniform distribution: (0 + k) / (0 + k |V|) = 1/6.
    assert_close(p("zebra", "cat", 1.0), 1.0 / 6.0, "add-1 P(cat | zebra)");
    assert_close(p("zebra", "cat", 0.1), 1.0 / 6.0, "add-0.1 P(cat | zebra)");
    // A tiny k gives nearly the MLE: 2/3.
    assert!(
        (p("the", "cat", 1e-9) - 2.0 / 3.0).abs() < 1e-6,
        "add-1e-9 P(cat | the) ≈ 2/3"
    );

    // Property: for every context and every k, the distribution over |V| outcomes sums to 1.
    for k in [0.01, 0.5, 1.0, 2.0] {
        for context in ["<s>", "the", "cat", "dog", "sat", "ran", "</s>", "zebra"] {
            let total: f64 = outcomes.iter().map(|w| p(context, w, k)).sum();
            assert_close(total, 1.0, &format!("add-{k}: Σ_w P(w | {context})"));
        }
    }

    // On the toy world, it agrees with the crate's add-k bigram model. Its |V| counts <unk>
    // and </s> but not <s>: `NgramModel::outcomes`.
    let toy = toy_world(300, 6);
    let counts = reference::count_ngrams(&toy, 2); // the input: built by the crate
    for k in [0.1, 1.0] {
        let model = toy_model(&toy, 2, Smoothing::AddK(k));
        let outcomes: Vec<&str> = model
            .vocab
            .words()
            .iter()
            .map(String::as_str)
            .filter(|&w| w != "<s>")
            .collect();
        assert_eq!(outcomes.len(), model.outcomes());
        for context in toy_contexts(&toy, 1) {
            let mut total = 0.0;
            for &word in &outcomes {
                let expected = model.prob_words(without_bos(&context), word);
                let actual =
                    solution::add_k_probability(&counts, &context, word, k, outcomes.len());
                assert_close(
                    actual,
                    expected,
                    &format!("toy world, add-{k} P({word} | {context:?})"),
                );
                total += actual;
            }
            assert_close(
                total,
                1.0,
                &format!("toy world, add-{k}: Σ_w P(w | {context:?})"),
            );
        }
    }
}

#[test]
fn exercise_6_perplexity() {
    let ln = f64::ln;

    // A model that gives 1/10 to every word hesitates between 10 words: perplexity 10.
    assert_close(
        solution::perplexity(&[ln(0.1); 7]),
        10.0,
        "perplexity of 7 events at 1/10",
    );
    // A single event of probability 1/N: perplexity N.
    assert_close(
        solution::perplexity(&[ln(0.25)]),
        4.0,
        "perplexity of one event at 1/4",
    );
    // H = −(ln 1/2 + ln 1/8) / 2 = (ln 2 + 3 ln 2) / 2 = 2 ln 2, so perplexity = e^(2 ln 2) = 4.
    // It is the geometric mean of 2 and 8, not their arithmetic mean 5.
    let two_events = [ln(0.5), ln(0.125)];
    assert_close(
        solution::perplexity(&two_events),
        4.0,
        "perplexity of events at 1/2 and 1/8",
    );
    // A model that is sure and right every time: perplexity 1, the lowest possible.
    assert_close(
        solution::perplexity(&[0.0; 3]),
        1.0,
        "perplexity of events at probability 1",
    );
    // One impossible event and the perplexity is infinite.
    let with_zero = [ln(0.5), f64::NEG_INFINITY];
    assert_close(
        solution::perplexity(&with_zero),
        f64::INFINITY,
        "perplexity with a zero",
    );
    // The cats' bigram MLE model on "the cat sat": 4 events (3 words and </s>) with
    // Σ ln P = ln 1/3 (exercise 4), so perplexity = exp(ln 3 / 4) = 3^(1/4) ≈ 1.316.
    let the_cat_sat = [ln(1.0), ln(2.0 / 3.0), ln(0.5), ln(1.0)];
    assert_close(
        solution::perplexity(&the_cat_sat),
        3f64.powf(0.25),
        "perplexity of the cat sat",
    );

    // Properties: the order of the events does not matter, and neither does repeating all of them.
    let events = [ln(0.3), ln(0.01), ln(0.9), ln(0.5)];
    let reversed: Vec<f64> = events.iter().rev().copied().collect();
    let twice: Vec<f64> = events.iter().chain(&events).copied().collect();
    let once = solution::perplexity(&events);
    assert_close(
        solution::perplexity(&reversed),
        once,
        "perplexity, events reversed",
    );
    assert_close(
        solution::perplexity(&twice),
        once,
        "perplexity, events repeated",
    );

    // On the toy world, it agrees with `NgramModel::evaluate` for a Kneser-Ney trigram model.
    let model = toy_model(&toy_world(500, 7), 3, Smoothing::KneserNey(None));
    let test = toy_world(50, 8);
    let mut log_probs = Vec::new();
    for sentence in &test {
        let ids = model.vocab.encode(sentence);
        model.for_each_event(&ids, |h, w| log_probs.push(model.prob(h, w).ln()));
    }
    let expected = model.evaluate(&test).perplexity();
    assert_close(
        solution::perplexity(&log_probs),
        expected,
        "toy world, perplexity",
    );
}

#[test]
fn exercise_7_continuation_counts() {
    // "francisco" is frequent (4 times) but only ever follows "san". "glasses" is rarer
    // (3 times) but follows 3 different words.
    let corpus = corpus(&[
        "i flew to san francisco",
        "san francisco is foggy",
        "we love san francisco",
        "san francisco has hills",
        "i lost my glasses",
        "she cleaned her glasses",
        "reading glasses help",
    ]);
    let n1plus = solution::continuation_counts(&corpus);
    let get = |w: &str| n1plus.get(w).copied().unwrap_or(0);

    assert_eq!(get("francisco"), 1, "N1+(• francisco): only 'san'");
    assert_eq!(get("glasses"), 3, "N1+(• glasses): 'my', 'her', 'reading'");
    assert_eq!(get("san"), 3, "N1+(• san): 'to', 'love', '<s>' (twice)");
    assert_eq!(get("i"), 1, "N1+(• i): '<s>' (twice)");
    assert_eq!(
        get("</s>"),
        5,
        "N1+(• </s>): francisco, foggy, hills, glasses, help"
    );
    assert!(
        !n1plus.contains_key("<s>"),
        "<s> is never preceded by anything"
    );
    assert!(
        !n1plus.contains_key("zebra"),
        "a word not in the corpus has no entry"
    );

    // Property: each distinct bigram "v w" adds 1 to exactly one N1+(• w), so the
    // continuation counts sum to the number of distinct bigrams (28 here).
    let distinct_bigrams = reference::count_ngrams(&corpus, 2).len();
    assert_eq!(distinct_bigrams, 28);
    assert_eq!(n1plus.values().sum::<usize>(), 28, "Σ_w N1+(• w)");

    // Why it matters: Kneser-Ney's lowest order uses these counts. After a context it has
    // never seen, the crate's model prefers "glasses" to the more frequent "francisco".
    let kn = toy_model(&corpus, 2, Smoothing::KneserNey(None));
    assert!(kn.prob_words(&["zebra"], "glasses") > kn.prob_words(&["zebra"], "francisco"));

    // On the toy world, it agrees with the crate's `NgramModel::continuation_count`.
    let toy = toy_world(300, 9);
    let model = toy_model(&toy, 2, Smoothing::KneserNey(None));
    let mine = solution::continuation_counts(&toy);
    for word in model
        .vocab
        .words()
        .iter()
        .filter(|w| !matches!(w.as_str(), "<unk>" | "<s>"))
    {
        let expected = model.continuation_count(&[word]) as usize;
        let actual = mine.get(word).copied().unwrap_or(0);
        assert_eq!(actual, expected, "toy world, N1+(• {word})");
    }
    assert_eq!(
        mine.len(),
        model.vocab.len() - 2,
        "toy world: one entry per word and </s>"
    );
}

/// The running example of Kneser-Ney: "francisco" is frequent (4 times) but only ever
/// follows "san"; "glasses" is rarer (3 times) but follows 3 different words.
fn san_francisco() -> Vec<Vec<String>> {
    corpus(&[
        "i flew to san francisco",
        "san francisco is foggy",
        "we love san francisco",
        "san francisco has hills",
        "i lost my glasses",
        "she cleaned her glasses",
        "reading glasses help",
    ])
}

#[test]
fn exercise_8_kneser_ney_probability() {
    let corpus = san_francisco();
    // The inputs, built by the crate: the bigram counts and the continuation counts.
    let (bigrams, continuation) = (
        reference::count_ngrams(&corpus, 2),
        reference::continuation_counts(&corpus),
    );
    // D1 = 1/2 at the unigram level, D2 = 3/4 at the bigram level. |V| = 21: the 19 words,
    // </s> and <unk> (a word never seen, as the crate counts it).
    let p = |v: &str, w: &str| {
        solution::kneser_ney_probability(&bigrams, &continuation, v, w, [0.5, 0.75], 21)
    };

    // The unigram level. 28 distinct bigrams, so N1+(• •) = 28, and 20 tokens have a
    // continuation count (the 19 words and </s>): γ1 = D1 · 20 / 28, and the uniform share
    // is γ1 / 21 = 10 / 588. So P1(w) = max(N1+(• w) − 1/2, 0) / 28 + 10/588:
    //   P1(francisco) = 0.5/28 + 10/588 = 20.5/588 (N1+ = 1: only "san" precedes it)
    //   P1(glasses)   = 2.5/28 + 10/588 = 62.5/588 (N1+ = 3: "my", "her", "reading")
    //   P1(zebra)     = 10/588                      (never seen: the uniform share only)
    // An unseen context ("zebra") gets the unigram level itself.
    let p1_francisco = 20.5 / 588.0;
    let p1_glasses = 62.5 / 588.0;
    assert_close(
        p("zebra", "francisco"),
        p1_francisco,
        "P(francisco | zebra)",
    );
    assert_close(p("zebra", "glasses"), p1_glasses, "P(glasses | zebra)");
    assert_close(p("zebra", "zebra"), 10.0 / 588.0, "P(zebra | zebra)");
    // After "</s>" nothing was ever seen either.
    assert_close(p("</s>", "glasses"), p1_glasses, "P(glasses | </s>)");

    // The bigram level. "san" is followed 4 times, always by "francisco": c(san •) = 4,
    // N1+(san •) = 1, so γ(san) = 3/4 · 1 / 4 = 3/16 and
    //   P(francisco | san) = (4 − 3/4) / 4 + 3/16 · P1(francisco) = 13/16 + 3/16 · 20.5/588.
    assert_close(
        p("san", "francisco"),
        13.0 / 16.0 + 3.0 / 16.0 * p1_francisco,
        "P(francisco | san)",
    );
    //   P(glasses | san) = 0 + 3/16 · P1(glasses): an unseen bigram, from the lower order.
    assert_close(
        p("san", "glasses"),
        3.0 / 16.0 * p1_glasses,
        "P(glasses | san)",
    );
    // "<s>" is followed by i (2), san (2), we, she, reading (1 each): c(<s> •) = 7 and
    // N1+(<s> •) = 5, so γ(<s>) = 3/4 · 5 / 7 = 15/28, and with N1+(• san) = 3
    // (to, love, <s>): P(san | <s>) = (2 − 3/4) / 7 + 15/28 · 62.5/588.
    assert_close(
        p("<s>", "san"),
        1.25 / 7.0 + 15.0 / 28.0 * 62.5 / 588.0,
        "P(san | <s>)",
    );

    // Properties: every context's distribution over the 21 outcomes sums to 1 (the 20
    // tokens seen, and "zebra" standing for <unk>).
    let mut outcomes: Vec<String> = reference::count_ngrams(&corpus, 1)
        .into_keys()
        .map(|g| g[0].clone())
        .filter(|w| w != "<s>")
        .collect();
    outcomes.push("zebra".into());
    assert_eq!(outcomes.len(), 21);
    for v in ["san", "<s>", "glasses", "i", "francisco", "</s>", "zebra"] {
        let total: f64 = outcomes.iter().map(|w| p(v, w)).sum();
        assert_close(total, 1.0, &format!("Σ_w P(w | {v})"));
    }

    // On the toy world, it agrees with the crate's Kneser-Ney bigram model, whose two
    // discounts are estimated from the counts of counts (D = n1 / (n1 + 2 n2) per order).
    let toy = toy_world(300, 10);
    let model = toy_model(&toy, 2, Smoothing::KneserNey(None));
    let discounts = [1, 2].map(|k| model.discounts(k).expect("a Kneser-Ney model").0[0]);
    let outcomes: Vec<&str> = model
        .vocab
        .words()
        .iter()
        .map(String::as_str)
        .filter(|&w| w != "<s>")
        .collect();
    assert_eq!(outcomes.len(), model.outcomes());
    let (bigrams, continuation) = (
        reference::count_ngrams(&toy, 2),
        reference::continuation_counts(&toy),
    );
    for context in toy_contexts(&toy, 1) {
        for &word in &outcomes {
            let expected = model.prob_words(without_bos(&context), word);
            let actual = solution::kneser_ney_probability(
                &bigrams,
                &continuation,
                context[0],
                word,
                discounts,
                outcomes.len(),
            );
            assert_close(
                actual,
                expected,
                &format!("toy world, P_KN({word} | {})", context[0]),
            );
        }
    }
}

#[test]
fn exercise_9_modified_kn_discounts() {
    // Counts of counts n1 = 4, n2 = 2, n3 = 1, n4 = 1 (and one n-gram seen 7 times, which is
    // in none of them): Y = 4 / (4 + 2·2) = 1/2, D1 = 1 − 2 · 1/2 · 2/4 = 1/2,
    // D2 = 2 − 3 · 1/2 · 1/2 = 5/4, D3+ = 3 − 4 · 1/2 · 1/1 = 1.
    let small = counts(&[
        ("a b", 1),
        ("a c", 1),
        ("b c", 1),
        ("c a", 1),
        ("b a", 2),
        ("c b", 2),
        ("a a", 3),
        ("b b", 4),
        ("c c", 7),
    ]);
    let d = solution::modified_kn_discounts(&small);
    for (i, (got, expected)) in d.iter().zip([0.5, 1.25, 1.0]).enumerate() {
        let name = ["D1", "D2", "D3+"][i];
        assert_close(*got, expected, &format!("{name} for n = (4, 2, 1, 1)"));
    }

    // n1 = 10, n2 = 4, n3 = 2, n4 = 1: Y = 10/18 = 5/9, D1 = 1 − 2 · 5/9 · 4/10 = 5/9,
    // D2 = 2 − 3 · 5/9 · 2/4 = 7/6, D3+ = 3 − 4 · 5/9 · 1/2 = 17/9.
    let mut entries: Vec<(String, usize)> = Vec::new();
    for (count, how_many) in [(1, 10), (2, 4), (3, 2), (4, 1), (5, 3), (12, 1)] {
        for i in 0..how_many {
            entries.push((format!("w{count} x{i}"), count));
        }
    }
    let entries: Vec<(&str, usize)> = entries.iter().map(|(g, c)| (g.as_str(), *c)).collect();
    let d = solution::modified_kn_discounts(&counts(&entries));
    for (i, (got, expected)) in d.iter().zip([5.0 / 9.0, 7.0 / 6.0, 17.0 / 9.0]).enumerate() {
        let name = ["D1", "D2", "D3+"][i];
        assert_close(*got, expected, &format!("{name} for n = (10, 4, 2, 1)"));
    }

    // On the toy world, they are the discounts of the crate's modified Kneser-Ney model at
    // its highest order (which uses the raw counts).
    let toy = toy_world(500, 11);
    for n in [2, 3] {
        let model = toy_model(&toy, n, Smoothing::ModifiedKneserNey);
        assert!(model.warnings.is_empty(), "{:?}", model.warnings);
        let expected = model.discounts(n).expect("a Kneser-Ney model").0;
        let actual = solution::modified_kn_discounts(&reference::count_ngrams(&toy, n));
        for i in 0..3 {
            assert_close(
                actual[i],
                expected[i],
                &format!("toy world, order {n}, {}", ["D1", "D2", "D3+"][i]),
            );
        }
    }
}
