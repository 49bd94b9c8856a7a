//! `trainer recipe --export`: one self-contained file that runs the same experiment in a folder
//! without the scripts, and refuses (exit 2) when the model or data differ.

use std::path::{Path, PathBuf};

use crate::common::{assert_user_error, stderr, stdout, trainer, trainer_in, write};
use crate::pipeline::recipe;

const HELPERS: &str = "fn squared_failure(stats) {\n    let f = stats.pe.to_float() / stats.n.to_float();\n    1.0 + stats.alpha * f * f\n}\n";
const SCRIPT: &str = "import \"helpers\" as h;\nimport \"loss/dpop\" as dpop;\n\nfn weight(stats) { h::squared_failure(stats) }\n\nfn loss(batch) { dpop::loss(batch) }\n";

/// A tiny world in `dir`: recipe, model, data, and an experiment script `exp/exp.rhai` that imports
/// a helper beside it and a plugin, which imports `lib/preference` (the grader is a plugin too: 5
/// scripts). Returns (recipe, script).
fn world(dir: &Path) -> (PathBuf, PathBuf) {
    let recipe = recipe(dir, "");
    write(dir, "exp/helpers.rhai", HELPERS);
    let script = write(dir, "exp/exp.rhai", SCRIPT);
    (recipe, script)
}

fn export(recipe: &Path, script: &Path, to: &Path) {
    let out = trainer(
        &[
            "recipe",
            "--config",
            recipe.to_str().unwrap(),
            "--script",
            script.to_str().unwrap(),
            "--set",
            "eval.data=\"\"",
            "--export",
            to.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": 5 scripts, inputs model.path ("),
        "{}",
        stdout(&out)
    );
}

/// Runs the exported recipe from `cwd` into `cwd/run` with its own cache.
fn run_export(cwd: &Path, exported: &Path, extra: &[&str]) -> std::process::Output {
    let cache = format!("run.cache=\"{}\"", cwd.join("cache").display());
    let out_dir = cwd.join("run");
    let mut args = vec![
        "--config",
        exported.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--set",
        &cache,
    ];
    args.extend_from_slice(extra);
    trainer_in(cwd, &args, &[])
}

fn sha(path: &Path) -> String {
    trainer::store::sha256_file(path).unwrap()
}

#[test]
fn exported_recipe_runs_without_the_scripts_and_gives_the_same_pairs_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, script) = world(dir.path());
    let original = dir.path().join("original");
    let out = trainer(
        &[
            "--script",
            script.to_str().unwrap(),
            "--config",
            recipe.to_str().unwrap(),
            "--set",
            "eval.data=\"\"",
            "--out",
            original.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let exported = dir.path().join("exp.toml");
    export(&recipe, &script, &exported);
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(
        text.contains("path = \"scripts/helpers.rhai\"")
            && text.contains("path = \"plugins/loss/dpop.rhai\"")
    );

    let colleague = tempfile::tempdir().unwrap();
    let out = run_export(colleague.path(), &exported, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = colleague.path().join("run");
    for file in ["samples.jsonl", "pairs.jsonl", "final/model.safetensors"] {
        assert_eq!(sha(&original.join(file)), sha(&again.join(file)), "{file}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(again.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["until"], "all");
    let argv: Vec<&str> = manifest["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv[1..3], ["--config", exported.to_str().unwrap()]);
    let scripts = manifest["scripts"].as_object().unwrap();
    assert!(
        scripts
            .keys()
            .any(|k| k.contains("exported") && k.ends_with("scripts/exp.rhai")),
        "{scripts:?}"
    );
}

#[test]
fn changed_data_file_stops_an_exported_recipe_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, script) = world(dir.path());
    let exported = dir.path().join("exp.toml");
    export(&recipe, &script, &exported);
    let train = dir.path().join("train.jsonl");
    let before = sha(&train);
    let mut text = std::fs::read_to_string(&train).unwrap();
    text.push_str("{\"question\": \"What is 2 + 2?\", \"answer\": \"2 + 2 = 4\\n#### 4\"}\n");
    std::fs::write(&train, text).unwrap();
    let after = sha(&train);

    let colleague = tempfile::tempdir().unwrap();
    let out = run_export(colleague.path(), &exported, &[]);
    let line = assert_user_error(
        &out,
        &[
            "data file",
            train.to_str().unwrap(),
            &after,
            &before,
            "--allow-different-inputs",
        ],
    );
    assert!(!line.contains("model"), "only the data differs: {line}");
    assert!(
        !colleague.path().join("run").exists(),
        "a refused run made its folder"
    );

    let out = run_export(colleague.path(), &exported, &["--allow-different-inputs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("running anyway"), "{}", stderr(&out));
}

#[test]
fn exported_recipe_shows_its_scripts_as_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, script) = world(dir.path());
    let exported = dir.path().join("exp.toml");
    export(&recipe, &script, &exported);
    let cache = format!("run.cache=\"{}\"", dir.path().join("other-cache").display());
    let out = trainer(
        &[
            "recipe",
            "--config",
            exported.to_str().unwrap(),
            "--set",
            &cache,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    let line = shown.lines().find(|l| l.starts_with("script = ")).unwrap();
    assert!(
        line.contains("/exported/") && line.ends_with("(embedded script)"),
        "{line}"
    );
}
