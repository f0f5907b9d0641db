//! Our encoder against Python tiktoken, with no download: two small tokenizers trained by
//! this crate (`tests/fixtures/bpe/tiny_*.tiktoken`) and the ids Python tiktoken 0.14.0
//! gives with those files for 331 texts (`expected.json`, made by `make_expected.py`).

use std::path::{Path, PathBuf};

use llm_lessons::bpe::{Allowed, Encoding, Pattern};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bpe")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn texts() -> Vec<String> {
    serde_json::from_value(json("texts.json")).unwrap()
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn tiny_tokenizers_give_tiktokens_ids() {
    let texts = texts();
    let expected = json("expected.json");
    for (name, pattern) in [
        ("tiny_gpt2", Pattern::Gpt2),
        ("tiny_cl100k", Pattern::Cl100k),
    ] {
        let enc = Encoding::load_tiktoken(fixture(&format!("{name}.tiktoken")), pattern).unwrap();
        assert_eq!(enc.special_token("<|endoftext|>").unwrap(), 1000);
        let ordinary = ids(&expected[name]["ordinary"]);
        let special = ids(&expected[name]["special"]);
        assert_eq!(ordinary.len(), texts.len());
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(
                enc.encode_ordinary(text),
                ordinary[i],
                "{name}, text {i}: {text:?}"
            );
            assert_eq!(
                enc.encode(text, Allowed::All).unwrap(),
                special[i],
                "{name} allowed_special=all, text {i}: {text:?}"
            );
            assert_eq!(enc.decode(&ordinary[i]).unwrap(), *text);
        }
    }
}

#[test]
fn tiny_tokenizers_with_fancy_regex_agree_too() {
    // The pieces from the `regex` crate and the rule for the lookahead, against the
    // pattern run as written.
    let texts = texts();
    for pattern in [Pattern::Gpt2, Pattern::Cl100k] {
        let fancy = llm_lessons::bpe::Split::fancy(pattern.regex()).unwrap();
        for text in &texts {
            assert_eq!(
                pattern.split().pieces(text),
                fancy.pieces(text),
                "{pattern:?} {text:?}"
            );
        }
    }
}
