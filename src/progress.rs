//! Progress bars and spinners with one look across the crate, on stderr (indicatif).
//!
//! They draw only when stderr is a terminal: piped or captured output (tests, CI, a
//! notebook) stays clean. Finish them with `finish_and_clear()` to leave nothing behind, or
//! `finish()` to keep the last state on screen.
//!
//! ```
//! let bar = llm_lessons::progress::bar(3, "training");
//! for _ in 0..3 {
//!     bar.inc(1);
//! }
//! bar.finish_and_clear();
//! ```

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `len` steps: `training n-gram models [=======>     ] 12/25 3s`.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg:28} [{bar:25}] {pos}/{len} {elapsed}")
        .expect("the template is valid")
        .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_message(msg.to_string())
}

/// A spinner for work of unknown length: `⠙ generating the corpus 1s`.
pub fn spinner(msg: &str) -> ProgressBar {
    let style =
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("the template is valid");
    let spinner = ProgressBar::new_spinner()
        .with_style(style)
        .with_message(msg.to_string());
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}
