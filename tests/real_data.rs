//! Checks on the real corpora, which `cargo test` alone does not have: CI fetches them
//! (`bash data/fetch.sh`) and runs
//! `LLM_LESSONS_DATA=data/external cargo test --release --test real_data -- --include-ignored`.
//! Without the data these tests fail loudly, naming what is missing.

use std::path::PathBuf;

use llm_lessons::data;
use llm_lessons::ngram::{split_heldout, NgramConfig, NgramModel, Smoothing, Style};

fn corpus(name: &str) -> PathBuf {
    let dir = std::env::var("LLM_LESSONS_DATA").unwrap_or_else(|_| {
        panic!("set LLM_LESSONS_DATA to the folder of the fetched corpora (bash data/fetch.sh)")
    });
    let path = PathBuf::from(dir).join(name);
    assert!(
        path.exists(),
        "{} is missing: run bash data/fetch.sh",
        path.display()
    );
    path
}

/// Moby-Dick cut as `prep_sentences.py` cuts it: the last 10% of sentences for testing.
fn moby_dick() -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let sents = data::read_sentences(corpus("moby_dick.txt")).unwrap();
    // prep_sentences.py: "9,483 sentences, 212,270 tokens".
    assert_eq!(sents.len(), 9_483);
    assert_eq!(sents.iter().map(Vec::len).sum::<usize>(), 212_270);
    let (train, test) = split_heldout(&sents, 0.1);
    (train.to_vec(), test.to_vec())
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn nltk_perplexities_on_moby_dick() {
    let (train, test) = moby_dick();
    // ngram_nltk.py train.txt test.txt --order N --models laplace,kn (nltk 3.10.4).
    for (order, smoothing, nltk) in [
        (2, Smoothing::KneserNey(Some(0.1)), 538.422),
        (2, Smoothing::AddK(1.0), 1787.608),
        (3, Smoothing::AddK(1.0), 5252.495),
    ] {
        let config = NgramConfig {
            order,
            smoothing,
            style: Style::Nltk,
            min_count: 2,
        };
        let ppl = NgramModel::train(&train, &[], config)
            .unwrap()
            .evaluate(&test)
            .perplexity();
        assert!(
            (ppl - nltk).abs() < 5e-3,
            "order {order} {smoothing}: ours {ppl:.3}, NLTK {nltk}"
        );
    }
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn modified_kneser_ney_beats_add_k_on_moby_dick() {
    let (train, test) = moby_dick();
    let (train, heldout) = split_heldout(&train, 0.1);
    for order in [2, 3, 4] {
        let ppl = |s| {
            NgramModel::train(train, heldout, NgramConfig::new(order, s))
                .unwrap()
                .evaluate(&test)
                .perplexity()
        };
        let (mkn, laplace, interp) = (
            ppl(Smoothing::ModifiedKneserNey),
            ppl(Smoothing::AddK(1.0)),
            ppl(Smoothing::Interpolated),
        );
        println!("order {order}: MKN {mkn:.1}, interpolated {interp:.1}, Laplace {laplace:.1}");
        assert!(mkn < interp && interp < laplace, "order {order}");
    }
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn state_of_the_union_order_5_trains() {
    let sents = data::read_sentences(corpus("sotu_1790-2021.txt")).unwrap();
    let (train, test) = split_heldout(&sents, 0.01);
    let m = NgramModel::train(
        train,
        &[],
        NgramConfig::new(5, Smoothing::ModifiedKneserNey),
    )
    .unwrap();
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let e = m.evaluate(test);
    println!(
        "SOTU order 5 MKN: perplexity {:.1} on {} events",
        e.perplexity(),
        e.events
    );
    assert!(e.perplexity().is_finite() && e.zero_prob_events == 0);
}
