//! Scoring word vectors on the standard sets, read in their usual formats and scored as
//! gensim scores them (`evaluate_word_pairs`, `evaluate_word_analogies`), so the figures
//! compare:
//!
//! - word-pair similarity (WordSim353, SimLex-999): `word1<TAB>word2<TAB>score` lines, `#`
//!   comments; the Spearman correlation between the human scores and the cosine
//!   similarities, over the pairs whose two words have vectors;
//! - analogies (Mikolov et al.'s `questions-words.txt`): `: section` headers and `a b c d`
//!   lines ("a is to b as c is to d"); a question is right when the word nearest to
//!   b − a + c is d; accuracy per section and in all, over the questions whose four words
//!   are among the 300,000 most frequent.
//!
//! Words are compared case-insensitively (the files capitalise names, the vectors are
//! usually lowercase), as gensim does by default.

use std::path::Path;

use super::Embeddings;
use crate::{data, Error, Result};

/// One scored word pair.
#[derive(Debug, Clone, PartialEq)]
pub struct WordPair {
    pub a: String,
    pub b: String,
    /// The human similarity score.
    pub score: f64,
}

/// A similarity set's score.
#[derive(Debug, Clone)]
pub struct PairScore {
    /// Spearman rank correlation of model and human similarities.
    pub spearman: f64,
    /// Pearson correlation of the same.
    pub pearson: f64,
    /// Pairs scored (both words known).
    pub pairs: usize,
    /// Pairs skipped because a word has no vector.
    pub oov_pairs: usize,
}

impl PairScore {
    /// Share of the set's pairs skipped, in percent (gensim prints this).
    pub fn oov_percent(&self) -> f64 {
        100.0 * self.oov_pairs as f64 / (self.pairs + self.oov_pairs).max(1) as f64
    }
}

/// Reads a word-pair similarity file (WordSim353, SimLex-999 as gensim ships them).
///
/// Errors: unreadable file, a line that is not `word word number`, no pairs.
pub fn read_pairs(path: impl AsRef<Path>) -> Result<Vec<WordPair>> {
    let path = path.as_ref();
    let text = data::read_text(path)?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let parsed = match fields[..] {
            [a, b, s] => s
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .map(|score| WordPair {
                    a: a.to_string(),
                    b: b.to_string(),
                    score,
                }),
            _ => None,
        };
        pairs.push(parsed.ok_or_else(|| Error::Format {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("expected `word<TAB>word<TAB>score`, found {line:?}"),
        })?);
    }
    if pairs.is_empty() {
        return Err(Error::EmptyCorpus {
            what: format!("{} (no word pairs)", path.display()),
        });
    }
    Ok(pairs)
}

/// Case-insensitive lookup: the word as given, else lowercased.
fn lookup(emb: &Embeddings, word: &str) -> Option<usize> {
    emb.index_of(word)
        .or_else(|| emb.index_of(&word.to_lowercase()))
}

/// Spearman and Pearson correlations of human scores with cosine similarities.
pub fn evaluate_pairs(emb: &Embeddings, pairs: &[WordPair]) -> PairScore {
    let mut human = Vec::new();
    let mut model = Vec::new();
    for p in pairs {
        if let (Some(a), Some(b)) = (lookup(emb, &p.a), lookup(emb, &p.b)) {
            human.push(p.score);
            let (wa, wb) = (&emb.words()[a], &emb.words()[b]);
            model.push(emb.similarity(wa, wb).expect("both words are known") as f64);
        }
    }
    PairScore {
        spearman: spearman(&human, &model),
        pearson: pearson(&human, &model),
        pairs: human.len(),
        oov_pairs: pairs.len() - human.len(),
    }
}

/// Pearson correlation; NaN with fewer than two points or no spread.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// Ranks 1..=n, ties sharing the mean of their ranks (as `scipy.stats.rankdata`).
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean_rank;
        }
        i = j + 1;
    }
    r
}

// ANCHOR: spearman
/// Spearman's rank correlation: the Pearson correlation of the ranks.
///
/// ```
/// use llm_lessons::word2vec::eval::spearman;
/// // Same order, different spacing: a perfect rank correlation.
/// assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[0.1, 0.5, 0.6, 9.0]) - 1.0).abs() < 1e-12);
/// ```
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}
// ANCHOR_END: spearman

/// One analogy question "a is to b as c is to d".
#[derive(Debug, Clone, PartialEq)]
pub struct Analogy {
    pub section: String,
    pub a: String,
    pub b: String,
    pub c: String,
    pub d: String,
}

