//! A chapter 4 Llama as a GGUF file, the way llama.cpp's `convert_hf_to_gguf.py` writes
//! one, and back.
//!
//! | Hugging Face (this crate) | GGUF |
//! |---|---|
//! | `model.embed_tokens.weight` `(V, C)` | `token_embd.weight`, dims `[C, V]` |
//! | `model.layers.N.input_layernorm.weight` | `blk.N.attn_norm.weight` |
//! | `…self_attn.{q,k,v,o}_proj.weight` | `blk.N.attn_{q,k,v,output}.weight` |
//! | `…post_attention_layernorm.weight` | `blk.N.ffn_norm.weight` |
//! | `…mlp.{gate,up,down}_proj.weight` | `blk.N.ffn_{gate,up,down}.weight` |
//! | `model.norm.weight` | `output_norm.weight` |
//! | `lm_head.weight` (untied only) | `output.weight` |
//!
//! The model's shape is `llama.*` metadata (`llama.embedding_length`, `llama.block_count`,
//! ...). GGUF dimensions are innermost first, so a `(d_out, d_in)` weight has dims
//! `[d_in, d_out]`; its bytes are the same rows in the same order.
//!
//! One real difference: RoPE. Hugging Face rotates the pairs `(x[i], x[i + hs/2])` of a
//! head (half-split), llama.cpp the neighbours `(x[2i], x[2i+1])` (interleaved, as Meta's
//! original code). The converter reorders the rows of `W_q` and `W_k` within each head so
//! that the neighbour pairs of the new rows are the half-split pairs of the old:
//! new row `2i + j` of a head is old row `j hs/2 + i` ([`permute_rows`]). Since
//! `q · k` sums over the same pairs in both, attention is unchanged. Each row is a whole
//! run of blocks, so the permutation moves quantized rows as they are.

use super::{Gguf, GgufTensor, Value, ValueType};
use crate::bpe::encoding::gpt2_char_to_byte;
use crate::bpe::{Encoding, Pattern};
use crate::gpt::tokens::Tokens;
use crate::gpt::{
    Attention, AttnParams, BlockParams, Gpt, GptConfig, Linear, Mlp, MlpParams, Norm, NormParams,
    Params, Positions, Tensor, Weight,
};
use crate::quant::matrix::{Format, QMatrix};
use crate::{Error, Result};
use std::path::Path;

