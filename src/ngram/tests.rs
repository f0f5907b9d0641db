//! Tests of the n-gram model: normalisation for every smoothing, known answers, NLTK's
//! numbers, ARPA round trips, and clear errors on bad input.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::data::grammar::Grammar;
use crate::ngram::vocab::{BOS, EOS};
use crate::ngram::{split_heldout, whole_sentence_probability, ArpaModel, Smoothing};

fn toy(n: usize, seed: u64) -> Vec<Vec<String>> {
    Grammar::toy_world()
        .generate(n, seed)
        .into_iter()
        .map(|s| s.words)
        .collect()
}

fn words(lines: &str) -> Vec<Vec<String>> {
    lines
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every context the model meets on these sentences, plus a few it never saw.
fn contexts(model: &NgramModel, sentences: &[Vec<String>]) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for s in sentences {
        model.for_each_event(&model.vocab.encode(s), |h, _| out.push(h.to_vec()));
    }
    let n = model.config.order;
    let last = model.vocab.len() as u32 - 1;
    out.push(vec![last; n - 1]); // a context of rare words, likely unseen
    out.push(vec![EOS; n - 1]); // never a context in the standard style
    out.push(vec![0; n - 1]); // <unk>s
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_smoothing_sums_to_one_for_every_context() {
    let train = toy(400, 11);
    let (train, heldout) = split_heldout(&train, 0.2);
    let test = toy(30, 12);
    for style in [Style::Standard, Style::Nltk] {
        for n in 1..=4 {
            for smoothing in Smoothing::all()
                .into_iter()
                .chain([Smoothing::KneserNey(Some(0.1))])
            {
                let config = NgramConfig {
                    order: n,
                    smoothing,
                    style,
                    min_count: 2,
                };
                let model = NgramModel::train(train, heldout, config).unwrap();
                for h in contexts(&model, &test) {
                    let total: f64 = model.distribution(&h).iter().sum();
                    // MLE is undefined for contexts never seen: it must say 0 everywhere.
                    let seen = model.distribution(&h).iter().any(|&p| p > 0.0);
                    if smoothing == Smoothing::Mle && !seen {
                        continue;
                    }
                    // NLTK's Kneser-Ney (order 3 and up) counts followers such as `<s> <s>`
                    // in γ(h) that have no continuation count: its lower orders hand out a
                    // little more than 1. Style::Nltk copies that; the standard style does not.
                    let nltk_kn = style == Style::Nltk && smoothing.is_kneser_ney() && n >= 3;
                    let tol = if nltk_kn { 0.05 } else { 1e-9 };
                    assert!(
                        (total - 1.0).abs() < tol,
                        "{style:?} order {n} {smoothing}: context {h:?} sums to {total}"
                    );
                }
            }
        }
    }
}

#[test]
fn mle_known_answer_and_zeros() {
    let train = words("the cat sat\nthe dog sat\nthe cat ran");
    let m = NgramModel::train(&train, &[], NgramConfig::new(2, Smoothing::Mle)).unwrap();
    // c(the cat) = 2, c(the •) = 3.
    assert!((m.prob_words(&["the"], "cat") - 2.0 / 3.0).abs() < 1e-12);
    // c(<s> the) = 3 = c(<s> •).
    assert!((m.prob_words::<&str>(&[], "the") - 1.0).abs() < 1e-12);
    assert_eq!(m.prob_words(&["dog"], "ran"), 0.0);
    // P(the cat sat </s>) = 1 · 2/3 · 1/2 · 1
    let lp = m.sentence_log_prob(&["the", "cat", "sat"]);
    assert!((lp - (2.0f64 / 3.0 * 0.5).ln()).abs() < 1e-12);
    let e = m.evaluate(&words("the dog ran"));
    assert_eq!(e.zero_prob_events, 1);
    assert!(e.perplexity().is_infinite());
}

#[test]
fn add_k_known_answer() {
    let train = words("the cat sat\nthe dog sat\nthe cat ran");
    let m = NgramModel::train(&train, &[], NgramConfig::new(2, Smoothing::AddK(0.5))).unwrap();
    // |V| = cat dog sat ran the </s> <unk> = 7 (no <s>): (2 + 0.5) / (3 + 0.5 · 7).
    assert_eq!(m.outcomes(), 7);
    assert!((m.prob_words(&["the"], "cat") - 2.5 / 6.5).abs() < 1e-12);
}

#[test]
fn kneser_ney_known_answer() {
    // Bigram KN, fixed D = 0.5, on "a b" and "c b":
    // unigram continuation counts: a 1 (after <s>), c 1, b 2 (after a, c), </s> 1 → total 5.
    let train = words("a b\nc b");
    let m = NgramModel::train(
        &train,
        &[],
        NgramConfig::new(2, Smoothing::KneserNey(Some(0.5))),
    )
    .unwrap();
    let v = m.outcomes() as f64; // a b c </s> <unk> = 5
    assert_eq!(v, 5.0);
    // P1(b) = (2 − 0.5)/5 + γ() /|V|, γ() = 0.5 · 4 distinct / 5.
    let p1_b = 1.5 / 5.0 + (0.5 * 4.0 / 5.0) / v;
    // P(b | a) = (1 − 0.5)/1 + (0.5 · 1/1) P1(b)
    let expect = 0.5 + 0.5 * p1_b;
    assert!((m.prob_words(&["a"], "b") - expect).abs() < 1e-12);
    // An unseen context backs off entirely: P(b | zzz) = P(b | <unk>) = P1(b).
    assert!((m.prob_words(&["zzz"], "b") - p1_b).abs() < 1e-12);
    assert_eq!(m.continuation_count(&["b"]), 2);
}

#[test]
fn interpolation_weights_are_a_distribution_that_prefers_useful_orders() {
    let all = toy(3000, 5);
    let (train, heldout) = split_heldout(&all, 0.2);
    let m =
        NgramModel::train(train, heldout, NgramConfig::new(3, Smoothing::Interpolated)).unwrap();
    let l = m.lambdas();
    assert_eq!(l.len(), 4);
    assert!((l.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    // The toy grammar is well covered by 2,400 sentences: the trigram estimate should win.
    assert!(l[3] > l[0] && l[3] > l[1], "{l:?}");
}

#[test]
fn em_recovers_known_mixture_weights() {
    // Two components; events where each is informative. True λ = (0.3, 0.7).
    let mut events = Vec::new();
    for i in 0..10_000 {
        // Draw which component "produced" the event, deterministically in proportion.
        let from_second = (i % 10) < 7;
        events.push(if from_second {
            vec![0.01, 0.9]
        } else {
            vec![0.9, 0.01]
        });
    }
    let l = fit_mixture_weights(&events, 1000, 1e-12);
    assert!((l[1] - 0.7).abs() < 0.01, "{l:?}");
}

#[test]
fn modified_kneser_ney_beats_add_k_and_nears_the_true_perplexity() {
    let grammar = Grammar::toy_world();
    let train: Vec<Vec<String>> = grammar
        .generate(20_000, 1)
        .into_iter()
        .map(|s| s.words)
        .collect();
    let test_gen = grammar.generate(2_000, 3);
    let test: Vec<Vec<String>> = test_gen.iter().map(|s| s.words.clone()).collect();
    let truth = crate::data::grammar::true_cross_entropy(&test_gen).exp();
    let ppl = |s| {
        NgramModel::train(&train, &[], NgramConfig::new(4, s))
            .unwrap()
            .evaluate(&test)
            .perplexity()
    };
    let mkn = ppl(Smoothing::ModifiedKneserNey);
    let laplace = ppl(Smoothing::AddK(1.0));
    assert!(mkn < laplace, "MKN {mkn} vs Laplace {laplace}");
    // No model beats the source on average; a good one comes close.
    assert!(mkn >= truth * 0.98, "MKN {mkn} below the truth {truth}?");
    // Measured: +43% at order 4 with 20,000 sentences (the grammar's agreement reaches
    // further back than three words); the bound leaves room for the seed, not for a bug.
    assert!(mkn < truth * 1.5, "MKN {mkn} vs true {truth}");
}

#[test]
fn matches_nltk_on_the_fixture() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nltk/");
    let read = |f: &str| words(&std::fs::read_to_string(format!("{dir}{f}")).unwrap());
    let (train, test) = (read("train.txt"), read("test.txt"));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}expected.json")).unwrap())
            .unwrap();
    for (name, smoothing) in [
        ("laplace", Smoothing::AddK(1.0)),
        ("kn", Smoothing::KneserNey(Some(0.1))),
    ] {
        for n in [2, 3] {
            let config = NgramConfig {
                order: n,
                smoothing,
                style: Style::Nltk,
                min_count: 2,
            };
            let m = NgramModel::train(&train, &[], config).unwrap();
            let e = m.evaluate(&test);
            let want = expected["perplexity"][format!("{name}_{n}")]
                .as_f64()
                .unwrap();
            assert_eq!(e.events, expected[format!("events_{n}")].as_u64().unwrap());
            assert_eq!(m.vocab.len() as u64, expected["vocab"].as_u64().unwrap());
            let got = e.perplexity();
            assert!(
                (got - want).abs() < 1e-6 * want,
                "{name} order {n}: ours {got}, NLTK {want}"
            );
        }
    }
}

#[test]
fn arpa_round_trip_scores_like_the_model() {
    let train = toy(2000, 21);
    let test = toy(50, 22);
    let dir = std::env::temp_dir().join(format!("llm-lessons-arpa-{}", std::process::id()));
    for smoothing in [Smoothing::KneserNey(None), Smoothing::ModifiedKneserNey] {
        let m = NgramModel::train(&train, &[], NgramConfig::new(3, smoothing)).unwrap();
        let path = dir.join("model.arpa");
        m.write_arpa(&path).unwrap();
        let arpa = ArpaModel::read(&path).unwrap();
        assert_eq!(arpa.order, 3);
        let mut test = test.clone();
        test.push(vec!["zebra".into(), "queen".into()]); // an unknown word
        for s in &test {
            let ids = m.vocab.encode(s);
            m.for_each_event(&ids, |h, w| {
                let hw: Vec<&str> = h.iter().map(|&i| m.vocab.word(i)).collect();
                let ours = m.prob(h, w).log10();
                let theirs = arpa.log10_prob(&hw, m.vocab.word(w));
                assert!(
                    (ours - theirs).abs() < 1e-5,
                    "{hw:?} {}: {ours} vs {theirs}",
                    m.vocab.word(w)
                );
            });
        }
    }
    let laplace =
        NgramModel::train(&train, &[], NgramConfig::new(2, Smoothing::AddK(1.0))).unwrap();
    let err = laplace
        .write_arpa(&dir.join("x.arpa"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("back-off"), "{err}");
}

#[test]
fn truncated_arpa_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("llm-lessons-arpa-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.arpa");
    std::fs::write(
        &p,
        "\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\n-0.5\tthe\n",
    )
    .unwrap();
    let err = ArpaModel::read(&p).unwrap_err().to_string();
    assert!(
        err.contains("bad.arpa") && err.contains("declares 3"),
        "{err}"
    );
    std::fs::write(&p, "\\data\\\nngram 1=1\n\n\\1-grams:\nnot-a-number\tthe\n").unwrap();
    let err = ArpaModel::read(&p).unwrap_err().to_string();
    assert!(
        err.contains("line 5") && err.contains("bad number"),
        "{err}"
    );
}

#[test]
fn sampling_is_seeded_and_temperature_sharpens() {
    let train = toy(2000, 31);
    let m = NgramModel::train(
        &train,
        &[],
        NgramConfig::new(3, Smoothing::ModifiedKneserNey),
    )
    .unwrap();
    let draw = |seed, t| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..50)
            .map(|_| m.sample(&mut rng, t, 40))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7, 1.0), draw(7, 1.0));
    // Cold samples are more likely under the model than hot ones.
    let mean_lp = |ss: &[Vec<String>]| {
        ss.iter().map(|s| m.sentence_log_prob(s)).sum::<f64>() / ss.len() as f64
    };
    assert!(mean_lp(&draw(8, 0.3)) > mean_lp(&draw(8, 1.5)));
    for s in draw(9, 1.0) {
        assert!(s.iter().all(|w| m.vocab.get(w).is_some() && w != "<unk>"));
    }
}

