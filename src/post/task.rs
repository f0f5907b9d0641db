//! The chat task whose right answers the code knows: "write about the queen with castle".
//!
//! A user asks for a sentence of the toy world about a subject, sometimes with a word it
//! must contain; the assistant answers with one sentence. The judge ([`judge`]) checks the
//! answer exactly: it ended (the end-of-turn token came), the toy-world grammar can write
//! it (`Grammar::log_prob` is finite, so every pronoun, possessive and verb agrees with
//! the subject however far back), its subject is the one asked for, and it contains the
//! word asked for. Each prompt is made from a sentence the grammar wrote, whose subject and
//! words it asks for, so every prompt has a right answer, and that sentence is the
//! demonstration supervised fine-tuning learns from.
//!
//! The conversation is written in tokens as ChatML writes it, one token per word:
//!
//! ```text
//! <|im_start|> user write about the queen with castle <|im_end|>
//! <|im_start|> assistant the queen rides to the castle <|im_end|>
//! ```
//!
//! `<|im_start|>`, `<|im_end|>` and the role names are the formatting tokens.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::data::grammar::Grammar;
use crate::{Error, Result};

/// The tokens that are not words of the toy world, in id order from 0.
pub const SPECIALS: [&str; 8] = [
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "user",
    "assistant",
    "write",
    "about",
    "with",
];
/// The end of a sentence in pre-training text, and its start.
pub const END_OF_TEXT: u32 = 0;
/// ChatML's start of a message (its role follows).
pub const IM_START: u32 = 1;
/// ChatML's end of a message: the assistant's end of turn.
pub const IM_END: u32 = 2;
pub const USER: u32 = 3;
pub const ASSISTANT: u32 = 4;

/// The tokens that only frame the conversation (Llama 3 masks these out of its DPO loss).
pub const FORMATTING: [u32; 4] = [IM_START, IM_END, USER, ASSISTANT];

/// Whether a token only frames the conversation.
pub fn is_formatting(id: u32) -> bool {
    FORMATTING.contains(&id)
}

/// The nouns a sentence of the toy world can be about: its subjects.
pub const SUBJECTS: [&str; 68] = [
    "king",
    "lord",
    "duke",
    "queen",
    "lady",
    "duchess",
    "prince",
    "princess",
    "man",
    "shepherd",
    "fisherman",
    "monk",
    "woman",
    "shepherdess",
    "fisherwoman",
    "nun",
    "boy",
    "lad",
    "girl",
    "lass",
    "kings",
    "queens",
    "lords",
    "ladies",
    "dukes",
    "duchesses",
    "princes",
    "princesses",
    "men",
    "women",
    "shepherds",
    "shepherdesses",
    "fishermen",
    "fisherwomen",
    "monks",
    "nuns",
    "boys",
    "girls",
    "lads",
    "lasses",
    "dog",
    "cat",
    "horse",
    "cow",
    "goat",
    "pig",
    "hen",
    "donkey",
    "fox",
    "wolf",
    "bird",
    "mouse",
    "hound",
    "falcon",
    "dogs",
    "cats",
    "horses",
    "cows",
    "goats",
    "pigs",
    "hens",
    "donkeys",
    "foxes",
    "wolves",
    "birds",
    "mice",
    "hounds",
    "falcons",
];

/// Words a request never asks for: they say nothing of what happens.
const FUNCTION_WORDS: [&str; 17] = [
    "the", "who", "that", "and", "then", "but", "to", "in", "he", "she", "it", "they", "his",
    "her", "its", "their", "is",
];

/// Words to ids and back: [`SPECIALS`], then the toy world's words.
#[derive(Clone, Debug)]
pub struct ChatVocab {
    pub words: Vec<String>,
    ids: FxHashMap<String, u32>,
}

impl ChatVocab {
    /// The specials and every word of `grammar`.
    pub fn new(grammar: &Grammar) -> ChatVocab {
        let mut words: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        for w in grammar.vocabulary() {
            if !words.contains(&w) {
                words.push(w);
            }
        }
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        ChatVocab { words, ids }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of `word`; an error names a word outside the vocabulary.
    pub fn id(&self, word: &str) -> Result<u32> {
        self.ids
            .get(word)
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("{word:?} is not in the vocabulary")))
    }

    pub fn encode(&self, words: &[impl AsRef<str>]) -> Result<Vec<u32>> {
        words.iter().map(|w| self.id(w.as_ref())).collect()
    }

    pub fn word(&self, id: u32) -> &str {
        self.words.get(id as usize).map_or("<?>", String::as_str)
    }

    /// The words of `ids`, joined by spaces.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.word(i))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What the user asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The subject noun, e.g. `queen`.
    pub subject: String,
    /// A word the answer must contain, if any.
    pub with: Option<String>,
}

impl Request {
    /// `write about the queen with castle`.
    pub fn words(&self) -> Vec<&str> {
        let mut w = vec!["write", "about", "the", self.subject.as_str()];
        if let Some(x) = &self.with {
            w.extend(["with", x.as_str()]);
        }
        w
    }
}