/// llama.cpp's `llama_ftype` of a file whose matrices are mostly in `format`
/// (`general.file_type`).
pub fn file_type(format: Format) -> u32 {
    match format {
        Format::F32 => 0,
        Format::F16 => 1,
        Format::Q4_0 => 2,
        Format::Q4_1 => 3,
        Format::Q8_0 => 7,
    }
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

// ANCHOR: permute_rows
/// Reorders the rows of a `(n_head * hs, ·)` projection within each head, `rows` being
/// `n_head * hs` rows of `row_bytes` bytes. `to_gguf`: from Hugging Face's half-split
/// order to llama.cpp's interleaved one (`w.reshape(n_head, 2, hs/2, -1).swapaxes(1, 2)`,
/// new row `2i + j` ← old row `j hs/2 + i`); otherwise the inverse
/// (`w.reshape(n_head, hs/2, 2, -1).swapaxes(1, 2)`).
///
/// # Panics
/// If `bytes` is not `n_head` heads of an even number of rows of `row_bytes`.
pub fn permute_rows(bytes: &[u8], row_bytes: usize, n_head: usize, to_gguf: bool) -> Vec<u8> {
    let rows = bytes.len() / row_bytes.max(1);
    let hs = rows / n_head.max(1);
    let half = hs / 2;
    assert!(
        row_bytes > 0 && n_head > 0 && rows * row_bytes == bytes.len() && n_head * 2 * half == rows,
        "permute_rows: {} bytes are not {n_head} heads of an even number of {row_bytes}-byte rows",
        bytes.len()
    );
    let mut out = vec![0u8; bytes.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let (interleaved, split) = (h * hs + 2 * i + j, h * hs + j * half + i);
                let (dst, src) = if to_gguf {
                    (interleaved, split)
                } else {
                    (split, interleaved)
                };
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}
// ANCHOR_END: permute_rows

/// The GGUF name of a projection from its Hugging Face name (`model.layers.3.mlp.up_proj`
/// is `blk.3.ffn_up.weight`).
fn gguf_name(hf: &str) -> String {
    let table = [
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    if hf == "lm_head" {
        return "output.weight".into();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap_or(hf);
    let (layer, part) = rest.split_once('.').unwrap_or((rest, ""));
    let short = table
        .iter()
        .find(|(h, _)| *h == part)
        .map_or(part, |(_, g)| g);
    format!("blk.{layer}.{short}.weight")
}

/// A matrix in `format`, or in f16 when its rows are not whole blocks (as the converter
/// falls back), from a `(rows, cols)` f32 weight.
fn stored(format: Format, rows: usize, cols: usize, w: &[f32]) -> Result<QMatrix> {
    let format = if cols % format.block_values() == 0 {
        format
    } else {
        Format::F16
    };
    QMatrix::quantize(format, rows, cols, w)
}

/// The model as a GGUF file: `llama.*` metadata, the tokenizer's vocabulary, norms in f32,
/// every matrix (the token embedding and head included) in `format` where its rows are
/// whole blocks and in f16 where not (`convert_hf_to_gguf.py`'s fallback). A weight that
/// is already quantized is stored as it is. `name` is `general.name`.
///
/// Errors for a GPT-2 architecture (GGUF's `llama` needs RMSNorm, RoPE, SwiGLU) and for
/// a model with LoRA adapters (merge them first).
pub fn to_gguf(model: &Gpt, tokens: &Tokens, name: &str, format: Format) -> Result<Gguf> {
    let cfg = &model.cfg;
    let (Norm::RmsNorm { eps }, Positions::Rope { theta }, Mlp::SwiGlu) =
        (cfg.norm, cfg.positions, cfg.mlp)
    else {
        return Err(Error::InvalidArgument(
            "GGUF's llama architecture needs RMSNorm, RoPE and SwiGLU: this model is GPT-2 style"
                .into(),
        ));
    };
    if cfg.mla.is_some() || cfg.moe.is_some() || cfg.mtp.is_some() {
        return Err(Error::InvalidArgument(
            "GGUF's llama architecture has no latent attention, experts or MTP depth: this \
             model has DeepSeek's parts (llama.cpp's deepseek2 layout is not written here)"
                .into(),
        ));
    }
    let mut g = Gguf::new();
    let u32v = |v: usize| Value::U32(v as u32);
    g.set("general.architecture", Value::String("llama".into()));
    g.set("general.type", Value::String("model".into()));
    g.set("general.name", Value::String(name.into()));
    g.set("llama.block_count", u32v(cfg.n_layers));
    g.set("llama.context_length", u32v(cfg.context));
    g.set("llama.embedding_length", u32v(cfg.d_model));
    g.set("llama.feed_forward_length", u32v(cfg.d_ff));
    g.set("llama.attention.head_count", u32v(cfg.n_heads));
    g.set("llama.attention.head_count_kv", u32v(cfg.n_kv_heads));
    g.set("llama.rope.freq_base", Value::F32(theta));
    g.set("llama.attention.layer_norm_rms_epsilon", Value::F32(eps));
    g.set("general.file_type", Value::U32(file_type(format)));
    g.set("llama.vocab_size", u32v(cfg.vocab_size));
    g.set("llama.rope.dimension_count", u32v(cfg.head_dim()));
    if !matches!(format, Format::F32 | Format::F16) {
        g.set("general.quantization_version", Value::U32(2));
    }
    for (key, value) in tokenizer_metadata(tokens, cfg.vocab_size)? {
        g.set(key, value);
    }

    let p = &model.params;
    let c = cfg.d_model as u64;
    let emb = match model.quantized_embedding() {
        // a model that keeps no f32 table: its blocks as they are
        Some(q) if p.tok_emb.is_empty() => q.clone(),
        _ => stored(format, cfg.vocab_size, cfg.d_model, &p.tok_emb)?,
    };
    g.add_matrix("token_embd.weight", &emb)?;
    let mut err = None;
    let mut linears = Vec::new();
    p.visit_linears(|hf, l| linears.push((hf.to_string(), l.clone())));
    let norm = |n: &NormParams| n.weight().data.clone();
    for (l, b) in p.blocks.iter().enumerate() {
        g.add_f32(
            &format!("blk.{l}.attn_norm.weight"),
            &[c],
            &norm(&b.attn_norm),
        )?;
        let prefix = format!("model.layers.{l}.");
        for (hf, lin) in linears.iter().filter(|(n, _)| n.starts_with(&prefix)) {
            if lin.adapter.is_some() {
                err.get_or_insert(Error::InvalidArgument(format!(
                    "{hf} has a LoRA adapter: merge it before writing a GGUF file"
                )));
                continue;
            }
            let mut m = match &lin.weight {
                Weight::F32(w) => stored(format, lin.d_out, lin.d_in, w)?,
                Weight::Quant(q) => q.clone(),
            };
            let heads = if hf.ends_with("q_proj") {
                Some(cfg.n_heads)
            } else if hf.ends_with("k_proj") {
                Some(cfg.n_kv_heads)
            } else {
                None
            };
            if let Some(n_head) = heads {
                let bytes = permute_rows(m.bytes(), m.row_bytes(), n_head, true);
                m = QMatrix::from_bytes(m.format, m.rows, m.cols, bytes)?;
            }
            g.add_matrix(&gguf_name(hf), &m)?;
        }
        g.add_f32(
            &format!("blk.{l}.ffn_norm.weight"),
            &[c],
            &norm(&b.mlp_norm),
        )?;
    }
    if let Some(e) = err {
        return Err(e);
    }
    g.add_f32("output_norm.weight", &[c], &norm(&p.final_norm))?;
    if let Some(head) = &p.lm_head {
        let m = match &head.weight {
            Weight::F32(w) => stored(format, head.d_out, head.d_in, w)?,
            Weight::Quant(q) => q.clone(),
        };
        g.add_matrix("output.weight", &m)?;
    }
    // the converter's order: embedding, output norm, head, then the blocks
    let order = |name: &str| match name {
        "token_embd.weight" => (0, 0),
        "output_norm.weight" => (1, 0),
        "output.weight" => (2, 0),
        _ => (3, 0),
    };
    g.tensors.sort_by_key(|t| order(&t.name));
    Ok(g)
}

/// Writes [`to_gguf`]'s file atomically.
pub fn save_gguf(
    model: &Gpt,
    tokens: &Tokens,
    name: &str,
    format: Format,
    path: &Path,
) -> Result<()> {
    to_gguf(model, tokens, name, format)?.write(path)
}

/// A GGUF Llama stored again in `format`, as llama.cpp's `llama-quantize
/// --allow-requantize` does: every matrix is dequantized to f32 and quantized into `format`
/// (f16 where its rows are not whole blocks), the norms stay f32, and the metadata (the
/// tokenizer and chat template included) is kept, with `general.file_type` updated. The
/// token embedding, which is also the tied output head, keeps at least Q8_0: llama.cpp too
/// stores the output head above the rest (SmolLM2's Q4_1 file has it in Q8_0). Requantizing
/// loses more than quantizing the original weights once: each step rounds again.
pub fn requantize(g: &Gguf, format: Format) -> Result<Gguf> {
    if g.get_str("general.architecture")? != "llama" {
        return Err(Error::InvalidArgument(format!(
            "requantizing needs a llama GGUF, not {:?}",
            g.get_str("general.architecture")?
        )));
    }
    let mut out = Gguf::new();
    out.version = g.version;
    for (key, value) in &g.metadata {
        out.set(key, value.clone());
    }
    out.set("general.file_type", Value::U32(file_type(format)));
    if matches!(format, Format::F32 | Format::F16) {
        out.metadata
            .retain(|(key, _)| key != "general.quantization_version");
    } else {
        out.set("general.quantization_version", Value::U32(2));
    }
    for t in &g.tensors {
        if t.dims.len() != 2 {
            out.add_tensor(t.clone())?;
            continue;
        }
        let target = match (t.name.as_str(), format) {
            ("token_embd.weight" | "output.weight", Format::Q4_0 | Format::Q4_1) => Format::Q8_0,
            _ => format,
        };
        let (rows, cols) = t.matrix_shape();
        let m = if t.format == target {
            t.to_qmatrix()?
        } else {
            stored(target, rows, cols, &t.to_f32()?)?
        };
        out.add_matrix(&t.name, &m)?;
    }
    Ok(out)
}

/// GPT-2's table from bytes to the printable characters its vocabulary files use.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    for (ch, b) in gpt2_char_to_byte() {
        table[b as usize] = ch;
    }
    table
}

/// The tokenizer as llama.cpp's `gpt2` (byte-level BPE) vocabulary: `tokenizer.ggml.model`,
/// `.pre` (the split pattern: `gpt-2`, `dbrx` for cl100k's, or `smollm`), `.tokens` (each
/// token's bytes in GPT-2's printable characters, by id), `.token_type`, `.merges` (`"a b"`,
/// by the rank of the merged token, or an encoding's own merge list) and the special ids. Ids past the tokenizer up to
/// `vocab_size` are `[PADn]` tokens of type unused, as the converter pads.
pub fn tokenizer_metadata(
    tokens: &Tokens,
    vocab_size: usize,
) -> Result<Vec<(&'static str, Value)>> {
    let chars = byte_to_char();
    let text = |bytes: &[u8]| bytes.iter().map(|&b| chars[b as usize]).collect::<String>();
    let mut texts: Vec<Option<String>> = Vec::new();
    let mut types: Vec<i32> = Vec::new();
    let mut merges = Vec::new();
    let mut eos = None;
    let pre = match tokens {
        Tokens::Bytes => {
            for b in 0..=255u8 {
                texts.push(Some(text(&[b])));
                types.push(NORMAL);
            }
            "gpt-2"
        }
        Tokens::Bpe { encoding, pattern } => {
            let n = encoding.n_ranks();
            let list = encoding.merges();
            for r in 0..n {
                // an encoding from merges may have unused ids
                let Ok(bytes) = encoding.token_bytes(r as u32) else {
                    texts.push(None);
                    types.push(UNUSED);
                    continue;
                };
                texts.push(Some(text(bytes)));
                types.push(NORMAL);
                if list.is_none() && bytes.len() >= 2 {
                    if let Some((a, b)) = last_merge(encoding, bytes, r as u32) {
                        merges.push(format!("{} {}", text(a), text(b)));
                    }
                }
            }
            for &(a, b) in list.unwrap_or_default() {
                let (a, b) = (encoding.token_bytes(a)?, encoding.token_bytes(b)?);
                merges.push(format!("{} {}", text(a), text(b)));
            }
            for name in encoding.special_names() {
                let id = encoding.special_token(name)? as usize;
                if id >= texts.len() {
                    texts.resize(id + 1, None);
                    types.resize(id + 1, UNUSED);
                }
                texts[id] = Some(name.to_string());
                types[id] = CONTROL;
                if name == "<|endoftext|>" {
                    eos = Some(id as u32);
                }
            }
            match pattern {
                Pattern::Gpt2 => "gpt-2",
                Pattern::Cl100k => "dbrx",
                Pattern::Smollm => "smollm",
            }
        }
    };
    if texts.len() > vocab_size {
        return Err(Error::InvalidArgument(format!(
            "the tokenizer has {} ids, more than the model's vocabulary of {vocab_size}",
            texts.len()
        )));
    }
    texts.resize(vocab_size, None);
    types.resize(vocab_size, UNUSED);
    let texts: Vec<String> = texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    let mut out = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", Value::strings(texts)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges", Value::strings(merges)),
    ];
    if let Some(id) = eos {
        out.push(("tokenizer.ggml.bos_token_id", Value::U32(id)));
        out.push(("tokenizer.ggml.eos_token_id", Value::U32(id)));
    }
    out.push(("tokenizer.ggml.add_bos_token", Value::Bool(false)));
    Ok(out)
}

