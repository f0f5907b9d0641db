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
