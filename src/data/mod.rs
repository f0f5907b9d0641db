//! Text in, sentences of words out: the corpora every chapter reads.
//!
//! - [`read_text`] reads any UTF-8 file by path, with an error that names the file and the
//!   first bad byte when it is not UTF-8.
//! - [`sentences`] cuts prose into sentences of lowercase words, with exactly the rules of
//!   `benches/peers/prep_sentences.py`, so the crate and the Python peers see the same input.
//! - [`grammar`] is the toy world: a seeded probabilistic grammar that writes corpora of
//!   any size and knows the true probability of every sentence it writes.

pub mod grammar;

use std::path::Path;

use crate::{Error, Result};

/// Reads a whole UTF-8 text file.
///
/// Errors name the file: missing, unreadable, or not UTF-8 (with the offset and line of the
/// first invalid byte).
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::NotUtf8 {
            path: path.to_path_buf(),
            offset,
            line,
        }
    })
}

/// Reads a corpus file and cuts it into sentences of words; an error if it holds no word.
pub fn read_sentences(path: impl AsRef<Path>) -> Result<Vec<Vec<String>>> {
    let path = path.as_ref();
    let sents = sentences(&read_text(path)?);
    if sents.is_empty() {
        return Err(Error::EmptyCorpus {
            what: path.display().to_string(),
        });
    }
    Ok(sents)
}

/// Reads a file that already holds one sentence a line (as gensim and KenLM take their
/// input): each line's words, lowercased, are one sentence.
pub fn read_line_sentences(path: impl AsRef<Path>) -> Result<Vec<Vec<String>>> {
    let path = path.as_ref();
    let sents: Vec<Vec<String>> = read_text(path)?
        .lines()
        .map(|line| words(&line.to_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    if sents.is_empty() {
        return Err(Error::EmptyCorpus {
            what: path.display().to_string(),
        });
    }
    Ok(sents)
}

/// Splits prose into sentences of lowercase word tokens.
///
/// Paragraphs end at blank lines; their lines are joined; a sentence ends after `.`, `!` or
/// `?` followed by whitespace. A token is a run of letters or digits, with inner apostrophes
/// kept (`’` is read as `'`). Sentences with no token are dropped.
///
/// ```
/// use llm_lessons::data::sentences;
/// let s = sentences("The whale’s jaw, 1851. Call me\nIshmael!\n\nNew paragraph");
/// assert_eq!(s, vec![
///     vec!["the", "whale's", "jaw", "1851"],
///     vec!["call", "me", "ishmael"],
///     vec!["new", "paragraph"],
/// ]);
/// ```
pub fn sentences(text: &str) -> Vec<Vec<String>> {
    let text = text.replace('\u{2019}', "'").replace("\r\n", "\n");
    let mut out = Vec::new();
    for para in paragraphs(&text) {
        // Lines of a paragraph are joined by single spaces, as `" ".join(para.split())`.
        let joined: Vec<&str> = para.split_whitespace().collect();
        let mut sent: Vec<&str> = Vec::new();
        for piece in joined {
            sent.push(piece);
            if piece.ends_with(['.', '!', '?']) {
                push_sentence(&mut out, &sent.join(" "));
                sent.clear();
            }
        }
        push_sentence(&mut out, &sent.join(" "));
    }
    out
}

fn push_sentence(out: &mut Vec<Vec<String>>, sent: &str) {
    let toks = words(&sent.to_lowercase());
    if !toks.is_empty() {
        out.push(toks);
    }
}

/// Paragraphs: text between lines that hold only whitespace (`\n\s*\n`).
fn paragraphs(text: &str) -> Vec<&str> {
    static BLANK_LINES: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = BLANK_LINES.get_or_init(|| regex::Regex::new(r"\n\s*\n").expect("valid regex"));
    re.split(text).collect()
}

/// Word tokens of one lowercased sentence: runs of letters or digits, joined by single inner
/// apostrophes (`[^\W_]+(?:'[^\W_]+)*`).
pub fn words(sentence: &str) -> Vec<String> {
    let chars: Vec<char> = sentence.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        loop {
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            if i + 1 < chars.len() && chars[i] == '\'' && chars[i + 1].is_alphanumeric() {
                i += 1;
                continue;
            }
            break;
        }
        out.push(chars[start..i].iter().collect());
    }
    out
}

/// Writes a file atomically: to a temp file in the same folder, then renamed over `path`, so
/// a crash never leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e| Error::Write {
        path: path.into(),
        source: e,
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_at_blank_lines_even_with_spaces() {
        let s = sentences("one two\nthree\n  \n\nfour five");
        assert_eq!(s, vec![vec!["one", "two", "three"], vec!["four", "five"]]);
    }

    #[test]
    fn apostrophes_inside_words_only() {
        assert_eq!(
            words("'tis the whale's 'jaw' o'er"),
            vec!["tis", "the", "whale's", "jaw", "o'er"]
        );
        assert_eq!(words("a_b c-d"), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn sentence_ends_need_following_whitespace() {
        let s = sentences("Mr.Smith went home. Yes");
        assert_eq!(s, vec![vec!["mr", "smith", "went", "home"], vec!["yes"]]);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = read_text("/no/such/corpus.txt").unwrap_err().to_string();
        assert!(err.contains("/no/such/corpus.txt"), "{err}");
    }

    #[test]
    fn non_utf8_names_offset_and_line() {
        let dir = std::env::temp_dir().join(format!("llm-lessons-utf8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.txt");
        std::fs::write(&p, b"good line\nbad \xff byte\n").unwrap();
        let err = read_text(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad.txt") && err.contains("offset 14") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn empty_corpus_is_an_error() {
        let dir = std::env::temp_dir().join(format!("llm-lessons-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("empty.txt");
        std::fs::write(&p, " ... \n\n !!").unwrap();
        let err = read_sentences(&p).unwrap_err().to_string();
        assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");
    }
}
