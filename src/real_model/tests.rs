use super::*;
use crate::bpe::Pattern;
use crate::gpt::config::shrunk;
use crate::gpt::generate::{generate_streaming, KvCache, Sampling, Stop};
use crate::gpt::GptConfig;
use crate::quant::gguf::llama::to_gguf;
use crate::quant::gguf::Value;
use crate::quant::matrix::Format;

/// A short template, so that a byte-level conversation fits a small context.
const TEMPLATE: &str = "{% for m in messages %}{{ m.role[0] }}:{{ m.content }}\n{% endfor %}\
                        {% if add_generation_prompt %}a:{% endif %}";

/// A tiny Llama (vocabulary 300, context 96) whose weights are 10 times the init's, so
/// that its logits are far apart and greedy choices are not near ties.
fn tiny() -> Gpt {
    let mut model = Gpt::init(shrunk(GptConfig::llama_tiny(), [300, 64, 2, 96, 96]), 7).unwrap();
    for t in model.params.tensors_mut() {
        t.iter_mut().for_each(|x| *x *= 10.0);
    }
    model
}

/// `tiny()` as a Q8_0 GGUF file with a byte-level tokenizer and the template.
fn tiny_gguf() -> Gguf {
    let mut g = to_gguf(&tiny(), &Tokens::Bytes, "tiny chat", Format::Q8_0).unwrap();
    g.set(chat::CHAT_TEMPLATE_KEY, Value::String(TEMPLATE.into()));
    g
}

fn load_tiny(g: &Gguf) -> Pretrained {
    Pretrained::from_gguf(g, Precision::AsStored).unwrap()
}

