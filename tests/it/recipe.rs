//! Recipe layering (defaults < --config < TRAINER_* env < --set), sources, and error texts.

use crate::common::{assert_user_error, stdout, trainer, write};
use trainer::recipe::{self, RecipeInput};

fn line_for<'a>(text: &'a str, section: &str, key: &str) -> &'a str {
    let start = text
        .find(&format!("[{section}]\n"))
        .expect("section present");
    text[start..]
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .expect("key present")
}

#[test]
fn set_value_is_shown_with_its_source() {
    let out = trainer(&["recipe", "--set", "train.lr=3e-7"], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(
        line_for(&text, "train", "lr"),
        "lr = 3e-7  # --set train.lr=3e-7"
    );
    assert_eq!(line_for(&text, "train", "epochs"), "epochs = 2  # default");
}

#[test]
fn later_layers_win_file_then_env_then_set() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "r.toml",
        "[train]\nlr = 5e-6\nepochs = 2\nbatch_size = 8\n",
    );
    let config = config.to_str().unwrap();
    let env = [
        ("TRAINER_TRAIN__EPOCHS", "3"),
        ("TRAINER_TRAIN__LR", "2e-6"),
    ];
    let out = trainer(
        &["recipe", "--config", config, "--set", "train.lr=3e-7"],
        &env,
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        line_for(&text, "train", "lr"),
        "lr = 3e-7  # --set train.lr=3e-7"
    );
    assert_eq!(
        line_for(&text, "train", "epochs"),
        "epochs = 3  # TRAINER_TRAIN__EPOCHS"
    );
    assert_eq!(
        line_for(&text, "train", "batch_size"),
        format!("batch_size = 8  # {config}")
    );
    assert_eq!(
        line_for(&text, "train", "grad_accum"),
        "grad_accum = 1  # default"
    );
}

#[test]
fn invalid_value_names_key_and_rule() {
    let out = trainer(&["recipe", "--set", "sampling.top_p=1.5"], &[]);
    assert_user_error(&out, &["sampling.top_p", "(0, 1]"]);
    let out = trainer(&["recipe", "--set", "loss.weight_placement=middle"], &[]);
    assert_user_error(&out, &["loss.weight_placement", "inside, outside"]);
}

#[test]
fn extra_loss_params_reach_the_recipe_but_may_not_shadow_batch_fields() {
    let out = trainer(&["recipe", "--set", "loss.params.tau=0.5"], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("[loss.params]\ntau = 0.5  # --set loss.params.tau=0.5"));
    let out = trainer(&["recipe", "--set", "loss.params.chosen_logps=1"], &[]);
    assert_user_error(&out, &["loss.params.chosen_logps", "built-in name"]);
}

#[test]
fn a_recipe_without_layers_is_the_one_set_of_built_in_defaults() {
    // The defaults live in configs/default.toml alone (no Rust `Default` impls to drift from it):
    // what `recipe::defaults()` gives the commands that take no recipe is what a run with no
    // recipe file, environment or flag resolves.
    let layered = recipe::load(&RecipeInput::default()).unwrap();
    let r = layered.resolve().unwrap();
    let d = recipe::defaults().unwrap();
    assert_eq!(r.script, d.script);
    assert_eq!(format!("{:?}", r.loss), format!("{:?}", d.loss));
    assert_eq!(format!("{:?}", r.train), format!("{:?}", d.train));
    assert_eq!(d.script.max_operations, 50_000_000);
}

#[test]
fn unknown_device_name_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = trainer(
        &[
            "sample",
            "--set",
            "model.device=\"gpu\"",
            "--out",
            dir.path().join("run").to_str().unwrap(),
        ],
        &[],
    );
    assert_user_error(&out, &["model.device", "cuda:N"]);
}

#[test]
fn cuda_device_in_a_cpu_build_is_a_user_error_before_any_work() {
    if cfg!(feature = "cuda") {
        eprintln!("skipped: this build has the cuda feature");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("run.cache={:?}", dir.path().join("cache").to_str().unwrap());
    let out = trainer(
        &[
            "sample",
            "--device",
            "cuda:0",
            "--set",
            &cache,
            "--out",
            dir.path().join("run").to_str().unwrap(),
        ],
        &[],
    );
    assert_user_error(&out, &["model.device", "cuda:0", "--features cuda"]);
    assert!(
        !dir.path().join("run").join("samples.jsonl").exists(),
        "no stage ran"
    );
}

#[test]
fn quantized_sampling_of_the_builtin_model_is_refused_naming_the_key() {
    let out = trainer(&["recipe", "--set", "sampling.quantized=true"], &[]);
    assert_user_error(&out, &["sampling.quantized", "builtin:tiny", "GGUF"]);
}

#[test]
fn quantized_sampling_on_a_server_is_refused_naming_the_key() {
    let out = trainer(
        &[
            "recipe",
            "--set",
            "sampling.quantized=true",
            "--set",
            "model.path=\"m.gguf\"",
            "--set",
            "sampling.backend=\"openai\"",
            "--set",
            "sampling.openai.base_url=\"http://127.0.0.1:9/v1\"",
        ],
        &[],
    );
    assert_user_error(&out, &["sampling.quantized", "local sampling only"]);
}
