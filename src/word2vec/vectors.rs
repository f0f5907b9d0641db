//! Word vectors once trained: cosine similarity, nearest neighbours, analogies, a 2-D PCA
//! projection, and the word2vec text format (`V d` on the first line, then `word x1 .. xd`
//! per line) that word2vec.c writes and gensim's `KeyedVectors.load_word2vec_format` reads.

use std::fmt::Write as _;
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::{data, Error, Result};

/// Words with one vector each.
#[derive(Debug, Clone)]
pub struct Embeddings {
    words: Vec<String>,
    dim: usize,
    /// |V| × d, row-major.
    vectors: Vec<f32>,
    /// Each row divided by its length (a zero row stays zero), for cosine similarity.
    unit: Vec<f32>,
    index: FxHashMap<String, usize>,
}

/// A word and its cosine similarity to a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    pub word: String,
    pub similarity: f32,
}

// ANCHOR: cosine
/// cos(a, b) = a·b / (|a| |b|), in [−1, 1]; 0 when either vector is zero.
///
/// ```
/// use llm_lessons::word2vec::vectors::cosine_similarity;
/// assert!((cosine_similarity(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f32.sqrt()).abs() < 1e-6);
/// assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
/// ```
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
// ANCHOR_END: cosine

fn unit_rows(vectors: &[f32], dim: usize) -> Vec<f32> {
    let mut unit = vectors.to_vec();
    for row in unit.chunks_exact_mut(dim) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
    unit
}