/// A request and a right answer to it (the sentence it was made from).
#[derive(Clone, Debug)]
pub struct Example {
    pub request: Request,
    pub answer: Vec<String>,
}

/// The subject of a sentence: its first word that is one of [`SUBJECTS`].
pub fn subject_of(words: &[impl AsRef<str>]) -> Option<&str> {
    words
        .iter()
        .map(AsRef::as_ref)
        .find(|w| SUBJECTS.contains(w))
}

/// `n` requests, each made from a sentence of `grammar` drawn with `seed`: its subject,
/// and half the time one of its other content words.
pub fn examples(grammar: &Grammar, n: usize, seed: u64) -> Vec<Example> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let s = grammar.sample(&mut rng);
        let Some(subject) = subject_of(&s.words).map(str::to_string) else {
            continue;
        };
        let content: Vec<&String> = s
            .words
            .iter()
            .filter(|w| **w != subject && !FUNCTION_WORDS.contains(&w.as_str()))
            .collect();
        let with = if rng.gen_bool(0.5) {
            content.choose(&mut rng).map(|w| w.to_string())
        } else {
            None
        };
        out.push(Example {
            request: Request { subject, with },
            answer: s.words,
        });
    }
    out
}

/// The requests of [`examples`] alone: `n` of them, drawn with `seed`.
pub fn requests(grammar: &Grammar, n: usize, seed: u64) -> Vec<Request> {
    examples(grammar, n, seed)
        .into_iter()
        .map(|e| e.request)
        .collect()
}

// ANCHOR: chat_format
/// The prompt the assistant answers: `<|im_start|> user REQUEST <|im_end|> <|im_start|>
/// assistant`. Its answer follows, ended by `<|im_end|>`.
pub fn prompt_ids(vocab: &ChatVocab, request: &Request) -> Result<Vec<u32>> {
    let mut ids = vec![IM_START, USER];
    ids.extend(vocab.encode(&request.words())?);
    ids.extend([IM_END, IM_START, ASSISTANT]);
    Ok(ids)
}

/// An answer as the assistant writes it: its words, then `<|im_end|>`.
pub fn answer_ids(vocab: &ChatVocab, answer: &[impl AsRef<str>]) -> Result<Vec<u32>> {
    let mut ids = vocab.encode(answer)?;
    ids.push(IM_END);
    Ok(ids)
}
// ANCHOR_END: chat_format

/// What the judge found wrong with an answer, in the order it checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Correct,
    /// No `<|im_end|>` within the tokens allowed.
    Unfinished,
    /// A token that is not a word of the toy world (a formatting token inside the answer).
    NotWords,
    /// The grammar cannot write it (an agreement broken, a phrase cut short...).
    Ungrammatical,
    /// Grammatical, but about another subject.
    WrongSubject,
    /// Grammatical and about the subject, without the word asked for.
    MissingWord,
}

impl Verdict {
    pub fn is_correct(self) -> bool {
        self == Verdict::Correct
    }

    pub const ALL: [Verdict; 6] = [
        Verdict::Correct,
        Verdict::Unfinished,
        Verdict::NotWords,
        Verdict::Ungrammatical,
        Verdict::WrongSubject,
        Verdict::MissingWord,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::Unfinished => "unfinished",
            Verdict::NotWords => "not words",
            Verdict::Ungrammatical => "ungrammatical",
            Verdict::WrongSubject => "wrong subject",
            Verdict::MissingWord => "missing word",
        }
    }
}

// ANCHOR: judge
/// The judge: the verdict on the tokens an assistant wrote after the prompt of `request`
/// (its `<|im_end|>` and anything after it are not part of the answer).
pub fn judge(grammar: &Grammar, vocab: &ChatVocab, request: &Request, reply: &[u32]) -> Verdict {
    let Some(end) = reply.iter().position(|&id| id == IM_END) else {
        return Verdict::Unfinished;
    };
    let answer = &reply[..end];
    if answer.iter().any(|&id| (id as usize) < SPECIALS.len()) {
        return Verdict::NotWords;
    }
    let words: Vec<&str> = answer.iter().map(|&id| vocab.word(id)).collect();
    if !grammar.log_prob(&words).is_finite() {
        return Verdict::Ungrammatical;
    }
    if subject_of(&words) != Some(request.subject.as_str()) {
        return Verdict::WrongSubject;
    }
    match &request.with {
        Some(w) if !words.contains(&w.as_str()) => Verdict::MissingWord,
        _ => Verdict::Correct,
    }
}
// ANCHOR_END: judge

/// A conversation in tokens, and which positions the loss reads.
#[derive(Clone, Debug)]
pub struct Conversation {
    /// The prompt then the answer.
    pub ids: Vec<u32>,
    /// Tokens of the prompt: the answer starts at `ids[prompt_len]`.
    pub prompt_len: usize,
}

