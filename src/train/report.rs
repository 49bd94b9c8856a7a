//! Where a step's metrics go besides `metrics.jsonl`: a TensorBoard event file (with
//! `train.report_to = ["jsonl", "tensorboard"]`) and, when stderr is not a terminal (a cluster
//! job's log), a log line every `train.logging_steps` steps.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;

use super::metrics::StepMetrics;
use crate::store::append_scalars;

/// The reporting of one training run.
pub(super) struct Report {
    tensorboard: Option<PathBuf>,
    log_lines: bool,
}

impl Report {
    /// Starts reporting; a resumed run's event file is written again from the steps already
    /// done, as `metrics.jsonl` is, so it never holds a step twice.
    pub fn start(tensorboard: Option<PathBuf>, done: &[StepMetrics]) -> Result<Report> {
        if let Some(path) = &tensorboard {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            for m in done {
                append_scalars(path, m.step as u64, &as_refs(&m.scalars()))?;
            }
        }
        Ok(Report {
            tensorboard,
            log_lines: !std::io::stderr().is_terminal(),
        })
    }

    /// Reports step `m` of `total`.
    pub fn step(&self, m: &StepMetrics, total: usize, every: usize) -> Result<()> {
        if let Some(path) = &self.tensorboard {
            append_scalars(path, m.step as u64, &as_refs(&m.scalars()))?;
        }
        if self.log_lines && (m.step.is_multiple_of(every.max(1)) || m.step == total) {
            tracing::info!("{}", m.log_line(total));
        }
        Ok(())
    }
}

fn as_refs(scalars: &[(String, f64)]) -> Vec<(&str, f64)> {
    scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}
