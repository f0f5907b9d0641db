//! The toy world: a small probabilistic context-free grammar (PCFG) that writes the course's
//! synthetic corpora, in English ([`Grammar::toy_world`]) and Spanish
//! ([`Grammar::toy_world_es`]), and a shifted English world to fine-tune to
//! ([`Grammar::toy_world_shifted`]).
//!
//! Why a grammar rather than real text: we know the exact probability of every sentence it
//! writes. [`Grammar::log_prob`] sums over all the ways the grammar can derive a sentence (the
//! inside algorithm), so [`true_cross_entropy`] on held-out sentences is the entropy of the
//! source itself, the floor no model can beat on average. The course measures an n-gram
//! model's cross-entropy against that floor: the gap is what the model has not learned.
//!
//! The bundled grammars (`data/toy_world.*.pcfg`, format described at the top of each file)
//! plant structure that a short context cannot see: possessives and pronouns agree with a
//! subject several words back ("the queen who feeds her hound rides her horse"), verbs agree
//! in number, and king/queen, man/woman, prince/princess, boy/girl share contexts that differ
//! only in gender, for the word2vec chapter.
//!
//! ```
//! use llm_lessons::data::grammar::Grammar;
//! let g = Grammar::parse(
//!     "S -> the N V [1]
//!      N -> cat [0.5] | dog [0.5]
//!      V -> runs [0.25] | sleeps [0.75]",
//!     "tiny",
//! )?;
//! // P(the dog sleeps) = 1 * 0.5 * 0.75
//! assert!((g.log_prob(&["the", "dog", "sleeps"]) - 0.375f64.ln()).abs() < 1e-12);
//! assert_eq!(g.log_prob(&["dog", "the", "sleeps"]), f64::NEG_INFINITY);
//! # Ok::<(), llm_lessons::Error>(())
//! ```
//!
//! Not here: empty productions and unary cycles (rejected when parsing), and the parse trees
//! themselves: only a sentence's total probability is computed.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};

/// Sum of each left side's probabilities must be 1 within this.
const PROB_TOLERANCE: f64 = 1e-9;

/// A grammar whose expected derivation is larger than this is refused: sampling from it
/// would take too long even though it ends with probability 1.
const MAX_EXPECTED_NODES: f64 = 1e7;

/// One symbol of a right side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sym {
    /// A word: an index into `Grammar::terminals`.
    T(usize),
    /// A nonterminal: an index into `Grammar::nonterminals`.
    N(usize),
}

/// `lhs -> rhs` with probability `prob`.
#[derive(Clone, Debug)]
struct Rule {
    lhs: usize,
    rhs: Vec<Sym>,
    prob: f64,
    /// `suffix_min[m]`: fewest words `rhs[m..]` can derive (`suffix_min[rhs.len()] = 0`).
    suffix_min: Vec<usize>,
}

/// A parsed PCFG: nonterminals rewrite into sequences of symbols until only words are left.
#[derive(Clone, Debug)]
pub struct Grammar {
    name: String,
    nonterminals: Vec<String>,
    terminals: Vec<String>,
    terminal_id: FxHashMap<String, usize>,
    rules: Vec<Rule>,
    /// `rules_of[A]`: the rules with left side A, in file order.
    rules_of: Vec<Vec<usize>>,
    start: usize,
    /// Fewest words each nonterminal can derive: spans shorter than this are skipped.
    min_len: Vec<usize>,
    /// `first[A][t]`: some sentence derived from A starts with word t (`last`: ends with it).
    first: Vec<Vec<bool>>,
    last: Vec<Vec<bool>>,
    expected_length: f64,
    derivation_entropy: f64,
}

/// A sentence written by the grammar with its true probability.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedSentence {
    pub words: Vec<String>,
    /// Natural log of P(words), summed over every derivation of the words.
    pub log_prob: f64,
}

impl GeneratedSentence {
    /// The sentence as text: first letter capitalised, words joined by spaces, a final '.'.
    /// Lowercasing it and keeping runs of letters gives back `words`.
    ///
    /// `["the", "queen", "rides", "her", "horse"]` -> `"The queen rides her horse."`
    pub fn text(&self) -> String {
        let mut text = self.words.join(" ");
        if let Some(first) = text.chars().next() {
            let upper: String = first.to_uppercase().collect();
            text.replace_range(..first.len_utf8(), &upper);
        }
        text.push('.');
        text
    }
}

/// Cross-entropy of the grammar on these sentences, in nats per token:
/// −Σ log P(s) / Σ (len(s) + 1). The +1 is the end of sentence, which an n-gram model also
/// predicts, so the figure compares directly with the model's. NaN for no sentences.
pub fn true_cross_entropy(sentences: &[GeneratedSentence]) -> f64 {
    let nats: f64 = sentences.iter().map(|s| -s.log_prob).sum();
    let tokens: usize = sentences.iter().map(|s| s.words.len() + 1).sum();
    nats / tokens as f64
}

impl Grammar {
    /// The English toy world, `data/toy_world.en.pcfg`.
    pub fn toy_world() -> Grammar {
        Grammar::parse(
            include_str!("../../data/toy_world.en.pcfg"),
            "data/toy_world.en.pcfg",
        )
        .expect("the bundled grammar data/toy_world.en.pcfg is valid")
    }

    /// The Spanish toy world, `data/toy_world.es.pcfg`: the same world, with articles and
    /// adjectives that agree in gender.
    pub fn toy_world_es() -> Grammar {
        Grammar::parse(
            include_str!("../../data/toy_world.es.pcfg"),
            "data/toy_world.es.pcfg",
        )
        .expect("the bundled grammar data/toy_world.es.pcfg is valid")
    }

