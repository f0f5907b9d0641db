//! Checks on the real corpora, which `cargo test` alone does not have: CI fetches them
//! (`bash data/fetch.sh`) and runs
//! `LLM_LESSONS_DATA=data/external cargo test --release --test real_data -- --include-ignored`.
//! Without the data these tests fail loudly, naming what is missing. The tokenizer checks
//! compare with the ids of Python tiktoken 0.14.0 in `tests/fixtures/bpe/expected_real.json`
//! (made by `tests/fixtures/bpe/make_expected.py`). The GGUF checks read a model llama.cpp
//! quantized (SmolLM2-135M-Instruct in Q4_1, `data/README.md`).

use std::path::PathBuf;

use llm_lessons::bpe::{Allowed, Encoding};
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

// ----------------------------------------------------------------------------------------
// Chapter 3: the real GPT-2 (r50k_base) and cl100k_base tokenizers give tiktoken's ids.
// ----------------------------------------------------------------------------------------

fn bpe_fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bpe")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn as_ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// FNV-1a 64 of the ids in decimal joined by spaces, as make_expected.py computes it.
fn fnv1a64(ids: &[u32]) -> String {
    let text: Vec<String> = ids.iter().map(u32::to_string).collect();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.join(" ").bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn check_against_tiktoken(enc: &Encoding, name: &str) {
    let texts: Vec<String> = serde_json::from_value(bpe_fixture("texts.json")).unwrap();
    let expected = &bpe_fixture("expected_real.json")[name];
    for (i, text) in texts.iter().enumerate() {
        let want = as_ids(&expected["ordinary"][i]);
        assert_eq!(
            enc.encode_ordinary(text),
            want,
            "{name}, text {i}: {text:?}"
        );
        let want = as_ids(&expected["special"][i]);
        assert_eq!(
            enc.encode(text, Allowed::All).unwrap(),
            want,
            "{name} allowed_special=all, text {i}: {text:?}"
        );
        assert_eq!(enc.decode(&enc.encode_ordinary(text)).unwrap(), *text);
    }
    let moby = std::fs::read_to_string(corpus("moby_dick.txt")).unwrap();
    for (label, text) in [
        (
            "moby_dick_50k",
            moby.chars().take(50_000).collect::<String>(),
        ),
        ("moby_dick", moby.clone()),
    ] {
        let want = &expected[label];
        assert_eq!(text.chars().count() as u64, want["chars"].as_u64().unwrap());
        let ids = enc.encode_ordinary_parallel(&text);
        assert_eq!(ids[..50], as_ids(&want["first_ids"]), "{name} {label}");
        assert_eq!(
            ids.len() as u64,
            want["n_ids"].as_u64().unwrap(),
            "{name} {label}"
        );
        assert_eq!(
            fnv1a64(&ids),
            want["fnv1a64"].as_str().unwrap(),
            "{name} {label}"
        );
        assert_eq!(
            enc.encode_ordinary(&text),
            ids,
            "{name} {label}: one thread"
        );
        assert_eq!(enc.decode(&ids).unwrap(), text);
    }
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn r50k_base_gives_tiktokens_ids() {
    let enc = Encoding::r50k_base(corpus("r50k_base.tiktoken")).unwrap();
    assert_eq!(enc.n_ranks(), 50_256);
    assert_eq!(
        enc.encode_ordinary("Hello world, it's 2026!"),
        [15496, 995, 11, 340, 338, 1160, 2075, 0]
    );
    check_against_tiktoken(&enc, "r50k_base");
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn the_books_tokenization_table_is_what_the_code_prints() {
    let r50k = Encoding::r50k_base(corpus("r50k_base.tiktoken")).unwrap();
    let cl100k = Encoding::cl100k_base(corpus("cl100k_base.tiktoken")).unwrap();
    let table = llm_lessons::bpe::tour::effects_markdown(&[&r50k, &cl100k]);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("book/src/ch03_bpe.md");
    let book = std::fs::read_to_string(&path).unwrap();
    let start = "<!-- effects: made by bpe::tour::effects_markdown -->\n";
    let i = book.find(start).expect("the start marker") + start.len();
    let j = i + book[i..]
        .find("<!-- effects end -->")
        .expect("the end marker");
    assert_eq!(
        book[i..j],
        table,
        "the book's table is not what the code prints"
    );
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn cl100k_base_gives_tiktokens_ids() {
    let enc = Encoding::cl100k_base(corpus("cl100k_base.tiktoken")).unwrap();
    assert_eq!(enc.n_ranks(), 100_256);
    assert_eq!(
        enc.encode_ordinary("Hello world, it's 2026!"),
        [9906, 1917, 11, 433, 596, 220, 2366, 21, 0]
    );
    check_against_tiktoken(&enc, "cl100k_base");
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn gpt2_original_files_are_r50k_base() {
    let gpt2 = Encoding::load_gpt2(corpus("encoder.json"), corpus("vocab.bpe")).unwrap();
    let r50k = Encoding::r50k_base(corpus("r50k_base.tiktoken")).unwrap();
    assert_eq!(gpt2.n_ranks(), r50k.n_ranks());
    for id in 0..r50k.n_ranks() as u32 {
        assert_eq!(
            gpt2.token_bytes(id).unwrap(),
            r50k.token_bytes(id).unwrap(),
            "id {id}"
        );
    }
    assert_eq!(gpt2.special_token("<|endoftext|>").unwrap(), 50256);
    check_against_tiktoken(&gpt2, "r50k_base");
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn saving_the_real_ranks_gives_the_same_file() {
    for name in ["r50k_base", "cl100k_base"] {
        let path = corpus(&format!("{name}.tiktoken"));
        let enc = if name == "r50k_base" {
            Encoding::r50k_base(&path)
        } else {
            Encoding::cl100k_base(&path)
        }
        .unwrap();
        let out = std::env::temp_dir().join(format!(
            "llm-lessons-{name}-{}.tiktoken",
            std::process::id()
        ));
        enc.save_tiktoken(&out).unwrap();
        let same = std::fs::read(&out).unwrap() == std::fs::read(&path).unwrap();
        std::fs::remove_file(&out).unwrap();
        assert!(same, "{name}: the saved file differs from the original");
    }
}

#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn fast_trainer_matches_the_plain_one_on_moby_dick() {
    use llm_lessons::bpe::{basic, split::Pattern, train};
    let text = std::fs::read_to_string(corpus("moby_dick.txt")).unwrap();
    let fast = train::train(&text, 256 + 300, Pattern::Gpt2).unwrap();
    let mut words: Vec<(&[u8], usize)> = train::piece_counts(&text, &Pattern::Gpt2.split())
        .into_iter()
        .map(|(p, c)| (p.as_bytes(), c))
        .collect();
    words.sort_unstable();
    let plain = basic::train_words(&words, 256 + 300).table;
    assert_eq!(fast.table.merges, plain.merges);
    // Python tiktoken encodes Moby-Dick with a 1,024-token tokenizer trained here in
    // 463,101 tokens (checked by hand with tiktoken 0.14.0; see the book).
    let t = train::train(&text, 1024, Pattern::Gpt2).unwrap();
    let enc = t.encoding("moby").unwrap();
    assert_eq!(enc.encode_ordinary_parallel(&text).len(), 463_101);
}

/// The vectors of gensim's default settings on the State of the Union score as gensim's do
/// on the standard sets (gensim 4.4.0, same input and settings, 2 workers: WordSim353
/// Spearman 0.333, analogies 0.076 on 4,451 questions; see benches/word2vec.rs).
#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn word2vec_on_the_state_of_the_union_scores_like_gensim() {
    use llm_lessons::word2vec::eval::{read_analogies, read_pairs};
    use llm_lessons::word2vec::{evaluate_analogies, evaluate_pairs, train_sgns, SgnsConfig};
    let sentences = data::read_sentences(corpus("sotu_1790-2021.txt")).unwrap();
    // prep_sentences.py: "63,504 sentences, 1,813,085 tokens".
    assert_eq!(sentences.len(), 63_504);
    let config = SgnsConfig {
        threads: 2,
        ..SgnsConfig::default()
    };
    let model = train_sgns(&sentences, &config, &|_| {}).unwrap();
    assert_eq!(
        model.vocab.len(),
        12_124,
        "gensim's vocabulary at min_count 5"
    );
    let emb = model.embeddings();
    let ws = evaluate_pairs(&emb, &read_pairs(corpus("eval/wordsim353.tsv")).unwrap());
    let an = evaluate_analogies(
        &emb,
        &read_analogies(corpus("eval/questions-words.txt")).unwrap(),
    );
    println!(
        "WordSim353 Spearman {:.4} on {} pairs; analogies {:.4} on {} questions",
        ws.spearman,
        ws.pairs,
        an.accuracy(),
        an.asked
    );
    assert_eq!(
        an.asked, 4_451,
        "the questions gensim asks with this vocabulary"
    );
    // Seeds and thread timing move these by about ±0.02 and ±0.01.
    assert!(ws.spearman > 0.28, "WordSim353 Spearman {}", ws.spearman);
    assert!(an.accuracy() > 0.05, "analogy accuracy {}", an.accuracy());
}

/// Chapter 4's quality bar on the toy world (no download needed, but minutes of training,
/// so it runs with the real-data checks): `llama-tiny`, one token per word, must beat the
/// best n-gram model of chapter 1 on the same test sentences and come close to the
/// grammar's true entropy.
#[test]
#[ignore = "minutes of training: CI runs it with --include-ignored"]
fn llama_tiny_beats_the_ngrams_on_the_toy_world() {
    use llm_lessons::gpt::tour::{toy_world_run, ToyWorldConfig};
    let run = toy_world_run(&ToyWorldConfig::llama_tiny(1500), |_| {}).unwrap();
    let (h, ngram, truth) = (
        run.test_cross_entropy,
        run.ngram_cross_entropy,
        run.true_cross_entropy,
    );
    eprintln!(
        "toy world, nats/word: llama-tiny {h:.4}, best n-gram {ngram:.4}, the grammar {truth:.4}"
    );
    assert!(h >= truth - 0.01, "below the true entropy: {h} < {truth}");
    assert!(h < ngram - 0.15, "llama-tiny {h} vs the n-grams' {ngram}");
    assert!(h - truth < 0.08, "llama-tiny {h}, the grammar {truth}");
}

fn smollm2() -> llm_lessons::quant::gguf::Gguf {
    let path = corpus("SmolLM2-135M-Instruct.Q4_1.gguf");
    llm_lessons::quant::gguf::Gguf::read(&path).unwrap()
}

/// ggml's quantizers byte for byte on real tensors: every Q8_0 and Q4_1 tensor of the file
/// (quantized by llama.cpp), dequantized and quantized again with ours, gives the file's
/// bytes back. (A block's values dequantized and requantized land on the same integers
/// and the same f16 scales, if the rounding is ggml's.) The file, parsed and written
/// again, is also the same bytes.
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_gguf_blocks_requantize_to_the_same_bytes() {
    use llm_lessons::quant::gguf::Gguf;
    use llm_lessons::quant::matrix::{Format, QMatrix};
    let path = corpus("SmolLM2-135M-Instruct.Q4_1.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let g = Gguf::parse(&bytes, &path).unwrap();
    assert_eq!(
        g.to_bytes().unwrap(),
        bytes,
        "parse then write is not the file"
    );
    let mut counts = std::collections::BTreeMap::new();
    for t in &g.tensors {
        *counts.entry(t.format.name()).or_insert(0) += 1;
        if !matches!(t.format, Format::Q8_0 | Format::Q4_1) {
            continue;
        }
        let (rows, cols) = t.matrix_shape();
        let values = t.to_f32().unwrap();
        let again = QMatrix::quantize(t.format, rows, cols, &values).unwrap();
        if let Some(i) = again
            .bytes()
            .iter()
            .zip(t.data.iter())
            .position(|(a, b)| a != b)
        {
            let block = i / t.format.block_bytes();
            panic!(
                "{} ({}): byte {i} (block {block}) differs from the file's",
                t.name, t.format
            );
        }
        assert_eq!(again.bytes().len(), t.data.len());
    }
    let counts: Vec<_> = counts.into_iter().collect();
    assert_eq!(counts, [("f32", 61), ("q4_1", 210), ("q8_0", 1)]);
}

/// The file's metadata and tensors make a `Gpt` of SmolLM2-135M's shape, which runs.
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_gguf_loads_as_a_llama_and_runs() {
    use llm_lessons::gpt::Activations;
    use llm_lessons::quant::gguf::llama::{config_from_gguf, model_from_gguf, Precision};
    use llm_lessons::quant::matrix::Format;
    let g = smollm2();
    assert_eq!(g.version, 3);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("general.file_type").unwrap(), 3); // MOSTLY_Q4_1
    assert_eq!(g.tensor("token_embd.weight").unwrap().format, Format::Q8_0);
    assert_eq!(
        g.tensor("blk.0.attn_q.weight").unwrap().format,
        Format::Q4_1
    );
    let cfg = config_from_gguf(&g).unwrap();
    assert_eq!(
        (
            cfg.vocab_size,
            cfg.d_model,
            cfg.n_layers,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.d_ff
        ),
        (49152, 576, 30, 9, 3, 1536)
    );
    assert!(cfg.tied_head);
    assert_eq!(
        g.get("tokenizer.ggml.tokens")
            .unwrap()
            .as_strings()
            .unwrap()
            .len(),
        49152
    );
    // "The capital of France is" in SmolLM2's tokenizer
    let ids = [504, 3575, 282, 4649, 314];
    let mut top1 = Vec::new();
    for precision in [Precision::AsStored, Precision::Exact] {
        let model = model_from_gguf(&g, precision).unwrap();
        // the projections keep their Q4_1 blocks unless asked for f32
        let quantized = model.params.quantized_shapes().len();
        assert_eq!(
            quantized,
            if precision == Precision::Exact {
                0
            } else {
                210
            }
        );
        let mut acts = Activations::new(&model.cfg, 1, ids.len());
        model.forward(&mut acts, &ids).unwrap();
        let last = &acts.logits[(ids.len() - 1) * 49152..];
        assert!(last.iter().all(|v| v.is_finite()));
        let best = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        top1.push(best);
    }
    assert_eq!(top1[0], top1[1], "Q4_1 and f32 disagree on the next token");
    assert_eq!(top1[0], 7042); // " Paris"
}

/// On its own Q4_1 blocks (activations quantized to Q8_1 in every product, as llama.cpp
/// does), the model continues "The capital of France is" with llama.cpp's greedy ids:
/// `node benches/peers/llamacpp_greedy.mjs SmolLM2-135M-Instruct.Q4_1.gguf "504 3575 282
/// 4649 314" 24` (node-llama-cpp 3.21.1, llama.cpp release v0.4.0, flash attention off).
/// All 24 agreed when this was written; at new token 15 the two best logits are so close
/// that llama.cpp itself picks the other one with node-llama-cpp's default context (flash
/// attention not switched off), so the test holds
/// the 14 before it to equality and prints how many of the 24 agree.
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_gguf_greedy_ids_are_llama_cpps() {
    use llm_lessons::gpt::generate::{generate, Sampling};
    use llm_lessons::quant::gguf::llama::{model_from_gguf, Precision};
    let model = model_from_gguf(&smollm2(), Precision::AsStored).unwrap();
    let new = generate(
        &model,
        &[504, 3575, 282, 4649, 314],
        24,
        &Sampling::greedy(),
    )
    .unwrap();
    let llama_cpp = [
        7042, 30, 198, 198, 504, 1797, 1918, 553, 253, 2155, 282, 4723, 216, 35, 33, 33, 2215, 701,
        30, 198, 198, 504, 1797, 1918,
    ];
    let agree = new
        .iter()
        .zip(&llama_cpp)
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!("greedy ids: the first {agree} of 24 are llama.cpp's");
    assert_eq!(new[..14], llama_cpp[..14]);
}

fn smollm2_reference() -> serde_json::Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Mean next-token cross-entropy in nats, each log-softmax in f64 as the reference computes
/// it.
fn mean_ce_f64(logits: &[f32], ids: &[u32], vocab: usize) -> f64 {
    let rows = logits.chunks_exact(vocab).zip(&ids[1..]);
    let sum: f64 = rows
        .map(|(row, &next)| llm_lessons::gpt::run::next_token_nll(row, next as usize))
        .sum();
    sum / (ids.len() - 1) as f64
}

/// On the file's weights dequantized to f32, our Llama is Hugging Face transformers'
/// `LlamaForCausalLM` (float32, eager attention) on the same weights
/// (`tests/fixtures/smollm2/`, made by its `make_smollm2_ref.py`). The reference's stated
/// tolerances are mean CE within 1e-3 relative, the same top-1 and the same 24 greedy ids;
/// we hold the CE to 1e-5 relative and every top-10 logit to 2e-4 (measured: under 6e-7 and
/// 2.2e-5; the reference's own f64 model differs from its f32 one by up to 1e-4 in a logit).
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_f32_equals_transformers() {
    use llm_lessons::gpt::generate::{generate, Sampling};
    use llm_lessons::gpt::Activations;
    use llm_lessons::quant::gguf::llama::{model_from_gguf, Precision};
    let model = model_from_gguf(&smollm2(), Precision::Exact).unwrap();
    let vocab = model.cfg.vocab_size;
    let reference = smollm2_reference();
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let mut acts = Activations::new(&model.cfg, 1, ids.len());
        model.forward(&mut acts, &ids).unwrap();
        let ce = mean_ce_f64(&acts.logits, &ids, vocab);
        let want = case["mean_ce_nats"].as_f64().unwrap();
        let rel = (ce - want).abs() / want;
        let last = &acts.logits[(ids.len() - 1) * vocab..];
        let mut worst_logit = 0f32;
        for pair in case["last_topk"].as_array().unwrap() {
            let id = pair[0].as_u64().unwrap() as usize;
            let logit = pair[1].as_f64().unwrap() as f32;
            worst_logit = worst_logit.max((last[id] - logit).abs());
        }
        let top1 = (0..vocab)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        let new = generate(&model, &ids, 24, &Sampling::greedy()).unwrap();
        let want_new: Vec<u32> = serde_json::from_value(case["greedy_new_ids"].clone()).unwrap();
        eprintln!(
            "{name}: CE {ce:.7} vs {want:.7} ({rel:.1e} relative), top-10 logits within {worst_logit:.1e}, top-1 {top1}, greedy {}/24",
            new.iter().zip(&want_new).take_while(|(a, b)| a == b).count()
        );
        assert!(rel < 1e-5, "{name}: mean CE {ce} vs transformers' {want}");
        assert!(
            worst_logit < 2e-3,
            "{name}: a top-10 logit off by {worst_logit}"
        );
        assert_eq!(
            top1 as u64,
            case["last_topk"][0][0].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(new, want_new, "{name}: greedy ids");
    }
}

/// On the file's own Q4_1 blocks, with activations quantized to 8 bits in every product as
/// llama.cpp does, the model is llama.cpp's close peer, not its twin (llama.cpp keeps its
/// KV cache in f16; we keep f32): mean CE within 1% of llama.cpp's on each reference case
/// (`tests/fixtures/smollm2/llamacpp.json`; measured +0.09%, -0.14%, -0.48%, while the two
/// differ from the f32 reference by up to 0.5%) and the same top-1 at the last position.
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_q4_1_is_close_to_llama_cpp() {
    use llm_lessons::gpt::Activations;
    use llm_lessons::quant::gguf::llama::{model_from_gguf, Precision};
    let model = model_from_gguf(&smollm2(), Precision::AsStored).unwrap();
    let vocab = model.cfg.vocab_size;
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/llamacpp.json");
    let llama_cpp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let reference = smollm2_reference();
    for (case, theirs) in reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(llama_cpp["cases"].as_array().unwrap())
    {
        let name = case["name"].as_str().unwrap();
        assert_eq!(theirs["name"].as_str(), Some(name));
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let mut acts = Activations::new(&model.cfg, 1, ids.len());
        model.forward(&mut acts, &ids).unwrap();
        let ce = mean_ce_f64(&acts.logits, &ids, vocab);
        let want = theirs["mean_ce_nats"].as_f64().unwrap();
        let f32_ce = case["mean_ce_nats"].as_f64().unwrap();
        let last = &acts.logits[(ids.len() - 1) * vocab..];
        let top1 = (0..vocab)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        eprintln!(
            "{name}: CE ours {ce:.5}, llama.cpp {want:.5} ({:+.2}%), f32 {f32_ce:.5}",
            100.0 * (ce - want) / want
        );
        assert!(
            (ce - want).abs() / want < 1e-2,
            "{name}: CE {ce} vs llama.cpp's {want}"
        );
        assert_eq!(top1 as u64, theirs["top1"].as_u64().unwrap(), "{name}");
    }
}

/// `tests/fixtures/smollm2/france_last_logits.f32`, the logits chapter 7's exercise 5 reads
/// (`lessons/07_real_model.rs`): the 49,152 logits at the last position of the reference's
/// `france` case (`The capital of France is`) from our Llama on the file's weights
/// dequantized to f32 (`Precision::Exact`, within 2.2e-5 of transformers in every top-10
/// logit: `smollm2_f32_equals_transformers`), as raw little-endian f32. With
/// `LLM_LESSONS_WRITE_FIXTURE=1` it (re)writes the file first; in any case it checks that
/// the file holds what the model gives, to 1e-4 per logit (the sums may run in another order
/// on another CPU; the reference's own f64 run differs from its f32 one by up to 1e-4).
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_france_logits_fixture_is_our_f32_model() {
    use llm_lessons::gpt::Activations;
    use llm_lessons::quant::gguf::llama::{model_from_gguf, Precision};
    let model = model_from_gguf(&smollm2(), Precision::Exact).unwrap();
    let vocab = model.cfg.vocab_size;
    let case = &smollm2_reference()["cases"][0];
    assert_eq!(case["name"], "france");
    let ids = as_ids(&case["ids"]);
    assert_eq!(ids, [504, 3575, 282, 4649, 314]);
    let mut acts = Activations::new(&model.cfg, 1, ids.len());
    model.forward(&mut acts, &ids).unwrap();
    let last = &acts.logits[(ids.len() - 1) * vocab..];
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smollm2/france_last_logits.f32");
    if std::env::var_os("LLM_LESSONS_WRITE_FIXTURE").is_some() {
        let bytes: Vec<u8> = last.iter().flat_map(|v| v.to_le_bytes()).collect();
        data::write_atomic(&path, &bytes).unwrap();
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    let stored: Vec<f32> = std::fs::read(&path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(stored.len(), vocab, "one logit per token");
    let worst = stored
        .iter()
        .zip(last)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("the fixture is within {worst:.1e} of the model's logits");
    assert!(worst <= 1e-4, "the fixture is off by {worst}");
}

/// SmolLM2 as `real_model::load` gives it: the chat template read from the file renders
/// the shared reference's chat prompt (transformers' `apply_chat_template` for `What is
/// 2+2?`, in `tests/fixtures/smollm2/chat_template.json`) and tokenizes to its ids; the
/// model ends its turn with `<|im_end|>` (2). On the dequantized weights, a conversation's
/// greedy reply is the reference's greedy ids up to that token (transformers went on past
/// it), and stops there.
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_chat_prompt_and_reply_are_the_references() {
    use llm_lessons::gpt::generate::{Sampling, Stop};
    use llm_lessons::quant::gguf::llama::Precision;
    use llm_lessons::real_model::{self, Message};
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/smollm2/chat_template.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let reference = &fixture["reference_chat_2plus2"];
    let path = corpus("SmolLM2-135M-Instruct.Q4_1.gguf");
    let smollm = real_model::load(&path, Precision::Exact).unwrap();
    assert_eq!(
        (smollm.end_of_turn, &smollm.stop_tokens[..]),
        (Some(2), &[2][..])
    );
    assert_eq!(smollm.decode(&[2]).unwrap(), "<|im_end|>");
    assert!(!smollm.add_bos);
    let template = smollm.template().unwrap();
    assert_eq!(
        template.source(),
        fixture["templates"]["smollm2"]["source"].as_str().unwrap()
    );
    let text = template
        .render(&[Message::user("What is 2+2?")], true)
        .unwrap();
    assert_eq!(text, reference["text"].as_str().unwrap());
    let ids = smollm.encode_chat(&text).unwrap();
    assert_eq!(ids, as_ids(&reference["ids"]));

    let greedy = as_ids(&reference["greedy_new_ids"]);
    let end = greedy.iter().position(|&id| id == 2).unwrap();
    let mut chat = smollm.conversation(None).unwrap();
    let reply = chat
        .reply("What is 2+2?", 24, &Sampling::greedy(), |_| Ok(()))
        .unwrap();
    assert_eq!(reply.prompt_tokens, ids.len());
    assert_eq!(reply.ids, greedy[..end]);
    assert_eq!(reply.stop, Stop::EndOfTurn(2));
    assert_eq!(reply.text, "The answer to this classic math problem is 4.");
    assert!(reference["greedy_text"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}<|im_end|>", reply.text)));
}

/// SmolLM2's tokenizer, read from the GGUF (its tokens and merges, the `smollm` split, its
/// CONTROL tokens matched in the text), gives Hugging Face tokenizers' ids on every text
/// of `tests/fixtures/smollm2/tokenizer_ids.json` (accents, CJK, emoji, digit runs, code,
/// whitespace runs, contractions, the chat special tokens, 4 KB of Moby-Dick, random
/// strings) and on the whole of Moby-Dick; llama.cpp's ids are the same except on the one
/// text the fixture lists (a byte the vocabulary lacks, between two symbols: Hugging Face
/// drops it and merges its neighbours, llama.cpp keeps them apart). Decoding gives the text
/// back, or what Hugging Face's decoder gives where a byte was dropped.
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_tokenizer_gives_hugging_faces_ids() {
    use llm_lessons::bpe::Pattern;
    use llm_lessons::gpt::tokens::Tokens;
    use llm_lessons::quant::gguf::llama::tokens_from_gguf;
    let Tokens::Bpe { encoding, pattern } = tokens_from_gguf(&smollm2()).unwrap() else {
        panic!("SmolLM2's tokenizer is a BPE")
    };
    assert_eq!(pattern, Pattern::Smollm);
    assert_eq!(encoding.special_token("<|im_start|>").unwrap(), 1);
    assert_eq!(encoding.special_token("<|im_end|>").unwrap(), 2);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/tokenizer_ids.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let disagree: Vec<&str> = fixture["hf_llamacpp_disagree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(disagree, ["missing_byte_in_symbols"]);
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() > 250, "{} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let ids = encoding.encode(text, Allowed::All).unwrap();
        assert_eq!(ids, as_ids(&case["hf_ids"]), "{name}: {text:?}");
        let llama_cpp = as_ids(&case["llamacpp_ids"]);
        assert_eq!(ids == llama_cpp, !disagree.contains(&name), "{name}");
        match case.get("hf_decoded").and_then(|d| d.as_str()) {
            None => assert_eq!(encoding.decode(&ids).unwrap(), text, "{name}"),
            Some(decoded) => assert_eq!(
                String::from_utf8_lossy(&encoding.decode_bytes(&ids).unwrap()),
                decoded,
                "{name}"
            ),
        }
    }
    let book = std::fs::read_to_string(corpus("moby_dick.txt")).unwrap();
    let whole = &fixture["moby_dick"]["whole_book"];
    assert_eq!(
        book.chars().count() as u64,
        whole["chars"].as_u64().unwrap()
    );
    let ids = encoding.encode_ordinary_parallel(&book);
    assert_eq!(ids.len() as u64, whole["hf_n_ids"].as_u64().unwrap());
    assert_eq!(fnv1a64(&ids), whole["hf_fnv1a64"].as_str().unwrap());
    assert_eq!(whole["llamacpp_fnv1a64"], whole["hf_fnv1a64"]);
    assert_eq!(encoding.decode(&ids).unwrap(), book);
}

/// The tour's chapter 7 step finds the model through `LLM_LESSONS_DATA`, says what it
/// loaded, and answers its question as stored and in f32; in f32 (greedy) the answer is
/// Paris, and the model ends its turn. (As stored, in Q4_1 with 8-bit activations, the
/// greedy reply is not an answer: llama.cpp's greedy ids on that prompt are the same.)
#[test]
#[ignore = "needs the fetched GGUF model: see the module doc"]
fn smollm2_tour_step_answers_its_question() {
    use llm_lessons::real_model::tour::{chapter_7, find_smollm2, SMOLLM2_FILE};
    use llm_lessons::tour::TourSize;
    assert_eq!(find_smollm2().unwrap(), corpus(SMOLLM2_FILE));
    let report = chapter_7("unused".as_ref(), TourSize::Quick).unwrap();
    let text = &report.text;
    for part in [
        "134515008 parameters",
        "> What is the capital of France?",
        "as stored (Q4_1",
        "f32 (the same weights dequantized",
        "    The capital of France is Paris.\n",
        "the model ended its turn",
        "tokens/s",
    ] {
        assert!(text.contains(part), "{part:?} missing in:\n{text}");
    }
    assert!(report.files.is_empty());
}

/// Chapter 8's SFT on the real model: a few steps of LoRA on SmolLM2-135M-Instruct lower
/// the loss on the chat task's demonstrations and change its replies (`llm post lora-sft`
/// runs the book's longer demonstration).
#[test]
#[ignore = "needs the fetched corpora: see the module doc"]
fn smollm2_learns_the_chat_task_through_lora() {
    use llm_lessons::data::grammar::Grammar;
    use llm_lessons::post::pipeline::eval_requests;
    use llm_lessons::post::real::{lora_sft, RealSftConfig};
    use llm_lessons::post::task::examples;
    use llm_lessons::quant::gguf::llama::Precision;
    let path = corpus("SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut pre = llm_lessons::real_model::load(&path, Precision::Exact).unwrap();
    let grammar = Grammar::toy_world();
    let cfg = RealSftConfig {
        steps: 8,
        batch: 2,
        eval_requests: 3,
        ..RealSftConfig::demo()
    };
    let demos = examples(&grammar, 50, 11);
    let held_out = eval_requests(&grammar, cfg.eval_requests);
    let done = lora_sft(&mut pre, &demos, &held_out, &cfg, None, &mut |_, _, _| {}).unwrap();
    // rank 8 on q_proj (576 -> 576) and v_proj (576 -> 192) in 30 blocks
    assert_eq!(done.trainable, 30 * (8 * 576 + 576 * 8 + 8 * 576 + 192 * 8));
    let loss = done.log.column("loss").unwrap();
    let (first, last) = (loss[..3].iter().sum::<f64>(), loss[5..].iter().sum::<f64>());
    assert!(last < first, "SFT losses by step: {loss:?}");
    let texts =
        |r: &[llm_lessons::post::real::Reply]| r.iter().map(|x| x.text.clone()).collect::<Vec<_>>();
    assert_ne!(texts(&done.before), texts(&done.after));
    println!(
        "losses {loss:?}\nbefore {:?}\nafter {:?}",
        texts(&done.before),
        texts(&done.after)
    );
}
