//! A conversation with a chat model: each turn, the whole history is laid out again by the
//! chat template and tokenized, as the model saw conversations in training; the KV cache
//! keeps the keys and values of the longest start of those ids that it already holds, so
//! only the new part runs (the last reply as the template writes it, and the new message).
//! The reply streams out as text and stops at the model's end-of-turn token.

use std::time::Instant;

use super::chat::{ChatTemplate, Message};
use super::stream::TokenStream;
use super::Pretrained;
use crate::gpt::generate::{generate_streaming, KvCache, Sampling, Stop};
use crate::{Error, Result};

/// The history of a chat and the model's cache of it.
pub struct Conversation<'m> {
    model: &'m Pretrained,
    template: &'m ChatTemplate,
    messages: Vec<Message>,
    cache: KvCache,
    /// The ids whose keys and values `cache` holds, in order.
    cached: Vec<u32>,
}

/// One reply of the model, and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The reply's text (without the end-of-turn token).
    pub text: String,
    /// Its tokens.
    pub ids: Vec<u32>,
    /// Why it ended: [`Stop::EndOfTurn`] when the model ended its turn.
    pub stop: Stop,
    /// The tokens of the whole conversation laid out for this turn.
    pub prompt_tokens: usize,
    /// How many of them the cache already held (not run again).
    pub reused_tokens: usize,
    /// Running the rest of the prompt, up to the choice of the first token.
    pub prompt_seconds: f64,
    /// From the first token of the reply to the last.
    pub reply_seconds: f64,
}

impl Reply {
    /// Prompt tokens run per second.
    pub fn prompt_tokens_per_second(&self) -> f64 {
        (self.prompt_tokens - self.reused_tokens) as f64 / self.prompt_seconds
    }

    /// Tokens generated per second after the first: each is one step of the model
    /// (`None` for fewer than two tokens).
    pub fn tokens_per_second(&self) -> Option<f64> {
        (self.ids.len() >= 2).then(|| (self.ids.len() - 1) as f64 / self.reply_seconds)
    }
}

impl<'m> Conversation<'m> {
    /// An empty conversation, with a system message if given. Errors if the model has no
    /// chat template.
    pub fn new(model: &'m Pretrained, system: Option<&str>) -> Result<Conversation<'m>> {
        Ok(Conversation {
            model,
            template: model.template()?,
            messages: system.map(Message::system).into_iter().collect(),
            cache: KvCache::new(&model.model.cfg),
            cached: Vec::new(),
        })
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The model's reply to `user`, at most `max_new` tokens, each piece of text handed to
    /// `on_text` as it comes (an error from it stops the reply). The message and the reply
    /// join the history; on an error the message does not. A conversation longer than the
    /// model's context is an error that says so.
    pub fn reply<F>(
        &mut self,
        user: &str,
        max_new: usize,
        sampling: &Sampling,
        on_text: F,
    ) -> Result<Reply>
    where
        F: FnMut(&str) -> Result<()> + Send,
    {
        self.messages.push(Message::user(user));
        match self.respond(max_new, sampling, on_text) {
            Ok(reply) => {
                self.messages.push(Message::assistant(reply.text.clone()));
                Ok(reply)
            }
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
    }

    fn respond<F>(&mut self, max_new: usize, sampling: &Sampling, mut on_text: F) -> Result<Reply>
    where
        F: FnMut(&str) -> Result<()> + Send,
    {
        let model = self.model;
        let prompt = self.template.render(&self.messages, true)?;
        let ids = model.encode_chat(&prompt)?;
        let context = model.model.cfg.context;
        if ids.is_empty() {
            return Err(Error::InvalidArgument(
                "the chat template rendered the conversation as nothing".into(),
            ));
        }
        if ids.len() > context {
            return Err(Error::InvalidArgument(format!(
                "the conversation, laid out by the chat template, is {} tokens: more than the \
                 model's context of {context}",
                ids.len()
            )));
        }
        // reuse the cached start; at least the last token runs, for its logits
        let reused = self
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len() - 1);
        self.cache.truncate(reused);
        self.cached.truncate(reused);
        self.cached.extend_from_slice(&ids[reused..]);

        let mut stream = TokenStream::new(&model.tokens);
        let (mut text, mut new) = (String::new(), Vec::new());
        let (start, mut first, mut last) = (Instant::now(), None, None);
        let result = generate_streaming(
            &model.model,
            &mut self.cache,
            &ids[reused..],
            max_new,
            sampling,
            &model.stop_tokens,
            |id| {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                new.push(id);
                let piece = stream.push(id)?;
                if !piece.is_empty() {
                    text.push_str(&piece);
                    on_text(&piece)?;
                }
                Ok(())
            },
        );
        // the cache holds the prompt and the reply's tokens that ran, whatever happened
        self.cached.extend_from_slice(&new);
        self.cached.truncate(self.cache.len);
        let stop = result?;
        let end = Instant::now();
        let rest = stream.finish();
        if !rest.is_empty() {
            text.push_str(&rest);
            on_text(&rest)?;
        }
        let first = first.unwrap_or(end);
        Ok(Reply {
            text,
            ids: new,
            stop,
            prompt_tokens: ids.len(),
            reused_tokens: reused,
            prompt_seconds: (first - start).as_secs_f64(),
            reply_seconds: (last.unwrap_or(first) - first).as_secs_f64(),
        })
    }
}
