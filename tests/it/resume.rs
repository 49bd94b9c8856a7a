//! Surviving faults: a run killed (SIGKILL) during sampling, training and eval, or stopped with
//! Ctrl-C, and rerun with the same command ends with the same files as an uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trainer::store::sha256_file;

use crate::common::{root, stderr, stdout};
use crate::pipeline::{questions, recipe, sized_model};

/// Files whose bytes must not depend on interruptions.
const ARTIFACTS: [&str; 6] = [
    "samples.jsonl",
    "grades.jsonl",
    "pairs.jsonl",
    "final/model.safetensors",
    "eval_before.jsonl",
    "eval_after.jsonl",
];

/// A world slow enough to be stopped inside each stage: a wider random model, 24 questions with
/// 2 long samples each, 12 training steps with a checkpoint every 3, 8 eval questions.
fn slow_world(dir: &Path) -> PathBuf {
    let recipe = recipe(dir, "");
    let text = std::fs::read_to_string(&recipe).unwrap();
    let text = text.replace("checkpoint_every = 1\n", "checkpoint_every = 3\n");
    std::fs::write(&recipe, text).unwrap();
    questions(dir, "train.jsonl", 24, 10);
    questions(dir, "test.jsonl", 8, 50);
    sized_model(dir, 128, 4);
    recipe
}

