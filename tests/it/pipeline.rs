//! The whole pipeline on a tiny random model: every stage's file, the sample cache shared across
//! experiments, the loss variants, and resuming after a kill during sampling.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trainer::model::{Arch, ModelConfig, char_tokenizer, random_policy};

use crate::common::{root, stderr, stdout, trainer, write};

/// A tiny random Llama with the character tokenizer, as an HF folder.
pub fn tiny_model(dir: &Path) -> PathBuf {
    sized_model(dir, 32, 2)
}

/// A random Llama of width `hidden` and `layers` layers with the character tokenizer.
pub fn sized_model(dir: &Path, hidden: usize, layers: usize) -> PathBuf {
    let tok = char_tokenizer().unwrap();
    let cfg = ModelConfig {
        arch: Arch::Llama,
        vocab_size: tok.vocab_size(),
        hidden_size: hidden,
        intermediate_size: 2 * hidden,
        num_layers: layers,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rope_theta: 10_000.0,
        rms_eps: 1e-6,
        max_position: 2048,
        tie_embeddings: true,
        bos_token_id: None,
        eos_token_id: Some(trainer::model::CHAR_EOS),
        rope_scaling: None,
        sliding_window: None,
    };
    let path = dir.join("tiny-model");
    random_policy(&cfg, 3)
        .unwrap()
        .save_hf(&path, &tok)
        .unwrap();
    path
}

/// GSM8K-style questions `a + b`.
pub fn questions(dir: &Path, name: &str, n: usize, offset: usize) -> PathBuf {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let (a, b) = (i + offset, 2 * i + 1);
            serde_json::json!({"question": format!("What is {a} + {b}?"), "answer": format!("{a} + {b} = {}\n#### {}", a + b, a + b)}).to_string()
        })
        .collect();
    write(dir, name, &(lines.join("\n") + "\n"))
}