/// Which tokens a supervised loss reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossMask {
    /// Every token (the prompt's too): plain language modelling on the conversation.
    All,
    /// The assistant's tokens, its `<|im_end|>` included: it learns to stop.
    Assistant,
    /// The assistant's tokens without the formatting ones: no `<|im_end|>`, as Llama 3 masks
    /// formatting tokens out of DPO. On SFT it shows why the end must be learned.
    AssistantContent,
}

impl LossMask {
    pub fn name(self) -> &'static str {
        match self {
            LossMask::All => "all tokens",
            LossMask::Assistant => "assistant tokens",
            LossMask::AssistantContent => "assistant tokens, formatting masked",
        }
    }
}

// ANCHOR: mask
/// `mask[j]` is 1 when the loss reads the prediction of `ids[j + 1]` from position `j`,
/// for `j` in `0..ids.len() - 1`: a target is a token of the answer (and, with
/// [`LossMask::All`], of the prompt) that the mask keeps.
pub fn target_mask(conv: &Conversation, mask: LossMask) -> Vec<f32> {
    (1..conv.ids.len())
        .map(|i| {
            let target = conv.ids[i];
            let keep = match mask {
                LossMask::All => true,
                LossMask::Assistant => i >= conv.prompt_len,
                LossMask::AssistantContent => i >= conv.prompt_len && !is_formatting(target),
            };
            if keep {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}
// ANCHOR_END: mask

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Grammar, ChatVocab) {
        let g = Grammar::toy_world();
        let v = ChatVocab::new(&g);
        (g, v)
    }

    #[test]
    fn every_subject_and_special_is_in_the_vocabulary() {
        let (g, v) = setup();
        let words = g.vocabulary();
        for s in SUBJECTS {
            assert!(words.iter().any(|w| w == s), "{s} is not a toy-world word");
        }
        for (i, s) in SPECIALS.iter().enumerate() {
            assert_eq!(v.id(s).unwrap(), i as u32);
        }
        assert!(v.id("dragon").unwrap_err().to_string().contains("dragon"));
    }

    #[test]
    fn the_demonstration_is_judged_correct() {
        let (g, v) = setup();
        let ex = examples(&g, 300, 7);
        assert!(ex.iter().filter(|e| e.request.with.is_some()).count() > 100);
        for e in &ex {
            let reply = answer_ids(&v, &e.answer).unwrap();
            assert_eq!(judge(&g, &v, &e.request, &reply), Verdict::Correct, "{e:?}");
        }
    }

    #[test]
    fn the_judge_names_each_fault() {
        let (g, v) = setup();
        let req = Request {
            subject: "queen".into(),
            with: Some("castle".into()),
        };
        let verdict = |words: &str, end: bool| {
            let mut ids = v.encode(&words.split(' ').collect::<Vec<_>>()).unwrap();
            if end {
                ids.push(IM_END);
            }
            judge(&g, &v, &req, &ids)
        };
        assert_eq!(
            verdict("the queen goes to the castle", true),
            Verdict::Correct
        );
        assert_eq!(
            verdict("the queen goes to the castle", false),
            Verdict::Unfinished
        );
        assert_eq!(
            verdict("the queen goes to the castle user", true),
            Verdict::NotWords
        );
        // "his" cannot follow the queen: the agreement the grammar checks
        assert_eq!(
            verdict("the queen holds his crown", true),
            Verdict::Ungrammatical
        );
        assert_eq!(
            verdict("the king goes to the castle", true),
            Verdict::WrongSubject
        );
        assert_eq!(
            verdict("the queen goes to the palace", true),
            Verdict::MissingWord
        );
        // what follows the end of turn is not part of the answer
        let mut ids = v
            .encode(&["the", "queen", "sleeps", "in", "the", "castle"])
            .unwrap();
        ids.extend([IM_END, IM_START, USER]);
        assert_eq!(judge(&g, &v, &req, &ids), Verdict::Correct);
    }

    #[test]
    fn the_masks_keep_what_they_say() {
        let (_, v) = setup();
        let req = Request {
            subject: "dog".into(),
            with: None,
        };
        let prompt = prompt_ids(&v, &req).unwrap();
        let answer = answer_ids(&v, &["the", "dog", "sleeps"]).unwrap();
        let conv = Conversation {
            ids: [prompt.clone(), answer].concat(),
            prompt_len: prompt.len(),
        };
        let n = conv.ids.len() - 1;
        assert_eq!(target_mask(&conv, LossMask::All), vec![1.0; n]);
        let a = target_mask(&conv, LossMask::Assistant);
        // the last four targets: the, dog, sleeps, <|im_end|>
        assert_eq!(a.iter().sum::<f32>(), 4.0);
        assert_eq!(&a[n - 4..], &[1.0; 4]);
        let c = target_mask(&conv, LossMask::AssistantContent);
        assert_eq!(&c[n - 4..], &[1.0, 1.0, 1.0, 0.0]);
    }
}
