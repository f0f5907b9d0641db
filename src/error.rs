//! One error type for the whole crate: every failure a user can cause (a missing file, bad
//! bytes, an empty corpus, an order the data cannot support) becomes a message that names
//! the file and the problem, never a panic.

use std::path::PathBuf;

/// Everything that can go wrong in `llm_lessons`, with a message meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid UTF-8.
    #[error("{path} is not UTF-8 text: invalid byte at offset {offset} (line {line})")]
    NotUtf8 {
        path: PathBuf,
        offset: usize,
        line: usize,
    },
    /// The text holds no words at all.
    #[error("{what} is empty: it holds no words")]
    EmptyCorpus { what: String },
    /// The corpus is too small for what was asked of it.
    #[error("{what} is too small: {why}")]
    TooSmall { what: String, why: String },
    /// A setting is out of its range.
    #[error("invalid setting: {0}")]
    InvalidArgument(String),
    /// A file does not follow its format.
    #[error("{path}, line {line}: {message}")]
    Format {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A plot could not be drawn.
    #[error("cannot draw plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
    /// A model checkpoint (safetensors, config.json) that is unreadable, incomplete or
    /// contradicts its config.
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// Training stopped: the loss became NaN or infinite, or exploded.
    #[error(
        "training diverged at step {step}: loss {loss} (uniform guessing gives {uniform:.2}); \
         lower the learning rate or clip the gradient"
    )]
    Diverged {
        step: usize,
        loss: f32,
        uniform: f32,
    },
    /// A training run resumed on other token ids than it was trained on: their number and
    /// FNV-1a hash differ.
    #[error(
        "the run in {dir} was trained on other token ids ({} ids, fingerprint {:016x}; now {} ids, \
         fingerprint {:016x}): resume it on the same data",
        trained.0, trained.1, given.0, given.1
    )]
    OtherData {
        dir: PathBuf,
        /// (number of ids, FNV-1a hash) of the run's data.
        trained: (usize, u64),
        /// The same of the data given now.
        given: (usize, u64),
    },
    /// A token id that the tokenizer's vocabulary does not have.
    #[error("token id {id} is not in the vocabulary (ids 0..{n_vocab}{specials})")]
    UnknownTokenId {
        id: u32,
        n_vocab: usize,
        /// The special tokens' ids, as text (", special: 50256"), or empty.
        specials: String,
    },
    /// A word that has no vector.
    #[error("the word {word:?} is not in the vocabulary ({n_vocab} words; rare words are dropped by min_count)")]
    UnknownWord { word: String, n_vocab: usize },
    /// A special token the tokenizer does not have.
    #[error("unknown special token {name:?} (this tokenizer has: {known})")]
    UnknownSpecialToken { name: String, known: String },
    /// Token ids whose bytes are not UTF-8 text (often a sequence cut inside a character).
    #[error(
        "the tokens do not decode to UTF-8 text: invalid bytes at offset {offset}, in token \
         #{token_index} (id {id}); a sequence cut inside a character? decode_bytes gives the raw bytes"
    )]
    InvalidUtf8 {
        offset: usize,
        token_index: usize,
        id: u32,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