    /// The shifted toy world, `data/toy_world_shifted.en.pcfg`: chapter 5's fine-tuning
    /// target, [`Grammar::toy_world`] changed in three places and no others, with no new
    /// words:
    /// - plural subjects twice as likely (`S`: royals, commoners and animals in the plural
    ///   0.15 each instead of 0.08; each singular person 0.1 instead of 0.15; an animal
    ///   0.15 instead of 0.16);
    /// - `but` the likeliest conjunction (`CONJ`: and 0.3, and then 0.3, but 0.4 instead of
    ///   0.6, 0.25, 0.15);
    /// - a construction the first grammar lacks: a person and their kin as a plural subject,
    ///   "the king and his mother ride their horses" (`SUBJ_RP`, `SUBJ_CP`: "the NOM and
    ///   his/her KIN", 0.15 each, the bare plural down from 0.8 to 0.5). The first grammar
    ///   gives such sentences probability 0.
    ///
    /// Both grammars' entropies are exact ([`Grammar::entropy_per_token`]), so a fine-tuned
    /// model is scored against a known floor on both: the target, and what it forgot.
    pub fn toy_world_shifted() -> Grammar {
        Grammar::parse(
            include_str!("../../data/toy_world_shifted.en.pcfg"),
            "data/toy_world_shifted.en.pcfg",
        )
        .expect("the bundled grammar data/toy_world_shifted.en.pcfg is valid")
    }

    /// Reads a grammar in the format described at the top of `data/toy_world.en.pcfg`.
    /// `name` stands for the file in error messages, which give the line at fault.
    pub fn parse(text: &str, name: &str) -> Result<Grammar> {
        let err = |line: usize, message: String| Error::Format {
            path: PathBuf::from(name),
            line,
            message,
        };
        let raw = read_rules(text, name)?;
        let Some(first_rule) = raw.first() else {
            return Err(err(text.lines().count(), "the grammar has no rules".into()));
        };

        // Nonterminals are numbered in order of first definition; the first is the start.
        let mut nonterminals: Vec<String> = Vec::new();
        let mut nt_id: FxHashMap<&str, usize> = FxHashMap::default();
        let mut defined_at: Vec<usize> = Vec::new();
        for r in &raw {
            if !nt_id.contains_key(r.lhs.as_str()) {
                nt_id.insert(&r.lhs, nonterminals.len());
                nonterminals.push(r.lhs.clone());
                defined_at.push(r.line);
            }
        }
        let n_nt = nonterminals.len();

        let mut terminals: Vec<String> = Vec::new();
        let mut terminal_id: FxHashMap<String, usize> = FxHashMap::default();
        let mut rules: Vec<Rule> = Vec::new();
        let mut rule_line: Vec<usize> = Vec::new();
        for r in &raw {
            let mut rhs = Vec::with_capacity(r.rhs.len());
            for token in &r.rhs {
                if is_nonterminal(token) {
                    let Some(&id) = nt_id.get(token.as_str()) else {
                        return Err(err(
                            r.line,
                            format!("unknown nonterminal `{token}`: no rule has it on the left"),
                        ));
                    };
                    rhs.push(Sym::N(id));
                } else {
                    let next = terminals.len();
                    let id = *terminal_id.entry(token.clone()).or_insert(next);
                    if id == next {
                        terminals.push(token.clone());
                    }
                    rhs.push(Sym::T(id));
                }
            }
            rules.push(Rule {
                lhs: nt_id[r.lhs.as_str()],
                rhs,
                prob: r.prob.unwrap_or(f64::NAN),
                suffix_min: Vec::new(),
            });
            rule_line.push(r.line);
        }
        let mut rules_of: Vec<Vec<usize>> = vec![Vec::new(); n_nt];
        for (i, rule) in rules.iter().enumerate() {
            rules_of[rule.lhs].push(i);
        }

        // Probabilities: all given (and summing to 1) or none given (uniform).
        for (a, ids) in rules_of.iter().enumerate() {
            let given = ids.iter().filter(|&&i| raw[i].prob.is_some()).count();
            if given == 0 {
                for &i in ids {
                    rules[i].prob = 1.0 / ids.len() as f64;
                }
            } else if given < ids.len() {
                let missing = ids.iter().find(|&&i| raw[i].prob.is_none()).unwrap();
                return Err(err(
                    rule_line[*missing],
                    format!(
                        "`{}` has a right side without [p]: give a probability to every \
                         alternative of a left side, or to none (then they are equally likely)",
                        nonterminals[a]
                    ),
                ));
            } else {
                let sum: f64 = ids.iter().map(|&i| rules[i].prob).sum();
                if (sum - 1.0).abs() > PROB_TOLERANCE {
                    return Err(err(
                        defined_at[a],
                        format!(
                            "the probabilities of the {} rules for `{}` sum to {sum}, not 1",
                            ids.len(),
                            nonterminals[a]
                        ),
                    ));
                }
            }
            for (k, &i) in ids.iter().enumerate() {
                if let Some(&j) = ids[..k].iter().find(|&&j| rules[j].rhs == rules[i].rhs) {
                    return Err(err(
                        rule_line[i],
                        format!(
                            "duplicate rule for `{}`: the same right side is on line {}",
                            nonterminals[a], rule_line[j]
                        ),
                    ));
                }
            }
        }

        // Every nonterminal must end in words, and be reachable from the start.
        let min_len = min_lengths(&rules, n_nt);
        if let Some(a) = (0..n_nt).find(|&a| min_len[a] == usize::MAX) {
            return Err(err(
                defined_at[a],
                format!(
                    "`{}` never ends in words: each of its rules leads back to it",
                    nonterminals[a]
                ),
            ));
        }
        let reachable = reachable_from(0, &rules, &rules_of);
        if let Some(a) = (0..n_nt).find(|&a| !reachable[a]) {
            return Err(err(
                defined_at[a],
                format!(
                    "`{}` is unreachable: no derivation from the start symbol `{}` uses it",
                    nonterminals[a], nonterminals[0]
                ),
            ));
        }
        // A unary cycle (A -> B, B -> A) would let a span derive itself forever.
        if let Some(cycle) = unary_cycle(&rules, &rules_of) {
            let names: Vec<&str> = cycle.iter().map(|&a| nonterminals[a].as_str()).collect();
            return Err(err(
                defined_at[cycle[0]],
                format!(
                    "unary cycle {}: a symbol may not rewrite into itself alone",
                    names.join(" -> ")
                ),
            ));
        }

        for rule in &mut rules {
            let len = |s: &Sym| match s {
                Sym::T(_) => 1,
                Sym::N(b) => min_len[*b],
            };
            let mut suffix_min = vec![0; rule.rhs.len() + 1];
            for m in (0..rule.rhs.len()).rev() {
                suffix_min[m] = suffix_min[m + 1] + len(&rule.rhs[m]);
            }
            rule.suffix_min = suffix_min;
        }
        let (first, last) = edge_words(&rules, n_nt, terminals.len());

        let mut grammar = Grammar {
            name: name.to_string(),
            nonterminals,
            terminals,
            terminal_id,
            rules,
            rules_of,
            start: 0,
            min_len,
            first,
            last,
            expected_length: f64::NAN,
            derivation_entropy: f64::NAN,
        };
        if let Err(culprit) = grammar.compute_expectations() {
            let (line, through) = match culprit {
                Some(a) => (
                    defined_at[a],
                    format!(" (through `{}`)", grammar.nonterminals[a]),
                ),
                None => (first_rule.line, String::new()),
            };
            return Err(err(
                line,
                format!(
                    "derivations are expected to be infinitely long{through}: lower the \
                     probabilities of the recursive rules"
                ),
            ));
        }
        Ok(grammar)
    }

