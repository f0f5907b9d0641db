//! Chat templates: how a conversation becomes the one string an instruction-tuned model
//! was trained on.
//!
//! A chat model reads plain text: its training turned each conversation into one string
//! with markers around every message (SmolLM2 uses ChatML, `<|im_start|>user\n...<|im_end|>\n`),
//! and at inference the prompt must be laid out the same way, ending with the opening of
//! the assistant's turn. The layout travels with the model as a Jinja template
//! (`tokenizer.chat_template` in a GGUF file, `chat_template` in Hugging Face's
//! `tokenizer_config.json`), which transformers renders with jinja2. Here it is rendered
//! with [minijinja](https://docs.rs/minijinja), configured as transformers configures
//! jinja2: `trim_blocks` and `lstrip_blocks`, loop controls, `raise_exception`, and the
//! Python string methods templates call (`.strip()`, `.startswith()`: minijinja-contrib's
//! `pycompat`). `tests/fixtures/smollm2/chat_template.json` holds renderings by
//! transformers itself that the tests compare with, character for character.
//!
//! ```
//! use llm_lessons::real_model::{ChatTemplate, Message};
//! let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
//!               {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
//! let template = ChatTemplate::new(chatml, &[]).unwrap();
//! let prompt = template.render(&[Message::user("Hi!")], true).unwrap();
//! assert_eq!(prompt, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, Value};

use crate::quant::gguf::Gguf;
use crate::{Error, Result};

/// The metadata key of a GGUF file's chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// One message of a conversation: who says it (`system`, `user`, `assistant`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    /// A message of any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// The instructions that frame the conversation.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    /// What the person says.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// What the model said.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// A compiled chat template and the special tokens it may refer to.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    /// `bos_token`, `eos_token`, ...: names the template sees, with their text.
    special_tokens: BTreeMap<String, String>,
    env: Environment<'static>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

/// The template's name inside its environment (errors say `chat:LINE`).
const NAME: &str = "chat";

fn template_error(what: &str, e: &minijinja::Error) -> Error {
    // the alternate form adds the source line the error points at
    let detail = match e.kind() {
        ErrorKind::SyntaxError => format!("{e:#}"),
        _ => e.to_string(),
    };
    Error::InvalidArgument(format!("{what}: {detail}"))
}

impl ChatTemplate {
    /// Compiles a Jinja chat template; `special_tokens` are variables the template may
    /// use, such as `("bos_token", "<s>")`. A template that does not parse is an error
    /// naming the line.
    pub fn new(source: &str, special_tokens: &[(&str, &str)]) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error("the chat template's syntax", &e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // templates refuse what they cannot lay out (a role they do not know) through it
        env.add_function("raise_exception", |message: String| -> Result<Value, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| template_error("the chat template does not parse", &e))?;
        Ok(ChatTemplate {
            source: source.to_string(),
            special_tokens: special_tokens
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env,
        })
    }

