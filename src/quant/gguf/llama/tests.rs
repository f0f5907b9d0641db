use super::*;
use crate::gpt::config::shrunk;
use crate::gpt::Activations;

/// llama-tiny at a size whose matrices are whole blocks (d_model 64, d_ff 96), 2 layers,
/// 4 query heads and 2 key/value heads of width 16.
fn small() -> GptConfig {
    shrunk(GptConfig::llama_tiny(), [300, 64, 2, 96, 32])
}

fn logits(m: &Gpt, ids: &[u32]) -> Vec<f32> {
    let mut acts = Activations::new(&m.cfg, 1, ids.len());
    m.forward(&mut acts, ids).unwrap();
    acts.logits.clone()
}

fn roundtrip(m: &Gpt, tokens: &Tokens, format: Format, precision: Precision) -> Gpt {
    let bytes = to_gguf(m, tokens, "test", format)
        .unwrap()
        .to_bytes()
        .unwrap();
    let g = Gguf::parse(&bytes, Path::new("t.gguf")).unwrap();
    model_from_gguf(&g, precision).unwrap()
}

#[test]
fn permuting_rows_is_the_converters_reshape_and_undoes_itself() {
    // 2 heads of width 4, one byte per row: rows 0..8
    let rows: Vec<u8> = (0..8).collect();
    let gguf = permute_rows(&rows, 1, 2, true);
    // w.reshape(2, 2, 2).swapaxes(1, 2): head 0 [0 1 | 2 3] -> [0 2 1 3]
    assert_eq!(gguf, [0, 2, 1, 3, 4, 6, 5, 7]);
    assert_eq!(permute_rows(&gguf, 1, 2, false), rows);
    let rows: Vec<u8> = (0..24).collect(); // 1 head of width 8, 3 bytes a row
    let there = permute_rows(&rows, 3, 1, true);
    assert_ne!(there, rows);
    assert_eq!(permute_rows(&there, 3, 1, false), rows);
}

#[test]
fn f32_write_then_read_is_the_same_model() {
    let model = Gpt::init(small(), 5).unwrap();
    let g = to_gguf(&model, &Tokens::Bytes, "test", Format::F32).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.attention.head_count_kv").unwrap(), 2);
    assert_eq!(g.get_u64("llama.rope.dimension_count").unwrap(), 16);
    let q = g.tensor("blk.1.attn_q.weight").unwrap();
    assert_eq!((q.dims.as_slice(), q.format), (&[64, 64][..], Format::F32));
    assert_eq!(g.tensor("blk.0.attn_k.weight").unwrap().dims, [64, 32]);
    assert_eq!(g.tensor("token_embd.weight").unwrap().dims, [64, 300]);
    assert!(g.tensor("output.weight").is_some());
    // the stored q rows are permuted: row 1 of the file is row 8 (= hs/2) of the model
    let w = &model.params.blocks[1].attn.mha().unwrap().q_proj;
    let Weight::F32(w) = &w.weight else { panic!() };
    let file = q.to_f32().unwrap();
    assert_eq!(&file[64..128], &w[8 * 64..9 * 64]);
    for precision in [Precision::Exact, Precision::AsStored] {
        let back = roundtrip(&model, &Tokens::Bytes, Format::F32, precision);
        assert_eq!(back.cfg, model.cfg);
        assert_eq!(back.params, model.params);
        let ids = [1, 7, 255, 3, 9, 0];
        assert_eq!(logits(&back, &ids), logits(&model, &ids));
    }
    // tied
    let mut cfg = small();
    cfg.tied_head = true;
    let tied = Gpt::init(cfg, 2).unwrap();
    let back = roundtrip(&tied, &Tokens::Bytes, Format::F32, Precision::Exact);
    assert!(back.cfg.tied_head && back.params == tied.params);
}