/// The two tokens whose merge makes `bytes` (rank `rank`): BPE on its bytes with the ranks
/// below `rank` ends in two parts. `None` if it does not (a token that tiktoken's
/// algorithm never produces by merging).
fn last_merge<'a>(enc: &Encoding, bytes: &'a [u8], rank: u32) -> Option<(&'a [u8], &'a [u8])> {
    let mut bounds: Vec<usize> = (0..=bytes.len()).collect();
    loop {
        let best = (0..bounds.len().saturating_sub(2))
            .filter_map(|i| {
                enc.rank(&bytes[bounds[i]..bounds[i + 2]])
                    .filter(|&r| r < rank)
                    .map(|r| (r, i))
            })
            .min();
        match best {
            Some((_, i)) => {
                bounds.remove(i + 1);
            }
            None => break,
        }
    }
    (bounds.len() == 3).then(|| (&bytes[..bounds[1]], &bytes[bounds[1]..]))
}

/// The tokenizer of a GGUF file, when it is one this crate encodes exactly: a `gpt2`
/// (byte-level BPE) vocabulary with the `gpt-2`, `dbrx` (cl100k) or `smollm` split. A
/// vocabulary of the 256 bytes in order and no merges is [`Tokens::Bytes`]; any other is an
/// [`Encoding::from_merges`] that replays the file's merges, as llama.cpp and Hugging Face
/// tokenizers do, with the `CONTROL` and `USER_DEFINED` tokens (`<|im_start|>`, ...) as
/// special tokens. A file without a tokenizer, or with another kind (SentencePiece's
/// `llama`, another split), is an error that says so: the model then takes token ids.
pub fn tokens_from_gguf(g: &Gguf) -> Result<Tokens> {
    let unsupported = |why: String| {
        Error::InvalidArgument(format!(
            "this GGUF file's tokenizer cannot be used here ({why}): give token ids instead"
        ))
    };
    let model = match g.get("tokenizer.ggml.model") {
        None => {
            return Err(Error::InvalidArgument(
                "this GGUF file has no tokenizer (no tokenizer.ggml.model in its metadata): \
                 give token ids instead"
                    .into(),
            ))
        }
        Some(v) => v
            .as_str()
            .ok_or_else(|| unsupported(format!("tokenizer.ggml.model is {v:?}, not a string")))?,
    };
    if model != "gpt2" {
        return Err(unsupported(format!(
            "tokenizer.ggml.model is {model:?}, not \"gpt2\", the byte-level BPE"
        )));
    }
    let pattern = match g.get("tokenizer.ggml.pre").map(|v| (v, v.as_str())) {
        None | Some((_, Some("gpt-2"))) => Pattern::Gpt2,
        Some((_, Some("dbrx"))) => Pattern::Cl100k,
        Some((_, Some("smollm"))) => Pattern::Smollm,
        Some((_, Some(other))) => {
            return Err(unsupported(format!(
                "its split, tokenizer.ggml.pre {other:?}, is not gpt-2, dbrx or smollm"
            )))
        }
        Some((v, None)) => {
            return Err(unsupported(format!(
                "tokenizer.ggml.pre is {v:?}, not a string"
            )))
        }
    };
    let texts = g
        .get("tokenizer.ggml.tokens")
        .ok_or_else(|| unsupported("tokenizer.ggml.tokens is missing".into()))?
        .as_strings()
        .ok_or_else(|| unsupported("tokenizer.ggml.tokens is not an array of strings".into()))?;
    let types: Vec<i32> = match g.get("tokenizer.ggml.token_type") {
        Some(Value::Array(ValueType::I32, v)) => v
            .iter()
            .map(|x| if let Value::I32(t) = x { *t } else { NORMAL })
            .collect(),
        _ => vec![NORMAL; texts.len()],
    };
    let merges = match g.get("tokenizer.ggml.merges") {
        Some(v) => v.as_strings().ok_or_else(|| {
            unsupported("tokenizer.ggml.merges is not an array of strings".into())
        })?,
        None => Vec::new(),
    };
    let to_byte = gpt2_char_to_byte();
    let decode =
        |t: &str| -> Option<Vec<u8>> { t.chars().map(|c| to_byte.get(&c).copied()).collect() };
    let mut tokens = Vec::with_capacity(texts.len());
    let mut specials = Vec::new();
    for (id, t) in texts.iter().enumerate() {
        match types.get(id).copied().unwrap_or(NORMAL) {
            NORMAL => tokens.push(Some(decode(t).filter(|b| !b.is_empty()).ok_or_else(
                || {
                    unsupported(format!(
                        "token {id}, {t:?}, is not in GPT-2's byte characters"
                    ))
                },
            )?)),
            CONTROL | USER_DEFINED => {
                specials.push((t.to_string(), id as u32));
                tokens.push(None);
            }
            _ => tokens.push(None),
        }
    }
    if merges.is_empty()
        && specials.is_empty()
        && tokens.iter().flatten().count() == 256
        && (0..256).all(|b| tokens[b].as_deref() == Some(&[b as u8][..]))
    {
        return Ok(Tokens::Bytes);
    }
    // merges are "left right", each side a token's text
    let id_of: std::collections::HashMap<&str, u32> = texts
        .iter()
        .enumerate()
        .filter(|&(id, _)| tokens[id].is_some())
        .map(|(id, t)| (*t, id as u32))
        .collect();
    let pairs = merges
        .iter()
        .enumerate()
        .map(|(rank, m)| {
            let pair = m.split_once(' ');
            pair.and_then(|(a, b)| Some((*id_of.get(a)?, *id_of.get(b)?)))
                .ok_or_else(|| {
                    unsupported(format!(
                        "merge {rank}, {m:?}, is not two of its ordinary tokens"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let special: Vec<(&str, u32)> = specials.iter().map(|(t, id)| (t.as_str(), *id)).collect();
    let name = g
        .get("general.name")
        .and_then(Value::as_str)
        .unwrap_or("gguf");
    let encoding = Encoding::from_merges(name, tokens, &pairs, pattern.split(), &special).map_err(
        |e| match e {
            Error::InvalidArgument(why) => unsupported(why),
            e => e,
        },
    )?;
    Ok(Tokens::Bpe {
        encoding: Box::new(encoding),
        pattern,
    })
}

/// The longest context [`config_from_gguf`] accepts (Llama 3.1 has 131,072): the model
/// tabulates RoPE's angles for every position up front.
pub const MAX_CONTEXT: usize = 1 << 20;

/// The model's shape from a GGUF file's `llama.*` metadata; the vocabulary is the token
/// embedding's. Refuses another architecture, scaled RoPE, a context past [`MAX_CONTEXT`]
/// and more blocks than the file has tensors for.
pub fn config_from_gguf(g: &Gguf) -> Result<GptConfig> {
    let arch = g.get_str("general.architecture")?;
    if arch != "llama" {
        return Err(Error::InvalidArgument(format!(
            "general.architecture is {arch:?}: only \"llama\" is read"
        )));
    }
    if let Some(kind) = g.get("llama.rope.scaling.type").and_then(Value::as_str) {
        if kind != "none" {
            return Err(Error::InvalidArgument(format!(
                "llama.rope.scaling.type is {kind:?}: scaled RoPE is not implemented"
            )));
        }
    }
    let size = |key: &str| -> Result<usize> {
        let v = g.get_u64(key)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v <= 1 << 32)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("GGUF metadata: {key} = {v} is too large"))
            })
    };
    let emb = g
        .tensor("token_embd.weight")
        .ok_or_else(|| Error::InvalidArgument("tensor token_embd.weight is missing".into()))?;
    let n_heads = size("llama.attention.head_count")?;
    let cfg = GptConfig {
        vocab_size: emb.matrix_shape().0,
        d_model: size("llama.embedding_length")?,
        n_layers: size("llama.block_count")?,
        n_heads,
        n_kv_heads: match g.get("llama.attention.head_count_kv") {
            Some(_) => size("llama.attention.head_count_kv")?,
            None => n_heads,
        },
        d_ff: size("llama.feed_forward_length")?,
        context: size("llama.context_length")?,
        norm: Norm::RmsNorm {
            eps: g.get_f64("llama.attention.layer_norm_rms_epsilon")? as f32,
        },
        positions: Positions::Rope {
            theta: match g.get("llama.rope.freq_base") {
                Some(_) => g.get_f64("llama.rope.freq_base")? as f32,
                None => 10000.0,
            },
        },
        mlp: Mlp::SwiGlu,
        tied_head: g.tensor("output.weight").is_none(),
        mla: None,
        moe: None,
        mtp: None,
    };
    cfg.validate()?;
    // the other sizes are checked against the tensors' shapes; these two allocate first
    if cfg.context > MAX_CONTEXT {
        return Err(Error::InvalidArgument(format!(
            "llama.context_length {} is more than the {MAX_CONTEXT} positions this model \
             precomputes RoPE angles for",
            cfg.context
        )));
    }
    if cfg.n_layers.saturating_mul(9) > g.tensors.len() {
        return Err(Error::InvalidArgument(format!(
            "llama.block_count is {}, but the file has {} tensors (a block has 9)",
            cfg.n_layers,
            g.tensors.len()
        )));
    }
    if let Some(v) = g.get("llama.rope.dimension_count") {
        if v.as_u64() != Some(cfg.head_dim() as u64) {
            return Err(Error::InvalidArgument(format!(
                "llama.rope.dimension_count is {v:?}, not the head width {}: partial RoPE is not implemented",
                cfg.head_dim()
            )));
        }
    }
    Ok(cfg)
}

/// How [`model_from_gguf`] keeps the projections' weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// In the file's own format ([`Weight::Quant`] for f16 and the blocks; f32 stays f32):
    /// what llama.cpp computes with.
    AsStored,
    /// Dequantized to f32 ([`Weight::F32`]): the same values, multiplied exactly.
    Exact,
}

/// A `Gpt` from a GGUF file of architecture `llama`: the shape from [`config_from_gguf`],
/// every tensor checked for its name and shape (a missing, extra or mis-shaped tensor is an
/// error naming it), `W_q` and `W_k` permuted back to Hugging Face's half-split RoPE.
/// Norms are dequantized to f32; the projections and the head keep the file's format or
/// not, as `precision` says. As stored, a token embedding in a block format stays in its
/// blocks ([`Gpt::new_with_quantized_embedding`]): the lookup dequantizes the rows it
/// needs and a tied head multiplies through the blocks, as llama.cpp does; otherwise it
/// is dequantized to f32.
///
/// The matrices share the tensors' bytes ([`GgufTensor::to_qmatrix`]): from a mapped file
/// ([`Gguf::read`]) they are views of the map, and loading copies no weight as stored
/// except `W_q` and `W_k`, whose rows the RoPE permutation reorders (for SmolLM2 in Q4_1,
/// 8 MB of the file's 98).
pub fn model_from_gguf(g: &Gguf, precision: Precision) -> Result<Gpt> {
    let cfg = config_from_gguf(g)?;
    let mut used = std::collections::HashSet::new();
    let mut get = |name: &str, rows: usize, cols: usize| -> Result<&GgufTensor> {
        let t = g
            .tensor(name)
            .ok_or_else(|| Error::InvalidArgument(format!("tensor {name} is missing")))?;
        let want: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        if t.dims != want {
            return Err(Error::InvalidArgument(format!(
                "tensor {name} has dims {:?}, the metadata asks for {want:?}",
                t.dims
            )));
        }
        used.insert(name.to_string());
        Ok(t)
    };
    let vector =
        |t: &GgufTensor| -> Result<Tensor> { Tensor::from_vec(&[t.dims[0] as usize], t.to_f32()?) };
    let linear = |t: &GgufTensor, permute_heads: Option<usize>| -> Result<Linear> {
        let mut m = t.to_qmatrix()?;
        if let Some(n_head) = permute_heads {
            let bytes = permute_rows(m.bytes(), m.row_bytes(), n_head, false);
            m = QMatrix::from_bytes(m.format, m.rows, m.cols, bytes)?;
        }
        let (d_out, d_in) = (m.rows, m.cols);
        let weight = if precision == Precision::Exact || m.format == Format::F32 {
            Weight::F32(Tensor::from_vec(&[d_out, d_in], m.dequantize())?)
        } else {
            Weight::Quant(m)
        };
        Ok(Linear {
            d_in,
            d_out,
            weight,
            adapter: None,
        })
    };
    let (c, f, v, kv) = (cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.kv_dim());
    let emb = get("token_embd.weight", v, c)?;
    let blocks_format = matches!(emb.format, Format::Q8_0 | Format::Q4_0 | Format::Q4_1);
    let quant_emb = precision == Precision::AsStored && blocks_format;
    let tok_emb = match quant_emb {
        // the rows are looked up in the blocks: no f32 table
        true => Tensor {
            shape: vec![v, c],
            data: Vec::new(),
            trainable: false,
        },
        false => Tensor::from_vec(&[v, c], emb.to_f32()?)?,
    };
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for l in 0..cfg.n_layers {
        let name = |s: &str| format!("blk.{l}.{s}.weight");
        blocks.push(BlockParams {
            attn_norm: NormParams::RmsNorm {
                weight: vector(get(&name("attn_norm"), 1, c)?)?,
            },
            attn: Attention::Mha(AttnParams {
                q_proj: linear(get(&name("attn_q"), c, c)?, Some(cfg.n_heads))?,
                k_proj: linear(get(&name("attn_k"), kv, c)?, Some(cfg.n_kv_heads))?,
                v_proj: linear(get(&name("attn_v"), kv, c)?, None)?,
                o_proj: linear(get(&name("attn_output"), c, c)?, None)?,
            }),
            mlp_norm: NormParams::RmsNorm {
                weight: vector(get(&name("ffn_norm"), 1, c)?)?,
            },
            mlp: MlpParams::SwiGlu {
                gate_proj: linear(get(&name("ffn_gate"), f, c)?, None)?,
                up_proj: linear(get(&name("ffn_up"), f, c)?, None)?,
                down_proj: linear(get(&name("ffn_down"), c, f)?, None)?,
            },
        });
    }
    let final_norm = NormParams::RmsNorm {
        weight: vector(get("output_norm.weight", 1, c)?)?,
    };
    let lm_head = match cfg.tied_head {
        true => None,
        false => Some(linear(get("output.weight", v, c)?, None)?),
    };
    // rope_freqs.weight (llama 3's scaled RoPE) and other extras are not this model
    if let Some(t) = g.tensors.iter().find(|t| !used.contains(&t.name)) {
        return Err(Error::InvalidArgument(format!(
            "tensor {} is not part of the llama model the metadata describes",
            t.name
        )));
    }
    let params = Params {
        tok_emb,
        pos_emb: None,
        blocks,
        final_norm,
        lm_head,
        mtp: None,
    };
    // (an f16 embedding stays f32: a tied head's f16 product would be no faster)
    match quant_emb {
        true => Gpt::new_with_quantized_embedding(cfg, params, emb.to_qmatrix()?),
        false => Gpt::new(cfg, params),
    }
}

/// Reads a GGUF file into a model ([`model_from_gguf`]); errors name the file.
pub fn load_gguf(path: &Path, precision: Precision) -> Result<Gpt> {
    let g = Gguf::read(path)?;
    model_from_gguf(&g, precision).map_err(|e| match e {
        Error::InvalidArgument(message) => Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        },
        e => e,
    })
}

#[cfg(test)]
mod tests;