    /// The template of a GGUF file (`tokenizer.chat_template`), with the text of the
    /// special tokens its ids name (`tokenizer.ggml.bos_token_id` is `bos_token`; also
    /// `eos_token`, `unk_token`, `pad_token`), as transformers hands them to the template.
    /// `None` if the file has no template.
    pub fn from_gguf(g: &Gguf) -> Result<Option<ChatTemplate>> {
        let Some(value) = g.get(CHAT_TEMPLATE_KEY) else {
            return Ok(None);
        };
        let source = value.as_str().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "GGUF metadata: {CHAT_TEMPLATE_KEY} is not a string"
            ))
        })?;
        let texts = g
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_strings())
            .unwrap_or_default();
        let mut specials = Vec::new();
        for (name, key) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
            ("unk_token", "tokenizer.ggml.unknown_token_id"),
            ("pad_token", "tokenizer.ggml.padding_token_id"),
        ] {
            let Some(id) = g.get(key).and_then(|v| v.as_u64()) else {
                continue;
            };
            let text = usize::try_from(id)
                .ok()
                .and_then(|i| texts.get(i))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "GGUF metadata: {key} is {id}, past the {} tokens of tokenizer.ggml.tokens",
                        texts.len()
                    ))
                })?;
            specials.push((name, *text));
        }
        ChatTemplate::new(source, &specials)
            .map(Some)
            .map_err(|e| match e {
                Error::InvalidArgument(m) => {
                    Error::InvalidArgument(format!("{CHAT_TEMPLATE_KEY}: {m}"))
                }
                e => e,
            })
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The special tokens the template sees, by name (`bos_token`, ...).
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    // ANCHOR: render
    /// The conversation as the model reads it. With `add_generation_prompt` the text ends
    /// with the opening of the assistant's turn, so that what the model writes next is its
    /// reply. The template sees `messages` (`role`, `content`), `add_generation_prompt` and
    /// the special tokens. An error the template raises (a role it does not know) is an
    /// error here.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from(BTreeMap::from([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ]))
            })
            .collect();
        let mut ctx: BTreeMap<&str, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from(v.as_str())))
            .collect();
        ctx.insert("messages", Value::from(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error("the chat template", &e))?;
        template
            .render(Value::from(ctx))
            .map_err(|e| template_error("the chat template failed", &e))
    }
    // ANCHOR_END: render
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::gguf::Value as GgufValue;

    fn fixture() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/smollm2/chat_template.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn messages(case: &serde_json::Value) -> Vec<Message> {
        case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect()
    }

    /// Every case of the fixture renders as transformers rendered it, and the templates'
    /// errors are errors here with the template's message.
    #[test]
    fn renderings_equal_transformers() {
        let f = fixture();
        let mut checked = 0;
        for (name, t) in f["templates"].as_object().unwrap() {
            let specials: Vec<(&str, &str)> = t["special_tokens"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                .collect();
            let template = ChatTemplate::new(t["source"].as_str().unwrap(), &specials).unwrap();
            for case in t["cases"].as_array().unwrap() {
                let gen = case["add_generation_prompt"].as_bool().unwrap();
                let got = template.render(&messages(case), gen);
                let what = format!("{name} / {}", case["name"]);
                match (case["text"].as_str(), case["error"].as_str()) {
                    (Some(text), _) => assert_eq!(got.unwrap(), text, "{what}"),
                    (None, Some(error)) => {
                        let e = got.unwrap_err().to_string();
                        assert!(e.contains(error), "{what}: {e}");
                    }
                    _ => panic!("{what}: neither text nor error"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 9);
        // SmolLM2's first case is the shared reference's chat prompt
        let first = &f["templates"]["smollm2"]["cases"][0];
        assert_eq!(first["text"], f["reference_chat_2plus2"]["text"]);
    }

    /// A GGUF file's template comes with the text of its special tokens; a file without
    /// one has none; a broken one is an error naming the key.
    #[test]
    fn templates_come_from_gguf_metadata() {
        let f = fixture();
        let t = &f["templates"]["smollm2"];
        let mut g = Gguf::new();
        assert!(ChatTemplate::from_gguf(&g).unwrap().is_none());
        let texts = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a"];
        g.set("tokenizer.ggml.tokens", GgufValue::strings(texts));
        g.set(
            CHAT_TEMPLATE_KEY,
            GgufValue::String(t["source"].as_str().unwrap().into()),
        );
        for (key, id) in [("bos", 1), ("eos", 2), ("unknown", 0), ("padding", 2)] {
            g.set(
                &format!("tokenizer.ggml.{key}_token_id"),
                GgufValue::U32(id),
            );
        }
        let template = ChatTemplate::from_gguf(&g).unwrap().unwrap();
        let want: BTreeMap<String, String> = t["special_tokens"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(template.special_tokens(), &want);
        let case = &t["cases"][1];
        assert_eq!(
            template.render(&messages(case), true).unwrap(),
            case["text"].as_str().unwrap()
        );
        g.set("tokenizer.ggml.eos_token_id", GgufValue::U32(9));
        let e = ChatTemplate::from_gguf(&g).unwrap_err().to_string();
        assert!(e.contains("eos_token_id is 9"), "{e}");
        g.set("tokenizer.ggml.eos_token_id", GgufValue::U32(2));
        g.set(
            CHAT_TEMPLATE_KEY,
            GgufValue::String("{% for m in messages %}".into()),
        );
        let e = ChatTemplate::from_gguf(&g).unwrap_err().to_string();
        assert!(
            e.contains(CHAT_TEMPLATE_KEY) && e.contains("does not parse"),
            "{e}"
        );
        g.set(CHAT_TEMPLATE_KEY, GgufValue::U32(1));
        assert!(ChatTemplate::from_gguf(&g).is_err());
    }
}