/// The arguments of the whole pipeline into `out`, with its own cache folder.
fn args(dir: &Path, recipe: &Path, out: &str) -> Vec<String> {
    let cache = dir.join(format!("cache-{out}"));
    [
        "--script",
        "scripts/plug_and_play.rhai",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        dir.join(out).to_str().unwrap(),
        "--set",
        &format!("run.cache=\"{}\"", cache.display()),
        "--set",
        "sampling.n=2",
        "--set",
        "sampling.max_new_tokens=120",
        "--set",
        "sampling.batch_size=2",
        "--set",
        "eval.batch_size=2",
        "--set",
        "eval.max_new_tokens=120",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts the trainer with `args`, its stderr going to `log`.
fn spawn(args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root())
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// Polls until `ready()` holds; panics (showing the run's `log`) if the process ends first or a
/// minute passes.
fn wait_for(child: &mut Child, log: &Path, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let now = ready();
            panic!("the run ended ({status}) before {what} (true now: {now}):\n{text}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGKILL, and reap.
fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Lines in every file of a cache folder.
fn cache_lines(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| line_count(&e.path())).sum())
        .unwrap_or(0)
}

fn hashes(run: &Path) -> BTreeMap<&'static str, String> {
    ARTIFACTS
        .iter()
        .map(|name| {
            let path = run.join(name);
            let hash = sha256_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (*name, hash)
        })
        .collect()
}

fn steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Files left under a temporary name anywhere in `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name.ends_with(".old") {
            found.push(path.clone());
        }
        if path.is_dir() {
            found.extend(temporaries(&path));
        }
    }
    found
}

/// The uninterrupted run `a`: its artifact hashes and its metrics' steps.
fn uninterrupted(dir: &Path, recipe: &Path) -> (BTreeMap<&'static str, String>, Vec<u64>) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root())
        .args(args(dir, recipe, "a"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    eprintln!("uninterrupted run:\n{}", stdout(&out));
    let run = dir.join("a");
    (hashes(&run), steps(&run))
}

#[test]
fn a_run_killed_in_sampling_training_and_eval_resumes_to_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = slow_world(d);
    let (expected, expected_steps) = uninterrupted(d, &recipe);
    let args = args(d, &recipe, "b");
    let (run, cache) = (d.join("b"), d.join("cache-b"));

    let log = d.join("1.log");
    let mut child = spawn(&args, &log);
    wait_for(&mut child, &log, "two samples", || {
        cache_lines(&cache.join("samples")) >= 2
    });
    kill(&mut child);
    let sampled = cache_lines(&cache.join("samples"));
    assert!(sampled < 48, "killed after sampling finished ({sampled})");

    let log = d.join("2.log");
    let mut child = spawn(&args, &log);
    let ckpt = run.join("checkpoints/step-000003/trainer_state.json");
    wait_for(&mut child, &log, "a step after the checkpoint", || {
        ckpt.is_file() && line_count(&run.join("metrics.jsonl")) >= 4
    });
    kill(&mut child);
    assert!(
        !run.join("final").exists(),
        "killed after training finished"
    );

    let log = d.join("3.log");
    let mut child = spawn(&args, &log);
    let before = line_count(&run.join("eval_before.jsonl"));
    wait_for(&mut child, &log, "an eval-after batch", || {
        cache_lines(&cache.join("eval")) > before
    });
    kill(&mut child);
    assert!(!run.join("eval_after.jsonl").exists(), "killed after eval");

    let log3 = std::fs::read_to_string(d.join("3.log")).unwrap();
    assert!(log3.contains("resuming training after step 3"), "{log3}");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root())
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hashes(&run), expected);
    assert_eq!(steps(&run), expected_steps, "metrics.jsonl steps");
    assert!(!run.join("in_progress").exists());
    assert_eq!(temporaries(&run), Vec::<PathBuf>::new());
}

/// Sends `signal` to the child.
fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill failed");
}

/// The furthest step saved in any checkpoint under `dir` (`latest` or a numbered one).
fn saved_step(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("trainer_state.json")).ok())
        .map(|t| {
            serde_json::from_str::<serde_json::Value>(&t).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .max()
        .expect("a saved training state")
}

/// Waits for the child to exit; returns its exit code and its log.
fn finish(mut child: Child, log: &Path) -> (Option<i32>, String) {
    let status = child.wait().unwrap();
    (status.code(), std::fs::read_to_string(log).unwrap())
}

#[test]
fn ctrl_c_and_sigterm_stop_at_an_item_boundary_with_exit_130_and_the_rerun_ends_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = slow_world(d);
    let (expected, expected_steps) = uninterrupted(d, &recipe);
    let args = args(d, &recipe, "b");
    let (run, cache) = (d.join("b"), d.join("cache-b"));

    let log = d.join("1.log");
    let mut child = spawn(&args, &log);
    wait_for(&mut child, &log, "two samples", || {
        cache_lines(&cache.join("samples")) >= 2
    });
    signal(&child, libc::SIGTERM);
    let (code, text) = finish(child, &log);
    assert_eq!(code, Some(130), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("interrupted at sample batch ")
            && last.ends_with("; rerun the same command to resume"),
        "{text}"
    );
    assert!(cache_lines(&cache.join("samples")) < 48);
    assert_eq!(temporaries(&run), Vec::<PathBuf>::new());

    let log = d.join("2.log");
    let mut child = spawn(&args, &log);
    wait_for(&mut child, &log, "two training steps", || {
        line_count(&run.join("metrics.jsonl")) >= 2
    });
    signal(&child, libc::SIGINT);
    let (code, text) = finish(child, &log);
    assert_eq!(code, Some(130), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(last.starts_with("interrupted at train step "), "{text}");
    let done = saved_step(&run.join("checkpoints"));
    assert!(
        last.contains(&format!("step {} of 6;", done + 1)),
        "state at step {done}: {last}"
    );
    assert_eq!(steps(&run), (1..=done).collect::<Vec<_>>());
    assert!(!run.join("final").exists());
    assert_eq!(temporaries(&run), Vec::<PathBuf>::new());

    let log = d.join("3.log");
    let (code, text) = finish(spawn(&args, &log), &log);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("resuming training after step {done} of 6")),
        "{text}"
    );
    assert_eq!(hashes(&run), expected);
    assert_eq!(steps(&run), expected_steps);
    assert!(!run.join("checkpoints/latest").exists());
}

#[test]
fn sigterm_during_the_warm_start_exits_130_and_caches_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let args: Vec<String> = [
        "sft".to_string(),
        "--out".into(),
        dir.path().join("run").display().to_string(),
        "--set".into(),
        format!("run.cache=\"{}\"", cache.display()),
        "--set".into(),
        "sft.steps=100000".into(),
    ]
    .to_vec();
    let log = dir.path().join("sft.log");
    let mut child = spawn(&args, &log);
    wait_for(&mut child, &log, "the warm start", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("warm-starting the built-in model"))
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    let (code, text) = finish(child, &log);
    assert_eq!(code, Some(130), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("interrupted at the warm start step "),
        "{text}"
    );
    let cached: Vec<_> = std::fs::read_dir(cache.join("sft"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        cached.iter().all(|p| !p.join("config.json").exists()),
        "an interrupted warm start cached a model: {cached:?}"
    );
}

#[test]
fn a_sweep_killed_mid_run_skips_its_finished_runs_and_resumes_the_cut_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = slow_world(d);
    // The pipeline's arguments with `sweep` in front, a grid of one cell and two seeds.
    let mut sweep_args: Vec<String> = vec!["sweep".into()];
    sweep_args.extend(args(d, &recipe, "sw"));
    sweep_args.extend(["--grid", "loss.name=dpo", "--seeds", "1..2"].map(String::from));
    let out = d.join("sw");
    let (first, second) = (
        out.join("loss.name-dpo/seed-1"),
        out.join("loss.name-dpo/seed-2"),
    );

    let log = d.join("sweep1.log");
    let mut child = spawn(&sweep_args, &log);
    wait_for(&mut child, &log, "the second run's first samples", || {
        first.join("summary.json").is_file() && second.join("in_progress").is_file()
    });
    kill(&mut child);
    assert!(
        !second.join("summary.json").exists(),
        "killed after the second run finished"
    );
    let summary = std::fs::read(first.join("summary.json")).unwrap();

    let log = d.join("sweep2.log");
    let (code, text) = finish(spawn(&sweep_args, &log), &log);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("seed 1): finished, skipped"), "{text}");
    assert_eq!(
        std::fs::read(first.join("summary.json")).unwrap(),
        summary,
        "run 1 was rerun"
    );
    assert!(second.join("summary.json").is_file() && !second.join("in_progress").exists());
    let jsonl = std::fs::read_to_string(out.join("sweep.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 2, "{jsonl}");
}

#[test]
fn a_run_of_two_rounds_killed_in_the_second_rounds_training_resumes_to_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = slow_world(d);
    let with_rounds = |out: &str| {
        let mut a = args(d, &recipe, out);
        a.extend(["--set".to_string(), "train.rounds=2".to_string()]);
        a
    };
    let run_to_end = |args: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .current_dir(root())
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    };
    run_to_end(&with_rounds("a"));
    let args = with_rounds("b");
    let run = d.join("b");
    let log = d.join("1.log");
    let mut child = spawn(&args, &log);
    let ckpt = run.join("round-2/checkpoints/step-000003/trainer_state.json");
    wait_for(
        &mut child,
        &log,
        "a second-round step after its checkpoint",
        || ckpt.is_file() && line_count(&run.join("round-2/metrics.jsonl")) >= 4,
    );
    kill(&mut child);
    assert!(
        !run.join("final").exists(),
        "killed after training finished"
    );
    run_to_end(&args);
    for name in [
        "round-1/samples.jsonl",
        "round-1/pairs.jsonl",
        "round-1/final/model.safetensors",
        "round-1/eval_after.jsonl",
        "round-2/samples.jsonl",
        "round-2/pairs.jsonl",
        "final/model.safetensors",
        "eval_after.jsonl",
    ] {
        let (a, b) = (d.join("a").join(name), run.join(name));
        assert_eq!(sha256_file(&a).unwrap(), sha256_file(&b).unwrap(), "{name}");
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("round 2 of 2"), "{log}");
}