/// A recipe for the tiny world in `dir`, with the method of the earlier built-in default (DPOP on
/// contrastive pairs only, one epoch) that many tests' expectations are written for.
pub fn recipe(dir: &Path, extra: &str) -> PathBuf {
    let model = tiny_model(dir);
    let train = questions(dir, "train.jsonl", 6, 10);
    let test = questions(dir, "test.jsonl", 4, 50);
    let text = format!(
        "[run]\nname = \"tiny\"\ncache = \"{cache}\"\n\n[model]\npath = \"{model}\"\n\n[data]\ntrain = \"{train}\"\nformat = \"gsm8k\"\n\n\
         [sampling]\nn = 3\nmax_new_tokens = 24\nbatch_size = 4\n\n[train]\nlr = 1e-3\nepochs = 1\nbatch_size = 2\ngrad_accum = 2\ncheckpoint_every = 1\nwarmup_ratio = 0.0\n\n\
         [grade]\ngrader = \"gsm8k\"\n\n[pairs]\nall_correct = \"skip\"\n\n[loss]\nname = \"dpop\"\n\n\
         [eval]\ndata = \"{test}\"\nmax_new_tokens = 16\nbatch_size = 4\n{extra}",
        cache = dir.join("cache").display(),
        model = model.display(),
        train = train.display(),
        test = test.display(),
    );
    write(dir, "recipe.toml", &text)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn run(dir: &Path, recipe: &Path, out: &str, sets: &[&str]) -> std::process::Output {
    let out_dir = dir.join(out);
    let mut args = vec![
        "--script",
        "scripts/plug_and_play.rhai",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    trainer(&args, &[])
}

#[test]
fn whole_pipeline_writes_every_stage_file() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let started = Instant::now();
    let out = run(dir.path(), &recipe, "run", &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(120));
    let r = dir.path().join("run");
    for f in [
        "recipe.toml",
        "manifest.json",
        "summary.json",
        "eval.json",
        "loss.png",
        "margin.png",
        "reward_accuracy.png",
        "accuracy.png",
        "weights.png",
    ] {
        assert!(r.join(f).is_file(), "{f} missing");
    }
    assert!(r.join("scripts/scripts__plug_and_play.rhai").is_file());
    assert_eq!(lines(&r.join("samples.jsonl")).len(), 18);
    assert_eq!(lines(&r.join("grades.jsonl")).len(), 18);
    let pairs = lines(&r.join("pairs.jsonl"));
    assert!(!pairs.is_empty());
    for p in &pairs {
        assert!(p["ref_chosen_logps"].as_f64().unwrap() < 0.0);
        assert!(p["weight"].as_f64().unwrap() >= 1.0);
        assert_eq!(p["stats"]["n"], 3);
    }
    let metrics = lines(&r.join("metrics.jsonl"));
    assert!(!metrics.is_empty());
    // TRL's names (DPOTrainer's logs).
    for key in [
        "loss",
        "rewards/margins",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "weight_mean",
        "grad_norm",
        "learning_rate",
        "epoch",
        "tokens_per_s",
    ] {
        assert!(metrics[0][key].is_number(), "metrics lack {key}");
    }
    assert!(
        r.join("checkpoints/step-000001/model.safetensors")
            .is_file()
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["model"]["sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["scripts"].as_object().unwrap().len() >= 3);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["before"]["total"], 4);
    assert_eq!(eval["after"]["total"], 4);
    let text = stdout(&out);
    assert!(text.contains("accuracy") && text.contains("->"), "{text}");
    // the final checkpoint is a model folder
    let g = trainer(
        &[
            "generate",
            "--model",
            r.join("final").to_str().unwrap(),
            "--prompt",
            "What is",
            "--max-new-tokens",
            "3",
        ],
        &[],
    );
    assert!(g.status.success(), "{}", stderr(&g));
}

#[test]
fn changing_only_the_weight_reuses_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    assert!(
        run(dir.path(), &recipe, "a", &["eval.data=\"\""])
            .status
            .success()
    );
    let again = run(
        dir.path(),
        &recipe,
        "b",
        &["eval.data=\"\"", "weight.alpha=3.0", "loss.name=\"ipo\""],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let a = std::fs::read_to_string(dir.path().join("a/samples.jsonl")).unwrap();
    let b = std::fs::read_to_string(dir.path().join("b/samples.jsonl")).unwrap();
    assert_eq!(a, b);
    let caches: Vec<_> = std::fs::read_dir(dir.path().join("cache/samples"))
        .unwrap()
        .collect();
    assert_eq!(caches.len(), 1, "one sample cache for both experiments");
    let changed = run(
        dir.path(),
        &recipe,
        "c",
        &["eval.data=\"\"", "sampling.seed=7"],
    );
    assert!(changed.status.success());
    assert_eq!(
        std::fs::read_dir(dir.path().join("cache/samples"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn each_loss_variant_trains_with_and_without_the_weight() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    for loss in ["dpo", "dpop", "ipo", "simpo"] {
        for weight in ["plug_and_play", "uniform"] {
            let out_name = format!("{loss}-{weight}");
            let sets = [
                "eval.data=\"\"".to_string(),
                format!("loss.name=\"{loss}\""),
                format!("weight.scheme=\"{weight}\""),
                "train.epochs=2".into(),
            ];
            let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
            // the script defines `weight`; use a recipe-only run for the uniform case
            let out_dir = dir.path().join(&out_name);
            let mut args = vec![
                "--config",
                recipe.to_str().unwrap(),
                "--out",
                out_dir.to_str().unwrap(),
            ];
            for s in &sets {
                args.extend(["--set", s]);
            }
            let out = trainer(&args, &[]);
            assert!(out.status.success(), "{out_name}: {}", stderr(&out));
            let m = lines(&out_dir.join("metrics.jsonl"));
            let pairs = lines(&out_dir.join("pairs.jsonl"));
            let expect_uniform = weight == "uniform";
            assert_eq!(
                pairs.iter().all(|p| p["weight"] == 1.0),
                expect_uniform,
                "{out_name}"
            );
            let (first, last) = (
                m.first().unwrap()["loss"].as_f64().unwrap(),
                m.last().unwrap()["loss"].as_f64().unwrap(),
            );
            assert!(last < first, "{out_name}: loss {first} -> {last}");
        }
    }
}

#[test]
fn killed_sampling_resumes_without_resampling_finished_questions() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    questions(dir.path(), "train.jsonl", 40, 10);
    // a wider model, so that sampling lasts long enough to be killed in the middle
    sized_model(dir.path(), 256, 4);
    let sets = [
        "--set",
        "sampling.max_new_tokens=300",
        "--set",
        "sampling.batch_size=2",
        "--set",
        "sampling.n=2",
    ];
    let out_dir = dir.path().join("s");
    let mut args: Vec<&str> = vec![
        "sample",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend(sets);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root())
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cache_dir = dir.path().join("cache/samples");
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = || -> usize {
        std::fs::read_dir(&cache_dir)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .unwrap_or(0)
    };
    while count() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = count();
    assert!(
        (4..80).contains(&before),
        "killed after {before} of 80 completions"
    );
    let cache_file = std::fs::read_dir(&cache_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let kept = std::fs::read_to_string(&cache_file).unwrap();
    let out = trainer(&args, &[("RUST_LOG", "info")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already there"), "{}", stderr(&out));
    let after = std::fs::read_to_string(&cache_file).unwrap();
    let first_lines: Vec<&str> = kept.lines().filter(|l| l.ends_with('}')).collect();
    assert!(
        after.starts_with(&first_lines.join("\n")),
        "finished completions were rewritten"
    );
    assert_eq!(lines(&out_dir.join("samples.jsonl")).len(), 80);
}

fn trl_pairs(dir: &Path) -> PathBuf {
    let lines: Vec<String> = (0..5)
        .map(|i| {
            serde_json::json!({"prompt": format!("What is {i} + 1?\n"), "chosen": format!("{i} + 1 = {}\n#### {}<|im_end|>", i + 1, i + 1), "rejected": "I do not know.<|im_end|>"})
                .to_string()
        })
        .collect();
    write(dir, "offpolicy.jsonl", &(lines.join("\n") + "\n"))
}

#[test]
fn train_runs_directly_from_a_trl_pairs_file() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let pairs = trl_pairs(dir.path());
    let out_dir = dir.path().join("offpolicy-run");
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
    assert!(out.status.success(), "{}", stderr(&out));
    let written = lines(&out_dir.join("pairs.jsonl"));
    assert_eq!(written.len(), 5);
    assert!(
        written
            .iter()
            .all(|p| p["ref_chosen_logps"].as_f64().is_some())
    );
    assert!(
        !out_dir.join("samples.jsonl").exists(),
        "off-policy training samples nothing"
    );
    assert!(!lines(&out_dir.join("metrics.jsonl")).is_empty());
}

#[test]
fn hybrid_mode_trains_on_policy_and_off_policy_pairs_together() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let pairs = trl_pairs(dir.path());
    let off = format!("pairs.off_policy=\"{}\"", pairs.display());
    let out = run(
        dir.path(),
        &recipe,
        "hybrid",
        &["eval.data=\"\"", "pairs.mode=\"hybrid\"", &off],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let own = lines(&dir.path().join("hybrid/pairs.jsonl")).len();
    let extra = lines(&dir.path().join("hybrid/off_policy_pairs.jsonl"));
    assert_eq!(extra.len(), 5);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("hybrid/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["pairs"].as_u64().unwrap() as usize, own + 5);
}

#[test]
fn eval_reports_a_wilson_interval_and_accuracy_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    // A grader that accepts lines 1 and 2 only, so the counts per level are known: level "1"
    // (lines 1-2) 2/2, level "2" (lines 3-4) 0/2.
    let rows: Vec<String> = (0..4)
        .map(|i| {
            serde_json::json!({"question": format!("q{i}"), "answer": "#### 7", "level": 1 + i / 2})
                .to_string()
        })
        .collect();
    let test = write(dir.path(), "levels.jsonl", &(rows.join("\n") + "\n"));
    let eval_data = format!("eval.data=\"{}\"", test.display());
    let grader = write(
        dir.path(),
        "first_two.rhai",
        "fn grade(response, example) { example.id.ends_with(\":1\") || example.id.ends_with(\":2\") }\n",
    );
    let grade = format!("eval.grader=\"{}\"", grader.display());
    let out = trainer(
        &[
            "eval",
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            dir.path().join("run").to_str().unwrap(),
            "--set",
            &eval_data,
            "--set",
            &grade,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/eval.json")).unwrap())
            .unwrap();
    let before = &eval["before"];
    assert_eq!(before["correct"], 2);
    // Wilson 95 % interval of 2/4, from the closed form: [0.15003, 0.84997].
    let ci = before["ci95"].as_array().unwrap();
    assert!((ci[0].as_f64().unwrap() - 0.150_036).abs() < 1e-5, "{ci:?}");
    assert!((ci[1].as_f64().unwrap() - 0.849_964).abs() < 1e-5, "{ci:?}");
    assert_eq!(before["by_level"]["1"]["correct"], 2);
    assert_eq!(before["by_level"]["1"]["total"], 2);
    assert_eq!(before["by_level"]["2"]["correct"], 0);
    let records = lines(&dir.path().join("run/eval_before.jsonl"));
    assert_eq!(records[3]["level"], "2");
    let text = stdout(&out);
    assert!(text.contains("50.0% [15.0, 85.0] (2/4"), "{text}");
    assert!(
        text.contains("level 1") && text.contains("100.0% [34.2, 100.0] of 2"),
        "{text}"
    );
}

#[test]
fn an_eval_set_sharing_training_questions_stops_the_run_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let train = dir.path().join("train.jsonl");
    let same = format!("eval.data=\"{}\"", train.display());
    let out = run(dir.path(), &recipe, "run", &[&same]);
    crate::common::assert_user_error(
        &out,
        &[
            "6 of the 6 eval questions are also training questions",
            "train:1",
            "eval.split",
        ],
    );
    assert!(
        !dir.path().join("run/eval_before.jsonl").exists(),
        "the eval ran"
    );
    let allowed = run(
        dir.path(),
        &recipe,
        "run2",
        &[&same, "eval.allow_overlap=true"],
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(stderr(&allowed).contains("eval.allow_overlap = true, so the eval goes on"));
}

#[test]
fn hash_halves_of_one_file_are_disjoint_and_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let file = questions(dir.path(), "all.jsonl", 40, 100);
    let data = format!("data.train=\"{}\"", file.display());
    let eval = format!("eval.data=\"{}\"", file.display());
    let out = run(
        dir.path(),
        &recipe,
        "run",
        &[
            &data,
            &eval,
            "data.split=\"train\"",
            "eval.split=\"eval\"",
            "sampling.n=2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ids = |name: &str, field: &str| -> std::collections::BTreeSet<String> {
        lines(&dir.path().join("run").join(name))
            .iter()
            .map(|v| v[field].as_str().unwrap().to_string())
            .collect()
    };
    let trained = ids("grades.jsonl", "example_id");
    let evaluated = ids("eval_before.jsonl", "id");
    assert!(
        trained.len() >= 10 && evaluated.len() >= 10,
        "{trained:?} {evaluated:?}"
    );
    assert!(trained.is_disjoint(&evaluated), "{trained:?} {evaluated:?}");
    assert_eq!(trained.len() + evaluated.len(), 40);
    let bad = run(dir.path(), &recipe, "run3", &["data.split=\"half\""]);
    crate::common::assert_user_error(
        &bad,
        &["data.split", "`half` is not one of: all, train, eval"],
    );
}

#[test]
fn math500_splits_into_two_disjoint_halves_of_about_250() {
    let Some(shared) = crate::common::shared() else {
        return;
    };
    use trainer::data::{ExampleFormat, read_examples};
    use trainer::recipe::{DataFormat, HashSplit, Limit};
    let path = shared.join("data/math500/test.jsonl");
    let half = |split| {
        let fmt = ExampleFormat {
            format: DataFormat::Math,
            prompt_field: "problem",
            gold_field: "answer",
            split,
        };
        read_examples(&path, &fmt, Limit::All, 0)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (train, eval) = (half(HashSplit::Train), half(HashSplit::Eval));
    assert_eq!(train.len() + eval.len(), 500);
    assert!(train.is_disjoint(&eval));
    assert!(
        (200..=300).contains(&train.len()),
        "{} / {}",
        train.len(),
        eval.len()
    );
    println!(
        "MATH-500 halves: {} train, {} eval",
        train.len(),
        eval.len()
    );
}

#[test]
fn a_recipe_key_the_script_overrides_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let out = run(
        dir.path(),
        &recipe,
        "run",
        &["weight.scheme=\"uniform\"", "eval.data=\"\""],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("weight.scheme (set by --set weight.scheme=\"uniform\") has no effect")
            && err.contains("fn weight(stats)"),
        "{err}"
    );
    let quiet = run(dir.path(), &recipe, "run2", &["eval.data=\"\""]);
    assert!(
        !stderr(&quiet).contains("has no effect"),
        "{}",
        stderr(&quiet)
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let out = trainer(
        &[
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            dir.path().join("run").to_str().unwrap(),
            "--set",
            "eval.data=\"\"",
        ],
        &[("RUST_LOG", "info")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("INFO"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in piped logs: {err:?}"
    );
}

#[test]
fn a_lenient_training_grader_does_not_change_the_eval_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let lenient = write(
        dir.path(),
        "lenient.rhai",
        "fn grade(response, example) { true }\n",
    );
    let grade = format!("grade.grader=\"{}\"", lenient.display());
    let accuracy = |out: &str, sets: &[&str]| -> (f64, String) {
        let out_dir = dir.path().join(out);
        let mut args = vec![
            "eval",
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--set",
            grade.as_str(),
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        let o = trainer(&args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        let s: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(out).join("summary.json")).unwrap(),
        )
        .unwrap();
        (
            s["eval_before"]["accuracy"].as_f64().unwrap(),
            s["hooks"]["eval_grade"].as_str().unwrap().to_string(),
        )
    };
    // The tiny random model answers nothing right: the native GSM8K grader says 0 %.
    let (native, by) = accuracy("native", &[]);
    assert_eq!(native, 0.0);
    assert_eq!(by, "plugins/grade/gsm8k.rhai");
    let (same, by) = accuracy("same", &["eval.grader=\"same\""]);
    assert_eq!(same, 1.0, "eval.grader = \"same\" uses the lenient grader");
    assert!(by.ends_with("lenient.rhai"), "{by}");
}
