//! The PyTorch reference of `trainer bench --pytorch PYTHON`: `bench/bench_pytorch.py` (built into
//! the binary) runs in a child Python that loads the same model file, and answers one JSON line
//! per row we send it, so that its rows and ours alternate in one run on one machine.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

use super::PytorchRow;
use crate::error::user_error;

const SCRIPT: &str = include_str!("../../../bench/bench_pytorch.py");

/// The running reference process.
pub(super) struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// What it reported on start: torch version and threads.
    pub versions: Value,
}

impl Reference {
    /// Starts `python` on the embedded script with `model` and waits for it to load the model.
    pub fn start(python: &Path, model: &Path) -> Result<Self> {
        tracing::info!("starting the PyTorch reference ({})", python.display());
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .arg("--model")
            .arg(model)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                user_error(format!(
                    "--pytorch {}: cannot start it: {e}",
                    python.display()
                ))
            })?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("no stdout pipe"))?,
        );
        let mut r = Reference {
            child,
            stdin,
            stdout,
            versions: Value::Null,
        };
        let ready = r.answer().map_err(|e| {
            user_error(format!(
                "--pytorch {}: the PyTorch reference did not start ({e:#}); it needs torch, \
                 transformers, gguf and accelerate (bench/install_pytorch.sh installs them)",
                python.display()
            ))
        })?;
        r.versions = ready;
        Ok(r)
    }

    fn answer(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line)?;
        if n == 0 {
            return Err(anyhow!("it exited (its errors are above)"));
        }
        serde_json::from_str(&line).with_context(|| format!("its answer `{}`", line.trim()))
    }

    fn ask(&mut self, command: Value) -> Result<Value> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.answer()
            .with_context(|| format!("the PyTorch reference, on {command}"))
    }

    /// One DPO step of `pairs` pairs of `seq` tokens; `tokens` policy tokens.
    pub fn step(&mut self, pairs: usize, seq: usize, tokens: usize) -> Result<PytorchRow> {
        let a = self.ask(json!({"op": "step", "pairs": pairs, "seq": seq}))?;
        row(&a, tokens as f64)
    }

    /// One sampling batch of `batch` sequences, `new` new tokens each.
    pub fn sample(&mut self, batch: usize, new: usize) -> Result<PytorchRow> {
        let a = self.ask(json!({"op": "sample", "batch": batch, "new": new}))?;
        let tokens = a["new_tokens"]
            .as_f64()
            .ok_or_else(|| anyhow!("the PyTorch reference gave no new_tokens: {a}"))?;
        row(&a, tokens)
    }

    /// Asks the process to quit and waits for it.
    pub fn finish(mut self) -> Result<()> {
        writeln!(self.stdin, "{}", json!({"op": "quit"}))?;
        self.stdin.flush()?;
        self.child.wait()?;
        Ok(())
    }
}

fn row(a: &Value, tokens: f64) -> Result<PytorchRow> {
    let seconds = a["seconds"]
        .as_f64()
        .ok_or_else(|| anyhow!("the PyTorch reference gave no seconds: {a}"))?;
    Ok(PytorchRow {
        seconds,
        tokens_per_s: tokens / seconds,
        peak_rss_gib: a["peak_rss_gib"].as_f64(),
    })
}
