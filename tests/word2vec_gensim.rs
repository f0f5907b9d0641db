//! Vectors written by gensim read back with the crate, and the crate's answers equal
//! gensim's on them: `tests/fixtures/word2vec/gensim_toy.txt` was saved by gensim 4.4.0's
//! `save_word2vec_format`, and `gensim_toy.json` holds what gensim's `KeyedVectors` said
//! about it (`make_gensim_fixture.py` made both).

use llm_lessons::word2vec::Embeddings;
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/word2vec");

fn fixture() -> (Embeddings, Value) {
    let emb = Embeddings::load(format!("{DIR}/gensim_toy.txt")).unwrap();
    let text = std::fs::read_to_string(format!("{DIR}/gensim_toy.json")).unwrap();
    (emb, serde_json::from_str(&text).unwrap())
}

/// (word, similarity) pairs from a JSON list of `[word, similarity]`.
fn pairs(v: &Value) -> Vec<(String, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap()))
        .collect()
}

fn check(ours: &[llm_lessons::word2vec::vectors::Neighbour], theirs: &[(String, f64)]) {
    assert_eq!(ours.len(), theirs.len());
    for (o, (word, sim)) in ours.iter().zip(theirs) {
        assert_eq!(&o.word, word, "ours {ours:?}\ngensim {theirs:?}");
        assert!(
            (o.similarity as f64 - sim).abs() < 1e-5,
            "{word}: {} vs {sim}",
            o.similarity
        );
    }
}

#[test]
fn gensims_file_reads_with_its_shape() {
    let (emb, want) = fixture();
    assert_eq!(emb.len() as u64, want["n_words"].as_u64().unwrap());
    assert_eq!(emb.dim() as u64, want["dim"].as_u64().unwrap());
}

#[test]
fn neighbours_similarities_and_analogies_equal_gensims() {
    let (emb, want) = fixture();
    for (word, list) in want["most_similar"].as_object().unwrap() {
        check(&emb.most_similar(word, 5).unwrap(), &pairs(list));
    }
    for s in want["similarity"].as_array().unwrap() {
        let (a, b, sim) = (
            s[0].as_str().unwrap(),
            s[1].as_str().unwrap(),
            s[2].as_f64().unwrap(),
        );
        assert!((emb.similarity(a, b).unwrap() as f64 - sim).abs() < 1e-5);
    }
    for q in want["analogy"].as_array().unwrap() {
        let [a, b, c] = [0, 1, 2].map(|i| q[i].as_str().unwrap());
        check(&emb.analogy(a, b, c, 3).unwrap(), &pairs(&q[3]));
    }
}

#[test]
fn what_the_crate_writes_reads_back_identically() {
    let (emb, _) = fixture();
    let path = std::env::temp_dir().join(format!("w2v-gensim-rt-{}.txt", std::process::id()));
    emb.save(&path).unwrap();
    let back = Embeddings::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back.words(), emb.words());
    for w in emb.words() {
        assert_eq!(back.vector(w).unwrap(), emb.vector(w).unwrap(), "{w}");
    }
}
