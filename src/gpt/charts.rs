//! Charts of chapter 4's runs. The training core ([`super::train`]) gives data; this
//! module turns it into [`crate::plot`] series.

use super::train::LossLog;
use crate::plot::{LineChart, Series};

impl LossLog {
    /// The training loss (mean over `smooth` steps) and the held-out points against the
    /// step, as chart series named `"{name} training loss"` and `"{name} held-out loss"`.
    pub fn series(&self, name: &str, smooth: usize) -> Vec<Series> {
        let curves = self.curves(smooth);
        let label = |what: &str| format!("{name} {what}").trim().to_string();
        let mut out = vec![Series::new(label("training loss"), curves.train)];
        if !curves.held_out.is_empty() {
            out.push(Series::new(label("held-out loss"), curves.held_out));
        }
        out
    }

    /// The log's chart, as `llm gpt train` draws it (`loss.svg`): about 200 points a curve.
    pub fn chart(&self, title: impl Into<String>) -> LineChart {
        let smooth = (self.rows.len() / 200).max(1);
        self.series("", smooth).into_iter().fold(
            LineChart::new(title, "step", "cross-entropy (nats/token)"),
            LineChart::series,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::train::StepLog;
    use super::*;

    #[test]
    fn a_log_gives_a_training_and_a_held_out_series() {
        let mut log = LossLog::default();
        for i in 0..4 {
            let step = StepLog {
                step: i,
                loss: 1.0 + i as f32,
                lr: 1e-3,
                grad_norm: 0.5,
            };
            log.push(step, (i == 3).then_some(2.5));
        }
        let series = log.series("ours", 2);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].name, "ours training loss");
        assert_eq!(series[0].points, vec![(2.0, 1.5), (4.0, 3.5)]);
        assert_eq!(series[1].points, vec![(4.0, 2.5)]);
        assert_eq!(LossLog::default().series("", 1).len(), 1);
    }
}
