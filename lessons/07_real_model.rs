//! # Chapter 7 exercises: a real model
//!
//! You write the pieces that stand between a file someone else made and a reply from
//! SmolLM2-135M-Instruct: the fixed header of a GGUF file and its first metadata string, the
//! map that undoes llama.cpp's reordering of the query and key rows, SmolLM2's digit split,
//! its chat prompt, one greedy step on the model's real logits with their log-probabilities,
//! and the speed limit of decoding, which you derive. The tests at the bottom of this file
//! check them, first against answers worked out by hand (the arithmetic is in the comments),
//! then against the crate and against what Hugging Face transformers and tokenizers give
//! (`tests/fixtures/smollm2/`). None needs the 98 MB model: the tests build small GGUF files
//! with the crate, and exercise 5 reads the model's logits for one prompt from a fixture.
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
//!    cargo test --features learner --test 07_real_model
//!    cargo test --features learner --test 07_real_model exercise_3
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::quant::gguf`, `llm_lessons::bpe`, `llm_lessons::real_model`).
//!    `cargo test --test 07_real_model` always passes and shows what "done" looks like. Try
//!    an exercise before you read its reference.
//!
//! The book's chapter 7 (`book/src/ch07_real_model.md`) explains the ideas behind each
//! exercise; the page "How to do the exercises" (`book/src/lessons.md`) this workflow.
//!
//! ## Conventions (GGUF's, and the crate's)
//!
//! - Everything in a GGUF file is little-endian: `u32::from_le_bytes`, `u64::from_le_bytes`.
//!   A string is a `u64` byte length, then that many bytes of UTF-8 (no terminating zero).
//! - A projection `W_q` or `W_k` is a `(n_head * hs, cols)` f32 matrix in row-major order:
//!   head `h` is rows `h * hs..(h + 1) * hs`, and row `r` is `w[r * cols..(r + 1) * cols]`.
//! - A log-probability is natural (`ln`), in f64.

use llm_lessons::bpe::split::{Pattern, Split};
use std::sync::OnceLock;

/// What the first 24 bytes of a GGUF file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufHeader {
    /// 3 today; version 2 has the same layout.
    pub version: u32,
    /// How many tensors the file holds.
    pub n_tensors: u64,
    /// How many metadata key/value pairs follow the header.
    pub n_kv: u64,
}

/// SmolLM2's default system message: its chat template puts it first when a conversation
/// does not start with a system message of its own.
pub const DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// GPT-2's split of `text` into pieces (the crate's `Pattern::Gpt2`), for exercise 3: call
/// it as `super::gpt2_pieces(part)`.
pub fn gpt2_pieces(text: &str) -> Vec<&str> {
    static GPT2: OnceLock<Split> = OnceLock::new();
    GPT2.get_or_init(|| Pattern::Gpt2.split()).pieces(text)
}

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    use super::GgufHeader;
    use llm_lessons::gpt::GptConfig;
    use llm_lessons::real_model::Message;

    /// Exercise 1a: the fixed header of a GGUF file.
    ///
    /// A GGUF file starts with 24 bytes: the magic `b"GGUF"`, the version (`u32`), the
    /// number of tensors (`u64`) and the number of metadata key/value pairs (`u64`), all
    /// little-endian. Return them, or `None` if `bytes` is not a GGUF file: shorter than 24
    /// bytes, another magic, or a version other than 2 or 3 (version 2 has the same layout;
    /// a version 1 file has 32-bit counts, and a later one may change anything).
    pub fn gguf_header(_bytes: &[u8]) -> Option<GgufHeader> {
        unimplemented!(
            "Exercise 1 (gguf_header): implement `fn gguf_header` in lessons/07_real_model.rs \
             — check bytes.len() >= 24 and &bytes[..4] == b\"GGUF\", then version = \
             u32::from_le_bytes(bytes[4..8].try_into().unwrap()) (2 or 3), n_tensors = u64 \
             from bytes[8..16], n_kv = u64 from bytes[16..24]; the crate's version: \
             `Gguf::parse` in src/quant/gguf/mod.rs"
        )
    }

    /// Exercise 1b: the first metadata pair, when its value is a string.
    ///
    /// Right after the header come the `n_kv` pairs. Each is a key (a GGUF string: `u64`
    /// length, then the bytes), the value's type as a `u32` (8 is a string; the other 12
    /// types are numbers, a bool and arrays), then the value. Return the first pair's key
    /// and value if `bytes` is a GGUF file (exercise 1a), has at least one pair, and that
    /// pair's value is a string; `None` otherwise, also when a length runs past the end of
    /// `bytes` or the bytes are not UTF-8 (`String::from_utf8`).
    ///
    /// SmolLM2's file starts `GGUF`, `03 00 00 00`, `10 01 00 00 00 00 00 00`, `21 00 00 00 00
    /// 00 00 00`: version 3, 272 tensors, 33 pairs; its first pair is `general.architecture`,
    /// `llama`, which says how to read the rest.
    pub fn first_metadata_string(_bytes: &[u8]) -> Option<(String, String)> {
        unimplemented!(
            "Exercise 1 (first_metadata_string): implement `fn first_metadata_string` in \
             lessons/07_real_model.rs — after gguf_header (None if n_kv == 0), read at offset \
             24: a u64 key length n, the n key bytes, a u32 type (8 for a string, else None), a \
             u64 value length m and the m value bytes, checking each length against \
             bytes.len() (`bytes.get(a..b)?`); the crate's version: `Reader::string` in \
             src/quant/gguf/mod.rs"
        )
    }

    /// Exercise 2a: the Q/K un-permutation, one head's index map.
    ///
    /// Hugging Face's RoPE rotates the pairs `(x[i], x[i + hs/2])` of a head (half-split);
    /// llama.cpp's rotates the neighbours `(x[2i], x[2i + 1])` (interleaved). So llama.cpp's
    /// converter reorders the rows of `W_q` and `W_k` within each head,
    /// `w.reshape(n_head, 2, hs/2, cols).swapaxes(1, 2)`, and a GGUF file holds the rows in
    /// that order. Derive the map back: which Hugging Face row (within the head) does GGUF
    /// row `r` (within the head) hold? Read the reshape as indices: Hugging Face row
    /// `j hs/2 + i` is element `(j, i)` of the `(2, hs/2)` block; `swapaxes` makes it element
    /// `(i, j)` of a `(hs/2, 2)` block, which is row ... Then check that the neighbours
    /// `2i`, `2i + 1` of the file are the Hugging Face pair `i`, `i + hs/2`.
    pub fn hf_row_of_gguf_row(_r: usize, _head_dim: usize) -> usize {
        unimplemented!(
            "Exercise 2 (hf_row_of_gguf_row): implement `fn hf_row_of_gguf_row` in \
             lessons/07_real_model.rs — derive it: GGUF row r = 2i + j (i = r / 2, j = r % 2) \
             holds Hugging Face row j * hs/2 + i; the crate's version: `permute_rows` in \
             src/quant/gguf/llama.rs"
        )
    }

    /// Exercise 2b: a whole `W_q` or `W_k` back in Hugging Face's order.
    ///
    /// `w` is `(n_head * hs, cols)` with its rows in the GGUF order of each head; return the
    /// same matrix with the rows in Hugging Face's order: row `h hs + hf_row_of_gguf_row(r,
    /// hs)` of the result is row `h hs + r` of `w`. (`hs = w.len() / cols / n_head`.)
    pub fn unpermute_qk(_w: &[f32], _n_head: usize, _cols: usize) -> Vec<f32> {
        unimplemented!(
            "Exercise 2 (unpermute_qk): implement `fn unpermute_qk` in \
             lessons/07_real_model.rs — for each head h and row r < hs, copy \
             w[(h * hs + r) * cols..][..cols] to row h * hs + hf_row_of_gguf_row(r, hs) of the \
             output; the crate's version: `permute_rows(bytes, 4 * cols, n_head, false)` in \
             src/quant/gguf/llama.rs"
        )
    }

    /// Exercise 3: SmolLM2's pre-tokenizer (`tokenizer.ggml.pre = "smollm"`), the pieces
    /// that BPE merges within.
    ///
    /// Hugging Face's `Sequence[Digits(individual_digits=True), ByteLevel]` cuts the text in
    /// two steps: every numeric character (`char::is_numeric`: `7`, but also `²`, `١`, `７`)
    /// is a piece on its own; then GPT-2's split runs on each stretch of text between two
    /// digits, separately. Call `super::gpt2_pieces(part)` for GPT-2's split. Work out
    /// `"a  2"` by hand first: GPT-2 alone gives `"a"`, `" "`, `" 2"`; why does SmolLM2 give
    /// `"a"`, `"  "`, `"2"`? (GPT-2's pattern gives a run of spaces followed by a word its
    /// last space; a run at the end of the text keeps it.)
    pub fn smollm_pieces(_text: &str) -> Vec<&str> {
        unimplemented!(
            "Exercise 3 (smollm_pieces): implement `fn smollm_pieces` in \
             lessons/07_real_model.rs — walk text.char_indices(); at each c.is_numeric(), push \
             super::gpt2_pieces(&text[start..at]) and then &text[at..at + c.len_utf8()], and \
             start again after it; the rest at the end; the crate's version: \
             `Split::for_each_piece` in src/bpe/split.rs"
        )
    }

    /// Exercise 4: a chat prompt, SmolLM2's ChatML by hand.
    ///
    /// An instruction-tuned model reads a conversation as one text with markers around each
    /// message. SmolLM2's template (the GGUF's `tokenizer.chat_template`, in Jinja) writes
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` for each message, in order; when the
    /// first message is not a `system` one, it writes the system message
    /// [`super::DEFAULT_SYSTEM`] before it (and so adds nothing to an empty conversation);
    /// with `add_generation_prompt` it ends with `<|im_start|>assistant\n`, the opening of
    /// the turn the model writes. Roles and contents are copied as they are.
    pub fn render_chatml(_messages: &[Message], _add_generation_prompt: bool) -> String {
        unimplemented!(
            "Exercise 4 (render_chatml): implement `fn render_chatml` in \
             lessons/07_real_model.rs — if messages[0].role != \"system\", start with \
             <|im_start|>system\\n{{DEFAULT_SYSTEM}}<|im_end|>\\n; then \
             <|im_start|>{{role}}\\n{{content}}<|im_end|>\\n per message, and \
             <|im_start|>assistant\\n if add_generation_prompt; the crate renders the template \
             itself: `ChatTemplate::render` in src/real_model/chat.rs"
        )
    }

    /// Exercise 5a: the log-probabilities of the next token, `ln softmax(z)`, stably.
    ///
    /// `ln p_i = z_i − ln Σ_j e^{z_j}`. Computed as written it fails on real logits: `e^z`
    /// overflows an f32 for `z > 88.7` (an f64 past 709) to `inf`, and underflows to 0 for
    /// very negative `z`, whose log is `−inf`. Derive the fix: show that for any constant
    /// `c`, `ln Σ_j e^{z_j} = c + ln Σ_j e^{z_j − c}`; with `c = max_j z_j` every exponent is
    /// at most 0 (no overflow) and one term is `e^0 = 1` (the sum is at least 1: its log is
    /// never `−inf`). Sum the exponentials in f64.
    pub fn log_softmax(_logits: &[f32]) -> Vec<f64> {
        unimplemented!(
            "Exercise 5 (log_softmax): implement `fn log_softmax` in lessons/07_real_model.rs \
             — m = the largest logit (as f64), log_z = m + (Σ_j exp(z_j − m)).ln() in f64, \
             then z_i − log_z for each i; the crate's version: `cross_entropy_forward` in \
             src/gpt/loss.rs (its loss is −ln p[y])"
        )
    }

    /// Exercise 5b: the greedy step: the id of the largest logit (the most likely next
    /// token, since `ln p_i = z_i − ln Z` keeps the order of the logits).
    pub fn greedy_next(_logits: &[f32]) -> u32 {
        unimplemented!(
            "Exercise 5 (greedy_next): implement `fn greedy_next` in lessons/07_real_model.rs \
             — the index of the largest logit (start from the first, not from 0.0: logits can \
             all be negative); the crate's version: `sample` in src/gpt/generate.rs"
        )
    }

    /// Exercise 6a: the bytes one generated token reads, for a Llama of `cfg`'s shape
    /// (SwiGLU, a tied head) stored as SmolLM2's file stores it.
    ///
    /// Each new token runs every layer on one vector, so it reads every weight once: in
    /// each layer `W_q`, `W_o` (`d_model × d_model`), `W_k`, `W_v` (`kv_dim × d_model`),
    /// `W_gate`, `W_up` (`d_ff × d_model`), `W_down` (`d_model × d_ff`), all Q4_1 (blocks
    /// of 32 weights in 20 bytes: an f16 scale, an f16 minimum, 16 bytes of 4-bit codes),
    /// and two RMSNorm weights of `d_model` f32; then the final norm (`d_model` f32) and the
    /// output head. The head is tied: it is the token embedding, `vocab_size × d_model` in
    /// Q8_0 (blocks of 32 in 34 bytes), read whole, since every logit needs its row. (The
    /// input's one embedding row is noise: count it or not.) The key/value cache is left
    /// out: at short contexts it is small.
    pub fn bytes_per_token_q4_1(_cfg: &GptConfig) -> usize {
        unimplemented!(
            "Exercise 6 (bytes_per_token_q4_1): implement `fn bytes_per_token_q4_1` in \
             lessons/07_real_model.rs — per layer (2 C² + 2 kv_dim C + 3 d_ff C) / 32 * 20 \
             bytes + 2 * 4 C; times n_layers; + 4 C (the final norm) + vocab C / 32 * 34 (the \
             head), with C = cfg.d_model and kv_dim = cfg.kv_dim(); the crate's version: \
             `bytes_per_token` in src/quant/report.rs"
        )
    }

    /// Exercise 6b: the speed limit of decoding. A token cannot be generated faster than
    /// its weights can be read: derive tokens/s at most from `bytes_per_token` (bytes) and
    /// the memory's read `bandwidth` (bytes/s).
    pub fn max_tokens_per_s(_bytes_per_token: f64, _bandwidth: f64) -> f64 {
        unimplemented!(
            "Exercise 6 (max_tokens_per_s): implement `fn max_tokens_per_s` in \
             lessons/07_real_model.rs — derive it: the time per token is at least \
             bytes_per_token / bandwidth seconds; the book: chapter 6, 'Why generation is \
             memory-bound'"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use super::GgufHeader;
    use llm_lessons::bpe::split::{Pattern, Split};
    use llm_lessons::gpt::generate::{sample, Sampling};
    use llm_lessons::gpt::GptConfig;
    use llm_lessons::quant::gguf::llama::permute_rows;
    use llm_lessons::quant::gguf::{Gguf, Value};
    use llm_lessons::quant::matrix::Format;
    use llm_lessons::quant::report;
    use llm_lessons::real_model::Message;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::sync::OnceLock;

    pub fn gguf_header(bytes: &[u8]) -> Option<GgufHeader> {
        // the crate reads (and checks) the whole file; the header is its first 24 bytes
        let g = Gguf::parse(bytes, "in memory".as_ref()).ok()?;
        Some(GgufHeader {
            version: g.version,
            n_tensors: g.tensors.len() as u64,
            n_kv: g.metadata.len() as u64,
        })
    }

    pub fn first_metadata_string(bytes: &[u8]) -> Option<(String, String)> {
        let g = Gguf::parse(bytes, "in memory".as_ref()).ok()?;
        match g.metadata.into_iter().next()? {
            (key, Value::String(value)) => Some((key, value)),
            _ => None,
        }
    }

    pub fn hf_row_of_gguf_row(r: usize, head_dim: usize) -> usize {
        // label each Hugging Face row of one head with its index, reorder the rows as the
        // converter does, and read the label that lands in row r
        let labels: Vec<u8> = (0..head_dim as u32).flat_map(u32::to_le_bytes).collect();
        let gguf = permute_rows(&labels, 4, 1, true);
        u32::from_le_bytes(gguf[4 * r..4 * r + 4].try_into().unwrap()) as usize
    }

    pub fn unpermute_qk(w: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        permute_rows(&bytes, 4 * cols, n_head, false)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    pub fn smollm_pieces(text: &str) -> Vec<&str> {
        static SMOLLM: OnceLock<Split> = OnceLock::new();
        SMOLLM.get_or_init(|| Pattern::Smollm.split()).pieces(text)
    }

    pub fn render_chatml(messages: &[Message], add_generation_prompt: bool) -> String {
        // the crate does not lay ChatML out by hand: it renders the model's own template
        super::smollm2_template()
            .render(messages, add_generation_prompt)
            .unwrap()
    }

    pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
        // as the crate's loss (src/gpt/loss.rs) computes −ln p[y], for every id and in f64
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
        let log_z = max
            + logits
                .iter()
                .map(|&z| (z as f64 - max).exp())
                .sum::<f64>()
                .ln();
        logits.iter().map(|&z| z as f64 - log_z).collect()
    }

    pub fn greedy_next(logits: &[f32]) -> u32 {
        // greedy sampling draws no random number: the seed does not matter
        sample(
            logits,
            &Sampling::greedy(),
            &mut ChaCha8Rng::seed_from_u64(0),
        )
    }

    pub fn bytes_per_token_q4_1(cfg: &GptConfig) -> usize {
        report::bytes_per_token(cfg, Format::Q4_1, Format::Q8_0)
    }

    pub fn max_tokens_per_s(bytes_per_token: f64, bandwidth: f64) -> f64 {
        bandwidth / bytes_per_token
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

use llm_lessons::gpt::generate::{sample, Sampling};
use llm_lessons::gpt::loss::cross_entropy_forward;
use llm_lessons::gpt::rope::{rope_forward, RopeTable};
use llm_lessons::gpt::GptConfig;
use llm_lessons::quant::gguf::llama::permute_rows;
use llm_lessons::quant::gguf::{Gguf, Value};
use llm_lessons::quant::matrix::Format;
use llm_lessons::quant::report::{bytes_per_token, smollm2_135m};
use llm_lessons::real_model::{ChatTemplate, Message};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// `n` numbers drawn uniformly from `[−scale, scale]` (the same on every machine).
fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..=scale)).collect()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smollm2")
        .join(name)
}

fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// SmolLM2's chat template, as its GGUF file stores it, with the special tokens its ids
/// name (`tests/fixtures/smollm2/chat_template.json`).
fn smollm2_template() -> ChatTemplate {
    let f = fixture_json("chat_template.json");
    let t = &f["templates"]["smollm2"];
    let specials: Vec<(&str, &str)> = t["special_tokens"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    ChatTemplate::new(t["source"].as_str().unwrap(), &specials).unwrap()
}

// --- Exercise 1 ---------------------------------------------------------------------------

/// A GGUF file made by the crate: these metadata pairs, in order, and one small f32 tensor
/// if `tensor`.
fn small_gguf(metadata: &[(&str, Value)], tensor: bool) -> Vec<u8> {
    let mut g = Gguf::new();
    for (key, value) in metadata {
        g.set(key, value.clone());
    }
    if tensor {
        g.add_f32("output_norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0])
            .unwrap();
    }
    g.to_bytes().unwrap()
}

#[test]
fn exercise_1_gguf_header() {
    let text = |s: &str| Value::String(s.into());
    let bytes = small_gguf(
        &[
            ("general.architecture", text("llama")),
            ("llama.block_count", Value::U32(30)),
        ],
        true,
    );
    // "GGUF", version 3, 1 tensor, 2 pairs: 4 + 4 + 8 + 8 = 24 bytes, little-endian
    assert_eq!(
        &bytes[..24],
        b"GGUF\x03\0\0\0\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0"
    );
    // then the first pair: the key's length 20 (u64), its 20 bytes, the type 8 (u32: a
    // string), the value's length 5 (u64) and its 5 bytes
    assert_eq!(&bytes[24..32], &20u64.to_le_bytes());
    assert_eq!(&bytes[32..52], b"general.architecture");
    assert_eq!(&bytes[52..56], &8u32.to_le_bytes());
    assert_eq!(&bytes[56..64], &5u64.to_le_bytes());
    assert_eq!(&bytes[64..69], b"llama");
    assert_eq!(
        solution::gguf_header(&bytes),
        Some(GgufHeader {
            version: 3,
            n_tensors: 1,
            n_kv: 2
        }),
        "magic, version, tensor count, metadata count"
    );
    assert_eq!(
        solution::first_metadata_string(&bytes),
        Some(("general.architecture".into(), "llama".into()))
    );
    // files of other shapes, against the crate's parser
    let files = [
        // no metadata, no tensor: the header is all there is (padded to 32 bytes)
        small_gguf(&[], false),
        // no metadata: what follows the header is a tensor's name, not a key
        small_gguf(&[], true),
        // characters of 2 and 3 bytes: a length counts bytes, not characters
        small_gguf(
            &[
                ("general.name", text("SmolLM2 · 135M ✓ é")),
                ("general.alignment", Value::U32(64)),
            ],
            true,
        ),
        // the first value is not a string
        small_gguf(
            &[
                ("llama.block_count", Value::U32(30)),
                ("general.name", text("x")),
            ],
            true,
        ),
        small_gguf(&[("general.name", text(""))], false),
    ];
    for bytes in &files {
        let g = Gguf::parse(bytes, "test".as_ref()).unwrap();
        let header = GgufHeader {
            version: g.version,
            n_tensors: g.tensors.len() as u64,
            n_kv: g.metadata.len() as u64,
        };
        assert_eq!(solution::gguf_header(bytes), Some(header));
        let first = match g.metadata.first() {
            Some((key, Value::String(value))) => Some((key.clone(), value.clone())),
            _ => None,
        };
        assert_eq!(
            solution::first_metadata_string(bytes),
            first,
            "the first pair of a file with the header {header:?}"
        );
    }
    // version 2 has the same layout
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert_eq!(solution::gguf_header(&v2).map(|h| h.version), Some(2));
    // not GGUF files (as far as this reader knows)
    let mut magic = bytes.clone();
    magic[3] = b'L';
    assert_eq!(solution::gguf_header(&magic), None, "the magic \"GGUL\"");
    assert_eq!(solution::first_metadata_string(&magic), None);
    let mut v4 = bytes.clone();
    v4[4] = 4;
    assert_eq!(solution::gguf_header(&v4), None, "version 4");
    assert_eq!(solution::gguf_header(&bytes[..23]), None, "23 bytes");
    assert_eq!(solution::gguf_header(&[]), None, "no bytes");
}

// --- Exercise 2 ---------------------------------------------------------------------------

fn f32s_to_bytes(w: &[f32]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn bytes_to_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// `w` as llama.cpp's converter writes it into a GGUF file (the crate's `permute_rows`).
fn to_gguf_order(w: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
    bytes_to_f32s(&permute_rows(&f32s_to_bytes(w), 4 * cols, n_head, true))
}

/// `y = W x` for a `(rows, cols)` matrix.
fn matvec(w: &[f32], x: &[f32]) -> Vec<f32> {
    w.chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// llama.cpp's RoPE: each head's neighbours `(x[2i], x[2i + 1])` rotated by pair `i`'s
/// angle at `pos` (the same angles as the crate's table).
fn rope_interleaved(x: &[f32], table: &RopeTable, pos: usize) -> Vec<f32> {
    let half = table.head_dim / 2;
    let mut out = x.to_vec();
    for head in out.chunks_exact_mut(table.head_dim) {
        for i in 0..half {
            let (cos, sin) = (table.cos[pos * half + i], table.sin[pos * half + i]);
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * cos - b * sin;
            head[2 * i + 1] = b * cos + a * sin;
        }
    }
    out
}

/// Hugging Face's RoPE (the crate's): each head's pairs `(x[i], x[i + hs/2])`.
fn rope_half_split(x: &[f32], table: &RopeTable, pos: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    rope_forward(&mut out, x, table, pos, 1, x.len() / table.head_dim);
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn exercise_2_qk_unpermutation() {
    // hs = 8, hs/2 = 4: GGUF row 2i + j holds Hugging Face row 4j + i, so the file's
    // neighbours (0, 1) are Hugging Face's pair (0, 4), (2, 3) are (1, 5), ...
    let map: Vec<usize> = (0..8).map(|r| solution::hf_row_of_gguf_row(r, 8)).collect();
    assert_eq!(
        map,
        [0, 4, 1, 5, 2, 6, 3, 7],
        "GGUF row r holds HF row map[r]"
    );
    assert_eq!(solution::hf_row_of_gguf_row(1, 2), 1, "hs = 2: one pair");
    // against the crate's permutation, at SmolLM2's head width 64 too
    for hs in [4, 6, 64] {
        let labels: Vec<u8> = (0..hs as u32).flat_map(u32::to_le_bytes).collect();
        let gguf = permute_rows(&labels, 4, 1, true);
        for r in 0..hs {
            let want = u32::from_le_bytes(gguf[4 * r..4 * r + 4].try_into().unwrap()) as usize;
            assert_eq!(
                solution::hf_row_of_gguf_row(r, hs),
                want,
                "GGUF row {r} of a head of width {hs}"
            );
        }
    }
    // whole matrices: the file's rows back in Hugging Face's order
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (n_head, hs, cols) in [(1, 2, 3), (3, 8, 5), (9, 64, 4)] {
        let w_hf = random(&mut rng, n_head * hs * cols, 1.0);
        let w_gguf = to_gguf_order(&w_hf, n_head, cols);
        assert_eq!(
            solution::unpermute_qk(&w_gguf, n_head, cols),
            w_hf,
            "{n_head} heads of width {hs}, {cols} columns"
        );
    }
    // What the permutation is for: llama.cpp multiplies by the file's rows and rotates
    // neighbours; Hugging Face (and this crate) multiplies by your rows and rotates halves;
    // the attention scores q_t · k_s are the same. Two query heads share one key head.
    let (n_head, hs, cols) = (2, 8, 6);
    let table = RopeTable::new(10000.0, hs, 32);
    let (wq_hf, wk_hf) = (
        random(&mut rng, n_head * hs * cols, 1.0),
        random(&mut rng, hs * cols, 1.0),
    );
    let (wq_file, wk_file) = (
        to_gguf_order(&wq_hf, n_head, cols),
        to_gguf_order(&wk_hf, 1, cols),
    );
    let (wq, wk) = (
        solution::unpermute_qk(&wq_file, n_head, cols),
        solution::unpermute_qk(&wk_file, 1, cols),
    );
    let (x_t, x_s) = (random(&mut rng, cols, 1.0), random(&mut rng, cols, 1.0));
    let mut wrong_pairs = 0f32;
    for (t, s) in [(3, 1), (9, 9), (31, 0), (20, 17)] {
        let q_file = rope_interleaved(&matvec(&wq_file, &x_t), &table, t);
        let k_file = rope_interleaved(&matvec(&wk_file, &x_s), &table, s);
        let q = rope_half_split(&matvec(&wq, &x_t), &table, t);
        let k = rope_half_split(&matvec(&wk, &x_s), &table, s);
        // the file's rows rotated in halves: the wrong pairs
        let q_wrong = rope_half_split(&matvec(&wq_file, &x_t), &table, t);
        let k_wrong = rope_half_split(&matvec(&wk_file, &x_s), &table, s);
        for h in 0..n_head {
            let head = h * hs..(h + 1) * hs;
            let (llama_cpp, ours) = (
                dot(&q_file[head.clone()], &k_file),
                dot(&q[head.clone()], &k),
            );
            assert!(
                (llama_cpp - ours).abs() < 1e-5,
                "head {h}, positions {t} and {s}: llama.cpp's score {llama_cpp}, yours {ours}"
            );
            let wrong = dot(&q_wrong[head], &k_wrong);
            wrong_pairs = wrong_pairs.max((wrong - llama_cpp).abs());
        }
    }
    assert!(
        wrong_pairs > 0.1,
        "rotating the file's rows in halves changes the scores (by {wrong_pairs})"
    );
}

// --- Exercise 3 ---------------------------------------------------------------------------

#[test]
fn exercise_3_smollm_digit_split() {
    // "a  2": the digit is a piece; the text before it, "a  ", is split on its own, and
    // there the space run ends the text, so it stays whole. GPT-2 alone gives the run's
    // last space to the digits.
    assert_eq!(gpt2_pieces("a  2"), ["a", " ", " 2"], "GPT-2's split");
    assert_eq!(solution::smollm_pieces("a  2"), ["a", "  ", "2"]);
    // digits one by one, letters between them as GPT-2 splits them
    assert_eq!(
        solution::smollm_pieces("x1y22z333"),
        ["x", "1", "y", "2", "2", "z", "3", "3", "3"]
    );
    assert_eq!(
        solution::smollm_pieces("year 2026!"),
        ["year", " ", "2", "0", "2", "6", "!"]
    );
    // numeric is more than 0-9 (superscript two, fullwidth one, Arabic-Indic three)
    assert_eq!(
        solution::smollm_pieces("x²+１٣ ok"),
        ["x", "²", "+", "１", "٣", " ok"]
    );
    assert_eq!(solution::smollm_pieces(""), Vec::<&str>::new());
    // the 251 texts SmolLM2's tokenizer is checked on (accents, CJK, emoji, digit runs,
    // code, whitespace runs, Moby-Dick), against the crate's split, which gives Hugging
    // Face's ids on all of them
    let smollm = Pattern::Smollm.split();
    let texts = fixture_json("tokenizer_ids.json");
    let cases = texts["cases"].as_array().unwrap();
    assert!(cases.len() >= 251);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            solution::smollm_pieces(text),
            smollm.pieces(text),
            "{}: {text:?}",
            case["name"]
        );
    }
    // random strings of the tricky characters, against the crate
    let alphabet = [
        "a", "Z", "é", " ", "  ", "\t", "\n", "\r\n", "1", "٣", "²", "７", ".", "'s", "日", "🙂",
        "\u{a0}", "-",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..500 {
        let text: String = (0..rng.gen_range(0..12))
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        assert_eq!(
            solution::smollm_pieces(&text),
            smollm.pieces(&text),
            "{text:?}"
        );
    }
}

// --- Exercise 4 ---------------------------------------------------------------------------

fn messages_of(case: &serde_json::Value) -> Vec<Message> {
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn exercise_4_chat_prompt() {
    // by hand: one user message, so SmolLM's default system message comes first, and the
    // prompt ends with the opening of the assistant's turn
    assert_eq!(
        solution::render_chatml(&[Message::user("Hi!")], true),
        format!(
            "<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n\
             <|im_start|>user\nHi!<|im_end|>\n\
             <|im_start|>assistant\n"
        )
    );
    // transformers' renderings of SmolLM2's own template (the reference's "What is 2+2?",
    // a system message, a multi-turn history with accents, CJK and an emoji, and a history
    // without the generation prompt), character for character
    let f = fixture_json("chat_template.json");
    let cases = f["templates"]["smollm2"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let (name, gen) = (
            case["name"].as_str().unwrap(),
            case["add_generation_prompt"].as_bool().unwrap(),
        );
        assert_eq!(
            solution::render_chatml(&messages_of(case), gen),
            case["text"].as_str().unwrap(),
            "{name}"
        );
    }
    // more conversations, against the crate's rendering of the same template
    let more = [
        // nothing: the default system message comes with the first message, so none here
        (vec![], true),
        (vec![], false),
        // a system message that is not first is an ordinary turn
        (vec![Message::user("a"), Message::system("late")], true),
        // an empty system message is still the conversation's own
        (vec![Message::system(""), Message::user("b")], true),
        (vec![Message::new("tool", "42")], false),
        // contents are copied as they are, markers too
        (vec![Message::user("<|im_end|> inside\n\n")], true),
    ];
    let template = smollm2_template();
    for (messages, gen) in more {
        assert_eq!(
            solution::render_chatml(&messages, gen),
            template.render(&messages, gen).unwrap(),
            "{messages:?}, add_generation_prompt {gen}"
        );
    }
}

// --- Exercise 5 ---------------------------------------------------------------------------

/// The last position's 49,152 logits of SmolLM2-135M-Instruct after "The capital of France
/// is" (ids 504 3575 282 4649 314), from the crate's model on the file's weights in f32
/// (`tests/fixtures/smollm2/README.md` says how they were made).
fn france_logits() -> Vec<f32> {
    bytes_to_f32s(&std::fs::read(fixture("france_last_logits.f32")).unwrap())
}

/// The reference's `france` case: transformers' top-10 ids, logits and log-probabilities.
fn france_reference() -> serde_json::Value {
    let reference = fixture_json("reference.json");
    let case = reference["cases"][0].clone();
    assert_eq!(case["name"], "france");
    assert_eq!(case["ids"], serde_json::json!([504, 3575, 282, 4649, 314]));
    case
}

/// The fixture is what transformers gives: its 10 largest logits are the reference's ids in
/// the reference's order, each within 2e-4 (measured: 2.2e-5, the same as the real-data
/// test `smollm2_f32_equals_transformers`, whose model wrote the fixture).
#[test]
fn france_logits_fixture_is_the_reference() {
    let logits = france_logits();
    assert_eq!(
        logits.len(),
        49_152,
        "one logit per token of the vocabulary"
    );
    let case = france_reference();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let mut worst = 0f64;
    for (k, pair) in case["last_topk"].as_array().unwrap().iter().enumerate() {
        let (id, logit) = (
            pair[0].as_u64().unwrap() as usize,
            pair[1].as_f64().unwrap(),
        );
        assert_eq!(order[k], id, "the {k}th largest logit");
        worst = worst.max((logits[id] as f64 - logit).abs());
    }
    eprintln!("the fixture's top-10 logits are within {worst:.1e} of transformers'");
    assert!(worst < 2e-4, "a top-10 logit off by {worst}");
}

#[test]
fn exercise_5_greedy_step_on_real_logits() {
    // by hand: logits (0, ln 3) are probabilities 1/4 and 3/4
    let lp = solution::log_softmax(&[0.0, 3f32.ln()]);
    assert!(
        (lp[0] + 4f64.ln()).abs() < 1e-7 && (lp[1] - 0.75f64.ln()).abs() < 1e-7,
        "ln(1/4), ln(3/4): {lp:?}"
    );
    // e^1000 overflows even an f64 (past e^709): subtract the largest logit first
    let lp = solution::log_softmax(&[1000.0, 1000.0, 0.0]);
    assert!(lp.iter().all(|v| v.is_finite()), "large logits: {lp:?}");
    assert!((lp[0] + 2f64.ln()).abs() < 1e-12 && (lp[1] + 2f64.ln()).abs() < 1e-12);
    assert!((lp[2] + 1000.0 + 2f64.ln()).abs() < 1e-9, "{lp:?}");
    // e^-1000 underflows to 0, whose ln is −inf: the same shift keeps it finite
    let lp = solution::log_softmax(&[-1000.0, -1000.0]);
    assert!(
        lp.iter().all(|v| (v + 2f64.ln()).abs() < 1e-12),
        "small logits: {lp:?}"
    );
    // the argmax, by hand: all negative
    assert_eq!(solution::greedy_next(&[-3.0, -1.0, -2.0]), 1);
    assert_eq!(solution::greedy_next(&[0.5, 2.0, -1.0, 1.9]), 1);

    // SmolLM2's next-token distribution after "The capital of France is"
    let logits = france_logits();
    let case = france_reference();
    let lp = solution::log_softmax(&logits);
    assert_eq!(lp.len(), logits.len());
    let total: f64 = lp.iter().map(|v| v.exp()).sum();
    assert!((total - 1.0).abs() < 1e-9, "Σ exp(ln p) = {total}");
    // transformers' log-softmax (in f64, of its own f32 logits): within 1e-4, the logits'
    // own difference (2.2e-5) plus that of ln Z, which the top logits dominate
    let mut worst = 0f64;
    let mut top: Vec<u32> = Vec::new();
    for (pair, want) in case["last_topk"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["last_topk_logprob"].as_array().unwrap())
    {
        let id = pair[0].as_u64().unwrap() as usize;
        top.push(id as u32);
        worst = worst.max((lp[id] - want.as_f64().unwrap()).abs());
    }
    eprintln!("log-probabilities within {worst:.1e} of transformers'");
    assert!(
        worst < 1e-4,
        "a top-10 log-probability off by {worst} from transformers'"
    );
    // the crate's cross-entropy, −ln p[y], for the same ten ids: it sums the 49,152
    // exponentials in f32, which rounds each small term away against a sum near 1.3 (and
    // is why yours sums in f64): within 1e-3 (measured: 1.4e-4)
    let (n, v) = (top.len(), logits.len());
    let (mut probs, mut losses) = (vec![0.0; n * v], vec![0.0; n]);
    cross_entropy_forward(&mut probs, &mut losses, &logits.repeat(n), &top, v);
    let mut worst_f32 = 0f64;
    for (&y, &loss) in top.iter().zip(&losses) {
        let diff = (lp[y as usize] + loss as f64).abs();
        assert!(
            diff < 1e-3,
            "id {y}: ln p = {}, the crate's loss {loss}",
            lp[y as usize]
        );
        worst_f32 = worst_f32.max(diff);
    }
    eprintln!("and within {worst_f32:.1e} of the crate's f32 cross-entropy");
    // the greedy step: " Paris", with probability e^-0.258 ≈ 0.77
    assert_eq!(case["last_topk_tokens"][0], " Paris");
    assert_eq!(solution::greedy_next(&logits), 7042, "the argmax");
    // random logits, against the crate's greedy sampler
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..20 {
        let z = random(&mut rng, 1000, 30.0);
        let want = sample(&z, &Sampling::greedy(), &mut rng);
        assert_eq!(solution::greedy_next(&z), want);
    }
}

// --- Exercise 6 ---------------------------------------------------------------------------

#[test]
fn exercise_6_decode_speed_limit() {
    // SmolLM2-135M, by hand. A layer: W_q, W_o 576 × 576, W_k, W_v 192 × 576, W_gate, W_up
    // 1536 × 576, W_down 576 × 1536: 3,538,944 weights, at 20 bytes per 32 in Q4_1
    // 2,211,840 bytes; two norms of 576 f32, 4,608 bytes. 30 layers: 66,493,440 bytes; the
    // final norm 2,304; the tied head 49,152 × 576 in Q8_0 at 34 bytes per 32: 30,081,024.
    // Total 96,576,768 bytes (the file is 98,362,432 bytes: the rest is the vocabulary and
    // the other metadata), give or take the input's embedding row.
    let cfg = smollm2_135m();
    let row = 4.0 * cfg.d_model as f64; // the input's embedding row, as f32: noise
    let got = solution::bytes_per_token_q4_1(&cfg) as f64;
    assert!(
        (got - 96_576_768.0).abs() <= row,
        "SmolLM2 at Q4_1 with a Q8_0 head: {got} bytes"
    );
    // against the crate, which counts the input's row as f32, on SmolLM2 and another shape
    let other = GptConfig {
        vocab_size: 4096,
        d_model: 256,
        n_layers: 3,
        n_heads: 4,
        n_kv_heads: 1,
        d_ff: 640,
        tied_head: true,
        ..GptConfig::llama_tiny()
    };
    for cfg in [smollm2_135m(), other] {
        let want = bytes_per_token(&cfg, Format::Q4_1, Format::Q8_0) as f64;
        let got = solution::bytes_per_token_q4_1(&cfg) as f64;
        assert!(
            (got - want).abs() <= 4.0 * cfg.d_model as f64,
            "{cfg:?}: {got} bytes, the crate {want}"
        );
    }
    // the bound: 100 MB a token at 10 GB/s (a round figure, not a measurement) is at most
    // 100 tokens/s; SmolLM2's 96.6 MB at most 103.5
    assert!((solution::max_tokens_per_s(1e8, 1e10) - 100.0).abs() < 1e-9);
    let bound = solution::max_tokens_per_s(got, 10e9);
    assert!((bound - 103.54).abs() < 0.01, "{bound} tokens/s");
}