fn err(g: &Gguf) -> String {
    match Pretrained::from_gguf(g, Precision::AsStored) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_gguf_file_gives_the_model_its_tokenizer_and_template() {
    let mut g = tiny_gguf();
    let p = load_tiny(&g);
    assert_eq!(p.name, "tiny chat");
    assert!(matches!(p.tokens, Tokens::Bytes));
    assert_eq!(p.model.cfg.vocab_size, 300);
    assert_eq!(p.chat.as_ref().unwrap().source(), TEMPLATE);
    assert_eq!(
        (p.end_of_turn, p.stop_tokens.len(), p.add_bos),
        (None, 0, false)
    );
    let ids = p.chat_prompt(&[Message::user("hi")]).unwrap();
    assert_eq!(p.decode(&ids).unwrap(), "u:hi\na:");
    // the end of turn: eot_token_id, else eos_token_id; both stop
    g.set("tokenizer.ggml.eos_token_id", Value::U32(10));
    assert_eq!(load_tiny(&g).end_of_turn, Some(10));
    g.set("tokenizer.ggml.eot_token_id", Value::U32(12));
    let p = load_tiny(&g);
    assert_eq!((p.end_of_turn, p.stop_tokens), (Some(12), vec![12, 10]));
    g.set("tokenizer.ggml.eot_token_id", Value::U32(300));
    assert!(err(&g).contains("eot_token_id is U32(300), not a token id"));
    g.set("tokenizer.ggml.eot_token_id", Value::U32(10));
    g.set("tokenizer.ggml.bos_token_id", Value::U32(1));
    g.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
    let p = load_tiny(&g);
    assert_eq!((p.end_of_turn, &p.stop_tokens[..]), (Some(10), &[10][..]));
    assert_eq!(p.encode("hi"), [1, 104, 105]);
    // the chat prompt has no BOS: the template writes what the model expects
    assert_eq!(
        p.chat_prompt(&[Message::user("hi")]).unwrap()[0],
        u32::from(b'u')
    );
    // no template: no chat
    g.metadata.retain(|(k, _)| k != chat::CHAT_TEMPLATE_KEY);
    let p = load_tiny(&g);
    assert!(p.chat.is_none());
    let Err(e) = p.conversation(None) else {
        panic!("a conversation without a template")
    };
    let e = e.to_string();
    assert!(
        e.contains("tiny chat has no chat template (tokenizer.chat_template)"),
        "{e}"
    );
}

/// Another architecture, no tokenizer, a tokenizer this crate does not encode, a broken
/// template, an unsupported tensor type: errors that name the problem (and the file).
#[test]
fn files_that_cannot_chat_are_errors_naming_the_problem() {
    let g = tiny_gguf();
    let mut other = g.clone();
    other.set("general.architecture", Value::String("qwen2".into()));
    assert!(err(&other).contains("qwen2"));
    let mut bare = g.clone();
    bare.metadata
        .retain(|(k, _)| !k.starts_with("tokenizer.ggml"));
    assert!(err(&bare).contains("no tokenizer (tokenizer.ggml.model is missing)"));
    let mut split = g.clone();
    split.set("tokenizer.ggml.pre", Value::String("qwen2".into()));
    split.set("tokenizer.ggml.merges", Value::strings(["a b"]));
    let e = err(&split);
    assert!(e.contains("tokenizer"), "{e}");
    let mut broken = g.clone();
    broken.set(chat::CHAT_TEMPLATE_KEY, Value::String("{{ messages".into()));
    let e = err(&broken);
    assert!(
        e.contains("tokenizer.chat_template") && e.contains("parse"),
        "{e}"
    );

    let dir = std::env::temp_dir().join(format!("llm-lessons-real-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    g.write(&path).unwrap();
    let p = load(&path, Precision::Exact).unwrap();
    assert_eq!(p.name, "tiny chat");
    // a tensor of type 12 (Q4_K): its info is the name, n_dims, two dims, the type
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"blk.0.ffn_up.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let ty = at + 4 + 2 * 8;
    assert_eq!(bytes[ty..ty + 4], 8u32.to_le_bytes(), "Q8_0 before");
    bytes[ty..ty + 4].copy_from_slice(&12u32.to_le_bytes());
    let kquant = dir.join("kquant.gguf");
    std::fs::write(&kquant, &bytes).unwrap();
    let Err(e) = load(&kquant, Precision::AsStored) else {
        panic!("a k-quant tensor loaded")
    };
    let e = e.to_string();
    assert!(
        e.contains("kquant.gguf") && e.contains("blk.0.ffn_up.weight") && e.contains("12"),
        "{e}"
    );
    let mut wrong = g.clone();
    wrong.set("general.architecture", Value::String("qwen2".into()));
    wrong.write(&path).unwrap();
    let Err(e) = load(&path, Precision::AsStored) else {
        panic!("qwen2 loaded")
    };
    assert!(e.to_string().contains("tiny.gguf"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A BPE tokenizer with chat markers among its special tokens: a rendered prompt's
/// markers are single tokens, as transformers tokenizes them.
#[test]
fn chat_prompts_match_special_tokens() {
    let text = "the cat sat on the mat. the cat ate the rat. ".repeat(20);
    let mut enc = crate::bpe::train::train(&text, 280, Pattern::Gpt2)
        .unwrap()
        .encoding("small")
        .unwrap();
    enc.add_special("<|im_start|>", 281).unwrap();
    enc.add_special("<|im_end|>", 282).unwrap();
    let tokens = Tokens::Bpe {
        encoding: Box::new(enc),
        pattern: Pattern::Gpt2,
    };
    let mut g = to_gguf(&tiny(), &tokens, "bpe", Format::F32).unwrap();
    let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
                  {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    g.set(chat::CHAT_TEMPLATE_KEY, Value::String(chatml.into()));
    g.set("tokenizer.ggml.eos_token_id", Value::U32(282));
    let p = load_tiny(&g);
    assert_eq!(p.end_of_turn, Some(282));
    assert_eq!(
        p.chat.as_ref().unwrap().special_tokens()["eos_token"],
        "<|im_end|>"
    );
    let ids = p.chat_prompt(&[Message::user("the cat")]).unwrap();
    let cat = p.tokens.encode("the cat");
    let nl = p.tokens.encode("\n");
    let user = p.tokens.encode("user\n");
    let assistant = p.tokens.encode("assistant\n");
    let want: Vec<u32> = [&[281][..], &user, &cat, &[282], &nl, &[281], &assistant].concat();
    assert_eq!(ids, want);
    // as ordinary text, the markers are many tokens
    assert!(p.encode("<|im_end|>").len() > 1);
}

/// Each turn's reply is what generation on the whole conversation laid out afresh gives:
/// the cache reuse changes the work, not the answer; a stop token ends the reply; a
/// conversation past the context is an error that leaves the history as it was.
#[test]
fn conversations_reuse_the_cache_and_stop_at_the_end_of_turn() {
    let mut p = load_tiny(&tiny_gguf());
    let greedy = Sampling::greedy();
    let fresh = |p: &Pretrained, messages: &[Message], max_new: usize| {
        let ids = p.chat_prompt(messages).unwrap();
        let mut out = Vec::new();
        let mut cache = KvCache::new(&p.model.cfg);
        let stop = generate_streaming(
            &p.model,
            &mut cache,
            &ids,
            max_new,
            &greedy,
            &p.stop_tokens,
            |id| {
                out.push(id);
                Ok(())
            },
        )
        .unwrap();
        (ids.len(), out, stop)
    };
    let mut chat = p.conversation(Some("be brief")).unwrap();
    let mut streamed = String::new();
    let first = chat
        .reply("hi", 12, &greedy, |piece| {
            streamed.push_str(piece);
            Ok(())
        })
        .unwrap();
    let history = [Message::system("be brief"), Message::user("hi")];
    let (n, ids, stop) = fresh(&p, &history, 12);
    assert_eq!((first.prompt_tokens, first.reused_tokens), (n, 0));
    assert_eq!((&first.ids, first.stop), (&ids, stop));
    assert_eq!(stop, Stop::MaxNew);
    assert_eq!(first.text, p.decode(&ids).unwrap());
    assert_eq!(streamed, first.text);
    assert!(first.prompt_seconds >= 0.0 && first.tokens_per_second().unwrap() > 0.0);

    let second = chat.reply("and?", 12, &greedy, |_| Ok(())).unwrap();
    let mut history = history.to_vec();
    history.push(Message::assistant(first.text.clone()));
    history.push(Message::user("and?"));
    assert_eq!(chat.messages()[..4], history[..]);
    let (n, ids, _) = fresh(&p, &history, 12);
    assert_eq!(second.prompt_tokens, n);
    // the system message and the first exchange's start, at least, were not run again
    assert!(
        second.reused_tokens > "s:be brief\nu:hi\na:".len(),
        "{second:?}"
    );
    assert_eq!(second.ids, ids);

    // a later token of a fresh reply, made a stop token, ends the reply before it
    let (_, ids, _) = fresh(&p, &[Message::user("hello")], 6);
    let at = (1..6).find(|&i| !ids[..i].contains(&ids[i]));
    let at = at.unwrap_or_else(|| panic!("no new token after the first: {ids:?}"));
    p.stop_tokens = vec![ids[at]];
    let mut chat = p.conversation(None).unwrap();
    let reply = chat.reply("hello", 6, &greedy, |_| Ok(())).unwrap();
    assert_eq!(reply.ids, ids[..at]);
    assert_eq!(reply.stop, Stop::EndOfTurn(ids[at]));

    let long = "x".repeat(200);
    let e = chat
        .reply(&long, 6, &greedy, |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the model's context of 96"), "{e}");
    assert_eq!(
        chat.messages().len(),
        2,
        "the failed message left the history"
    );
    // the first turn's prompt is the start of the second's: it stayed in the cache
    let again = chat.reply("hello", 6, &greedy, |_| Ok(())).unwrap();
    assert!(again.reused_tokens >= reply.prompt_tokens, "{again:?}");
}
