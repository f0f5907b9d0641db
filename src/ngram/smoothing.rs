//! The smoothing methods, as the formulas in the book write them. Each function computes one
//! probability from counts; [`super::NgramModel`] looks the counts up and calls these.

use std::fmt;

use crate::{Error, Result};

/// How an n-gram model turns counts into probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// Maximum likelihood: c(h w) / c(h •). Unseen n-grams get probability 0.
    Mle,
    /// Add-k: (c(h w) + k) / (c(h •) + k |V|); k = 1 is Laplace smoothing.
    AddK(f64),
    /// Linear (Jelinek-Mercer) interpolation of the maximum-likelihood estimates of every
    /// order and the uniform distribution, with weights λ fit by EM on held-out text.
    Interpolated,
    /// Interpolated Kneser-Ney with one discount per order: a fixed `D` if given, else
    /// D = n1 / (n1 + 2 n2) from the counts of counts.
    KneserNey(Option<f64>),
    /// Modified Kneser-Ney (Chen and Goodman): discounts D1, D2, D3+ per order, estimated
    /// from the counts of counts as KenLM's `lmplz` does.
    ModifiedKneserNey,
}

impl Smoothing {
    /// Parses a name as the command line writes it: `mle`, `laplace`, `add-k` (with `k`),
    /// `interpolated`, `kn` (with an optional fixed `discount`), `mkn`.
    pub fn parse(name: &str, k: f64, discount: Option<f64>) -> Result<Smoothing> {
        let s = match name {
            "mle" => Smoothing::Mle,
            "laplace" => Smoothing::AddK(1.0),
            "add-k" | "addk" => Smoothing::AddK(k),
            "interpolated" | "jm" => Smoothing::Interpolated,
            "kn" | "kneser-ney" => Smoothing::KneserNey(discount),
            "mkn" | "modified-kneser-ney" => Smoothing::ModifiedKneserNey,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown smoothing {name:?}: use mle, laplace, add-k, interpolated, kn or mkn"
                )))
            }
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the parameters: k > 0, 0 < D < 1.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Smoothing::AddK(k) if !(k > 0.0 && k.is_finite()) => Err(Error::InvalidArgument(
                format!("add-k needs k > 0, got {k}"),
            )),
            Smoothing::KneserNey(Some(d)) if !(d > 0.0 && d < 1.0) => Err(Error::InvalidArgument(
                format!("a fixed Kneser-Ney discount must be in (0, 1), got {d}"),
            )),
            _ => Ok(()),
        }
    }

    /// Every method the course compares, in the order of the chapter.
    pub fn all() -> [Smoothing; 5] {
        [
            Smoothing::Mle,
            Smoothing::AddK(1.0),
            Smoothing::Interpolated,
            Smoothing::KneserNey(None),
            Smoothing::ModifiedKneserNey,
        ]
    }

    /// True for the Kneser-Ney family, which uses continuation counts at lower orders.
    pub fn is_kneser_ney(&self) -> bool {
        matches!(self, Smoothing::KneserNey(_) | Smoothing::ModifiedKneserNey)
    }
}

impl fmt::Display for Smoothing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Smoothing::Mle => write!(f, "MLE"),
            Smoothing::AddK(k) if *k == 1.0 => write!(f, "Laplace"),
            Smoothing::AddK(k) => write!(f, "add-{k}"),
            Smoothing::Interpolated => write!(f, "interpolated"),
            Smoothing::KneserNey(None) => write!(f, "Kneser-Ney"),
            Smoothing::KneserNey(Some(d)) => write!(f, "Kneser-Ney D={d}"),
            Smoothing::ModifiedKneserNey => write!(f, "modified Kneser-Ney"),
        }
    }
}

// ANCHOR: mle
/// P_MLE(w | h) = c(h w) / c(h •)
pub fn mle(c_hw: f64, c_h: f64) -> f64 {
    c_hw / c_h
}
// ANCHOR_END: mle

// ANCHOR: add_k
/// P_add-k(w | h) = (c(h w) + k) / (c(h •) + k |V|)
pub fn add_k(c_hw: f64, c_h: f64, k: f64, vocab_size: f64) -> f64 {
    (c_hw + k) / (c_h + k * vocab_size)
}
// ANCHOR_END: add_k