#[test]
fn whole_sentence_counting_gives_zero_to_the_unseen() {
    let corpus = words("the cat is chasing the dog\nthe dog is chasing the cat");
    assert_eq!(
        whole_sentence_probability(&corpus, &["the", "cat", "is", "chasing", "the", "dog"]),
        0.5
    );
    let unseen = ["the", "mut", "is", "tinning", "the", "tebn"];
    let scrambled = ["tebn", "the", "is", "mut", "the", "tinning"];
    assert_eq!(whole_sentence_probability(&corpus, &unseen), 0.0);
    assert_eq!(whole_sentence_probability(&corpus, &scrambled), 0.0);
}

#[test]
fn bad_input_is_a_clear_error() {
    let err = |train: &[Vec<String>], heldout: &[Vec<String>], c: NgramConfig| {
        NgramModel::train(train, heldout, c)
            .unwrap_err()
            .to_string()
    };
    let some = words("a b c");
    assert!(err(&[], &[], NgramConfig::new(2, Smoothing::Mle)).contains("empty"));
    assert!(err(&[vec![]], &[], NgramConfig::new(2, Smoothing::Mle)).contains("empty"));
    assert!(err(&some, &[], NgramConfig::new(0, Smoothing::Mle)).contains("at least 1"));
    assert!(err(&some, &[], NgramConfig::new(200, Smoothing::Mle)).contains("too high"));
    assert!(err(&words("a"), &[], NgramConfig::new(4, Smoothing::Mle)).contains("long enough"));
    assert!(err(&some, &[], NgramConfig::new(2, Smoothing::Interpolated)).contains("held-out"));
    assert!(err(&some, &[], NgramConfig::new(2, Smoothing::AddK(-1.0))).contains("k > 0"));
    let mut c = NgramConfig::new(2, Smoothing::Mle);
    c.min_count = 5;
    assert!(err(&some, &[], c).contains("at least 5 times"));
}

#[test]
fn events_cover_words_and_one_end_token() {
    let m = NgramModel::train(&words("a b c"), &[], NgramConfig::new(3, Smoothing::Mle)).unwrap();
    let mut seen = Vec::new();
    m.for_each_event(&m.vocab.encode(&["a", "b"]), |h, w| {
        seen.push((h.to_vec(), w))
    });
    let (a, b) = (m.vocab.id("a"), m.vocab.id("b"));
    assert_eq!(
        seen,
        vec![(vec![BOS], a), (vec![BOS, a], b), (vec![a, b], EOS)]
    );
}

#[test]
fn next_words_reads_the_history_mid_sentence() {
    let train = words("the cat sat\nthe dog sat\nthe cat ran");
    let m = NgramModel::train(&train, &[], NgramConfig::new(2, Smoothing::Mle)).unwrap();
    let next = m.next_words(&["the"], 5);
    assert_eq!(next[0].0, "cat");
    assert!((next[0].1 - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(next.len(), 2); // cat, dog: MLE gives the rest 0
    let first = m.next_words(&["<s>"], 1);
    assert_eq!(first, vec![("the".to_string(), 1.0)]);
}