    /// The name given to [`Grammar::parse`], usually the file's path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of rules (productions), counting each alternative.
    pub fn n_rules(&self) -> usize {
        self.rules.len()
    }

    /// Sorted words the grammar can write.
    pub fn vocabulary(&self) -> Vec<String> {
        let mut words = self.terminals.clone();
        words.sort();
        words
    }

    /// Expected number of words in a sentence, computed exactly from the rules.
    pub fn expected_length(&self) -> f64 {
        self.expected_length
    }

    /// Entropy of the derivations, in nats per sentence: Σ_A E[uses of A] · H(rules of A).
    /// For an unambiguous grammar it is the entropy of the sentences; otherwise an upper
    /// bound on it.
    pub fn derivation_entropy(&self) -> f64 {
        self.derivation_entropy
    }

    /// [`Grammar::derivation_entropy`] per token, where a sentence of n words has n + 1
    /// tokens (as in [`true_cross_entropy`], which it is the limit of for an unambiguous
    /// grammar).
    pub fn entropy_per_token(&self) -> f64 {
        self.derivation_entropy / (self.expected_length + 1.0)
    }

    /// Draws a sentence: starting from the start symbol, replace the leftmost nonterminal by
    /// one of its right sides, chosen with the rule probabilities, until only words are left.
    /// `log_prob` is the probability of the words (all derivations), not of this derivation.
    pub fn sample(&self, rng: &mut impl Rng) -> GeneratedSentence {
        let (words, _) = self.sample_derivation(rng);
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let log_prob = self.log_prob(&refs);
        GeneratedSentence { words, log_prob }
    }

    /// Draws a sentence and returns it with the log-probability of the derivation that made
    /// it, which is at most [`Grammar::log_prob`] of the words, and equal to it when the
    /// grammar is unambiguous.
    ///
    /// No depth limit is needed: [`Grammar::parse`] accepts only grammars whose expected
    /// derivation size is finite, so a derivation ends with probability 1. The work is kept
    /// on a stack, not in recursion, so a long derivation cannot overflow the call stack.
    pub fn sample_derivation(&self, rng: &mut impl Rng) -> (Vec<String>, f64) {
        let mut words = Vec::new();
        let mut log_prob = 0.0;
        let mut pending = vec![Sym::N(self.start)];
        while let Some(sym) = pending.pop() {
            match sym {
                Sym::T(t) => words.push(self.terminals[t].clone()),
                Sym::N(a) => {
                    let rule = &self.rules[self.choose_rule(a, rng.gen::<f64>())];
                    log_prob += rule.prob.ln();
                    pending.extend(rule.rhs.iter().rev());
                }
            }
        }
        (words, log_prob)
    }

    /// The rule of `a` where the cumulative probability first exceeds `u` in [0, 1).
    fn choose_rule(&self, a: usize, u: f64) -> usize {
        let ids = &self.rules_of[a];
        let mut cumulative = 0.0;
        for &i in ids {
            cumulative += self.rules[i].prob;
            if u < cumulative {
                return i;
            }
        }
        *ids.last().expect("every nonterminal has a rule") // u just below 1, rounding
    }

