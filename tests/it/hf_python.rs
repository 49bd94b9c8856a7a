//! What a transformers user loads from a run, checked with the Python libraries themselves (a
//! venv with `transformers`, `tokenizers` and `tensorboard`, no torch, that `.ci/run` installs).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{root, stderr, stdout, trainer, venv_python};
use crate::pipeline::{recipe, run};

fn hf_python() -> Option<PathBuf> {
    venv_python(
        "HF_PYTHON",
        "trainer-hf-venv",
        "the Python venv with transformers",
    )
}

fn python_json(python: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .arg(root().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {text:?}: {e}"))
}

#[test]
fn final_loads_in_transformers_and_its_chat_template_renders_the_run_s_prompts() {
    let Some(python) = hf_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let sets = [
        "model.template=\"chatml\"",
        "model.system=\"Answer with a number.\"",
    ];
    let out = run(dir.path(), &recipe, "run", &sets);
    assert!(out.status.success(), "{}", stderr(&out));
    let final_dir = dir.path().join("run/final");
    for f in [
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        assert!(final_dir.join(f).is_file(), "final/{f}");
    }
    let question = "What is 12 + 30?";
    // What the run prompted with: ChatML with the recipe's system message.
    let ours = trainer(
        &[
            "template",
            "--model",
            final_dir.to_str().unwrap(),
            "--template",
            "chatml",
            "--system",
            "Answer with a number.",
            "--prompt",
            question,
            "--ids",
        ],
        &[],
    );
    assert!(ours.status.success(), "{}", stderr(&ours));
    let ours: serde_json::Value = serde_json::from_str(stdout(&ours).trim()).unwrap();
    let theirs = python_json(
        &python,
        "hf_folder.py",
        &[final_dir.to_str().unwrap(), question],
    );
    assert_eq!(theirs["text"], ours["text"]);
    assert_eq!(theirs["input_ids"], ours["input_ids"]);
    assert_eq!(theirs["eos_token"], "<|im_end|>");
    assert_eq!(theirs["eos_token_id"], 2);
}

#[test]
fn tensorboard_reads_the_trl_tags_the_run_logged_and_a_log_line_comes_every_k_steps() {
    let Some(python) = hf_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let out_dir = dir.path().join("run");
    let out = trainer(
        &[
            "--script",
            "scripts/plug_and_play.rhai",
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--set",
            "train.report_to=[\"jsonl\", \"tensorboard\"]",
            "--set",
            "train.logging_steps=2",
        ],
        &[("RUST_LOG", "info")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(metrics.len() >= 2, "{} steps", metrics.len());
    let tags = python_json(&python, "tb_events.py", &[out_dir.to_str().unwrap()]);
    for (tag, key) in [
        ("train/loss", "loss"),
        ("train/rewards/chosen", "rewards/chosen"),
        ("train/rewards/rejected", "rewards/rejected"),
        ("train/rewards/accuracies", "rewards/accuracies"),
        ("train/rewards/margins", "rewards/margins"),
        ("train/logps/chosen", "logps/chosen"),
        ("train/logps/rejected", "logps/rejected"),
        ("train/learning_rate", "learning_rate"),
        ("train/grad_norm", "grad_norm"),
        ("train/epoch", "epoch"),
    ] {
        let points = tags[tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag} in {tags}"));
        assert_eq!(points.len(), metrics.len(), "{tag}");
        for (p, m) in points.iter().zip(&metrics) {
            assert_eq!(p[0], m["step"], "{tag}");
            let (tb, ours) = (p[1].as_f64().unwrap(), m[key].as_f64().unwrap());
            // TensorBoard keeps scalars as f32.
            assert!(
                (tb - ours).abs() <= 1e-6 * ours.abs().max(1.0),
                "{tag}: {tb} vs {ours}"
            );
        }
    }
    let last = metrics.last().unwrap();
    assert!(
        (last["epoch"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "one epoch ends at 1.0"
    );
    let eval = tags["eval/accuracy"].as_array().unwrap();
    assert_eq!(
        eval.len(),
        2,
        "before at step 0, after at the last step: {eval:?}"
    );
    assert_eq!(eval[0][0], 0);
    assert_eq!(eval[1][0], last["step"]);
    // stderr is a pipe here, not a terminal: one line every 2 steps and at the last.
    let log = stderr(&out);
    let n = metrics.len();
    assert!(log.contains(&format!("step 2/{n}  epoch")), "{log}");
    assert!(log.contains(&format!("step {n}/{n}  epoch")), "{log}");
    assert!(!log.contains(&format!("step 1/{n}  epoch")), "{log}");
}
