//! Bad recipes in a real run: unknown keys, wrong types, values out of range, broken recipe files
//! and broken exported recipes. Each names the key (and where it came from) or the file and line.

use std::path::Path;

use super::{Refusal, tiny_run};
use crate::common::{trainer, write};

/// The whole pipeline with `--config <dir>/<name>` holding `text`, and the environment `env`.
fn with_config(name: &str, text: &str, env: &[(&str, &str)]) -> Refusal {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), name, text);
    let out = run_config(dir.path(), config.to_str().unwrap(), env);
    Refusal { dir, out }
}

fn run_config(dir: &Path, config: &str, env: &[(&str, &str)]) -> std::process::Output {
    let out_dir = dir.join("run");
    trainer(
        &["--config", config, "--out", out_dir.to_str().unwrap()],
        env,
    )
}

#[test]
fn unknown_recipe_key_in_a_file_names_the_key_and_the_file() {
    with_config("r.toml", "[loss]\nbetta = 0.1\n", &[]).assert(&[
        "loss.betta",
        "r.toml",
        "unknown recipe key",
    ]);
}

#[test]
fn unknown_recipe_key_from_set_names_the_flag() {
    tiny_run(&["train.lrr=1"]).assert(&["train.lrr", "--set train.lrr=1", "unknown recipe key"]);
}

#[test]
fn wrong_value_type_from_env_names_the_variable() {
    with_config("r.toml", "", &[("TRAINER_TRAIN__LR", "\"fast\"")]).assert(&[
        "train.lr",
        "TRAINER_TRAIN__LR",
        "wrong type",
    ]);
}

#[test]
fn wrong_value_type_in_a_file_names_the_key_and_the_file() {
    with_config("r.toml", "[sampling]\nn = \"four\"\n", &[]).assert(&[
        "sampling.n",
        "r.toml",
        "wrong type",
    ]);
}

#[test]
fn malformed_recipe_file_names_file_and_line() {
    with_config("bad.toml", "[train]\nlr = = 1\n", &[]).assert(&["bad.toml:2:", "invalid TOML"]);
}

#[test]
fn missing_recipe_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_config(dir.path(), "no/such/recipe.toml", &[]);
    Refusal { dir, out }.assert(&["no/such/recipe.toml", "no such file"]);
}

#[test]
fn zero_samples_per_question_names_the_key() {
    tiny_run(&["sampling.n=0"]).assert(&["sampling.n"]);
}

#[test]
fn hybrid_mode_without_an_off_policy_file_names_the_key() {
    tiny_run(&["pairs.mode=\"hybrid\""]).assert(&["pairs.off_policy"]);
}

const EXPORT_HEAD: &str = "[export]\nformat = 1\ntrainer_version = \"trainer 0.1.0\"\n\
                           script_keys = {}\ninputs = []\n";

#[test]
fn exported_script_path_leaving_its_folder_is_refused() {
    let text = format!(
        "{EXPORT_HEAD}\n[[export.scripts]]\npath = \"scripts/../../evil.rhai\"\nsha256 = \"0\"\ntext = \"fn weight(s) {{ 1.0 }}\"\n"
    );
    let r = with_config("x.toml", &text, &[]);
    r.assert(&[
        "x.toml",
        "scripts/../../evil.rhai",
        "relative path under scripts/",
    ]);
    assert!(!r.dir.path().join("evil.rhai").exists());
}

#[test]
fn unknown_key_in_the_export_table_is_named() {
    let text = format!("{EXPORT_HEAD}scripts = []\nchecksum = \"x\"\n");
    with_config("x.toml", &text, &[]).assert(&["x.toml", "[export]", "checksum"]);
}

#[test]
fn an_empty_stop_string_is_refused_by_its_key() {
    tiny_run(&["sampling.stop=[\"\"]"]).assert(&["sampling.stop", "empty stop string"]);
}