/// A Q8_0 file read as stored is the model quantized in memory (the same blocks: the
/// permutation moves whole rows), with the token embedding kept in its blocks (no f32
/// table; f16 is dequantized); read exactly, it is those values in f32. The logits stay
/// within 2% of the f32 model's.
#[test]
fn quantized_files_keep_their_blocks() {
    let model = Gpt::init(small(), 6).unwrap();
    let ids = [5, 1, 200, 44, 9];
    let reference = logits(&model, &ids);
    for format in [Format::F16, Format::Q8_0, Format::Q4_0, Format::Q4_1] {
        let back = roundtrip(&model, &Tokens::Bytes, format, Precision::AsStored);
        let mut want = model.clone();
        let n = want.params.quantize(format, |_| true).unwrap();
        assert_eq!(n, 7 * 2 + 1);
        let emb = QMatrix::quantize(format, 300, 64, &model.params.tok_emb).unwrap();
        if format == Format::F16 {
            want.params.tok_emb.data = emb.dequantize();
            assert!(back.quantized_embedding().is_none());
        } else {
            // the shape, no values: the lookup reads the blocks
            assert!(back.params.tok_emb.is_empty() && back.params.tok_emb.shape == [300, 64]);
            assert_eq!(back.quantized_embedding(), Some(&emb), "{format}");
            want.params.tok_emb = back.params.tok_emb.clone();
            let e = back.params.check_f32("saving").unwrap_err().to_string();
            assert!(e.contains("embed_tokens"), "{e}");
            // written back, the blocks are stored as they are
            let again = to_gguf(&back, &Tokens::Bytes, "test", Format::Q8_0).unwrap();
            assert_eq!(
                again
                    .tensor("token_embd.weight")
                    .unwrap()
                    .to_qmatrix()
                    .unwrap(),
                emb
            );
        }
        assert_eq!(back.params, want.params, "{format}");
        let exact = roundtrip(&model, &Tokens::Bytes, format, Precision::Exact);
        assert!(exact.params.check_f32("test").is_ok());
        let (a, b) = (logits(&back, &ids), logits(&exact, &ids));
        let scale = reference.iter().map(|v| v.abs()).fold(0.0, f32::max);
        let worst = |x: &[f32]| {
            x.iter()
                .zip(&reference)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
        };
        let tol = if format == Format::F16 { 0.001 } else { 0.25 };
        assert!(
            worst(&a) <= tol * scale && worst(&b) <= tol * scale,
            "{format}: {} {} of {scale}",
            worst(&a),
            worst(&b)
        );
    }
    // rows of 344 values (llama-tiny's down_proj) fall back to f16, as the converter does
    let tiny = Gpt::init(GptConfig::llama_tiny(), 1).unwrap();
    let g = to_gguf(&tiny, &Tokens::Bytes, "tiny", Format::Q4_0).unwrap();
    assert_eq!(
        g.tensor("blk.0.ffn_down.weight").unwrap().format,
        Format::F16
    );
    assert_eq!(
        g.tensor("blk.0.ffn_up.weight").unwrap().format,
        Format::Q4_0
    );
    assert_eq!(g.get_u64("general.file_type").unwrap(), 2);
}

