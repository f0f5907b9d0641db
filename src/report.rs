//! What a tour step hands back: a leaf module, so that the chapters' tours and the tour
//! registry ([`crate::tour`]) both depend on it and never on each other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Result;

/// How much work a tour step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TourSize {
    /// The tour as `cargo run --release` shows it: the figures the book quotes.
    #[default]
    Full,
    /// The same steps on smaller corpora and fewer training steps: every chapter wired end
    /// to end and every file written, in seconds (the CLI test runs this; its figures are
    /// not the book's).
    Quick,
}

impl TourSize {
    /// `full` at [`TourSize::Full`], `quick` at [`TourSize::Quick`].
    pub fn pick<T>(self, full: T, quick: T) -> T {
        match self {
            TourSize::Full => full,
            TourSize::Quick => quick,
        }
    }
}

/// One chapter of the tour.
pub struct Step {
    pub title: &'static str,
    /// Runs the chapter, writing its files under the output folder given.
    pub run: fn(&Path, TourSize) -> Result<StepReport>,
}

/// What a chapter measured, as text to print, and the files it wrote.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub title: String,
    pub text: String,
    pub files: Vec<PathBuf>,
    pub elapsed: Duration,
}
