//! Llama 3.x and Mistral configs through the binary: `rope_scaling` of type `llama3` changes the
//! rotation and survives saving, other rope types and a sliding window shorter than the sequence
//! exit 2 naming the field.

use std::path::{Path, PathBuf};

use crate::common::{assert_user_error, stderr, stdout, trainer, write};
use crate::pipeline::{recipe, run, tiny_model};

/// The tiny model with `edit` applied to its config.json, in `dir/name`.
fn edited_model(dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let model = tiny_model(&dir.join(name));
    let path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    model
}

fn llama3(config: &mut serde_json::Value) {
    // Short original context so that the tiny model's 8-dim heads have all three bands.
    config["rope_scaling"] = serde_json::json!({
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64
    });
}

fn chosen_logps(model: &Path, pairs: &Path) -> Vec<f64> {
    let out = trainer(
        &[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--pairs",
            pairs.to_str().unwrap(),
            "--loss",
            "dpo",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["chosen_logps"].as_f64())
        .collect()
}

#[test]
fn llama3_rope_scaling_changes_the_rotation_and_is_saved_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let plain = tiny_model(&dir.path().join("plain"));
    let scaled = edited_model(dir.path(), "scaled", llama3);
    let pairs = write(
        dir.path(),
        "pairs.jsonl",
        r#"{"prompt": "What is 12 + 30 and then some more words to reach far positions?\n", "chosen": "42 is the answer<|im_end|>", "rejected": "41<|im_end|>"}"#,
    );
    let (a, b) = (chosen_logps(&plain, &pairs), chosen_logps(&scaled, &pairs));
    assert_eq!(a.len(), 1);
    assert_ne!(
        a, b,
        "the same weights score differently under the llama3 rope"
    );
    // Trained and saved: final/config.json keeps the scaling.
    let recipe = recipe(dir.path(), "");
    let model = format!("model.path=\"{}\"", scaled.display());
    let out = run(dir.path(), &recipe, "run", &[&model]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/final/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["rope_scaling"]["rope_type"], "llama3");
    assert_eq!(saved["rope_scaling"]["factor"], 8.0);
}

#[test]
fn other_rope_types_and_a_short_sliding_window_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let yarn = edited_model(dir.path(), "yarn", |c| {
        c["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    });
    let out = trainer(
        &[
            "template",
            "--model",
            yarn.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        &[],
    );
    assert_user_error(&out, &["config.json", "rope_scaling", "`yarn`"]);
    let windowed = edited_model(dir.path(), "mistral", |c| {
        c["model_type"] = serde_json::json!("mistral");
        c["sliding_window"] = serde_json::json!(64);
    });
    let recipe = recipe(dir.path(), "");
    let model = format!("model.path=\"{}\"", windowed.display());
    let out = run(dir.path(), &recipe, "run", &[&model]);
    assert_user_error(&out, &["sliding_window = 64", "train.max_length = 512"]);
    // Within the window it runs.
    let out = run(
        dir.path(),
        &recipe,
        "run2",
        &[&model, "train.max_length=64", "sampling.max_new_tokens=16"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