    /// `n_sentences` samples from a ChaCha8 generator seeded with `seed`: the same seed
    /// gives the same corpus on every machine.
    pub fn generate(&self, n_sentences: usize, seed: u64) -> Vec<GeneratedSentence> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n_sentences).map(|_| self.sample(&mut rng)).collect()
    }

    /// The words of `n_sentences` generated sentences (seeded as [`Grammar::generate`]):
    /// a corpus ready for training.
    pub fn corpus(&self, n_sentences: usize, seed: u64) -> Vec<Vec<String>> {
        self.generate(n_sentences, seed)
            .into_iter()
            .map(|s| s.words)
            .collect()
    }

    /// Natural log of P(words) = Σ over derivations of the product of their rule
    /// probabilities; −∞ if the grammar cannot write these words.
    ///
    /// The inside algorithm: β(A, i, j), the probability that A derives `words[i..j]`, is
    /// Σ_{A -> X1..Xk} p · Σ over ways to cut `i..j` into k pieces of Π β(Xm, piece m), and
    /// P(words) = β(S, 0, n). Each β is memoised, so a span is solved once whatever the
    /// number of derivations. Computed with plain probabilities: f64 holds down to 1e-308,
    /// far below any sentence of this course.
    pub fn log_prob(&self, words: &[&str]) -> f64 {
        let ids: Option<Vec<usize>> = words
            .iter()
            .map(|w| self.terminal_id.get(*w).copied())
            .collect();
        let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
            return f64::NEG_INFINITY;
        };
        let n = ids.len();
        let mut chart = Inside {
            g: self,
            words: ids,
            n,
            beta: vec![f64::NAN; self.nonterminals.len() * (n + 1) * (n + 1)],
        };
        chart.nonterminal(self.start, 0, n).ln()
    }

    /// Writes one sentence per line ([`GeneratedSentence::text`]), atomically
    /// ([`crate::data::write_atomic`]: a temporary file in the same folder, renamed over
    /// `path`), so a reader never sees half a corpus.
    pub fn write_corpus(sentences: &[GeneratedSentence], path: &Path) -> Result<()> {
        let mut text = String::new();
        for sentence in sentences {
            text.push_str(&sentence.text());
            text.push('\n');
        }
        crate::data::write_atomic(path, text.as_bytes())
    }

    /// Solves the linear systems behind [`Grammar::expected_length`] and
    /// [`Grammar::derivation_entropy`]. With M[A][B] the expected number of B on the right
    /// side of a rule for A, the expected derivation size x satisfies x = 1 + M x, which has
    /// a solution x ≥ 0 exactly when the spectral radius of M is below 1, i.e. when
    /// derivations are finite on average. On failure, returns the symbol at fault, if one
    /// stands out.
    fn compute_expectations(&mut self) -> std::result::Result<(), Option<usize>> {
        let n = self.nonterminals.len();
        let mut m = vec![vec![0.0; n]; n];
        let mut words = vec![0.0; n]; // expected words written directly by one rewrite of A
        let mut entropy = vec![0.0; n]; // H(rules of A)
        for rule in &self.rules {
            let a = rule.lhs;
            entropy[a] -= rule.prob * rule.prob.ln();
            for sym in &rule.rhs {
                match sym {
                    Sym::T(_) => words[a] += rule.prob,
                    Sym::N(b) => m[a][*b] += rule.prob,
                }
            }
        }
        let i_minus = |transpose: bool| -> Vec<Vec<f64>> {
            (0..n)
                .map(|a| {
                    (0..n)
                        .map(|b| {
                            let mab = if transpose { m[b][a] } else { m[a][b] };
                            f64::from(u8::from(a == b)) - mab
                        })
                        .collect()
                })
                .collect()
        };
        let size = solve(i_minus(false), vec![1.0; n]).ok_or(None)?;
        if let Some(a) = (0..n).find(|&a| !(1.0 - 1e-9..=MAX_EXPECTED_NODES).contains(&size[a])) {
            return Err(Some(a));
        }
        // uses[A]: expected number of rewrites of A in a derivation from the start symbol.
        let mut e_start = vec![0.0; n];
        e_start[self.start] = 1.0;
        let uses = solve(i_minus(true), e_start).ok_or(None)?;
        self.expected_length = (0..n).map(|a| uses[a] * words[a]).sum();
        self.derivation_entropy = (0..n).map(|a| uses[a] * entropy[a]).sum();
        Ok(())
    }
}

/// The memoised inside probabilities β(A, i, j) for one sentence.
struct Inside<'g> {
    g: &'g Grammar,
    words: Vec<usize>,
    n: usize,
    /// β(A, i, j) at `(A * (n + 1) + i) * (n + 1) + j`; NaN until computed.
    beta: Vec<f64>,
}

impl<'g> Inside<'g> {
    /// β(A, i, j): the probability that nonterminal `a` derives `words[i..j]`.
    fn nonterminal(&mut self, a: usize, i: usize, j: usize) -> f64 {
        let g = self.g;
        // Cheap refusals first: too short, or the wrong first or last word.
        if j - i < g.min_len[a] || !g.first[a][self.words[i]] || !g.last[a][self.words[j - 1]] {
            return 0.0;
        }
        let k = (a * (self.n + 1) + i) * (self.n + 1) + j;
        if !self.beta[k].is_nan() {
            return self.beta[k];
        }
        let mut total = 0.0;
        for &r in &g.rules_of[a] {
            let rule = &g.rules[r];
            total += rule.prob * self.sequence(rule, 0, i, j);
        }
        self.beta[k] = total;
        total
    }

    /// The probability that `rule.rhs[m..]` derives `words[i..j]`: the first symbol takes
    /// `words[i..e]` and the rest `words[e..j]`, summed over every cut e.
    fn sequence(&mut self, rule: &'g Rule, m: usize, i: usize, j: usize) -> f64 {
        if j - i < rule.suffix_min[m] {
            return 0.0;
        }
        let sym = rule.rhs[m];
        if m + 1 == rule.rhs.len() {
            return self.symbol(sym, i, j);
        }
        let first_min = rule.suffix_min[m] - rule.suffix_min[m + 1];
        let mut total = 0.0;
        for e in i + first_min..=j - rule.suffix_min[m + 1] {
            let p = self.symbol(sym, i, e);
            if p > 0.0 {
                total += p * self.sequence(rule, m + 1, e, j);
            }
        }
        total
    }

    fn symbol(&mut self, sym: Sym, i: usize, j: usize) -> f64 {
        match sym {
            Sym::T(t) => f64::from(u8::from(j == i + 1 && self.words[i] == t)),
            Sym::N(a) => self.nonterminal(a, i, j),
        }
    }
}

/// A rule as read from the text, before symbols are numbered.
struct RawRule {
    lhs: String,
    rhs: Vec<String>,
    prob: Option<f64>,
    line: usize,
}

