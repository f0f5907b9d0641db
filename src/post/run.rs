//! The loop every post-training method runs: steps of chapter 4's [`Trainer`] on batches
//! the method builds, a log of what each step measured, and checkpoints from which a
//! killed run resumes to the same result.
//!
//! A method's step must depend only on the model, the trainer and the step's index (its
//! random draws are seeded by [`step_rng`]), so that a run resumed from a checkpoint takes
//! the steps it would have taken without the interruption.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::write_atomic;
use crate::gpt::checkpoint::{
    load_run_model, load_trainer, save, save_checkpoint_dir, step_dir_name, step_dirs,
};
use crate::gpt::train::{TrainConfig, Trainer};
use crate::gpt::Gpt;
use crate::{Error, Result};

/// The random generator of step `step` of a run seeded `seed`.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64)
}

/// What each step measured: one row per step, `columns` named (the step first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PostLog {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl PostLog {
    pub fn new(columns: &[&str]) -> Self {
        let mut c = vec!["step".to_string()];
        c.extend(columns.iter().map(|s| s.to_string()));
        PostLog {
            columns: c,
            rows: Vec::new(),
        }
    }

    pub fn to_csv(&self) -> String {
        let mut s = self.columns.join(",") + "\n";
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|v| format!("{v}")).collect();
            s += &(cells.join(",") + "\n");
        }
        s
    }

    pub fn from_csv(text: &str, path: &Path) -> Result<Self> {
        let mut lines = text.lines();
        let header = lines.next().ok_or_else(|| Error::Format {
            path: path.into(),
            line: 1,
            message: "an empty log".into(),
        })?;
        let columns: Vec<String> = header.split(',').map(str::to_string).collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let row: std::result::Result<Vec<f64>, _> = line.split(',').map(str::parse).collect();
            match row {
                Ok(r) if r.len() == columns.len() => rows.push(r),
                _ => {
                    return Err(Error::Format {
                        path: path.into(),
                        line: i + 2,
                        message: format!("not {} numbers", columns.len()),
                    })
                }
            }
        }
        Ok(PostLog { columns, rows })
    }

    /// Column `name`, by step.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let k = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[k]).collect())
    }
}

/// Where a run keeps its checkpoints, and how often.
#[derive(Clone, Debug)]
pub struct Checkpointing {
    /// The run's folder: `checkpoints/step-NNNNNNN/` in it, and the final model.
    pub dir: PathBuf,
    pub every: usize,
}

/// Runs `steps` steps of `step_fn` on `model` (which must have the `trainable` flags the
/// method wants), logging the values it returns under `columns`. With `checkpointing`, a
/// checkpoint is saved every `every` steps and at the end, and a run whose folder already
/// holds checkpoints continues from the last of them; the final model and `log.csv` are
/// written to the folder. `on_step` sees each step's row.
pub fn run_steps(
    model: &mut Gpt,
    train: TrainConfig,
    steps: usize,
    columns: &[&str],
    checkpointing: Option<&Checkpointing>,
    mut step_fn: impl FnMut(&mut Trainer, &mut Gpt, usize) -> Result<Vec<f64>>,
    mut on_step: impl FnMut(usize, &[f64]),
) -> Result<PostLog> {
    let mut log = PostLog::new(columns);
    let mut trainer = Trainer::new(model, train.clone())?;
    if let Some(c) = checkpointing {
        if let Some((_, last)) = step_dirs(&c.dir.join("checkpoints"))?.pop() {
            let resumed = load_run_model(&last)?;
            if resumed.cfg != model.cfg {
                return Err(Error::Checkpoint {
                    path: last,
                    message: "the checkpoint is of another model".into(),
                });
            }
            let frozen: Vec<String> = model
                .params
                .param_specs()
                .into_iter()
                .filter(|s| !s.trainable)
                .map(|s| s.name)
                .collect();
            *model = resumed;
            model
                .params
                .set_trainable(|name| !frozen.iter().any(|f| f == name));
            trainer = load_trainer(&last, model)?;
            if trainer.config != train {
                return Err(Error::Checkpoint {
                    path: last,
                    message: "the run's settings differ from the checkpoint's: use a new folder"
                        .into(),
                });
            }
            let log_path = last.join("log.csv");
            let text = std::fs::read_to_string(&log_path).map_err(|e| Error::io(&log_path, e))?;
            log = PostLog::from_csv(&text, &log_path)?;
        }
    }
    while trainer.step < steps {
        let step = trainer.step;
        let row = step_fn(&mut trainer, model, step)?;
        let mut full = vec![step as f64];
        full.extend(row);
        on_step(step, &full);
        log.rows.push(full);
        if let Some(c) = checkpointing {
            if trainer.step % c.every.max(1) == 0 || trainer.step == steps {
                let dir = c.dir.join("checkpoints").join(step_dir_name(trainer.step));
                save_checkpoint_dir(
                    &dir,
                    model,
                    &trainer,
                    &[("log.csv", log.to_csv().as_bytes())],
                )?;
            }
        }
    }
    if let Some(c) = checkpointing {
        save(&c.dir, model, None)?;
        write_atomic(&c.dir.join("log.csv"), log.to_csv().as_bytes())?;
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::grammar::Grammar;
    use crate::gpt::config::shrunk;
    use crate::gpt::GptConfig;
    use crate::post::pipeline::train_config;
    use crate::post::sft::{conversations, sft_step};
    use crate::post::task::{examples, ChatVocab, LossMask};

    /// A run killed after a checkpoint and started again ends with the weights and log of
    /// the run that was never interrupted.
    #[test]
    fn a_killed_run_resumes_to_the_same_result() {
        let g = Grammar::toy_world();
        let v = ChatVocab::new(&g);
        let convs = conversations(&v, &examples(&g, 40, 3)).unwrap();
        let cfg = shrunk(GptConfig::llama_tiny(), [v.len(), 16, 1, 32, 40]);
        let base = Gpt::init(cfg, 1).unwrap();
        let train = train_config(4, 36, 1e-3, 10, 7);
        let dir =
            std::env::temp_dir().join(format!("llm-lessons-post-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ck = Checkpointing {
            dir: dir.clone(),
            every: 3,
        };
        let step = |tr: &mut Trainer, m: &mut Gpt, s: usize| {
            sft_step(tr, m, &convs, LossMask::Assistant, s)
        };

        let mut whole = base.clone();
        let log = run_steps(
            &mut whole,
            train.clone(),
            10,
            &["loss", "tokens"],
            None,
            step,
            |_, _| {},
        )
        .unwrap();

        let mut killed = base.clone();
        let died = run_steps(
            &mut killed,
            train.clone(),
            10,
            &["loss", "tokens"],
            Some(&ck),
            |tr, m, s| {
                if s == 7 {
                    return Err(Error::InvalidArgument("killed".into()));
                }
                step(tr, m, s)
            },
            |_, _| {},
        );
        assert!(died.is_err());
        let mut resumed = base.clone();
        let log2 = run_steps(
            &mut resumed,
            train,
            10,
            &["loss", "tokens"],
            Some(&ck),
            step,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(log2, log);
        assert_eq!(resumed.params.tensors(), whole.params.tensors());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