#[test]
fn tokenizers_travel_with_the_file() {
    let model = Gpt::init(small(), 1).unwrap();
    let g = to_gguf(&model, &Tokens::Bytes, "t", Format::F32).unwrap();
    let texts = g
        .get("tokenizer.ggml.tokens")
        .unwrap()
        .as_strings()
        .unwrap();
    assert_eq!(
        (texts.len(), texts[32], texts[65], texts[299]),
        (300, "Ġ", "A", "[PAD299]")
    );
    assert!(matches!(tokens_from_gguf(&g).unwrap(), Tokens::Bytes));
    // a BPE trained here, with <|endoftext|> after its ranks
    let text = "the cat sat on the mat. the cat ate the rat. ".repeat(20);
    let enc = crate::bpe::train::train(&text, 280, Pattern::Gpt2)
        .unwrap()
        .encoding("small")
        .unwrap();
    let tokens = Tokens::Bpe {
        encoding: Box::new(enc),
        pattern: Pattern::Gpt2,
    };
    let n = tokens.vocab_size().unwrap();
    assert!(n <= 300, "{n}");
    let g = to_gguf(&model, &tokens, "t", Format::F32).unwrap();
    let merges = g
        .get("tokenizer.ggml.merges")
        .unwrap()
        .as_strings()
        .unwrap();
    assert_eq!(merges.len(), n - 1 - 256);
    assert!(
        merges.contains(&"Ġc at")
            || merges.contains(&"Ġ cat")
            || merges.iter().any(|m| m.contains('Ġ'))
    );
    let back = tokens_from_gguf(&g).unwrap();
    let sample = "the cat sat on the rat";
    assert_eq!(back.encode(sample), tokens.encode(sample));
    assert_eq!(back.vocab_size().unwrap(), n);
    // what the file gives back replays its merges, and writes them again as they were
    let Tokens::Bpe { encoding, .. } = &back else {
        panic!("a BPE")
    };
    assert_eq!(encoding.merges().map(<[_]>::len), Some(merges.len()));
    let again = to_gguf(&model, &back, "t", Format::F32).unwrap();
    for key in ["tokenizer.ggml.merges", "tokenizer.ggml.pre"] {
        assert_eq!(again.get(key), g.get(key), "{key}");
    }
    // tokenizers this crate does not encode, and no tokenizer at all
    let error = |key: &str, value: Option<Value>| {
        let mut other = g.clone();
        match &value {
            Some(v) => other.set(key, v.clone()),
            None => other.metadata.retain(|(k, _)| k != key),
        }
        let Err(e) = tokens_from_gguf(&other) else {
            panic!("{key} = {value:?} is not a tokenizer of ours")
        };
        e.to_string()
    };
    let e = error("tokenizer.ggml.pre", Some(Value::String("qwen2".into())));
    assert!(e.contains("\"qwen2\"") && e.contains("token ids"), "{e}");
    let e = error("tokenizer.ggml.model", Some(Value::String("llama".into())));
    assert!(e.contains("\"llama\"") && e.contains("not \"gpt2\""), "{e}");
    let e = error("tokenizer.ggml.model", None);
    assert!(e.contains("has no tokenizer"), "{e}");
    let e = error("tokenizer.ggml.tokens", None);
    assert!(e.contains("tokenizer.ggml.tokens is missing"), "{e}");
    let e = error(
        "tokenizer.ggml.merges",
        Some(Value::strings(["t h", "x yz"])),
    );
    assert!(e.contains("merge 1, \"x yz\", is not two"), "{e}");
}

/// SmolLM2's split travels as `tokenizer.ggml.pre = "smollm"`, and the file's tokenizer
/// puts digits apart as the one it was written from.
#[test]
fn the_smollm_split_travels_with_the_file() {
    let model = Gpt::init(small(), 1).unwrap();
    let text = "in 2024 the cat sat on 12 mats; the cat ate 3 rats. ".repeat(20);
    let enc = crate::bpe::train::train(&text, 280, Pattern::Smollm)
        .unwrap()
        .encoding("small")
        .unwrap();
    let tokens = Tokens::Bpe {
        encoding: Box::new(enc),
        pattern: Pattern::Smollm,
    };
    let g = to_gguf(&model, &tokens, "t", Format::F32).unwrap();
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    let back = tokens_from_gguf(&g).unwrap();
    assert!(matches!(
        back,
        Tokens::Bpe {
            pattern: Pattern::Smollm,
            ..
        }
    ));
    for sample in ["in 2024 the cat sat", "a  22 mats", "x1y22z333"] {
        assert_eq!(back.encode(sample), tokens.encode(sample), "{sample:?}");
    }
}

