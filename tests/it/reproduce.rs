//! `trainer reproduce`: the default recipe (shrunk) run twice gives bit-identical artifacts, and a
//! folder that is not a run is a user error.

use std::path::Path;

use crate::common::{stderr, stdout, trainer};

fn small_default(dir: &Path) -> Vec<String> {
    let cache = dir.join("cache");
    [
        format!("run.cache=\"{}\"", cache.display()),
        "sft.hidden_size=32".into(),
        "sft.num_layers=1".into(),
        "sft.num_heads=2".into(),
        "sft.num_kv_heads=1".into(),
        "sft.intermediate_size=64".into(),
        "sft.steps=20".into(),
        "sft.examples=64".into(),
        "data.limit=12".into(),
        "sampling.n=3".into(),
        "sampling.max_new_tokens=24".into(),
        "eval.limit=6".into(),
        "eval.max_new_tokens=24".into(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

#[test]
fn reproducing_the_default_recipe_gives_identical_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut args = vec![
        "--script".to_string(),
        "scripts/plug_and_play.rhai".into(),
        "--out".into(),
        run_dir.display().to_string(),
    ];
    args.extend(small_default(dir.path()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = trainer(&argv, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let again = trainer(&["reproduce", run_dir.to_str().unwrap()], &[]);
    assert!(
        again.status.success(),
        "{}\n{}",
        stdout(&again),
        stderr(&again)
    );
    let report = stdout(&again);
    for artifact in trainer::commands::reproduce::ARTIFACTS {
        let line = report
            .lines()
            .find(|l| l.starts_with(artifact))
            .unwrap_or_else(|| panic!("{artifact} missing from\n{report}"));
        assert!(line.contains("identical"), "{line}");
    }
    assert!(report.contains("6 of 6 artifacts identical"), "{report}");
    // the reproduction trained its own warm start instead of reading the first run's cache
    assert!(run_dir.join("reproduce/cache/sft").is_dir());
}

#[test]
fn reproducing_a_run_of_two_rounds_compares_every_rounds_files() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut args = vec!["--out".to_string(), run_dir.display().to_string()];
    args.extend(small_default(dir.path()));
    args.extend(["--set".into(), "train.rounds=2".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = trainer(&argv, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let again = trainer(&["reproduce", run_dir.to_str().unwrap()], &[]);
    let report = stdout(&again);
    assert!(again.status.success(), "{report}\n{}", stderr(&again));
    for artifact in [
        "round-1/samples.jsonl",
        "round-1/final/model.safetensors",
        "round-2/pairs.jsonl",
        "final/model.safetensors",
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(artifact))
            .unwrap_or_else(|| panic!("{artifact} missing from\n{report}"));
        assert!(line.contains("identical"), "{line}");
    }
}

#[test]
fn reproduce_refuses_a_folder_that_is_not_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = trainer(&["reproduce", dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("manifest.json"), "{}", stderr(&out));
}

#[test]
fn a_run_reproduces_from_another_directory_after_its_script_changed() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mine.rhai");
    std::fs::write(
        &script,
        "fn weight(stats) { 1.0 + stats.pe.to_float() / stats.n }\n",
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let mut args = vec![
        "--script".to_string(),
        script.display().to_string(),
        "--out".into(),
        run_dir.display().to_string(),
    ];
    args.extend(small_default(dir.path()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = trainer(&argv, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let export = std::fs::read_to_string(run_dir.join("export.toml")).unwrap();
    assert!(
        export.contains("stats.pe.to_float()"),
        "the script is embedded:\n{export}"
    );
    std::fs::write(&script, "fn weight(stats) { 7.0 }\n").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(elsewhere.path())
        .args(["reproduce", run_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let report = stdout(&again);
    assert!(again.status.success(), "{report}\n{}", stderr(&again));
    assert!(report.contains("6 of 6 artifacts identical"), "{report}");
}

#[test]
fn a_run_folder_is_named_after_its_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = crate::common::root().join("scripts/plug_and_play.rhai");
    let mut args = vec!["--script".to_string(), script.display().to_string()];
    args.extend(small_default(dir.path()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = crate::common::trainer_in(dir.path(), &argv, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("plug_and_play-")),
        "{names:?}"
    );
}
