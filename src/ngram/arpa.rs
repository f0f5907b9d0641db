//! The ARPA back-off format, which KenLM, SRILM and most speech toolkits read.
//!
//! ```text
//! \data\
//! ngram 1=5
//! ngram 2=7
//!
//! \1-grams:
//! -0.8751   the   -0.3010
//! ...
//! \end\
//! ```
//!
//! Each line holds log10 P(w | h), the n-gram, and log10 of its back-off weight when it is
//! a context. A reader computes P(w | h) = P_listed(h w) if `h w` is listed, else
//! bow(h) · P(w | h'). Interpolated Kneser-Ney fits this exactly: for an unseen `h w` its
//! probability is γ(h) P_lower(w | h'), so the back-off weight of h is γ(h).

use std::io::Write;
use std::path::Path;

use rustc_hash::FxHashMap;

use super::model::{Evaluation, NgramModel, Style};
use super::vocab::{BOS, BOS_WORD, EOS_WORD, UNK_WORD};
use crate::{Error, Result};

/// ARPA's stand-in for log10(0), used for `<s>`, which is never predicted.
const LOG10_ZERO: f64 = -99.0;

impl NgramModel {
    /// Writes the model in ARPA format (Kneser-Ney models with the standard conventions:
    /// the others have no back-off form). Written to a temp file, then renamed.
    pub fn write_arpa(&self, path: &Path) -> Result<()> {
        if !self.config.smoothing.is_kneser_ney() || self.config.style != Style::Standard {
            return Err(Error::InvalidArgument(format!(
                "ARPA export needs a back-off form: train with kn or mkn smoothing and the \
                 standard conventions (this model is {})",
                self.config.smoothing
            )));
        }
        let mut out = Vec::new();
        self.arpa_to(&mut out).map_err(|e| Error::Write {
            path: path.into(),
            source: e,
        })?;
        crate::data::write_atomic(path, &out)
    }

    fn arpa_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let n = self.config.order;
        let packer = self.counts.packer;
        // Order k lists every k-gram its estimate knows, sorted for a stable file.
        let mut tables: Vec<Vec<Vec<u32>>> = Vec::new();
        for k in 1..=n {
            let mut grams: Vec<Vec<u32>> = if k == 1 {
                (0..self.vocab.len() as u32).map(|w| vec![w]).collect()
            } else {
                self.counts.by_order[k - 1]
                    .keys()
                    .map(|&g| packer.unpack(g, k))
                    .collect()
            };
            grams.sort_unstable();
            tables.push(grams);
        }
        writeln!(out, "\\data\\")?;
        for (k, t) in tables.iter().enumerate() {
            writeln!(out, "ngram {}={}", k + 1, t.len())?;
        }
        for (k, grams) in tables.iter().enumerate() {
            let k = k + 1;
            writeln!(out, "\n\\{k}-grams:")?;
            for g in grams {
                let (h, w) = g.split_at(k - 1);
                let p = if w[0] == BOS {
                    LOG10_ZERO
                } else {
                    self.prob(h, w[0]).log10()
                };
                let words: Vec<&str> = g.iter().map(|&i| self.vocab.word(i)).collect();
                write!(out, "{p:.7}\t{}", words.join(" "))?;
                if k < n {
                    if let Some(b) = self.backoff_weight(k + 1, packer.pack(g)) {
                        write!(out, "\t{:.7}", b.log10())?;
                    }
                }
                writeln!(out)?;
            }
        }
        writeln!(out, "\n\\end\\")
    }
}

/// An ARPA model read back from a file: enough to score text with back-off semantics.
#[derive(Debug, Clone)]
pub struct ArpaModel {
    /// The highest order.
    pub order: usize,
    entries: FxHashMap<Vec<String>, (f64, f64)>,
}