#[test]
fn files_that_are_not_this_model_are_errors_naming_the_tensor() {
    let model = Gpt::init(small(), 1).unwrap();
    let g = to_gguf(&model, &Tokens::Bytes, "t", Format::F32).unwrap();
    let err = |g: &Gguf| {
        model_from_gguf(g, Precision::Exact)
            .unwrap_err()
            .to_string()
    };
    let mut missing = g.clone();
    missing.tensors.retain(|t| t.name != "blk.1.ffn_up.weight");
    assert!(err(&missing).contains("blk.1.ffn_up.weight is missing"));
    let mut extra = g.clone();
    extra.add_f32("rope_freqs.weight", &[8], &[1.0; 8]).unwrap();
    assert!(err(&extra).contains("rope_freqs.weight is not part"));
    let mut wide = g.clone();
    wide.set("llama.feed_forward_length", Value::U32(128));
    assert!(err(&wide).contains("blk.0.ffn_gate.weight has dims [64, 96]"));
    let mut other = g.clone();
    other.set("general.architecture", Value::String("qwen2".into()));
    assert!(err(&other).contains("qwen2"));
    // corrupted sizes that would allocate before any tensor is looked at
    let mut deep = g.clone();
    deep.set("llama.block_count", Value::U32(1_000_000_000));
    assert!(err(&deep).contains("llama.block_count is 1000000000"));
    let mut long = g.clone();
    long.set("llama.context_length", Value::U64(1 << 32));
    assert!(err(&long).contains("llama.context_length 4294967296"));
    let mut no_key = g.clone();
    no_key.metadata.retain(|(k, _)| k != "llama.block_count");
    assert!(err(&no_key).contains("llama.block_count is missing"));
    let gpt2 = Gpt::init(GptConfig::gpt2_tiny(), 0).unwrap();
    assert!(to_gguf(&gpt2, &Tokens::Bytes, "g", Format::F32).is_err());
    let e = load_gguf(Path::new("/nonexistent.gguf"), Precision::Exact).unwrap_err();
    assert!(e.to_string().contains("cannot read"));
}

/// Corrupted model files (bytes changed at random, seeded) give a model or an error, and
/// never a panic, in the reader and in the mapping.
#[test]
fn corrupted_model_files_are_errors_never_panics() {
    use rand::{Rng, SeedableRng};
    let model = Gpt::init(shrunk(GptConfig::llama_tiny(), [256, 32, 1, 32, 16]), 3).unwrap();
    let g = to_gguf(&model, &Tokens::Bytes, "t", Format::Q8_0).unwrap();
    let bytes = g.to_bytes().unwrap();
    // change the header, metadata and tensor infos: the bytes before the tensors' data
    let data: usize = g.tensors.iter().map(|t| t.data.len()).sum();
    let head = bytes.len() - data;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut loaded = 0;
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..rng.gen_range(1..3) {
            let i = rng.gen_range(0..head);
            b[i] = if rng.gen() {
                rng.gen()
            } else {
                b[i] ^ (1 << rng.gen_range(0..8))
            };
        }
        let r = std::panic::catch_unwind(|| {
            Gguf::parse(&b, Path::new("t.gguf"))
                .and_then(|g| model_from_gguf(&g, Precision::AsStored))
        });
        match r {
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(_)) => {}
            Err(_) => panic!("a corrupted model file made the reader panic"),
        }
    }
    assert!(loaded > 10, "{loaded}");
}