#[test]
fn an_unknown_plugin_name_names_its_recipe_key() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = crate::pipeline::recipe(dir.path(), "");
    for (set, key) in [
        ("loss.name=\"nope\"", "loss.name"),
        ("weight.scheme=\"nope\"", "weight.scheme"),
    ] {
        let out = crate::common::trainer(
            &[
                "--config",
                recipe.to_str().unwrap(),
                "--set",
                set,
                "--out",
                dir.path().join("run").to_str().unwrap(),
            ],
            &[],
        );
        crate::common::assert_user_error(
            &out,
            &[
                &format!("recipe key `{key}`"),
                "no plugin `nope`",
                "available:",
            ],
        );
        assert!(!dir.path().join("run").exists(), "a run folder was made");
    }
}

#[test]
fn generate_refuses_sampling_values_the_recipe_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::pipeline::tiny_model(dir.path());
    for (flag, value, needle) in [
        ("--temperature", "nan", "--temperature NaN"),
        ("--temperature", "inf", "--temperature inf"),
        ("--temperature=-1", "", "--temperature -1"),
        ("--top-p", "0", "--top-p 0"),
        ("--top-p", "5", "--top-p 5"),
    ] {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "1+1=",
            flag,
        ];
        if !value.is_empty() {
            args.push(value);
        }
        let out = crate::common::trainer(&args, &[]);
        crate::common::assert_user_error(&out, &[needle]);
    }
}

#[test]
fn export_and_compare_outputs_that_are_folders_or_in_missing_folders_exit_2_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = crate::common::trainer(&["recipe", "--export", d], &[]);
    crate::common::assert_user_error(&out, &["--export", "is a folder; give a file name"]);
    let missing = dir.path().join("no/such/x.toml");
    let out = crate::common::trainer(&["recipe", "--export", missing.to_str().unwrap()], &[]);
    crate::common::assert_user_error(&out, &["--export", "does not exist"]);
    let out = crate::common::trainer(&["compare", d, "--out", d], &[]);
    crate::common::assert_user_error(&out, &["--out", "is a folder; give a file name"]);
    super::assert_no_partial_output(dir.path(), &dir.path().join("none"));
    let parent = dir.path().parent().unwrap();
    let name = dir.path().file_name().unwrap().to_string_lossy();
    assert!(
        !parent.join(format!(".{name}.tmp")).exists(),
        "a .tmp was left beside the folder"
    );
}

#[test]
fn a_max_length_with_no_room_for_a_response_is_refused() {
    tiny_run(&["train.max_length=1"]).assert(&["train.max_length", "at least 2"]);
}

#[test]
fn a_prompt_longer_than_the_context_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::pipeline::tiny_model(dir.path());
    let prompt = "1+".repeat(1100);
    let out = crate::common::trainer(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            &prompt,
            "--max-new-tokens",
            "2",
        ],
        &[],
    );
    let err = crate::common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("runs past the model's context of 2048 positions"),
        "{err}"
    );
}

#[test]
fn rounds_that_cannot_run_are_refused_by_their_key() {
    tiny_run(&["train.rounds=0"]).assert(&["train.rounds", "at least 1"]);
    tiny_run(&["train.rounds=2", "train.lora.enabled=true"])
        .assert(&["train.rounds", "train.lora.enabled"]);
    let server = "sampling.openai.base_url=\"http://127.0.0.1:9/v1\"";
    tiny_run(&["train.rounds=2", "sampling.backend=\"openai\"", server])
        .assert(&["train.rounds", "sampling.backend = \"local\""]);
    tiny_run(&["train.rounds=3", "data.format=\"pairs\""])
        .assert(&["train.rounds", "questions to sample"]);
}

#[test]
fn grade_and_pair_params_that_shadow_a_field_or_are_not_numbers_or_strings_are_refused() {
    tiny_run(&["grade.params.gold=1"]).assert(&["grade.params.gold", "built-in name"]);
    tiny_run(&["pairs.params.samples=\"x\""]).assert(&["pairs.params.samples", "built-in name"]);
    tiny_run(&["grade.params.t=[1, 2]"]).assert(&["grade.params.t", "a number or a string"]);
}