impl ArpaModel {
    /// Reads an ARPA file; errors name the line.
    pub fn read(path: &Path) -> Result<ArpaModel> {
        let text = crate::data::read_text(path)?;
        let bad = |line: usize, message: String| Error::Format {
            path: path.into(),
            line,
            message,
        };
        let mut entries = FxHashMap::default();
        let mut declared: Vec<usize> = Vec::new();
        let mut section = 0usize;
        let mut seen_data = false;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            let lineno = i + 1;
            if line.is_empty() {
                continue;
            }
            if line == "\\data\\" {
                seen_data = true;
            } else if line == "\\end\\" {
                break;
            } else if let Some(rest) = line.strip_prefix("ngram ") {
                let count = rest
                    .split_once('=')
                    .and_then(|(_, c)| c.trim().parse().ok())
                    .ok_or_else(|| bad(lineno, format!("bad count line {line:?}")))?;
                declared.push(count);
            } else if line.starts_with('\\') && line.ends_with("-grams:") {
                section = line[1..line.len() - 7]
                    .parse()
                    .map_err(|_| bad(lineno, format!("bad section header {line:?}")))?;
            } else if section > 0 {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() != section + 1 && fields.len() != section + 2 {
                    return Err(bad(lineno, format!("expected a {section}-gram entry")));
                }
                let num = |s: &str| {
                    s.parse::<f64>()
                        .map_err(|_| bad(lineno, format!("bad number {s:?}")))
                };
                let p = num(fields[0])?;
                let b = if fields.len() == section + 2 {
                    num(fields[section + 1])?
                } else {
                    0.0
                };
                let gram = fields[1..=section].iter().map(|s| s.to_string()).collect();
                entries.insert(gram, (p, b));
            } else {
                return Err(bad(lineno, format!("unexpected line {line:?}")));
            }
        }
        if !seen_data || declared.is_empty() {
            return Err(bad(1, "no \\data\\ header".into()));
        }
        let listed = entries.len();
        let total: usize = declared.iter().sum();
        if listed != total {
            return Err(bad(
                text.lines().count(),
                format!("the header declares {total} n-grams, the file lists {listed}"),
            ));
        }
        Ok(ArpaModel {
            order: declared.len(),
            entries,
        })
    }

    /// True if the file lists `word` as a unigram.
    pub fn contains(&self, word: &str) -> bool {
        self.entries
            .contains_key(std::slice::from_ref(&word.to_string()))
    }

    /// Perplexity on test sentences, scored as [`NgramModel::evaluate`] scores them: one
    /// `<s>` before each sentence, each word and `</s>` predicted, unknown words read as
    /// `<unk>`.
    pub fn evaluate(&self, sentences: &[Vec<String>]) -> Evaluation {
        let mut e = Evaluation::nothing_scored(sentences.len());
        for s in sentences {
            let mut history: Vec<&str> = vec![BOS_WORD];
            for w in s.iter().map(String::as_str).chain([EOS_WORD]) {
                let w = if self.contains(w) {
                    w
                } else {
                    e.oov += 1;
                    UNK_WORD
                };
                let log10_p = self.log10_prob(&history, w);
                e.log_prob += log10_p * std::f64::consts::LN_10;
                e.events += 1;
                e.zero_prob_events += u64::from(log10_p <= LOG10_ZERO);
                history.push(w);
            }
        }
        e
    }

    /// log10 P(w | h) by back-off: the listed value if `h w` is listed, else
    /// log10 bow(h) + log10 P(w | h without its first word).
    pub fn log10_prob(&self, h: &[&str], w: &str) -> f64 {
        let h = &h[h.len().saturating_sub(self.order - 1)..];
        let mut gram: Vec<String> = h.iter().map(|s| s.to_string()).collect();
        gram.push(w.to_string());
        if let Some(&(p, _)) = self.entries.get(&gram) {
            return p;
        }
        if h.is_empty() {
            // Not even a unigram: score as <unk>.
            return self
                .entries
                .get(&vec![UNK_WORD.to_string()])
                .map_or(LOG10_ZERO, |e| e.0);
        }
        gram.pop();
        let bow = self.entries.get(&gram).map_or(0.0, |e| e.1);
        bow + self.log10_prob(&h[1..], w)
    }
}
