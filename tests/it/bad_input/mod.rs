//! The bad-input suite: every case runs the binary on one broken input and asserts exit 2, one
//! `error:` line naming the file and line, the recipe key or the script function, no panic, and no
//! partial output left in the run folder or the cache.

mod data;
mod model;
mod out;
mod recipe;
mod scripts;

use std::path::Path;
use std::process::Output;

use crate::common::{assert_user_error, stderr, trainer, write};
use crate::pipeline::recipe;

/// A refused run: its temporary world (model, data, cache, and the run folder `run/`) and output.
pub struct Refusal {
    pub dir: tempfile::TempDir,
    pub out: Output,
}

impl Refusal {
    /// Asserts exit 2 with one error line holding every needle, no panic or backtrace, and no
    /// partial output; returns the error line.
    pub fn assert(&self, needles: &[&str]) -> String {
        let line = assert_user_error(&self.out, needles);
        let err = stderr(&self.out);
        assert!(!err.contains("stack backtrace"), "backtrace: {err}");
        assert_no_partial_output(self.dir.path(), &self.dir.path().join("run"));
        line
    }
}

/// No temporary file anywhere under `world`; in `run_dir`, no mark of a finished run
/// (`summary.json`, `final/`) and no JSONL file with a cut or malformed line.
pub fn assert_no_partial_output(world: &Path, run_dir: &Path) {
    for file in files_under(world) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp"),
            "temporary file left: {}",
            file.display()
        );
        if !file.starts_with(run_dir) {
            continue;
        }
        assert!(name != "summary.json", "a refused run wrote summary.json");
        assert!(
            !file.starts_with(run_dir.join("final")),
            "a refused run wrote {}",
            file.display()
        );
        if name.ends_with(".jsonl") {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "cut line in {name}"
            );
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{name}: partial line {line:?}: {e}"));
            }
        }
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The tiny pipeline (plug-and-play script, tiny random model) with `sets` on top of its recipe.
pub fn tiny_run(sets: &[&str]) -> Refusal {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let out = crate::pipeline::run(dir.path(), &recipe, "run", sets);
    Refusal { dir, out }
}

/// The tiny pipeline without eval, its training file replaced by `bytes`, plus `sets`.
pub fn with_data_file(bytes: &[u8], sets: &[&str]) -> Refusal {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, bytes).unwrap();
    let set = format!("data.train=\"{}\"", bad.display());
    let mut all = vec![set.as_str(), "eval.data=\"\""];
    all.extend_from_slice(sets);
    let out = crate::pipeline::run(dir.path(), &recipe, "run", &all);
    Refusal { dir, out }
}

/// `trainer train --pairs` on a pairs file holding `text`.
pub fn train_on_pairs(text: &str) -> Refusal {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let pairs = write(dir.path(), "off.jsonl", text);
    let out_dir = dir.path().join("run");
    let out = trainer(
        &[
            "train",
            "--config",
            recipe.to_str().unwrap(),
            "--pairs",
            pairs.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    Refusal { dir, out }
}

/// The tiny pipeline without eval, with the experiment script `exp.rhai` holding `body`.
pub fn with_script(body: &str) -> Refusal {
    with_script_files(&[("exp.rhai", body)])
}

/// Like [`with_script`], with more files written beside it first (`(name, text)`, the last one
/// is the experiment script).
pub fn with_script_files(files: &[(&str, &str)]) -> Refusal {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let mut script = dir.path().to_path_buf();
    for (name, text) in files {
        script = write(dir.path(), name, text);
    }
    let out_dir = dir.path().join("run");
    let out = trainer(
        &[
            "--script",
            script.to_str().unwrap(),
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--set",
            "eval.data=\"\"",
        ],
        &[],
    );
    Refusal { dir, out }
}

#[test]
fn partial_output_check_catches_leftovers() {
    let world = tempfile::tempdir().unwrap();
    let run = world.path().join("run");
    write(&run, "pairs.jsonl", "{\"a\": 1}\n");
    assert_no_partial_output(world.path(), &run);
    for (name, text) in [
        ("cache/.samples.jsonl.tmp", ""),
        ("run/summary.json", "{}"),
        ("run/final/model.safetensors", ""),
        ("run/grades.jsonl", "{\"a\": 1}\n{\"b\""),
    ] {
        let path = write(world.path(), name, text);
        let caught = std::panic::catch_unwind(|| assert_no_partial_output(world.path(), &run));
        assert!(caught.is_err(), "{name} was not caught");
        std::fs::remove_file(path).unwrap();
    }
}