impl Embeddings {
    /// Vectors for `words`, row i for word i (`vectors.len()` must be `words.len() · dim`).
    ///
    /// Errors: a length mismatch, a repeated word, a non-finite number, or no word.
    pub fn new(words: Vec<String>, dim: usize, vectors: Vec<f32>) -> Result<Embeddings> {
        if words.is_empty() || dim == 0 {
            return Err(Error::InvalidArgument(
                "embeddings need at least one word and one dimension".into(),
            ));
        }
        if vectors.len() != words.len() * dim {
            return Err(Error::InvalidArgument(format!(
                "{} words x {dim} dimensions need {} numbers, got {}",
                words.len(),
                words.len() * dim,
                vectors.len()
            )));
        }
        if let Some(i) = vectors.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "the vector of {:?} holds {}",
                words[i / dim],
                vectors[i]
            )));
        }
        let mut index = FxHashMap::default();
        for (i, w) in words.iter().enumerate() {
            if index.insert(w.clone(), i).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "the word {w:?} appears twice"
                )));
            }
        }
        let unit = unit_rows(&vectors, dim);
        Ok(Embeddings {
            words,
            dim,
            vectors,
            unit,
            index,
        })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Never true for embeddings built by [`Embeddings::new`].
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Vector size d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The words, in row order (most frequent first for trained vectors).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Row index of `word`.
    pub fn index_of(&self, word: &str) -> Option<usize> {
        self.index.get(word).copied()
    }

    /// The vector of `word`, if it has one.
    pub fn get(&self, word: &str) -> Option<&[f32]> {
        self.index_of(word).map(|i| self.row(i))
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    fn unit_row(&self, i: usize) -> &[f32] {
        &self.unit[i * self.dim..(i + 1) * self.dim]
    }

    /// The vector of `word`, or an error naming the word.
    pub fn vector(&self, word: &str) -> Result<&[f32]> {
        self.get(word).ok_or_else(|| self.unknown(word))
    }

    fn unknown(&self, word: &str) -> Error {
        Error::UnknownWord {
            word: word.to_string(),
            n_vocab: self.len(),
        }
    }

    fn id(&self, word: &str) -> Result<usize> {
        self.index_of(word).ok_or_else(|| self.unknown(word))
    }

    /// Cosine similarity of two words.
    pub fn similarity(&self, a: &str, b: &str) -> Result<f32> {
        Ok(cosine_similarity(self.vector(a)?, self.vector(b)?))
    }

    /// The `k` words most similar to `word` (itself left out), most similar first.
    pub fn most_similar(&self, word: &str, k: usize) -> Result<Vec<Neighbour>> {
        let i = self.id(word)?;
        Ok(self.nearest(self.unit_row(i), k, &[i]))
    }

    /// The `k` words whose vectors have the largest cosine with `query`, leaving out the rows
    /// in `exclude`.
    pub fn nearest(&self, query: &[f32], k: usize, exclude: &[usize]) -> Vec<Neighbour> {
        let qn = query
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        let mut scored: Vec<(f32, usize)> = (0..self.len())
            .filter(|i| !exclude.contains(i))
            .map(|i| {
                let dot: f32 = self.unit_row(i).iter().zip(query).map(|(a, b)| a * b).sum();
                (dot / qn, i)
            })
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(k);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .map(|(s, i)| Neighbour {
                word: self.words[i].clone(),
                similarity: s,
            })
            .collect()
    }

    // ANCHOR: analogy
    /// The words nearest to a − b + c (with unit vectors; a, b and c themselves left out):
    /// `analogy("king", "man", "woman", 1)` should answer "queen". This is 3CosAdd, as in
    /// word2vec.c's `word-analogy` and gensim's `most_similar(positive=[a, c], negative=[b])`.
    pub fn analogy(&self, a: &str, b: &str, c: &str, k: usize) -> Result<Vec<Neighbour>> {
        let (ia, ib, ic) = (self.id(a)?, self.id(b)?, self.id(c)?);
        let (ua, ub, uc) = (self.unit_row(ia), self.unit_row(ib), self.unit_row(ic));
        let query: Vec<f32> = (0..self.dim).map(|j| ua[j] - ub[j] + uc[j]).collect();
        Ok(self.nearest(&query, k, &[ia, ib, ic]))
    }
    // ANCHOR_END: analogy

    /// The 2-D PCA projection of the given words' vectors (centred on their mean): the two
    /// directions along which these words differ most. Returns (x, y) per word.
    pub fn pca_2d(&self, words: &[&str]) -> Result<Vec<(f64, f64)>> {
        if words.len() < 2 {
            return Err(Error::InvalidArgument(
                "a projection needs at least two words".into(),
            ));
        }
        let rows: Vec<Vec<f64>> = words
            .iter()
            .map(|w| Ok(self.vector(w)?.iter().map(|&x| x as f64).collect()))
            .collect::<Result<_>>()?;
        Ok(pca_2d(&rows))
    }

    /// Writes the word2vec text format, atomically (temp file, then rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut out = String::with_capacity(self.vectors.len() * 10);
        writeln!(out, "{} {}", self.len(), self.dim).expect("writing to a String");
        for (i, w) in self.words.iter().enumerate() {
            out.push_str(w);
            for x in self.row(i) {
                // Shortest text that reads back as the same f32.
                write!(out, " {x}").expect("writing to a String");
            }
            out.push('\n');
        }
        data::write_atomic(path.as_ref(), out.as_bytes())
    }

    /// Reads the word2vec text format (as gensim's `save_word2vec_format(binary=False)` and
    /// word2vec.c's `-binary 0` write it).
    ///
    /// Errors name the file and line: a bad header, a line with the wrong number of values,
    /// a value that is not a number, fewer lines than the header says, non-UTF-8 bytes.
    pub fn load(path: impl AsRef<Path>) -> Result<Embeddings> {
        let path = path.as_ref();
        Embeddings::parse(&data::read_text(path)?, path)
    }

    /// Parses the text of a word2vec text file; `path` only names it in errors.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Embeddings> {
        let path = path.as_ref();
        let err = |line: usize, message: String| Error::Format {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let (_, header) = lines
            .next()
            .ok_or_else(|| err(1, "the file is empty: expected a header `V d`".into()))?;
        let nums: Vec<usize> = header
            .split_whitespace()
            .map(|t| t.parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                err(
                    1,
                    format!("expected a header `V d` (two whole numbers), found {header:?}"),
                )
            })?;
        let [n, dim] = nums[..] else {
            return Err(err(
                1,
                format!("expected a header `V d` (two whole numbers), found {header:?}"),
            ));
        };
        if n == 0 || dim == 0 {
            return Err(err(
                1,
                format!("the header says {n} words of {dim} dimensions: nothing to read"),
            ));
        }
        let mut words = Vec::with_capacity(n);
        let mut vectors = Vec::with_capacity(n.saturating_mul(dim).min(1 << 28));
        for (lineno, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            if words.len() == n {
                return Err(err(lineno, format!("more vectors than the header's {n}")));
            }
            let mut parts = line.split_whitespace();
            let word = parts.next().expect("a non-blank line has a first token");
            let before = vectors.len();
            for t in parts {
                let x: f32 = t.parse().map_err(|_| {
                    err(
                        lineno,
                        format!("{t:?} is not a number (vector of {word:?})"),
                    )
                })?;
                if !x.is_finite() {
                    return Err(err(lineno, format!("the vector of {word:?} holds {x}")));
                }
                vectors.push(x);
            }
            let got = vectors.len() - before;
            if got != dim {
                return Err(err(
                    lineno,
                    format!("{word:?} has {got} values, the header says {dim}"),
                ));
            }
            words.push(word.to_string());
        }
        if words.len() != n {
            return Err(err(
                text.lines().count(),
                format!(
                    "the header says {n} vectors, the file has {} (truncated?)",
                    words.len()
                ),
            ));
        }
        Embeddings::new(words, dim, vectors).map_err(|e| err(1, e.to_string()))
    }
}