// ANCHOR: kneser_ney
/// One level of interpolated Kneser-Ney:
/// P(w | h) = max(a(h w) − D(a), 0) / a(h •) + γ(h) P_lower(w | h'),
/// with γ(h) = (D1 N1(h •) + D2 N2(h •) + D3+ N3+(h •)) / a(h •).
///
/// `a` is the raw count at the highest order and the continuation count below it.
pub fn kneser_ney(a_hw: f64, discount: f64, gamma_numerator: f64, a_h: f64, lower: f64) -> f64 {
    ((a_hw - discount).max(0.0) + gamma_numerator * lower) / a_h
}
// ANCHOR_END: kneser_ney

/// Discounts of one order: D1, D2, D3+ (all three equal for plain Kneser-Ney).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Discounts(pub [f64; 3]);

impl Discounts {
    /// The discount for an n-gram seen `a` times (a ≥ 1).
    #[inline]
    pub fn for_count(&self, a: u32) -> f64 {
        match a {
            0 => 0.0,
            1 => self.0[0],
            2 => self.0[1],
            _ => self.0[2],
        }
    }

    /// D1 N1 + D2 N2 + D3+ N3+: the mass the discounts free, before dividing by a(h •).
    #[inline]
    pub fn freed_mass(&self, n1: u32, n2: u32, n3plus: u32) -> f64 {
        self.0[0] * n1 as f64 + self.0[1] * n2 as f64 + self.0[2] * n3plus as f64
    }
}

// ANCHOR: discounts
/// Chen and Goodman's estimates from the counts of counts n1..n4 of one order:
/// Y = n1 / (n1 + 2 n2), D1 = 1 − 2Y n2/n1, D2 = 2 − 3Y n3/n2, D3+ = 3 − 4Y n4/n3.
pub fn modified_kn_discounts(n: [u64; 4]) -> Option<Discounts> {
    let [n1, n2, n3, n4] = n.map(|x| x as f64);
    let y = n1 / (n1 + 2.0 * n2);
    let d = [
        1.0 - 2.0 * y * n2 / n1,
        2.0 - 3.0 * y * n3 / n2,
        3.0 - 4.0 * y * n4 / n3,
    ];
    // Each Di must lie in (0, i]; on tiny or artificial corpora the estimate can fail.
    let ok = d
        .iter()
        .enumerate()
        .all(|(i, &di)| di.is_finite() && di > 0.0 && di <= (i + 1) as f64);
    ok.then_some(Discounts(d))
}

/// The single Kneser-Ney discount D = n1 / (n1 + 2 n2).
pub fn kn_discount(n: [u64; 4]) -> Option<Discounts> {
    let (n1, n2) = (n[0] as f64, n[1] as f64);
    let d = n1 / (n1 + 2.0 * n2);
    (d.is_finite() && d > 0.0 && d < 1.0).then_some(Discounts([d; 3]))
}
// ANCHOR_END: discounts

/// KenLM's fallback discounts (`--discount_fallback`) when the estimate fails.
pub const FALLBACK_DISCOUNTS: Discounts = Discounts([0.5, 1.0, 1.5]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chen_goodman_discounts_known_answer() {
        // n1=100, n2=40, n3=20, n4=10: Y = 100/180.
        let d = modified_kn_discounts([100, 40, 20, 10]).unwrap().0;
        let y = 100.0 / 180.0;
        assert!((d[0] - (1.0 - 2.0 * y * 0.4)).abs() < 1e-12);
        assert!((d[1] - (2.0 - 3.0 * y * 0.5)).abs() < 1e-12);
        assert!((d[2] - (3.0 - 4.0 * y * 0.5)).abs() < 1e-12);
        assert!(modified_kn_discounts([0, 0, 5, 5]).is_none());
    }

    #[test]
    fn parse_names() {
        assert_eq!(
            Smoothing::parse("laplace", 0.0, None).unwrap(),
            Smoothing::AddK(1.0)
        );
        assert_eq!(
            Smoothing::parse("kn", 0.0, Some(0.1)).unwrap(),
            Smoothing::KneserNey(Some(0.1))
        );
        assert!(Smoothing::parse("add-k", 0.0, None).is_err());
        assert!(Smoothing::parse("witten-bell", 1.0, None)
            .unwrap_err()
            .to_string()
            .contains("unknown smoothing"));
    }
}