#[test]
fn requantizing_keeps_the_metadata_and_rounds_every_matrix_again() {
    let mut cfg = small();
    cfg.tied_head = true;
    let model = Gpt::init(cfg, 9).unwrap();
    let q4 = to_gguf(&model, &Tokens::Bytes, "test", Format::Q4_1).unwrap();
    let q8 = requantize(&q4, Format::Q8_0).unwrap();
    assert_eq!(q8.get_u64("general.file_type").unwrap(), 7);
    for (key, value) in &q4.metadata {
        if key != "general.file_type" {
            assert_eq!(q8.get(key), Some(value), "{key}");
        }
    }
    assert_eq!(q8.tensors.len(), q4.tensors.len());
    for (a, b) in q4.tensors.iter().zip(&q8.tensors) {
        assert_eq!((&a.name, &a.dims), (&b.name, &b.dims));
        let (x, y) = (a.to_f32().unwrap(), b.to_f32().unwrap());
        if a.dims.len() == 1 {
            assert_eq!((b.format, &x), (Format::F32, &y), "{}", a.name);
            continue;
        }
        assert_eq!(b.format, Format::Q8_0, "{}", a.name);
        // Q8_0's step d is absmax / 127 per block, stored as f16: the error is at most d / 2
        // plus 127 times f16's rounding of d (2^-11 relative)
        for (bx, by) in x.chunks(32).zip(y.chunks(32)) {
            let step = bx.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let worst = bx
                .iter()
                .zip(by)
                .fold(0f32, |m, (u, v)| m.max((u - v).abs()));
            let bound = step * (0.5 + 127.0 / 2048.0);
            assert!(worst <= bound, "{}: {worst} > {bound}", a.name);
        }
    }
    // to Q4_0: the tied head (token_embd) keeps Q8_0, the rest is Q4_0
    let q4_0 = requantize(&q4, Format::Q4_0).unwrap();
    assert_eq!(
        q4_0.tensor("token_embd.weight").unwrap().format,
        Format::Q8_0
    );
    assert_eq!(
        q4_0.tensor("blk.0.ffn_up.weight").unwrap().format,
        Format::Q4_0
    );
    // into its own format, a file is the same bytes
    let again = requantize(&q8, Format::Q8_0).unwrap().to_bytes().unwrap();
    assert!(
        again == q8.to_bytes().unwrap(),
        "Q8_0 requantized to Q8_0 changed"
    );
    let mut other = q4.clone();
    other.set("general.architecture", Value::String("gemma".into()));
    assert!(requantize(&other, Format::Q8_0).is_err());
}

/// Loaded from a file as stored, the model's matrices are views of the mapped file (no
/// copy), the token embedding included, except `W_q` and `W_k`, whose rows the RoPE
/// permutation reorders into a copy; it computes what the model parsed from the same
/// bytes in memory computes.
#[test]
fn a_model_loaded_from_a_file_shares_the_mapped_blocks() {
    let mut cfg = small();
    cfg.tied_head = true;
    let model = Gpt::init(cfg, 4).unwrap();
    let dir = std::env::temp_dir().join(format!("llm-lessons-llama-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.gguf");
    save_gguf(&model, &Tokens::Bytes, "m", Format::Q4_1, &path).unwrap();
    let loaded = load_gguf(&path, Precision::AsStored).unwrap();
    let quant = |l: &Linear| match &l.weight {
        Weight::Quant(q) => q.clone(),
        Weight::F32(_) => panic!("kept as stored"),
    };
    for b in &loaded.params.blocks {
        assert!(!quant(&b.attn.mha().unwrap().q_proj).storage.is_mapped());
        assert!(!quant(&b.attn.mha().unwrap().k_proj).storage.is_mapped());
        assert!(quant(&b.attn.mha().unwrap().v_proj).storage.is_mapped());
        assert!(quant(&b.attn.mha().unwrap().o_proj).storage.is_mapped());
        let MlpParams::SwiGlu {
            gate_proj,
            up_proj,
            down_proj,
        } = &b.mlp
        else {
            panic!("llama")
        };
        for l in [gate_proj, up_proj, down_proj] {
            assert!(quant(l).storage.is_mapped());
        }
    }
    assert!(loaded.quantized_embedding().unwrap().storage.is_mapped());
    assert!(loaded.params.tok_emb.is_empty());
    let parsed = model_from_gguf(
        &Gguf::parse(&std::fs::read(&path).unwrap(), &path).unwrap(),
        Precision::AsStored,
    )
    .unwrap();
    let ids = [3, 1, 4, 1, 5, 9, 2, 6];
    assert_eq!(logits(&loaded, &ids), logits(&parsed, &ids));
    // exactly: every value dequantized into f32, nothing left mapped
    let exact = load_gguf(&path, Precision::Exact).unwrap();
    assert!(exact.quantized_embedding().is_none() && exact.params.check_f32("t").is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