/// The first two principal components of `rows` (each a point in d dimensions), by power
/// iteration on the covariance: the coordinates of every row along them.
pub fn pca_2d(rows: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let n = rows.len();
    let d = rows.first().map_or(0, Vec::len);
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let centred: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(x, m)| x - m).collect())
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // Covariance times a vector, without forming the d × d matrix: Xᵀ (X w).
    let cov_times = |w: &[f64]| -> Vec<f64> {
        let xw: Vec<f64> = centred.iter().map(|r| dot(r, w)).collect();
        (0..d)
            .map(|j| centred.iter().zip(&xw).map(|(r, s)| r[j] * s).sum())
            .collect()
    };
    let mut components: Vec<Vec<f64>> = Vec::new();
    for c in 0..2 {
        // A fixed start that is not orthogonal to the answer in practice.
        let mut w: Vec<f64> = (0..d)
            .map(|j| 1.0 + ((j * 7 + c * 3) % 11) as f64 / 10.0)
            .collect();
        for _ in 0..500 {
            let mut next = cov_times(&w);
            for prev in &components {
                let p = dot(&next, prev);
                next.iter_mut().zip(prev).for_each(|(x, q)| *x -= p * q);
            }
            let norm = dot(&next, &next).sqrt();
            if norm < 1e-300 {
                break;
            }
            next.iter_mut().for_each(|x| *x /= norm);
            let change: f64 = next.iter().zip(&w).map(|(a, b)| (a - b).abs()).sum();
            w = next;
            if change < 1e-12 {
                break;
            }
        }
        // Sign convention: the largest coordinate positive, so plots do not flip at random.
        let big = w
            .iter()
            .copied()
            .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            w.iter_mut().for_each(|x| *x = -*x);
        }
        components.push(w);
    }
    centred
        .iter()
        .map(|r| (dot(r, &components[0]), dot(r, &components[1])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Embeddings {
        let words = ["king", "queen", "man", "woman", "apple"]
            .map(String::from)
            .to_vec();
        // Axis 0: royalty, axis 1: gender, axis 2: fruit.
        let v = vec![
            1.0, 1.0, 0.0, //
            1.0, -1.0, 0.0, //
            0.1, 1.0, 0.0, //
            0.1, -1.0, 0.0, //
            0.0, 0.0, 1.0,
        ];
        Embeddings::new(words, 3, v).unwrap()
    }

    #[test]
    fn neighbours_and_analogies_on_hand_made_vectors() {
        let e = toy();
        let n = e.most_similar("king", 2).unwrap();
        assert_eq!(n[0].word, "man");
        assert!(n[0].similarity >= n[1].similarity);
        assert_eq!(
            e.analogy("king", "man", "woman", 1).unwrap()[0].word,
            "queen"
        );
        assert!(e.similarity("king", "apple").unwrap().abs() < 1e-6);
        let err = e.most_similar("prince", 3).unwrap_err().to_string();
        assert!(err.contains("prince"), "{err}");
        assert_eq!(e.most_similar("king", 100).unwrap().len(), 4);
    }

    #[test]
    fn word2vec_text_format_round_trips() {
        let e = toy();
        let dir = std::env::temp_dir().join(format!("w2v-rt-{}", std::process::id()));
        let path = dir.join("v.txt");
        e.save(&path).unwrap();
        let back = Embeddings::load(&path).unwrap();
        assert_eq!(back.words(), e.words());
        assert_eq!(back.vector("queen").unwrap(), e.vector("queen").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn malformed_files_are_errors_with_line_numbers() {
        let cases = [
            ("", "empty"),
            ("2 x\n", "header"),
            ("2 2\na 1 2\n", "truncated"),
            ("2 2\na 1 2\nb 1\n", "line 3"),
            ("2 2\na 1 2\nb 1 z\n", "not a number"),
            ("1 2\na 1 2\nb 3 4\n", "more vectors"),
            ("2 2\na 1 2\na 3 4\n", "twice"),
            ("1 2\na 1 NaN\n", "NaN"),
        ];
        for (text, want) in cases {
            let err = Embeddings::parse(text, "v.txt").unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("v.txt"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn pca_finds_the_direction_of_largest_spread() {
        // Points spread along (1, 1, 0) a lot, along (0, 0, 1) a little.
        let rows: Vec<Vec<f64>> = (0..10)
            .map(|i| {
                let t = i as f64 - 4.5;
                vec![t, t, 0.1 * ((i % 3) as f64 - 1.0)]
            })
            .collect();
        let p = pca_2d(&rows);
        for (i, &(x, y)) in p.iter().enumerate() {
            let t = i as f64 - 4.5;
            // Along (1, 1, 0) / √2, up to the small third coordinate's pull.
            assert!((x.abs() - t.abs() * 2f64.sqrt()).abs() < 1e-2, "{x} vs {t}");
            assert!(y.abs() <= 0.15, "{y}");
        }
        assert!(toy().pca_2d(&["king"]).is_err());
    }
}