/// Splits the text into rules, checking each line's syntax.
fn read_rules(text: &str, name: &str) -> Result<Vec<RawRule>> {
    let err = |line: usize, message: String| Error::Format {
        path: PathBuf::from(name),
        line,
        message,
    };
    let mut rules = Vec::new();
    let mut lhs: Option<String> = None;
    for (index, full_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = full_line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let alternatives = if let Some(rest) = line.strip_prefix('|') {
            if lhs.is_none() {
                return Err(err(
                    line_no,
                    "a line starting with '|' must follow a rule `LHS -> ...`".into(),
                ));
            }
            rest
        } else if let Some((left, rest)) = line.split_once("->") {
            let left = left.trim();
            if !is_nonterminal(left) {
                return Err(err(
                    line_no,
                    format!("the left side `{left}` is not a nonterminal (UPPER_CASE name)"),
                ));
            }
            lhs = Some(left.to_string());
            rest
        } else {
            return Err(err(
                line_no,
                format!("expected `LHS -> RHS [p]` or `| RHS [p]`, found `{line}`"),
            ));
        };
        for alternative in alternatives.split('|') {
            let (symbols, prob) = parse_alternative(alternative).map_err(|m| err(line_no, m))?;
            rules.push(RawRule {
                lhs: lhs.clone().expect("set above"),
                rhs: symbols,
                prob,
                line: line_no,
            });
        }
    }
    Ok(rules)
}

/// `"the NOM_RM VP_RM [0.55]"` -> `(["the", "NOM_RM", "VP_RM"], Some(0.55))`.
fn parse_alternative(text: &str) -> std::result::Result<(Vec<String>, Option<f64>), String> {
    let mut text = text.trim();
    let mut prob = None;
    if let Some(open) = text.rfind('[') {
        let Some(inner) = text[open + 1..].strip_suffix(']') else {
            return Err(format!(
                "`{}` should end with a probability like [0.5]",
                text.trim()
            ));
        };
        let p: f64 = inner
            .trim()
            .parse()
            .map_err(|_| format!("`[{inner}]` is not a probability"))?;
        if p.is_nan() || p <= 0.0 || p > 1.0 {
            return Err(format!("probability {p} is not in (0, 1]"));
        }
        prob = Some(p);
        text = text[..open].trim_end();
    }
    let symbols: Vec<String> = text.split_whitespace().map(String::from).collect();
    if symbols.is_empty() {
        return Err("empty right side: every rule must write at least one symbol".into());
    }
    if let Some(bad) = symbols
        .iter()
        .find(|s| !is_nonterminal(s) && !is_terminal(s))
    {
        return Err(format!(
            "`{bad}` is neither a nonterminal (UPPER_CASE, digits, '_') nor a word \
             (lowercase letters and apostrophes)"
        ));
    }
    Ok((symbols, prob))
}

/// `NOM_RM`, `S2`: starts with an uppercase ASCII letter; then uppercase, digits or '_'.
fn is_nonterminal(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `queen`, `él`, `o'clock`: lowercase letters, apostrophes only between letters, so that
/// [`crate::data::words`] reads the word back whole.
fn is_terminal(s: &str) -> bool {
    s.split('\'')
        .all(|part| !part.is_empty() && part.chars().all(char::is_lowercase))
}

/// Fewest words each nonterminal derives (`usize::MAX`: it never ends in words), by
/// relaxing `min_len[A] = min over rules of Σ min_len[rhs]` until nothing changes.
fn min_lengths(rules: &[Rule], n_nt: usize) -> Vec<usize> {
    let mut min_len = vec![usize::MAX; n_nt];
    let mut changed = true;
    while changed {
        changed = false;
        for rule in rules {
            let len = rule.rhs.iter().try_fold(0usize, |acc, s| match s {
                Sym::T(_) => Some(acc + 1),
                Sym::N(b) if min_len[*b] < usize::MAX => Some(acc + min_len[*b]),
                Sym::N(_) => None,
            });
            if let Some(len) = len.filter(|&len| len < min_len[rule.lhs]) {
                min_len[rule.lhs] = len;
                changed = true;
            }
        }
    }
    min_len
}

fn reachable_from(start: usize, rules: &[Rule], rules_of: &[Vec<usize>]) -> Vec<bool> {
    let mut seen = vec![false; rules_of.len()];
    seen[start] = true;
    let mut todo = vec![start];
    while let Some(a) = todo.pop() {
        for &r in &rules_of[a] {
            for sym in &rules[r].rhs {
                if let Sym::N(b) = *sym {
                    if !seen[b] {
                        seen[b] = true;
                        todo.push(b);
                    }
                }
            }
        }
    }
    seen
}

/// A cycle A -> B -> ... -> A of rules with a single nonterminal on the right, if any.
fn unary_cycle(rules: &[Rule], rules_of: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = rules_of.len();
    let unary = |a: usize| {
        rules_of[a].iter().filter_map(|&r| match rules[r].rhs[..] {
            [Sym::N(b)] => Some(b),
            _ => None,
        })
    };
    // Depth-first search; state 1 = on the current path, 2 = finished.
    let mut state = vec![0u8; n];
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut path = vec![root];
        let mut next: Vec<Vec<usize>> = vec![unary(root).collect()];
        state[root] = 1;
        while let Some(children) = next.last_mut() {
            match children.pop() {
                Some(b) if state[b] == 1 => {
                    let from = path.iter().position(|&a| a == b).expect("on the path");
                    let mut cycle = path[from..].to_vec();
                    cycle.push(b);
                    return Some(cycle);
                }
                Some(b) if state[b] == 0 => {
                    state[b] = 1;
                    path.push(b);
                    next.push(unary(b).collect());
                }
                Some(_) => {}
                None => {
                    state[path.pop().expect("same depth as next")] = 2;
                    next.pop();
                }
            }
        }
    }
    None
}

