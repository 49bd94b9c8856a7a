//! Helpers shared by the integration tests: running the binary, temp folders, `../shared`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project root (tests run from it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `trainer` binary from the project root with `args` and extra environment variables;
/// every inherited `TRAINER_*` variable is removed first.
pub fn trainer(args: &[&str], env: &[(&str, &str)]) -> Output {
    trainer_in(&root(), args, env)
}

/// Like [`trainer`], from the folder `dir`.
pub fn trainer_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainer"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TRAINER_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the trainer binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code 2 and one `error:` line that contains every one of `needles`; returns it.
pub fn assert_user_error(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "expected exit 2, stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    for needle in needles {
        assert!(lines[0].contains(needle), "`{needle}` not in: {}", lines[0]);
    }
    assert!(!err.contains("panicked"), "panic: {err}");
    lines[0].to_string()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create folder");
    }
    std::fs::write(&path, text).expect("write file");
    path
}

/// `../shared` beside the project, or `None` with a printed reason. In CI (`CI` set) its absence
/// is a failure, not a skip.
pub fn shared() -> Option<PathBuf> {
    let dir = root().join("../shared");
    if dir.join("fixtures").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "../shared is required in CI but {} is missing",
            dir.display()
        );
    }
    eprintln!(
        "skipped: ../shared is absent ({}), so the PyTorch parity data is not available",
        dir.display()
    );
    None
}

/// The SmolLM2 GGUF and the parsed JSON fixture `name` from `../shared`, or `None` (skipped).
pub fn smollm2_fixture(name: &str) -> Option<(PathBuf, serde_json::Value)> {
    let dir = shared()?;
    let model = dir.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let text = std::fs::read_to_string(dir.join("fixtures").join(name)).expect("fixture readable");
    Some((model, serde_json::from_str(&text).expect("fixture is JSON")))
}

/// The device the model-level parity tests load SmolLM2 on: `TEST_DEVICE` (`cpu`,
/// `cuda:N`), default `cpu`. Running the same tests with `TEST_DEVICE=cuda:0` on a binary
/// built with `--features cuda` checks the GPU path against the same PyTorch numbers.
pub fn test_device() -> candle_core::Device {
    let name = std::env::var("TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let choice = trainer::model::DeviceChoice::parse(&name)
        .unwrap_or_else(|| panic!("TEST_DEVICE = {name}: expected cpu or cuda:N"));
    choice.open("TEST_DEVICE").expect("the test device opens")
}

/// The script limits of the built-in default recipe.
pub fn limits() -> trainer::recipe::ScriptLimits {
    trainer::recipe::defaults()
        .expect("the built-in recipe resolves")
        .script
}

/// The `[loss]` section the PyTorch/TRL fixtures were computed with
/// (`../shared/fixtures/smollm2_dpo_reference.json`: β 0.1, SimPO γ 0.5, DPOP λ 50, no label
/// smoothing, α 1, weight inside the margin, no WPO), on the dpop plugin; pinned here rather than
/// taken from `configs/default.toml`, whose values a tuned default may change.
pub fn fixture_loss() -> trainer::recipe::LossSpec {
    use trainer::recipe::{HookSource, WeightPlacement, Weighting};
    trainer::recipe::LossSpec {
        hook: HookSource::Plugin("dpop".into()),
        beta: 0.1,
        gamma: 0.5,
        lambda: 50.0,
        label_smoothing: 0.0,
        alpha: 1.0,
        placement: WeightPlacement::Inside,
        weighting: Weighting::None,
        params: Default::default(),
    }
}

/// The python of a venv the repo's `.ci/run` installs: `$VAR`, else
/// `$HOME/.cache/VENV/bin/python`; `None` (the test skips, saying why) when absent outside CI,
/// a failure in CI.
pub fn venv_python(var: &str, venv: &str, what: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache")
            .join(venv)
            .join("bin/python"),
    };
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{what} is required in CI but {} is missing (.ci/run installs it)",
            path.display()
        );
    }
    eprintln!(
        "skipped: no {what} at {} (set {var}, or run .ci/run once)",
        path.display()
    );
    None
}
