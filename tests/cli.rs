//! The `llm` binary end to end: every command on small corpora, and every user mistake
//! ending in an `error:` line and exit code 1, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llm-lessons-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn llm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs `llm`, expecting success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = llm(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "llm {args:?} failed:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `llm`, expecting failure with exit code 1 and no panic; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = llm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "llm {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("panicked"));
    stderr
}

/// The number after `name` on the line that starts with it.
fn figure(stdout: &str, name: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no line {name:?} in:\n{stdout}"));
    line[name.len()..]
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// Writes a toy-world corpus with the CLI itself.
fn toy_corpus(dir: &Path, name: &str, sentences: usize, seed: u64) -> String {
    let path = dir.join(name);
    let p = path.to_str().unwrap();
    let out = ok(&[
        "data",
        "toy-world",
        "--sentences",
        &sentences.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        p,
    ]);
    assert!(out.contains("true cross-entropy"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        sentences
    );
    p.to_string()
}

#[test]
fn train_eval_sample_and_arpa_agree() {
    let dir = temp_dir("roundtrip");
    let train = toy_corpus(&dir, "train.txt", 1500, 1);
    let test = toy_corpus(&dir, "test.txt", 300, 3);
    let arpa = dir.join("model.arpa");
    let arpa = arpa.to_str().unwrap();
    let model = ["--order", "3", "--smoothing", "mkn"];

    let trained = ok(&[
        &["ngram", "train", "--corpus", &train, "--out", arpa][..],
        &model,
    ]
    .concat());
    assert!(
        trained.contains("held out:") && trained.contains("discounts:"),
        "{trained}"
    );
    assert!(figure(&trained, "perplexity").is_finite());
    assert!(Path::new(arpa).exists());

    let in_memory = ok(&[
        &["ngram", "eval", "--corpus", &train, "--test", &test][..],
        &model,
    ]
    .concat());
    let from_file = ok(&["ngram", "eval", "--arpa", arpa, "--test", &test]);
    let (a, b) = (
        figure(&in_memory, "perplexity"),
        figure(&from_file, "perplexity"),
    );
    assert!(a.is_finite() && a > 1.0, "{in_memory}");
    assert!((a - b).abs() <= 1e-3 * a, "in memory {a} vs ARPA {b}");
    assert_eq!(figure(&in_memory, "events"), figure(&from_file, "events"));
    assert_eq!(figure(&in_memory, "zero-prob"), 0.0);

    let args = [
        &[
            "ngram", "sample", "--corpus", &train, "--count", "4", "--seed", "9",
        ][..],
        &model,
    ]
    .concat();
    let samples = ok(&args);
    assert_eq!(samples.lines().count(), 4, "{samples}");
    assert_eq!(samples, ok(&args), "the same seed gives the same sentences");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mle_on_unseen_text_reports_zero_probabilities() {
    let dir = temp_dir("mle");
    let train = dir.join("train.txt");
    std::fs::write(&train, "The cat sat. The dog sat. The cat ran.\n").unwrap();
    let test = dir.join("test.txt");
    std::fs::write(&test, "The dog ran.\n").unwrap();
    let args = [
        "ngram",
        "eval",
        "--corpus",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
    ];
    let out = ok(&[
        &args[..],
        &["--order", "2", "--smoothing", "mle", "--heldout-frac", "0"],
    ]
    .concat());
    // P(ran | dog) = 0: one zero-probability event, infinite perplexity.
    assert_eq!(figure(&out, "zero-prob"), 1.0, "{out}");
    assert!(figure(&out, "perplexity").is_infinite(), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn toy_corpus_needs_no_file() {
    let out = ok(&[
        "ngram",
        "eval",
        "--corpus",
        "toy",
        "--sentences",
        "2000",
        "--test",
        "toy",
    ]);
    let (model, truth) = (figure(&out, "perplexity"), figure(&out, "true perplexity"));
    assert!(truth > 1.0 && model > truth, "{out}");
    let samples = ok(&[
        "ngram",
        "sample",
        "--corpus",
        "toy",
        "--sentences",
        "500",
        "--count",
        "2",
    ]);
    assert_eq!(samples.lines().count(), 2);
}

#[test]
fn user_mistakes_are_errors_not_panics() {
    let dir = temp_dir("mistakes");
    let missing = dir.join("no_such_corpus.txt");
    let bad = dir.join("latin1.txt");
    std::fs::write(&bad, b"caf\xe9 au lait\n").unwrap();
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let good = dir.join("good.txt");
    std::fs::write(&good, "The cat sat. The dog sat. The cat ran.\n").unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let e = fails(&["ngram", "train", "--corpus", &s(&missing)]);
    assert!(
        e.contains("no_such_corpus.txt") && e.contains("cannot read"),
        "{e}"
    );
    let e = fails(&["ngram", "train", "--corpus", &s(&bad)]);
    assert!(e.contains("latin1.txt") && e.contains("not UTF-8"), "{e}");
    let e = fails(&["ngram", "eval", "--corpus", &s(&good), "--test", &s(&empty)]);
    assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");
    let e = fails(&["ngram", "train", "--corpus", &s(&good), "--order", "0"]);
    assert!(e.contains("order"), "{e}");
    let e = fails(&[
        "ngram",
        "train",
        "--corpus",
        &s(&good),
        "--smoothing",
        "laplace",
        "--out",
        &s(&dir.join("m.arpa")),
    ]);
    assert!(e.contains("ARPA") && e.contains("kn or mkn"), "{e}");
    let e = fails(&[
        "ngram",
        "sample",
        "--corpus",
        &s(&good),
        "--temperature",
        "0",
    ]);
    assert!(e.contains("temperature"), "{e}");
    let e = fails(&["ngram", "eval", "--arpa", &s(&good), "--test", &s(&good)]);
    assert!(e.contains("good.txt"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tour_writes_its_files() {
    // The quick tour: every chapter wired and its files written, in seconds. The full tour
    // runs in CI in release (`cargo run --release`); its quality bars are in real_data.rs.
    let dir = temp_dir("tour");
    let out = ok(&["tour", "--quick", "--out", dir.to_str().unwrap()]);
    assert!(
        out.contains("Best (*)") && out.contains("tour done"),
        "{out}"
    );
    for f in [
        "toy_world_train.txt",
        "toy_world_test.txt",
        "perplexity_by_order.svg",
        "model.arpa",
    ] {
        assert!(dir.join("ch01").join(f).exists(), "{f} missing");
    }
    assert!(out.contains("bytes/token"), "{out}");
    for f in [
        "ch02/softmax_loss.svg",
        "ch02/people_pca.svg",
        "ch02/toy_world_vectors.txt",
        "ch03/toy_world_1024.tiktoken",
        "ch03/bytes_per_token.svg",
        "ch04/loss.svg",
        "ch04/lr_schedule.svg",
        "ch04/rope_rotations.svg",
        "ch04/activations.svg",
        "ch04/kv_cache.svg",
        "ch04/attention_subject.svg",
        "ch04/model/config.json",
        "ch04/model/model.safetensors",
        "ch05/loss.svg",
        "ch05/cross_entropy.csv",
        "ch05/adapter/adapter_config.json",
        "ch05/adapter/adapter_model.safetensors",
        "ch06/formats.csv",
        "ch06/weights.svg",
        "ch06/rounding_error.svg",
        "ch06/snr_by_bits.svg",
        "ch06/bits_vs_cross_entropy.svg",
        "ch06/test_ids.txt",
        "ch08/table.md",
        "ch08/dpo_rewards.svg",
        "ch09/load.svg",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    assert!(out.contains("after the LoRA fine-tune"), "{out}");
    assert!(out.contains("| SFT + DPO (Llama 3) |"), "{out}");
    assert!(
        out.contains("MLA (latent 64 + RoPE key 16)") && out.contains("MTP drafts accepted"),
        "{out}"
    );
    assert!(
        out.contains("why blocks, at 8 bits") && out.contains("q4_1"),
        "{out}"
    );
    // Even 20 steps take llama-tiny well below the uniform guess, ln 276 = 5.6 nats/word.
    let nats: f64 = out
        .split("test cross-entropy, nats/word:   llama-tiny ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no llama-tiny cross-entropy in:\n{out}"));
    assert!(
        nats < 4.5,
        "llama-tiny after the quick tour: {nats} nats/word"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lines_reads_one_sentence_a_line() {
    let dir = temp_dir("lines");
    let train = dir.join("train.txt");
    // No punctuation: as prose, two sentences (the blank line ends a paragraph); with
    // --lines, three.
    std::fs::write(&train, "the cat sat\nthe dog sat\n\nthe cat ran\n").unwrap();
    let t = train.to_str().unwrap();
    let prose = ok(&[
        "ngram",
        "eval",
        "--corpus",
        t,
        "--test",
        t,
        "--heldout-frac",
        "0",
    ]);
    let lines = ok(&[
        "ngram",
        "eval",
        "--lines",
        "--corpus",
        t,
        "--test",
        t,
        "--heldout-frac",
        "0",
    ]);
    // 9 words, plus one end token a sentence.
    assert_eq!(figure(&lines, "events"), 12.0, "{lines}");
    assert_eq!(figure(&prose, "events"), 11.0, "{prose}");
}

// ---------------------------------------------------------------------------------------
// llm bpe (chapter 3)
// ---------------------------------------------------------------------------------------

/// Runs `llm` with `input` on stdin.
fn llm_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // A run that fails early (a missing file) may exit before reading its input.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn bpe_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bpe")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn bpe_train_encode_decode() {
    let dir = temp_dir("bpe");
    let corpus = toy_corpus(&dir, "train.txt", 2000, 1);
    let ranks = dir.join("toy.tiktoken");
    let ranks = ranks.to_str().unwrap();
    let out = ok(&[
        "bpe",
        "train",
        "--corpus",
        &corpus,
        "--vocab-size",
        "300",
        "--pattern",
        "cl100k",
        "--out",
        ranks,
        "--show",
        "3",
    ]);
    assert!(out.contains("44 merges, vocabulary 300"), "{out}");
    assert_eq!(out.matches("merge ").count(), 3, "{out}");
    assert_eq!(std::fs::read_to_string(ranks).unwrap().lines().count(), 300);

    let text = "the cat sees the dog.\n  Ünïcödé 😀<|endoftext|>";
    let tok = ["--pattern", "cl100k", "--ranks", ranks];
    let enc = llm_stdin(&[&["bpe", "encode"][..], &tok].concat(), text.as_bytes());
    assert!(enc.status.success());
    let ids = String::from_utf8(enc.stdout).unwrap();
    assert!(
        !ids.contains("300"),
        "special text is ordinary by default: {ids}"
    );
    let dec = llm_stdin(&[&["bpe", "decode"][..], &tok].concat(), ids.as_bytes());
    assert_eq!(String::from_utf8(dec.stdout).unwrap(), text);

    let special = llm_stdin(
        &[&["bpe", "encode", "--allow-special"][..], &tok].concat(),
        text.as_bytes(),
    );
    let ids = String::from_utf8(special.stdout).unwrap();
    assert!(ids.trim_end().ends_with(" 300"), "{ids}");
    let show = llm_stdin(&[&["bpe", "show"][..], &tok].concat(), b"the cat");
    assert!(String::from_utf8(show.stdout)
        .unwrap()
        .contains("tokens for 7 bytes"));
}

#[test]
fn bpe_encode_matches_tiktoken_on_the_fixture() {
    // expected.json: Python tiktoken's ids for "Hello world, it's 2026!" with this file.
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bpe_fixture("expected.json")).unwrap())
            .unwrap();
    let want: Vec<String> = expected["tiny_gpt2"]["ordinary"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let ranks = bpe_fixture("tiny_gpt2.tiktoken");
    let out = llm_stdin(
        &["bpe", "encode", "--pattern", "gpt2", "--ranks", &ranks],
        b"Hello world, it's 2026!",
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        want.join(" ")
    );
}

/// `llm bpe encode --model` takes a model's tokenizer: a GGUF file's (here the fixture Llama
/// with a BPE of the smollm split, written by `llm quant quantize`) or a folder's. It prints
/// the ids of the rank file's tokenizer, digits one by one, special-token text matched, no
/// BOS; `decode --model` gives the text back.
#[test]
fn bpe_encode_with_a_models_tokenizer() {
    let dir = temp_dir("bpe-model");
    let corpus = toy_corpus(&dir, "train.txt", 2000, 3);
    // two spaces before a digit are a piece of their own: "  " becomes a token
    let mut text = std::fs::read_to_string(&corpus).unwrap();
    text.push_str(&"a  1  2  3\n".repeat(200));
    std::fs::write(&corpus, text).unwrap();
    let ranks = dir.join("ranks.tiktoken");
    let ranks = ranks.to_str().unwrap();
    ok(&[
        "bpe",
        "train",
        "--corpus",
        &corpus,
        "--vocab-size",
        "300",
        "--pattern",
        "smollm",
        "--out",
        ranks,
    ]);
    // the fixture Llama (vocabulary 320) with this tokenizer (300 ranks + <|endoftext|>)
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama-tiny");
    let folder = dir.join("model");
    std::fs::create_dir_all(&folder).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), folder.join(file)).unwrap();
    }
    std::fs::copy(ranks, folder.join("tokenizer.tiktoken")).unwrap();
    std::fs::write(folder.join("tokenizer.json"), r#"{"pattern": "smollm"}"#).unwrap();
    let gguf = dir.join("model.gguf");
    let (folder, gguf) = (folder.to_str().unwrap(), gguf.to_str().unwrap());
    ok(&[
        "quant", "quantize", "--model", folder, "--format", "f32", "--out", gguf,
    ]);

    let text = "the cat sees the dog in 2024.\n  a  22 <|endoftext|>Ünïcödé 😀";
    let encode_text = |args: &[&str], text: &str| {
        let out = llm_stdin(&[&["bpe", "encode"][..], args].concat(), text.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let encode = |args: &[&str]| encode_text(args, text);
    let want = encode(&["--pattern", "smollm", "--ranks", ranks, "--allow-special"]);
    assert_eq!(encode(&["--model", gguf]), want);
    assert_eq!(encode(&["--model", folder]), want);
    // "2024" is four ids, its digits' bytes; <|endoftext|> is its id after the 300 ranks
    assert!(want.contains(" 50 48 50 52 "), "{want}");
    assert!(want.contains(" 300 "), "{want}");
    // the smollm split: "  " then "2", where GPT-2's would give " " then " 2"
    let ids = encode_text(&["--model", gguf], "a  2");
    assert_eq!(ids.split_whitespace().count(), 3, "{ids}");
    assert!(ids.trim_end().ends_with(" 50"), "{ids}");
    let dec = llm_stdin(&["bpe", "decode", "--model", gguf], want.as_bytes());
    assert_eq!(String::from_utf8(dec.stdout).unwrap(), text);
    // with --model, nothing else names the tokenizer
    let out = llm(&["bpe", "encode", "--model", gguf, "--ranks", ranks]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses --ranks with --model"
    );
    let e = fails(&["bpe", "encode", "--model", &corpus]);
    assert!(e.contains("not a GGUF file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bpe_mistakes_are_errors_not_panics() {
    let dir = temp_dir("bpe-errors");
    let ranks = bpe_fixture("tiny_gpt2.tiktoken");
    let tok = ["--pattern", "gpt2", "--ranks", ranks.as_str()];
    let run = |args: &[&str], input: &[u8]| {
        let out = llm_stdin(args, input);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && !stderr.contains("panicked"),
            "{stderr}"
        );
        stderr
    };
    let e = run(&[&["bpe", "decode"][..], &tok].concat(), b"104 99999");
    assert!(e.contains("token id 99999"), "{e}");
    let e = run(&[&["bpe", "decode"][..], &tok].concat(), b"104 195");
    assert!(e.contains("UTF-8"), "{e}");
    let e = run(&[&["bpe", "decode"][..], &tok].concat(), b"12 x");
    assert!(e.contains("\"x\" is not a token id"), "{e}");
    let e = run(
        &[&["bpe", "encode", "--special", "<|im_start|>"][..], &tok].concat(),
        b"x",
    );
    assert!(
        e.contains("unknown special token") && e.contains("<|endoftext|>"),
        "{e}"
    );
    let ok_special = llm_stdin(
        &[&["bpe", "encode", "--special", "<|endoftext|>"][..], &tok].concat(),
        b"a<|endoftext|>",
    );
    assert_eq!(
        String::from_utf8(ok_special.stdout).unwrap().trim_end(),
        "97 1000"
    );
    let e = run(&[&["bpe", "encode"][..], &tok].concat(), b"\xff\xfe");
    assert!(e.contains("not UTF-8"), "{e}");
    let bad = dir.join("bad.tiktoken");
    std::fs::write(&bad, "IQ== 0\nnot-base64! 1\n").unwrap();
    let e = run(
        &[
            "bpe",
            "encode",
            "--pattern",
            "gpt2",
            "--ranks",
            bad.to_str().unwrap(),
        ],
        b"x",
    );
    assert!(e.contains("line 2") && e.contains("base64"), "{e}");
    let e = run(
        &[
            "bpe",
            "encode",
            "--encoding",
            "r50k_base",
            "--ranks",
            "/no/such/file",
        ],
        b"x",
    );
    assert!(e.contains("/no/such/file"), "{e}");
    let corpus = dir.join("empty.txt");
    std::fs::write(&corpus, "").unwrap();
    let out = dir.join("x.tiktoken");
    let train = |vocab_size: &str| {
        fails(&[
            "bpe",
            "train",
            "--corpus",
            corpus.to_str().unwrap(),
            "--vocab-size",
            vocab_size,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let e = train("300");
    assert!(e.contains("empty"), "{e}");
    let e = train("100");
    assert!(e.contains("at least 256"), "{e}");
}

// -------------------------------------------------------------------------------------------
// llm word2vec
// -------------------------------------------------------------------------------------------

#[test]
fn word2vec_trains_and_answers_on_the_toy_world() {
    let dir = temp_dir("w2v");
    let vectors = dir.join("v.txt");
    let v = vectors.to_str().unwrap();
    let out = ok(&[
        "word2vec",
        "train",
        "--corpus",
        "toy",
        "--sentences",
        "5000",
        "--dim",
        "30",
        "--min-count",
        "1",
        "--threads",
        "1",
        "--epochs",
        "3",
        "--out",
        v,
    ]);
    assert!(out.contains("epoch 3: mean loss per pair"), "{out}");
    assert!(out.contains("effective words/s"), "{out}");
    let n = ok(&[
        "word2vec",
        "neighbors",
        "--vectors",
        v,
        "--k",
        "3",
        "king",
        "dog",
    ]);
    assert_eq!(n.lines().count(), 2, "{n}");
    assert!(n.starts_with("king: "), "{n}");
    let a = ok(&[
        "word2vec",
        "analogy",
        "--vectors",
        v,
        "king",
        "man",
        "woman",
    ]);
    assert!(a.starts_with("king - man + woman:"), "{a}");
    let pairs = dir.join("pairs.tsv");
    std::fs::write(
        &pairs,
        "# a comment\nking\tqueen\t8\nking\tdog\t1\ndog\tcat\t7\nking\tzebra\t2\n",
    )
    .unwrap();
    let questions = dir.join("q.txt");
    std::fs::write(
        &questions,
        ": people\nman king woman queen\nboy prince girl princess\n",
    )
    .unwrap();
    let e = ok(&[
        "word2vec",
        "eval",
        "--vectors",
        v,
        "--similarity",
        pairs.to_str().unwrap(),
        "--analogies",
        questions.to_str().unwrap(),
    ]);
    assert!(e.contains("on 3 pairs (OOV pairs 25.0%)"), "{e}");
    assert!(e.contains("on 2 of 2 questions"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn word2vec_tricks_prints_every_variant() {
    let out = ok(&[
        "word2vec",
        "tricks",
        "--sentences",
        "300",
        "--epochs",
        "1",
        "--seeds",
        "1",
    ]);
    for variant in [
        "all tricks",
        "no sub-sampling",
        "fixed windows",
        "constant learning rate",
        "2 threads",
    ] {
        assert!(out.contains(variant), "{out}");
    }
}

#[test]
fn word2vec_mistakes_are_clear_errors() {
    let dir = temp_dir("w2v-err");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, " \n\n").unwrap();
    let out = dir.join("v.txt");
    let o = out.to_str().unwrap();
    let train = |corpus: &str, extra: &[&str]| {
        let mut args = vec!["word2vec", "train", "--corpus", corpus, "--out", o];
        args.extend_from_slice(extra);
        fails(&args)
    };
    assert!(train(empty.to_str().unwrap(), &[]).contains("empty"));
    assert!(train("/no/such/file.txt", &[]).contains("/no/such/file.txt"));
    let rare = dir.join("rare.txt");
    std::fs::write(&rare, "one two three. four five six.").unwrap();
    assert!(train(rare.to_str().unwrap(), &[]).contains("--min-count"));
    assert!(train("toy", &["--sentences", "100", "--dim", "0"]).contains("dim"));
    assert!(train("toy", &["--sentences", "100", "--alpha=-1"]).contains("alpha"));
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 au lait\n").unwrap();
    assert!(train(latin1.to_str().unwrap(), &[]).contains("UTF-8"));
    assert!(!out.exists(), "no vectors file after a failed run");

    let v = dir.join("v.txt");
    std::fs::write(&v, "2 3\nking 1 0 0\nqueen 0 1 0\n").unwrap();
    let v = v.to_str().unwrap();
    let e = fails(&["word2vec", "neighbors", "--vectors", v, "prince"]);
    assert!(e.contains("\"prince\" is not in the vocabulary"), "{e}");
    assert!(fails(&[
        "word2vec",
        "analogy",
        "--vectors",
        v,
        "king",
        "man",
        "woman"
    ])
    .contains("\"man\""));
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "2 3\nking 1 0 0\nqueen 0 1\n").unwrap();
    let e = fails(&[
        "word2vec",
        "neighbors",
        "--vectors",
        bad.to_str().unwrap(),
        "king",
    ]);
    assert!(e.contains("line 3") && e.contains("2 values"), "{e}");
    assert!(fails(&["word2vec", "eval", "--vectors", v]).contains("--similarity"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A small model trained in a few steps: tiny sizes, so that the whole test takes seconds.
fn gpt_train(dir: &Path, corpus: &str, preset: &str, extra: &[&str]) -> (String, String) {
    let out = dir.join(format!("model-{preset}"));
    let out_s = out.to_str().unwrap().to_string();
    let mut args = vec![
        "gpt",
        "train",
        "--preset",
        preset,
        "--corpus",
        corpus,
        "--batch",
        "4",
        "--context",
        "32",
        "--d-model",
        "32",
        "--layers",
        "2",
        "--d-ff",
        "64",
        "--eval-every",
        "10",
        "--out",
        &out_s,
    ];
    if !extra.contains(&"--steps") {
        args.extend_from_slice(&["--steps", "30"]);
    }
    args.extend_from_slice(extra);
    let stdout = ok(&args);
    (out_s, stdout)
}

#[test]
fn gpt_trains_evaluates_and_generates() {
    let dir = temp_dir("gpt");
    let corpus = toy_corpus(&dir, "toy.txt", 1000, 1);
    let (model, stdout) = gpt_train(&dir, &corpus, "llama-tiny", &[]);
    assert!(stdout.contains("vocab 256"), "{stdout}");
    let held_out = figure(&stdout, "held-out loss");
    assert!(figure(&stdout, "train loss").is_finite());
    // 30 steps take the loss from ln 256 = 5.55 well down
    assert!(held_out < 5.0, "{stdout}");
    let m = Path::new(&model);
    assert!(m.join("config.json").exists() && m.join("model.safetensors").exists());
    let config = std::fs::read_to_string(m.join("config.json")).unwrap();
    assert!(config.contains("LlamaForCausalLM"), "{config}");

    // eval: the bytes of a text as ids, or the text itself, give the same cross-entropy
    let text: String = std::fs::read_to_string(&corpus).unwrap()[..200].to_string();
    let ids: Vec<String> = text.bytes().map(|b| b.to_string()).collect();
    let ids_file = dir.join("ids.txt");
    let text_file = dir.join("text.txt");
    std::fs::write(&ids_file, ids.join(" ")).unwrap();
    std::fs::write(&text_file, &text).unwrap();
    let by_ids = ok(&[
        "gpt",
        "eval",
        "--model",
        &model,
        "--ids",
        ids_file.to_str().unwrap(),
    ]);
    let by_text = ok(&[
        "gpt",
        "eval",
        "--model",
        &model,
        "--text",
        text_file.to_str().unwrap(),
    ]);
    let h = figure(&by_ids, "cross-entropy");
    assert!(h > 0.0 && h < 5.5, "{by_ids}");
    assert_eq!(h, figure(&by_text, "cross-entropy"));

    // greedy generation is deterministic; sampling with a seed too
    let gen = |extra: &[&str]| {
        let mut args = vec![
            "gpt",
            "generate",
            "--model",
            &model,
            "--prompt-ids",
            "116 104 101 32",
            "--max-new-tokens",
            "12",
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let greedy = gen(&["--greedy"]);
    let new: Vec<u32> = greedy
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(new.len(), 12, "{greedy}");
    assert!(new.iter().all(|&id| id < 256));
    assert_eq!(gen(&["--greedy"]), greedy);
    let sampled = gen(&[
        "--temperature",
        "0.8",
        "--top-k",
        "20",
        "--top-p",
        "0.9",
        "--seed",
        "4",
    ]);
    assert_eq!(
        gen(&[
            "--temperature",
            "0.8",
            "--top-k",
            "20",
            "--top-p",
            "0.9",
            "--seed",
            "4"
        ]),
        sampled
    );
    let text_out = ok(&[
        "gpt",
        "generate",
        "--model",
        &model,
        "--prompt",
        "the ",
        "--max-new-tokens",
        "8",
        "--greedy",
    ]);
    assert!(text_out.starts_with("the "), "{text_out}");

    // gpt2-tiny on the ids of a BPE tokenizer: the folder keeps the tokenizer for --text
    let tok = dir.join("tok.tiktoken");
    ok(&[
        "bpe",
        "train",
        "--corpus",
        &corpus,
        "--vocab-size",
        "300",
        "--out",
        tok.to_str().unwrap(),
    ]);
    let (model2, stdout) = gpt_train(
        &dir,
        &corpus,
        "gpt2-tiny",
        &["--tokenizer", tok.to_str().unwrap()],
    );
    assert!(stdout.contains("vocab 301"), "{stdout}"); // 300 ranks + <|endoftext|>
    assert!(Path::new(&model2).join("tokenizer.tiktoken").exists());
    let h2 = figure(
        &ok(&[
            "gpt",
            "eval",
            "--model",
            &model2,
            "--text",
            text_file.to_str().unwrap(),
        ]),
        "cross-entropy",
    );
    assert!(h2.is_finite() && h2 > 0.0);
    let out2 = ok(&[
        "gpt",
        "generate",
        "--model",
        &model2,
        "--prompt",
        "the ",
        "--max-new-tokens",
        "5",
        "--greedy",
    ]);
    assert!(out2.starts_with("the "), "{out2}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gpt_mistakes_are_clear_errors() {
    let dir = temp_dir("gpt-errors");
    let corpus = toy_corpus(&dir, "toy.txt", 300, 1);
    let (model, _) = gpt_train(&dir, &corpus, "llama-tiny", &["--steps", "2"]);
    let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
    std::fs::write(d("empty.txt"), "").unwrap();
    let err = fails(&[
        "gpt",
        "train",
        "--corpus",
        &d("empty.txt"),
        "--steps",
        "2",
        "--out",
        &d("m"),
    ]);
    assert!(err.contains("empty"), "{err}");
    let err = fails(&[
        "gpt",
        "train",
        "--preset",
        "gpt5",
        "--corpus",
        &corpus,
        "--out",
        &d("m"),
    ]);
    assert!(err.contains("unknown preset"), "{err}");
    // the pre-training stages: malformed schedules and mixes are errors before training
    for (flag, spec, says) in [
        ("--batch-schedule", "4:10", "step 0"),
        ("--seq-schedule", "16:0,8", "no ':'"),
        ("--seq-schedule", "16:0,64:5", "context 32"),
        ("--anneal-mix", "toy.txt", "FILE:FRACTION"),
    ] {
        let err = fails(&[
            "gpt",
            "train",
            "--corpus",
            &corpus,
            "--context",
            "32",
            "--steps",
            "6",
            flag,
            spec,
            "--out",
            &d("m"),
        ]);
        assert!(err.contains(says), "{flag} {spec}: {err}");
    }
    // and a run with all of them trains
    let (_, stdout) = gpt_train(
        &dir,
        &corpus,
        "llama-tiny",
        &[
            "--steps",
            "6",
            "--batch-schedule",
            "2:0,4:3",
            "--seq-schedule",
            "8:0,32:3",
            "--long-rope-theta",
            "500000",
            "--anneal-steps",
            "2",
            "--anneal-mix",
            &format!("{corpus}:0.5"),
        ],
    );
    assert!(figure(&stdout, "held-out loss").is_finite(), "{stdout}");
    let gen = |prompt: &[&str]| {
        let mut args = vec![
            "gpt",
            "generate",
            "--model",
            &model,
            "--max-new-tokens",
            "3",
        ];
        args.extend_from_slice(prompt);
        fails(&args)
    };
    assert!(gen(&["--prompt", ""]).contains("empty"));
    assert!(gen(&["--prompt-ids", " "]).contains("empty"));
    assert!(gen(&["--prompt-ids", "1 256"]).contains("token id 256 is out of range"));
    assert!(gen(&["--prompt-ids", "1 two"]).contains("\"two\" is not a token id"));
    let err = fails(&[
        "gpt",
        "generate",
        "--model",
        &model,
        "--prompt-ids",
        "1",
        "--max-new-tokens",
        "40",
    ]);
    assert!(err.contains("context of 32"), "{err}");
    // a missing folder, a truncated weights file
    let err = fails(&["gpt", "eval", "--model", &d("nowhere"), "--ids", &corpus]);
    assert!(err.contains("config.json"), "{err}");
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::copy(
        Path::new(&model).join("config.json"),
        cut.join("config.json"),
    )
    .unwrap();
    let weights = std::fs::read(Path::new(&model).join("model.safetensors")).unwrap();
    std::fs::write(cut.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = fails(&[
        "gpt",
        "generate",
        "--model",
        cut.to_str().unwrap(),
        "--prompt-ids",
        "1",
    ]);
    assert!(err.contains("model.safetensors"), "{err}");
    // eval: ids out of range, too few ids
    std::fs::write(d("ids.txt"), "1 2 300").unwrap();
    let err = fails(&["gpt", "eval", "--model", &model, "--ids", &d("ids.txt")]);
    assert!(err.contains("token id 300"), "{err}");
    std::fs::write(d("one.txt"), "7").unwrap();
    fails(&["gpt", "eval", "--model", &model, "--ids", &d("one.txt")]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run checkpointed every 5 steps, resumed from its step-5 checkpoint in a new process,
/// ends with the same weights and log as the run never stopped; averaging the last two
/// checkpoints saves their mean; resuming on other data or with another plan is an error.
#[test]
fn gpt_checkpoints_resume_and_average() {
    let dir = temp_dir("gpt-resume");
    let corpus = toy_corpus(&dir, "toy.txt", 400, 3);
    let every = ["--steps", "10", "--checkpoint-every", "5"];
    let (straight, _) = gpt_train(&dir, &corpus, "gpt2-tiny", &every);
    let s = Path::new(&straight);
    for f in [
        "train_log.csv",
        "loss.svg",
        "checkpoints/step-0000005/trainer.json",
    ] {
        assert!(s.join(f).exists(), "{f}");
    }
    let resumed = dir.join("resumed").to_str().unwrap().to_string();
    let step5 = s.join("checkpoints/step-0000005");
    let step5 = step5.to_str().unwrap();
    let stdout = ok(&[
        "gpt",
        "train",
        "--corpus",
        &corpus,
        "--resume",
        step5,
        "--out",
        &resumed,
        "--eval-every",
        "10",
    ]);
    assert!(stdout.contains("resuming"), "{stdout}");
    let read = |d: &str, f: &str| std::fs::read(Path::new(d).join(f)).unwrap();
    assert!(read(&straight, "model.safetensors") == read(&resumed, "model.safetensors"));
    assert_eq!(
        read(&straight, "train_log.csv"),
        read(&resumed, "train_log.csv")
    );
    let log = String::from_utf8(read(&resumed, "train_log.csv")).unwrap();
    assert_eq!(log.lines().count(), 11, "{log}");

    // --average-last 2 in the same run: the mean of the checkpoints of steps 5 and 10
    let avg_dir = dir.join("avg");
    std::fs::create_dir_all(&avg_dir).unwrap();
    let (avg, stdout) = gpt_train(
        &avg_dir,
        &corpus,
        "gpt2-tiny",
        &[&every[..], &["--average-last", "2"]].concat(),
    );
    assert!(
        stdout.contains("averaged the checkpoints of steps 5, 10"),
        "{stdout}"
    );
    let weights = |d: &Path| llm_lessons::gpt::checkpoint::load_model(d).unwrap().params;
    let (a, b, m) = (
        weights(step5.as_ref()),
        weights(&s.join("checkpoints/step-0000010")),
        weights(Path::new(&avg)),
    );
    for ((x, y), z) in a.tensors().iter().zip(b.tensors()).zip(m.tensors()) {
        for ((x, y), z) in x.iter().zip(y).zip(z) {
            assert!((z - (x + y) / 2.0).abs() <= 1e-6 * (1.0 + z.abs()));
        }
    }

    let other = toy_corpus(&dir, "other.txt", 400, 4);
    let err = fails(&[
        "gpt", "train", "--corpus", &other, "--resume", step5, "--out", &avg,
    ]);
    assert!(err.contains("give the same files"), "{err}");
    let err = fails(&[
        "gpt", "train", "--corpus", &corpus, "--resume", step5, "--out", &avg, "--steps", "20",
    ]);
    assert!(err.contains("planned for 10 steps"), "{err}");
    std::fs::remove_file(s.join("checkpoints/step-0000005/trainer.safetensors")).unwrap();
    let err = fails(&[
        "gpt", "train", "--corpus", &corpus, "--resume", step5, "--out", &avg,
    ]);
    assert!(err.contains("trainer.safetensors"), "{err}");
    let out = llm(&[
        "gpt", "train", "--corpus", &corpus, "--resume", step5, "--out", &avg, "--lr", "1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses --lr with --resume"
    );
}

#[test]
fn lora_trains_evaluates_and_merges() {
    let dir = temp_dir("lora");
    let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let corpus = toy_corpus(&dir, "toy.txt", 300, 1);
    let (base, _) = gpt_train(&dir, &corpus, "llama-tiny", &["--steps", "5"]);
    let tune = toy_corpus(&dir, "tune.txt", 200, 2);
    let adapter = d("adapter");
    let out = ok(&[
        "lora",
        "train",
        "--model",
        &base,
        "--corpus",
        &tune,
        "--rank",
        "2",
        "--alpha",
        "4",
        "--targets",
        "q_proj,v_proj",
        "--steps",
        "6",
        "--batch",
        "2",
        "--out",
        &adapter,
    ]);
    // 2 layers x (q: 2 (32 + 32) + v: 2 (32 + 16)), of a model it does not change
    assert_eq!(figure(&out, "trainable:"), 448.0, "{out}");
    assert!(figure(&out, "held-out loss").is_finite(), "{out}");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "train_log.csv",
        "loss.svg",
    ] {
        assert!(dir.join("adapter").join(f).exists(), "{f} missing");
    }
    let config = std::fs::read_to_string(dir.join("adapter/adapter_config.json")).unwrap();
    assert!(
        config.contains("\"r\": 2") && config.contains("q_proj"),
        "{config}"
    );

    let text: String = std::fs::read_to_string(&tune).unwrap()[..300].to_string();
    let ids: Vec<String> = text.bytes().map(|b| b.to_string()).collect();
    std::fs::write(d("ids.txt"), ids.join(" ")).unwrap();
    std::fs::write(d("text.txt"), &text).unwrap();
    let eval = |what: &str, file: &str| {
        let out = ok(&[
            "lora",
            "eval",
            "--model",
            &base,
            "--adapter",
            &adapter,
            what,
            &d(file),
        ]);
        figure(&out, "cross-entropy")
    };
    let h = eval("--ids", "ids.txt");
    assert_eq!(h, eval("--text", "text.txt"));
    let h_base = figure(
        &ok(&["gpt", "eval", "--model", &base, "--ids", &d("ids.txt")]),
        "cross-entropy",
    );
    assert_ne!(h, h_base, "six steps move the adapted model");

    // merged, it is a plain model folder that `llm gpt eval` reads, to the same figure
    let merged = d("merged");
    let out = ok(&[
        "lora",
        "merge",
        "--model",
        &base,
        "--adapter",
        &adapter,
        "--out",
        &merged,
    ]);
    assert!(out.contains("merged 4 adapters"), "{out}");
    let h_merged = figure(
        &ok(&["gpt", "eval", "--model", &merged, "--ids", &d("ids.txt")]),
        "cross-entropy",
    );
    assert!((h - h_merged).abs() < 1e-5, "{h} {h_merged}");

    // rsLoRA on every projection
    let out = ok(&[
        "lora",
        "train",
        "--model",
        &base,
        "--corpus",
        &tune,
        "--rank",
        "4",
        "--alpha",
        "4",
        "--rslora",
        "--targets",
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        "--steps",
        "2",
        "--batch",
        "2",
        "--out",
        &d("all"),
    ]);
    assert!(out.contains("s = 2 on q_proj, k_proj"), "{out}");
    let config = std::fs::read_to_string(dir.join("all/adapter_config.json")).unwrap();
    assert!(config.contains("\"use_rslora\": true"), "{config}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lora_mistakes_are_clear_errors() {
    let dir = temp_dir("lora-errors");
    let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let corpus = toy_corpus(&dir, "toy.txt", 200, 1);
    let (base, _) = gpt_train(&dir, &corpus, "llama-tiny", &["--steps", "2"]);
    let train = |extra: &[&str]| -> Vec<String> {
        let args = [
            "lora", "train", "--model", &base, "--corpus", &corpus, "--steps", "2", "--batch", "2",
        ];
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let err = fails(&strs(&train(&["--rank", "0", "--out", &d("a")])));
    assert!(err.contains("rank"), "{err}");
    let err = fails(&strs(&train(&[
        "--targets",
        "q_proj,w_proj",
        "--out",
        &d("a"),
    ])));
    assert!(err.contains("w_proj"), "{err}");
    let err = fails(&[
        "lora",
        "train",
        "--model",
        &d("nowhere"),
        "--corpus",
        &corpus,
        "--out",
        &d("a"),
    ]);
    assert!(err.contains("nowhere"), "{err}");
    std::fs::write(d("ids.txt"), "1 2 3 4").unwrap();
    // no adapter files there
    let err = fails(&[
        "lora",
        "eval",
        "--model",
        &base,
        "--adapter",
        &d("nowhere"),
        "--ids",
        &d("ids.txt"),
    ]);
    assert!(err.contains("adapter_config.json"), "{err}");
    // an adapter trained on another base: v_proj has 4 key/value heads there, not 2
    ok(&strs(&train(&["--rank", "2", "--out", &d("adapter")])));
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_base, _) = gpt_train(
        &other,
        &corpus,
        "llama-tiny",
        &["--steps", "2", "--kv-heads", "4"],
    );
    let (adapter, ids, out) = (d("adapter"), d("ids.txt"), d("m"));
    for cmd in ["eval", "merge"] {
        let mut args = vec!["lora", cmd, "--model", &other_base, "--adapter", &adapter];
        if cmd == "eval" {
            args.extend_from_slice(&["--ids", &ids]);
        } else {
            args.extend_from_slice(&["--out", &out]);
        }
        let err = fails(&args);
        assert!(
            err.contains("v_proj.lora_B.weight") && err.contains("shape"),
            "{err}"
        );
    }
    assert!(!dir.join("m").exists(), "nothing written on a failed merge");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `llm quant quantize` writes the fixture Llama as GGUF in every format; `llm gpt eval`
/// and `generate` take the file where they take a folder. At f32 the file is the model:
/// the same cross-entropy and the same greedy ids as the folder. A bad file is an error.
#[test]
fn quant_quantize_writes_gguf_that_eval_and_generate_read() {
    let dir = temp_dir("quant");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama-tiny");
    let text: String = "the cat sat on the mat and the dog sat on the log. ".repeat(4);
    let text_file = dir.join("text.txt");
    std::fs::write(&text_file, &text).unwrap();
    let ids: Vec<String> = text.bytes().map(|b| b.to_string()).collect();
    let ids_file = dir.join("ids.txt");
    std::fs::write(&ids_file, ids.join(" ")).unwrap();
    let eval = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "gpt",
            "eval",
            "--model",
            model,
            "--ids",
            ids_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        figure(&ok(&args), "cross-entropy")
    };
    let greedy = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "gpt",
            "generate",
            "--model",
            model,
            "--prompt-ids",
            "116 104 101 32 99",
            "--max-new-tokens",
            "10",
            "--greedy",
        ];
        args.extend_from_slice(extra);
        ok(&args).trim().to_string()
    };
    let (h_folder, ids_folder) = (eval(fixture, &[]), greedy(fixture, &[]));
    for format in ["f32", "f16", "q8_0", "q4_0", "q4_1"] {
        let file = dir.join(format!("tiny-{format}.gguf"));
        let f = file.to_str().unwrap();
        let out = ok(&[
            "quant", "quantize", "--model", fixture, "--format", format, "--out", f,
        ]);
        assert!(
            out.contains("wrote") && out.contains("bits per weight"),
            "{out}"
        );
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(&bytes[..4], b"GGUF");
        let (h, h_exact) = (eval(f, &[]), eval(f, &["--exact"]));
        // the same text through the file's byte tokenizer
        let by_text = ok(&[
            "gpt",
            "eval",
            "--model",
            f,
            "--text",
            text_file.to_str().unwrap(),
        ]);
        assert_eq!(figure(&by_text, "cross-entropy"), h, "{format}");
        match format {
            "f32" => {
                assert_eq!((h, h_exact), (h_folder, h_folder));
                assert_eq!(greedy(f, &[]), ids_folder);
            }
            // the fixture's weights are N(0, 0.1): its loss is far from uniform's, and
            // each format moves it by little
            "f16" => assert!(
                (h - h_folder).abs() < 1e-3 * h_folder,
                "{format}: {h} vs {h_folder}"
            ),
            _ => assert!(
                (h - h_folder).abs() < 0.05 * h_folder,
                "{format}: {h} vs {h_folder}"
            ),
        }
        let prompt = ok(&[
            "gpt",
            "generate",
            "--model",
            f,
            "--prompt",
            "the ",
            "--max-new-tokens",
            "5",
            "--greedy",
        ]);
        assert!(prompt.starts_with("the "), "{prompt}");
    }
    // a truncated file and a file that is not GGUF are errors naming the file
    let whole = std::fs::read(dir.join("tiny-q8_0.gguf")).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let e = fails(&[
        "gpt",
        "eval",
        "--model",
        cut.to_str().unwrap(),
        "--ids",
        ids_file.to_str().unwrap(),
    ]);
    assert!(e.contains("cut.gguf") && e.contains("past the end"), "{e}");
    let e = fails(&[
        "gpt",
        "eval",
        "--model",
        text_file.to_str().unwrap(),
        "--ids",
        ids_file.to_str().unwrap(),
    ]);
    assert!(e.contains("not a GGUF file"), "{e}");
    let e = fails(&[
        "quant",
        "quantize",
        "--model",
        dir.to_str().unwrap(),
        "--format",
        "q8_0",
        "--out",
        dir.join("x.gguf").to_str().unwrap(),
    ]);
    assert!(e.contains("config.json"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The columns of the row of `llm quant report`'s table that starts with `format`.
fn quant_row(stdout: &str, format: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(format))
        .unwrap_or_else(|| panic!("no row {format:?} in:\n{stdout}"))
}

#[test]
fn quant_report_prints_every_format() {
    let dir = temp_dir("quant-report");
    let corpus = toy_corpus(&dir, "toy.txt", 400, 1);
    // d_model 32 and d_ff 64: every projection's rows are whole 32-value blocks
    let (model, _) = gpt_train(&dir, &corpus, "llama-tiny", &["--steps", "10"]);
    let text: String = std::fs::read_to_string(&corpus).unwrap()[..300].to_string();
    let ids: Vec<String> = text.bytes().map(|b| b.to_string()).collect();
    let ids_file = dir.join("ids.txt");
    std::fs::write(&ids_file, ids.join(" ")).unwrap();
    let ids_s = ids_file.to_str().unwrap();
    let out = ok(&["quant", "report", "--model", &model, "--ids", ids_s]);
    // columns: format, bits/wt, weight bytes, max |e|, RMS e, SNR dB, Δ²/12 dB, nats, tokens/s
    let num = |row: &[String], k: usize| -> f64 { row[k].parse().unwrap() };
    let f32_row = quant_row(&out, "f32");
    assert_eq!(num(&f32_row, 1), 32.0);
    assert_eq!(num(&f32_row, 3), 0.0);
    assert_eq!(f32_row[5], "exact");
    let h = num(&f32_row, 7);
    // the same cross-entropy llm gpt eval prints
    let eval = ok(&["gpt", "eval", "--model", &model, "--ids", ids_s]);
    assert!(
        (figure(&eval, "cross-entropy") - h).abs() < 1e-4,
        "{eval}\n{out}"
    );
    for (format, bits) in [("f16", 16.0), ("q8_0", 8.5), ("q4_1", 5.0), ("q4_0", 4.5)] {
        let row = quant_row(&out, format);
        assert_eq!(num(&row, 1), bits, "{out}");
        assert!(num(&row, 3) > 0.0, "{format}: a rounding error");
        // the weight bytes shrink with the bits
        assert!(num(&row, 2) < num(&f32_row, 2), "{out}");
    }
    // 8 bits and a 4-byte step per tensor, or per row of 32 or 64 values (8 + 32/d_in)
    assert!(
        (num(&quant_row(&out, "int8/tensor"), 1) - 8.0).abs() < 0.1,
        "{out}"
    );
    let per_row = num(&quant_row(&out, "int8/row"), 1);
    assert!(per_row > 8.5 && per_row <= 9.0, "{out}");
    // 8 bits barely move the cross-entropy; blocks err less than one step per tensor
    let q8 = quant_row(&out, "q8_0");
    assert!((num(&q8, 7) - h).abs() < 0.01 * h, "{out}");
    assert!(
        num(&q8, 5) > num(&quant_row(&out, "int8/tensor"), 5),
        "{out}"
    );
    assert!(
        !out.contains("keeps"),
        "no projection stays f32 here:\n{out}"
    );

    // clap's own usage error (exit code 2)
    let usage = llm(&["quant", "report", "--model", &model]);
    assert!(!usage.status.success());
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--ids"));
    let missing = dir.join("nothing");
    let e = fails(&[
        "quant",
        "report",
        "--model",
        missing.to_str().unwrap(),
        "--ids",
        ids_s,
    ]);
    assert!(e.contains("nothing"), "{e}");
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "1 2 9999").unwrap();
    let e = fails(&[
        "quant",
        "report",
        "--model",
        &model,
        "--ids",
        bad.to_str().unwrap(),
    ]);
    assert!(e.contains("9999"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `llm lora train --checkpoint-every 3` for 6 steps with dropout, then `--resume` from its
/// step-3 checkpoint in a new process: the same adapters and log as the run never stopped.
/// Resuming on another base, or with a LoRA setting, is an error.
#[test]
fn lora_checkpoints_and_resumes() {
    let dir = temp_dir("lora-resume");
    let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let corpus = toy_corpus(&dir, "toy.txt", 300, 1);
    let (base, _) = gpt_train(&dir, &corpus, "llama-tiny", &["--steps", "3"]);
    let tune = toy_corpus(&dir, "tune.txt", 200, 2);
    let train = |out: &str, extra: &[&str]| {
        let mut args = vec!["lora", "train", "--model", &base, "--corpus", &tune];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out]);
        ok(&args)
    };
    let straight = d("straight");
    train(
        &straight,
        &[
            "--rank",
            "2",
            "--dropout",
            "0.2",
            "--steps",
            "6",
            "--checkpoint-every",
            "3",
        ],
    );
    let step3 = Path::new(&straight).join("checkpoints/step-0000003");
    for f in [
        "adapter_config.json",
        "trainer.safetensors",
        "model.safetensors",
    ] {
        assert!(step3.join(f).exists(), "{f}");
    }
    let step3 = step3.to_str().unwrap();
    let resumed = d("resumed");
    let out = train(&resumed, &["--resume", step3]);
    assert!(
        out.contains("resuming") && out.contains("at step 3 of 6"),
        "{out}"
    );
    let read = |d: &str, f: &str| std::fs::read(Path::new(d).join(f)).unwrap();
    assert!(
        read(&straight, "adapter_model.safetensors") == read(&resumed, "adapter_model.safetensors")
    );
    assert_eq!(
        read(&straight, "train_log.csv"),
        read(&resumed, "train_log.csv")
    );

    let (other, _) = gpt_train(&dir.join("other"), &corpus, "llama-tiny", &["--steps", "2"]);
    let err = fails(&[
        "lora",
        "train",
        "--model",
        &other,
        "--corpus",
        &tune,
        "--resume",
        step3,
        "--out",
        &d("x"),
    ]);
    assert!(err.contains("another base model"), "{err}");
    let out = llm(&[
        "lora",
        "train",
        "--model",
        &base,
        "--corpus",
        &tune,
        "--resume",
        step3,
        "--rank",
        "4",
        "--out",
        &d("x"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses --rank with --resume"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `llm chat` on the fixture Llama written as GGUF with a chat template (`llm quant
/// quantize --chat-template`): with `--prompt`, the reply is what `llm gpt generate`
/// continues the rendered prompt with; on stdin, each turn's reply is that of the whole
/// conversation rendered afresh (the cache reuse changes nothing). Without a template, a
/// prompt past the context, a template that does not parse: errors.
#[test]
fn chat_replies_as_generation_on_the_rendered_conversation() {
    let dir = temp_dir("chat");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama-tiny");
    let template = dir.join("chat.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}\
         {% if add_generation_prompt %}<assistant>{% endif %}\n",
    )
    .unwrap();
    let file = dir.join("tiny-chat.gguf");
    let f = file.to_str().unwrap();
    ok(&[
        "quant",
        "quantize",
        "--model",
        fixture,
        "--format",
        "q8_0",
        "--out",
        f,
        "--chat-template",
        template.to_str().unwrap(),
    ]);
    // a byte-level model: the reply of a rendered text is its greedy continuation's bytes
    let continuation = |rendered: &str| {
        let ids: Vec<String> = rendered.bytes().map(|b| b.to_string()).collect();
        let new = ok(&[
            "gpt",
            "generate",
            "--model",
            f,
            "--prompt-ids",
            &ids.join(" "),
            "--max-new-tokens",
            "8",
            "--greedy",
        ]);
        // as the byte tokenizer decodes an id
        let bytes: Vec<u8> = new
            .split_whitespace()
            .map(|id| id.parse::<u32>().unwrap() as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let chat = |extra: &[&str], input: Option<&[u8]>| {
        let mut args = vec![
            "chat",
            "--model",
            f,
            "--system",
            "be brief",
            "--max-new-tokens",
            "8",
        ];
        args.extend_from_slice(extra);
        let out = match input {
            Some(input) => llm_stdin(&args, input),
            None => llm(&args),
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "llm {args:?}: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let first = continuation("<system>be brief\n<user>hi\n<assistant>");
    let (out, err) = chat(&["--prompt", "hi", "--greedy"], None);
    assert_eq!(out, format!("{first}\n"));
    assert!(
        err.contains("[37 prompt tokens (0 reused) at ")
            && err.contains("; 8 new at ")
            && err.contains("cut at --max-new-tokens]"),
        "{err}"
    );
    let second = continuation(&format!(
        "<system>be brief\n<user>hi\n<assistant>{first}\n<user>and you?\n<assistant>"
    ));
    let (out, err) = chat(&["--greedy"], Some(b"hi\n\nand you?\n"));
    assert_eq!(out, format!("{first}\n{second}\n"));
    assert_eq!(err.matches("prompt tokens").count(), 2, "{err}");
    assert!(
        !err.contains("(0 reused) at ") || err.matches("(0 reused)").count() == 1,
        "{err}"
    );
    // sampling is seeded
    let sampled = chat(
        &["--prompt", "hi", "--temperature", "0.8", "--seed", "3"],
        None,
    )
    .0;
    assert_eq!(
        chat(
            &["--prompt", "hi", "--temperature", "0.8", "--seed", "3"],
            None
        )
        .0,
        sampled
    );

    let e = fails(&["chat", "--model", f, "--prompt", &"x".repeat(300)]);
    assert!(e.contains("more than the model's context of 256"), "{e}");
    let e = fails(&["chat", "--model", f, "--prompt", "hi", "--top-p", "2"]);
    assert!(e.contains("--top-p"), "{e}");
    let plain = dir.join("plain.gguf");
    let p = plain.to_str().unwrap();
    ok(&[
        "quant", "quantize", "--model", fixture, "--format", "q8_0", "--out", p,
    ]);
    let e = fails(&["chat", "--model", p, "--prompt", "hi"]);
    assert!(
        e.contains("plain.gguf") && e.contains("no chat template (tokenizer.chat_template)"),
        "{e}"
    );
    std::fs::write(&template, "{% for m in messages %}").unwrap();
    let bad = dir.join("bad.gguf");
    let e = fails(&[
        "quant",
        "quantize",
        "--model",
        fixture,
        "--format",
        "q8_0",
        "--out",
        bad.to_str().unwrap(),
        "--chat-template",
        template.to_str().unwrap(),
    ]);
    assert!(
        e.contains("chat.jinja") && e.contains("does not parse"),
        "{e}"
    );
    assert!(!bad.exists(), "nothing written");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn post_training_stages_run_resume_and_score() {
    let dir = temp_dir("post");
    let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let base = ok(&["post", "base", "--out", &d("base"), "--steps", "200"]);
    assert!(base.contains("base model"), "{base}");
    let sft_args = [
        "post",
        "sft",
        "--model",
        &d("base"),
        "--out",
        &d("sft"),
        "--steps",
        "150",
        "--examples",
        "500",
    ];
    let sft = ok(&sft_args);
    assert!(sft.contains("judge on 400 held-out requests"), "{sft}");
    // again with the same flags: the run is complete in its checkpoints, and ends the same
    let weights = std::fs::read(dir.join("sft/model.safetensors")).unwrap();
    let again = ok(&sft_args);
    assert_eq!(
        std::fs::read(dir.join("sft/model.safetensors")).unwrap(),
        weights
    );
    assert_eq!(sft.lines().last(), again.lines().last());
    let reward = ok(&[
        "post",
        "reward",
        "--model",
        &d("sft"),
        "--out",
        &d("rm"),
        "--requests",
        "300",
        "--steps",
        "10",
    ]);
    assert!(reward.contains("held-out pairs"), "{reward}");
    assert!(dir.join("rm/reward_head.safetensors").exists());
    let pairs = d("rm/pairs.jsonl");
    let rlhf = ok(&[
        "post",
        "rlhf",
        "--model",
        &d("sft"),
        "--reward",
        &d("rm"),
        "--out",
        &d("rlhf"),
        "--steps",
        "3",
    ]);
    assert!(rlhf.contains("KL from the reference"), "{rlhf}");
    let dpo = ok(&[
        "post",
        "dpo",
        "--model",
        &d("sft"),
        "--pairs",
        &pairs,
        "--out",
        &d("dpo"),
        "--steps",
        "5",
        "--llama3",
    ]);
    assert!(dpo.contains("DPO (Llama 3)"), "{dpo}");
    // the DPO model against its reference on its own pairs: below ln 2 after training on them
    let loss = ok(&[
        "post",
        "dpo-loss",
        "--model",
        &d("dpo"),
        "--reference",
        &d("sft"),
        "--pairs",
        &pairs,
    ]);
    let value: f64 = loss.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(value < 2f64.ln() && value > 0.0, "{loss}");
    // the PyTorch fixture: TRL's form, mean loss 0.7749410149
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let f = |p: &str| fixtures.join(p).to_str().unwrap().to_string();
    // its reference model as a model folder
    std::fs::create_dir_all(dir.join("reference")).unwrap();
    std::fs::copy(
        fixtures.join("dpo/reference.safetensors"),
        dir.join("reference/model.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("dpo/config.json"),
        dir.join("reference/config.json"),
    )
    .unwrap();
    let fixture_loss = ok(&[
        "post",
        "dpo-loss",
        "--model",
        &f("llama-tiny"),
        "--reference",
        &d("reference"),
        "--pairs",
        &f("dpo/pairs.jsonl"),
    ]);
    assert!(
        fixture_loss.contains("mean DPO loss 0.77494"),
        "{fixture_loss}"
    );
    // mistakes
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt_ids\": [1, 2]}\n").unwrap();
    let e = fails(&[
        "post",
        "dpo-loss",
        "--model",
        &d("sft"),
        "--reference",
        &d("sft"),
        "--pairs",
        bad.to_str().unwrap(),
    ]);
    assert!(e.contains("line 1") && e.contains("chosen_ids"), "{e}");
    let e = fails(&["post", "sft", "--model", &f("llama-tiny"), "--out", &d("x")]);
    assert!(e.contains("vocabulary"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `llm gpt train --preset deepseek-tiny` (and llama-tiny with one DeepSeek part at a time)
/// trains, saves a Hugging Face DeepSeek-V3 folder (or, without MLA, the crate's own
/// config), and `gpt eval` / `gpt generate` read it.
#[test]
fn deepseek_trains_evaluates_and_generates() {
    let dir = temp_dir("deepseek");
    let corpus = toy_corpus(&dir, "toy.txt", 500, 1);
    let (model, stdout) = gpt_train(&dir, &corpus, "deepseek-tiny", &["--steps", "8"]);
    assert!(
        stdout.contains("MLA:") && stdout.contains("DeepSeekMoE") && stdout.contains("MTP:"),
        "{stdout}"
    );
    assert!(stdout.contains("cache for a full context"), "{stdout}");
    let config = std::fs::read_to_string(Path::new(&model).join("config.json")).unwrap();
    assert!(
        config.contains("DeepseekV3ForCausalLM")
            && config.contains("\"num_nextn_predict_layers\": 1"),
        "{config}"
    );
    let text = dir.join("text.txt");
    std::fs::write(&text, &std::fs::read_to_string(&corpus).unwrap()[..120]).unwrap();
    let h = figure(
        &ok(&[
            "gpt",
            "eval",
            "--model",
            &model,
            "--text",
            text.to_str().unwrap(),
        ]),
        "cross-entropy",
    );
    assert!(h.is_finite() && h > 0.0);
    let gen = ok(&[
        "gpt",
        "generate",
        "--model",
        &model,
        "--prompt-ids",
        "116 104 101",
        "--max-new-tokens",
        "6",
        "--greedy",
    ]);
    assert_eq!(gen.split_whitespace().count(), 6, "{gen}");
    // each part alone on llama-tiny; MoE without MLA has no Hugging Face config
    for flags in [&["--mla"][..], &["--moe", "total"], &["--mtp"]] {
        let mut extra = vec!["--steps", "3"];
        extra.extend_from_slice(flags);
        let (m, _) = gpt_train(&dir, &corpus, "llama-tiny", &extra);
        let h = figure(
            &ok(&[
                "gpt",
                "eval",
                "--model",
                &m,
                "--text",
                text.to_str().unwrap(),
            ]),
            "cross-entropy",
        );
        assert!(h.is_finite(), "{flags:?}");
    }
    let err = fails(&[
        "gpt",
        "train",
        "--preset",
        "llama-tiny",
        "--corpus",
        &corpus,
        "--bias-update-speed",
        "0.01",
        "--out",
        dir.join("x").to_str().unwrap(),
    ]);
    assert!(err.contains("no MoE"), "{err}");
    // GGUF's llama layout cannot hold DeepSeek's parts: an error, not a wrong file
    let gguf = dir.join("ds.gguf");
    let err = fails(&[
        "quant",
        "quantize",
        "--model",
        &model,
        "--format",
        "q8_0",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    assert!(err.contains("DeepSeek's parts") && !gguf.exists(), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// transformers' own DeepSeek-V3 folder (`tests/fixtures/deepseek-tiny/`) read by `gpt eval`
/// and `gpt generate`: the cross-entropy of a seeded sequence and the greedy ids equal what
/// transformers computed (`make_deepseek_reference.py OUT --generate` on the same seeded
/// weights: `tests/fixtures/deepseek-tiny/reference_generate.json`).
#[test]
fn deepseek_folder_from_transformers_evaluates_and_generates_as_transformers() {
    let dir = temp_dir("deepseek-hf");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek-tiny");
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("reference_generate.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<String> = r["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let ids_file = dir.join("ids.txt");
    std::fs::write(&ids_file, ids.join(" ")).unwrap();
    let model = fixture.to_str().unwrap();
    let h = figure(
        &ok(&[
            "gpt",
            "eval",
            "--model",
            model,
            "--ids",
            ids_file.to_str().unwrap(),
        ]),
        "cross-entropy",
    );
    let want = r["mean_ce_nats_f64_model"].as_f64().unwrap();
    assert!(
        (h - want).abs() < 1e-4 * want,
        "cross-entropy {h}, transformers {want}"
    );
    let prompt: Vec<String> = r["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let want_ids: Vec<u64> = r["greedy_new_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let n = want_ids.len().to_string();
    let gen = ok(&[
        "gpt",
        "generate",
        "--model",
        model,
        "--prompt-ids",
        &prompt.join(" "),
        "--max-new-tokens",
        &n,
        "--greedy",
    ]);
    let got: Vec<u64> = gen.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(got, want_ids, "greedy ids through the latent cache");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every `llm gpt experiment` on a tiny toy world (200 sentences, 2 steps, one seed): a
/// table on stdout, NAME.csv and NAME.svg written; an unknown name is an error. About
/// 40 s on 2 cores shared with other builds.
#[test]
fn gpt_experiments_write_a_table_and_a_chart() {
    let dir = temp_dir("gpt-experiment");
    let out = dir.to_str().unwrap();
    for name in ["init", "warmup", "ablation", "averaging", "agreement"] {
        let stdout = ok(&[
            "gpt",
            "experiment",
            name,
            "--seeds",
            "1",
            "--steps",
            "2",
            "--sentences",
            "200",
            "--out",
            out,
        ]);
        assert!(stdout.contains("wrote"), "{name}: {stdout}");
        let csv = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap();
        assert!(csv.lines().count() >= 3, "{name}: {csv}");
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{name}");
    }
    let err = fails(&["gpt", "experiment", "nothing", "--out", out]);
    assert!(err.contains("no experiment"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