/// For each nonterminal, which words can start (`first`) and end (`last`) what it derives.
fn edge_words(rules: &[Rule], n_nt: usize, n_t: usize) -> (Vec<Vec<bool>>, Vec<Vec<bool>>) {
    let closure = |pick: &dyn Fn(&Rule) -> Sym| {
        let mut set = vec![vec![false; n_t]; n_nt];
        let mut changed = true;
        while changed {
            changed = false;
            for rule in rules {
                match pick(rule) {
                    Sym::T(t) if !set[rule.lhs][t] => {
                        set[rule.lhs][t] = true;
                        changed = true;
                    }
                    Sym::T(_) => {}
                    Sym::N(b) => {
                        let from = set[b].clone();
                        for (to, from) in set[rule.lhs].iter_mut().zip(from) {
                            if from && !*to {
                                *to = true;
                                changed = true;
                            }
                        }
                    }
                }
            }
        }
        set
    };
    (
        closure(&|r: &Rule| r.rhs[0]),
        closure(&|r: &Rule| r.rhs[r.rhs.len() - 1]),
    )
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` if `a` is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let factor = a[row][col] / a[col][col];
            if factor != 0.0 {
                let (top, bottom) = a.split_at_mut(row);
                for (x, y) in bottom[0][col..].iter_mut().zip(&top[col][col..]) {
                    *x -= factor * y;
                }
                b[row] -= factor * b[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    fn parse_error(text: &str) -> String {
        match Grammar::parse(text, "test.pcfg") {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// Ambiguous on purpose: "x y z" has three derivations.
    /// P(x z) = 0.6·0.5·0.7 = 0.21, P(x y y z) = 0.6·0.5·0.3 = 0.09,
    /// P(x y z) = 0.6·(0.5·0.3 + 0.5·0.7) + 0.4 = 0.7; total 1.
    const AMBIGUOUS: &str = "
        S -> A B [0.6] | C [0.4]
        A -> x [0.5] | x y [0.5]
        B -> y z [0.3] | z [0.7]
        C -> x y z [1]";

    #[test]
    fn errors_name_the_line() {
        // (grammar, line at fault, part of the message)
        let cases = [
            ("S -> A [1]\nA -> a [0.5] | b [0.4]", 2, "sum to 0.9, not 1"),
            ("S -> A [1]\nA -> a B [1]", 2, "unknown nonterminal `B`"),
            (
                "S -> a [1]\nthis is not a rule",
                2,
                "expected `LHS -> RHS [p]`",
            ),
            ("S -> a [1]\nA -> [1]", 2, "empty right side"),
            ("S -> a [1]\nA -> b [1]", 2, "`A` is unreachable"),
            (
                "S -> a [0.5] | A [0.5]\nA -> b A [1]",
                2,
                "`A` never ends in words",
            ),
            ("S -> a [0.5] | b", 1, "without [p]"),
            ("S -> a [0.5]\n | a [0.5]", 2, "duplicate rule"),
            (
                "S -> A [0.5] | a [0.5]\nA -> S [0.5] | b [0.5]",
                1,
                "unary cycle S -> A -> S",
            ),
            (
                "S -> S S [0.6] | a [0.4]",
                1,
                "infinitely long (through `S`)",
            ),
            ("S -> the Cat [1]", 1, "`Cat` is neither"),
            ("S -> a [1.5]", 1, "not in (0, 1]"),
            ("S -> a [0.5 | b [0.5]", 1, "should end with a probability"),
            ("| a [1]", 1, "must follow a rule"),
            ("# only a comment", 1, "no rules"),
        ];
        for (text, line, message) in cases {
            let e = parse_error(text);
            assert!(e.starts_with(&format!("test.pcfg, line {line}: ")), "{e}");
            assert!(e.contains(message), "{e}");
        }
    }

    /// Words in the longest sentence, or `None` if there is no longest (recursion): relax
    /// `longest[A] = max over rules of Σ longest[rhs]`, which settles within one pass per
    /// nonterminal when the grammar is not recursive.
    fn longest_sentence(g: &Grammar) -> Option<usize> {
        let mut longest = vec![0; g.nonterminals.len()];
        for _ in 0..=g.nonterminals.len() {
            let mut changed = false;
            for rule in &g.rules {
                let len = rule.rhs.iter().map(|s| match s {
                    Sym::T(_) => 1,
                    Sym::N(b) => longest[*b],
                });
                let len: usize = len.sum();
                if len > longest[rule.lhs] {
                    longest[rule.lhs] = len;
                    changed = true;
                }
            }
            if !changed {
                return Some(longest[g.start]);
            }
        }
        None
    }

    #[test]
    fn bundled_grammars_parse() {
        // (grammar, longest sentence as stated in the file's comment)
        for (g, longest) in [
            (Grammar::toy_world(), 24),
            (Grammar::toy_world_es(), 24),
            (Grammar::toy_world_shifted(), 24),
        ] {
            let vocab = g.vocabulary();
            assert!(
                (150..=300).contains(&vocab.len()),
                "{}: {}",
                g.name(),
                vocab.len()
            );
            assert!(
                vocab.windows(2).all(|w| w[0] < w[1]),
                "sorted, no duplicates"
            );
            assert!(
                (8.0..=10.0).contains(&g.expected_length()),
                "{}",
                g.expected_length()
            );
            assert_eq!(longest_sentence(&g), Some(longest), "{}", g.name());
        }
        let recursive = Grammar::parse("S -> a S [0.5] | a [0.5]", "geometric").unwrap();
        assert_eq!(longest_sentence(&recursive), None);
    }

    #[test]
    fn generate_is_deterministic() {
        let g = Grammar::toy_world();
        assert_eq!(g.generate(50, 7), g.generate(50, 7));
        assert_ne!(g.generate(50, 7), g.generate(50, 8));
    }

    #[test]
    fn sample_log_prob_is_the_inside_probability() {
        for g in [
            Grammar::toy_world(),
            Grammar::toy_world_es(),
            Grammar::toy_world_shifted(),
        ] {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            for _ in 0..3000 {
                let (w, derivation) = g.sample_derivation(&mut rng);
                let refs: Vec<&str> = w.iter().map(String::as_str).collect();
                let inside = g.log_prob(&refs);
                assert!(inside.is_finite() && derivation.is_finite());
                // The bundled grammars are unambiguous: one derivation per sentence.
                assert!(
                    (inside - derivation).abs() < 1e-9,
                    "{refs:?}: {inside} vs {derivation}"
                );
            }
            for s in g.generate(200, 3) {
                let refs: Vec<&str> = s.words.iter().map(String::as_str).collect();
                assert_eq!(g.log_prob(&refs), s.log_prob);
            }
        }
    }

    #[test]
    fn impossible_sentences_get_minus_infinity() {
        let g = Grammar::toy_world();
        assert_eq!(
            g.log_prob(&words("queen the rides her horse")),
            f64::NEG_INFINITY
        );
        assert_eq!(
            g.log_prob(&words("the queen rides his horse")),
            f64::NEG_INFINITY
        );
        assert_eq!(g.log_prob(&words("the dogs runs")), f64::NEG_INFINITY);
        assert_eq!(
            g.log_prob(&words("the queen rides her unicorn")),
            f64::NEG_INFINITY
        );
        assert_eq!(g.log_prob(&[]), f64::NEG_INFINITY);
        let long_range = words("the queen who feeds her hound rides her horse");
        assert!(g.log_prob(&long_range).is_finite());
        for s in g.generate(200, 5).iter().filter(|s| s.words.len() >= 4) {
            let mut reversed: Vec<&str> = s.words.iter().map(String::as_str).collect();
            reversed.reverse();
            assert_eq!(g.log_prob(&reversed), f64::NEG_INFINITY, "{reversed:?}");
        }
    }

    #[test]
    fn all_sentences_of_a_finite_language_sum_to_one() {
        let g = Grammar::parse(AMBIGUOUS, "ambiguous").unwrap();
        let p = |s: &str| g.log_prob(&words(s)).exp();
        assert!((p("x y z") - 0.7).abs() < 1e-12);
        assert!((p("x z") - 0.21).abs() < 1e-12);
        assert!((p("x y y z") - 0.09).abs() < 1e-12);
        // Every word sequence up to length 5 over the vocabulary, without knowing the
        // language: the probabilities still add up to exactly 1.
        let vocab = g.vocabulary();
        let mut total = 0.0;
        let mut sequences: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..5 {
            let longer: Vec<Vec<&str>> = sequences
                .iter()
                .flat_map(|s| {
                    vocab.iter().map(move |w| {
                        let mut s = s.clone();
                        s.push(w.as_str());
                        s
                    })
                })
                .collect();
            total += longer.iter().map(|s| g.log_prob(s).exp()).sum::<f64>();
            sequences = longer;
        }
        assert!((total - 1.0).abs() < 1e-12, "{total}");
    }

    #[test]
    fn ambiguity_makes_the_derivation_less_likely_than_the_sentence() {
        let g = Grammar::parse(AMBIGUOUS, "ambiguous").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut strictly_less = 0;
        for _ in 0..2000 {
            let (w, derivation) = g.sample_derivation(&mut rng);
            let refs: Vec<&str> = w.iter().map(String::as_str).collect();
            let inside = g.log_prob(&refs);
            assert!(derivation <= inside + 1e-12);
            strictly_less += usize::from(derivation < inside - 1e-9);
        }
        assert!(strictly_less > 1000, "{strictly_less}"); // "x y z" is 70% of samples
    }

    #[test]
    fn sampled_frequencies_match_the_probabilities() {
        let g = Grammar::parse(AMBIGUOUS, "ambiguous").unwrap();
        let n = 100_000;
        let mut counts: FxHashMap<Vec<String>, usize> = FxHashMap::default();
        let samples = g.generate(n, 42);
        for s in &samples {
            *counts.entry(s.words.clone()).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        for s in &samples[..10] {
            let p = s.log_prob.exp();
            let freq = counts[&s.words] as f64 / n as f64;
            let sigma = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (freq - p).abs() < 5.0 * sigma,
                "{:?}: {freq} vs {p}",
                s.words
            );
        }
    }

    #[test]
    fn recursive_grammars_are_fine_when_finite_on_average() {
        // S -> a S | a: length is geometric, P(a^k) = 0.5^k, mean 2.
        let g = Grammar::parse("S -> a S [0.5] | a [0.5]", "geometric").unwrap();
        assert!((g.expected_length() - 2.0).abs() < 1e-12);
        assert!((g.log_prob(&words("a a a")) - 0.125f64.ln()).abs() < 1e-12);
        let mean = g
            .generate(20_000, 1)
            .iter()
            .map(|s| s.words.len())
            .sum::<usize>() as f64
            / 20_000.0;
        assert!((mean - 2.0).abs() < 0.05, "{mean}");
        // H = Σ_k 0.5^k · k ln 2 = 2 ln 2 nats per sentence.
        assert!((g.derivation_entropy() - 2.0 * 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn agreement_is_real() {
        let en = Grammar::toy_world().generate(5000, 11);
        let (mut female, mut male) = (0, 0);
        for s in &en {
            let w: Vec<&str> = s.words.iter().map(String::as_str).collect();
            // The subject is the noun at position 1 or 2; "and" after it is a pair of nouns.
            let noun = |set: &[&str]| {
                (1..=2).find(|&i| set.contains(&w[i]) && w.get(i + 1) != Some(&"and"))
            };
            let female_nouns = [
                "queen", "princess", "lady", "duchess", "woman", "girl", "lass",
            ];
            if noun(&female_nouns).is_some() {
                female += 1;
                assert!(
                    !w.iter()
                        .any(|x| ["his", "he", "its", "their", "they"].contains(x)),
                    "{w:?}"
                );
            }
            let male_nouns = ["king", "prince", "lord", "duke", "man", "boy", "lad"];
            if noun(&male_nouns).is_some() {
                male += 1;
                assert!(
                    !w.iter()
                        .any(|x| ["her", "she", "its", "their", "they"].contains(x)),
                    "{w:?}"
                );
            }
            if noun(&["dogs", "cats", "horses"]).is_some() {
                assert!(
                    !w.iter()
                        .any(|x| ["is", "its", "it", "runs", "sleeps"].contains(x)),
                    "{w:?}"
                );
            }
        }
        assert!(female > 1000 && male > 1000, "{female} {male}");

        // Spanish: the predicate adjective and the pronoun agree with the subject's gender.
        let es = Grammar::toy_world_es().generate(5000, 11);
        let mut ella = 0;
        for s in &es {
            let w: Vec<&str> = s.words.iter().map(String::as_str).collect();
            let pair = (2..=3).any(|i| w.get(i) == Some(&"y") && ["el", "la"].contains(&w[i + 1]));
            if w[..2] == ["la", "reina"] && !pair {
                assert!(
                    !w.iter().any(|x| ["él", "cansado", "contento"].contains(x)),
                    "{w:?}"
                );
                ella += usize::from(w.contains(&"ella"));
            }
            if w[..2] == ["el", "rey"] && !pair {
                assert!(
                    !w.iter()
                        .any(|x| ["ella", "cansada", "contenta"].contains(x)),
                    "{w:?}"
                );
            }
        }
        assert!(ella > 30, "{ella}");
    }

    #[test]
    fn text_reads_back_as_the_same_words() {
        let s = GeneratedSentence {
            words: words("él rides her horse")
                .iter()
                .map(|w| w.to_string())
                .collect(),
            log_prob: 0.0,
        };
        assert_eq!(s.text(), "Él rides her horse.");
        for g in [Grammar::toy_world(), Grammar::toy_world_es()] {
            for s in g.generate(500, 9) {
                assert_eq!(crate::data::words(&s.text().to_lowercase()), s.words);
            }
        }
    }

    #[test]
    fn write_corpus_replaces_the_file_whole() {
        use std::fs;
        let dir = std::env::temp_dir().join(format!("llm-lessons-grammar-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corpus.txt");
        fs::write(&path, "old content\n").unwrap();
        let sentences = Grammar::toy_world().generate(100, 2);
        Grammar::write_corpus(&sentences, &path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = sentences.iter().map(GeneratedSentence::text).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), lines);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The shifted world differs from the first only as its doc says: the same words, a
    /// sentence of the new construction impossible in the first, the changed rules' words
    /// as frequent as their new probabilities, and a different (known) entropy.
    #[test]
    fn the_shifted_world_differs_as_documented() {
        let (first, shifted) = (Grammar::toy_world(), Grammar::toy_world_shifted());
        let vocab = first.vocabulary();
        assert_eq!(shifted.vocabulary(), vocab, "no new words");
        let kin = words("the king and his mother ride their horses");
        assert_eq!(first.log_prob(&kin), f64::NEG_INFINITY);
        // S_RP 0.15 * SUBJ_RP 0.15 * king (0.45 * 0.6) * mother 1/7 * VP_RP 0.03
        let p: f64 = 0.15 * 0.45 * 0.15 * 0.45 * 0.6 * (1.0 / 7.0) * 0.03;
        assert!((shifted.log_prob(&kin) - p.ln()).abs() < 1e-9);
        // a sentence both can write: only the changed rules' probabilities differ
        let both = words("the dog sleeps but it eats the hay");
        let ratio = shifted.log_prob(&both) - first.log_prob(&both);
        // S_A 0.15 / 0.16, CONJ but 0.4 / 0.15
        assert!((ratio - (0.15f64 / 0.16 * 0.4 / 0.15).ln()).abs() < 1e-9);
        // "and his" appears only in the shifted world's samples
        let has_and_his = |g: &Grammar| {
            g.generate(3000, 5)
                .iter()
                .filter(|s| s.words.windows(2).any(|w| w[0] == "and" && w[1] == "his"))
                .count()
        };
        assert_eq!(has_and_his(&first), 0);
        assert!(has_and_his(&shifted) > 100);
        let (h1, h2) = (first.entropy_per_token(), shifted.entropy_per_token());
        assert!((h1 - h2).abs() > 0.005, "{h1} {h2}");
    }

    /// The figures the course quotes; `cargo test --lib toy_world_figures -- --nocapture`.
    #[test]
    fn toy_world_figures() {
        for g in [
            Grammar::toy_world(),
            Grammar::toy_world_es(),
            Grammar::toy_world_shifted(),
        ] {
            let sentences = g.generate(20_000, 2024);
            let h = true_cross_entropy(&sentences);
            let lengths: Vec<usize> = sentences.iter().map(|s| s.words.len()).collect();
            let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
            println!(
                "{}: {} rules, vocabulary {}, mean length {mean:.2} words (exact {:.3}, \
                 min {}, max {}); true cross-entropy {h:.4} nats/token, perplexity {:.2} \
                 (exact entropy {:.4} nats/token)",
                g.name(),
                g.n_rules(),
                g.vocabulary().len(),
                g.expected_length(),
                lengths.iter().min().unwrap(),
                lengths.iter().max().unwrap(),
                h.exp(),
                g.entropy_per_token(),
            );
            // The sample average converges to the exact entropy (unambiguous grammar).
            assert!((h - g.entropy_per_token()).abs() < 0.02 * h, "{h}");
            assert!((mean - g.expected_length()).abs() < 0.02 * mean, "{mean}");
            assert!(*lengths.iter().min().unwrap() >= 3);
        }
    }
}