/// Reads `questions-words.txt` (`: section` lines, then `a b c d` lines).
pub fn read_analogies(path: impl AsRef<Path>) -> Result<Vec<Analogy>> {
    let path = path.as_ref();
    let text = data::read_text(path)?;
    let mut section = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| Error::Format {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        if let Some(name) = line.strip_prefix(':') {
            section = Some(name.trim().to_string());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [a, b, c, d] = words[..] else {
            return Err(err(format!(
                "expected four words `a b c d`, found {line:?}"
            )));
        };
        let section = section
            .clone()
            .ok_or_else(|| err("a question before the first `: section` line".into()))?;
        out.push(Analogy {
            section,
            a: a.into(),
            b: b.into(),
            c: c.into(),
            d: d.into(),
        });
    }
    if out.is_empty() {
        return Err(Error::EmptyCorpus {
            what: format!("{} (no analogy questions)", path.display()),
        });
    }
    Ok(out)
}

/// Accuracy on the analogy questions, per section and in all.
#[derive(Debug, Clone)]
pub struct AnalogyScore {
    /// (section, correct, asked), in file order.
    pub sections: Vec<(String, usize, usize)>,
    pub correct: usize,
    /// Questions asked: those whose four words are all known.
    pub asked: usize,
    /// Questions in the file.
    pub total: usize,
}

impl AnalogyScore {
    /// correct / asked.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.asked.max(1) as f64
    }
}

/// Only the most frequent words answer or are asked about (gensim's `restrict_vocab`).
pub const ANALOGY_VOCAB: usize = 300_000;

/// Answers every question whose words are among the first [`ANALOGY_VOCAB`] words (3CosAdd,
/// a, b, c excluded from the answers) and counts the right answers.
pub fn evaluate_analogies(emb: &Embeddings, questions: &[Analogy]) -> AnalogyScore {
    use rayon::prelude::*;
    let known = |w: &str| lookup(emb, w).filter(|&i| i < ANALOGY_VOCAB);
    let answers: Vec<Option<bool>> = questions
        .par_iter()
        .map(|q| {
            let [a, b, c, d] = [&q.a, &q.b, &q.c, &q.d].map(|w| known(w));
            let (a, b, c, d) = (a?, b?, c?, d?);
            let w = |i: usize| emb.words()[i].as_str();
            // "a is to b as c is to d": d ≈ b − a + c.
            let best = emb.analogy(w(b), w(a), w(c), 1).ok()?.into_iter().next()?;
            Some(best.word == w(d))
        })
        .collect();
    let mut score = AnalogyScore {
        sections: Vec::new(),
        correct: 0,
        asked: 0,
        total: questions.len(),
    };
    for (q, ans) in questions.iter().zip(answers) {
        if score.sections.last().map(|s| &s.0) != Some(&q.section) {
            score.sections.push((q.section.clone(), 0, 0));
        }
        if let Some(right) = ans {
            let s = score.sections.last_mut().expect("pushed above");
            s.2 += 1;
            score.asked += 1;
            if right {
                s.1 += 1;
                score.correct += 1;
            }
        }
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties_as_scipy_does() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
        // Reversed order: −1.
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) = 0.8
        assert!((spearman(&[1., 2., 3., 4., 5.], &[2., 1., 4., 3., 5.]) - 0.8).abs() < 1e-12);
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("w2v-eval-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn pairs_and_analogies_on_hand_made_vectors() {
        let words = ["king", "queen", "man", "woman", "apple"]
            .map(String::from)
            .to_vec();
        let v = vec![
            1.0, 1.0, 0.0, 1.0, -1.0, 0.0, 0.1, 1.0, 0.0, 0.1, -1.0, 0.0, 0.0, 0.0, 1.0,
        ];
        let emb = Embeddings::new(words, 3, v).unwrap();
        let p = write(
            "pairs.tsv",
            "# comment\nKing\tman\t9\nking\tapple\t1\nking\tqueen\t1\nking\tprince\t7\n",
        );
        let pairs = read_pairs(&p).unwrap();
        let s = evaluate_pairs(&emb, &pairs);
        assert_eq!((s.pairs, s.oov_pairs), (3, 1));
        assert!((s.spearman - 1.0).abs() < 1e-12, "{}", s.spearman);
        let q = write("q.txt", ": royal\nman king woman queen\nMan Woman King Queen\nman king woman apple\n: other\nman king prince princess\n");
        let score = evaluate_analogies(&emb, &read_analogies(&q).unwrap());
        assert_eq!((score.correct, score.asked, score.total), (2, 3, 4));
        assert_eq!(
            score.sections,
            vec![("royal".to_string(), 2, 3), ("other".to_string(), 0, 0)]
        );
        for f in [p, q] {
            std::fs::remove_file(f).unwrap();
        }
    }

    #[test]
    fn malformed_files_are_errors() {
        let p = write("bad.tsv", "a\tb\tx\n");
        assert!(read_pairs(&p).unwrap_err().to_string().contains("line 1"));
        let q = write("bad-q.txt", "a b c d\n");
        assert!(read_analogies(&q)
            .unwrap_err()
            .to_string()
            .contains("section"));
        let q2 = write("bad-q2.txt", ": s\na b c\n");
        assert!(read_analogies(&q2)
            .unwrap_err()
            .to_string()
            .contains("four words"));
        for f in [p, q, q2] {
            std::fs::remove_file(f).unwrap();
        }
    }
}
