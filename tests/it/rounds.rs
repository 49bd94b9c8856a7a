//! Iterative on-policy rounds (`train.rounds`): each round samples the policy the last round
//! trained, scores its pairs against that policy as the reference, and keeps its files apart.

use std::path::Path;

use crate::common::{stderr, stdout};
use crate::pipeline::{recipe, run};

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn first_line(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

#[test]
fn three_rounds_sample_and_train_from_the_policy_of_the_round_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = recipe(d, "");
    let out = run(d, &recipe, "run", &["train.rounds=3", "train.lr=1e-2"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let r = d.join("run");
    for k in 1..=3 {
        let round = r.join(format!("round-{k}"));
        for f in [
            "samples.jsonl",
            "grades.jsonl",
            "pairs.jsonl",
            "metrics.jsonl",
            "loss.png",
        ] {
            assert!(round.join(f).is_file(), "round-{k}/{f} missing");
        }
        // The reference of every round is the policy it starts from, so its first step sees a
        // zero margin: the DPOP loss is exactly ln 2 (and not, from round 2 on, the loss against
        // the original model).
        let first = first_line(&round.join("metrics.jsonl"));
        let loss = first["loss"].as_f64().unwrap();
        assert!(
            (loss - std::f64::consts::LN_2).abs() < 1e-5,
            "round {k}: {loss}"
        );
        assert_eq!(first["rewards/margins"].as_f64().unwrap(), 0.0, "round {k}");
    }
    assert!(r.join("round-1/final/model.safetensors").is_file());
    assert!(r.join("round-2/final/model.safetensors").is_file());
    assert!(r.join("round-1/eval_after.jsonl").is_file());
    assert!(
        !r.join("round-3/final").exists(),
        "the last round's model is final/"
    );
    assert!(r.join("final/model.safetensors").is_file());
    assert!(r.join("eval_after.jsonl").is_file());
    // Each round sampled from its own weights: three sample sets and reference passes cached.
    for cache in ["samples", "reference"] {
        let n = std::fs::read_dir(d.join("cache").join(cache))
            .unwrap()
            .count();
        assert_eq!(n, 3, "{cache}");
    }
    let summary = json(&r.join("summary.json"));
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    assert_eq!(summary["eval_after"], rounds[2]["eval_after"]);
    let steps: u64 = rounds.iter().map(|x| x["steps"].as_u64().unwrap()).sum();
    assert_eq!(summary["steps"].as_u64().unwrap(), steps);
    assert!(stdout(&out).contains("round 3"), "{}", stdout(&out));
    assert_eq!(
        json(&r.join("eval.json"))["rounds"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn a_round_run_is_deterministic_and_reuses_every_cache() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = recipe(d, "");
    let out = run(d, &recipe, "a", &["train.rounds=2"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let model = trainer::store::sha256_file(&d.join("a/final/model.safetensors")).unwrap();
    // The same recipe into a new folder: every round's samples, reference pass and eval come
    // from the cache, and each round's training ends at the same weights.
    let out = run(d, &recipe, "b", &["train.rounds=2"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let again = trainer::store::sha256_file(&d.join("b/final/model.safetensors")).unwrap();
    assert_eq!(model, again);
    assert_eq!(
        std::fs::read_dir(d.join("cache/samples")).unwrap().count(),
        2
    );
}
