//! `pairs.all_correct = "anchor"`: a question the model always gets right keeps one of its
//! samples as chosen and rejected; the contrastive losses get no gradient from it, the `sft` loss
//! does, and the rewards metrics count the other pairs only.

use std::path::Path;

use crate::common::{assert_user_error, stderr, stdout, write};
use crate::pipeline::{recipe, run};

/// Correct for every sample of a question whose gold answer is even, wrong for every sample of
/// the others: half the tiny world's questions are all-correct.
const GRADER: &str = "fn grade(response, example) {\n    if parse_int(example.gold) % 2 == 0 { true } \
                      else { #{correct: false, answer: \"x\"} }\n}\n";

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn anchored_run(dir: &Path, loss: &str) -> std::path::PathBuf {
    let grader = write(dir, "parity.rhai", GRADER);
    let recipe = recipe(dir, "");
    let grade = format!("grade.grader=\"{}\"", grader.display());
    let loss = format!("loss.name=\"{loss}\"");
    let sets = [
        grade.as_str(),
        loss.as_str(),
        "pairs.all_correct=\"anchor\"",
        "train.batch_size=1",
        "train.grad_accum=1",
        "eval.data=\"\"",
    ];
    let out = run(dir, &recipe, "run", &sets);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    dir.join("run")
}

#[test]
fn an_all_correct_question_gives_an_anchor_that_dpo_gets_no_gradient_from() {
    let dir = tempfile::tempdir().unwrap();
    let r = anchored_run(dir.path(), "dpo");
    let pairs = lines(&r.join("pairs.jsonl"));
    // Gold answers 11, 14, 17, 20, 23, 26: three all-correct questions (anchors) and three
    // all-wrong ones (the gold solution against a sample).
    assert_eq!(pairs.len(), 6);
    let anchors: Vec<_> = pairs
        .iter()
        .filter(|p| p["chosen"] == p["rejected"])
        .collect();
    assert_eq!(anchors.len(), 3);
    for a in &anchors {
        assert_eq!(a["chosen_from"], a["rejected_from"]);
        assert!(a["chosen_from"].as_str().unwrap().starts_with("sample "));
    }
    let metrics = lines(&r.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 6);
    let anchor_steps: Vec<_> = metrics.iter().filter(|m| m["anchors"] == 1).collect();
    assert_eq!(anchor_steps.len(), 3);
    for m in &anchor_steps {
        // The same response on both sides: a zero margin, so the DPO loss is exactly ln 2, and
        // the two gradient paths cancel.
        assert!(
            (m["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6,
            "{m}"
        );
        assert!(m["grad_norm"].as_f64().unwrap() < 1e-6, "{m}");
        assert!(m.get("pairs").is_none(), "no pair in the step: {m}");
    }
    for m in metrics.iter().filter(|m| m.get("anchors").is_none()) {
        assert!(m["grad_norm"].as_f64().unwrap() > 1e-3, "{m}");
    }
}

#[test]
fn the_sft_loss_trains_on_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let r = anchored_run(dir.path(), "sft");
    let metrics = lines(&r.join("metrics.jsonl"));
    let anchor_steps: Vec<_> = metrics.iter().filter(|m| m["anchors"] == 1).collect();
    assert_eq!(anchor_steps.len(), 3);
    for m in anchor_steps {
        // The mean token NLL of a sample of the untrained model: well above zero, with gradient.
        assert!(m["loss"].as_f64().unwrap() > 0.5, "{m}");
        assert!(m["grad_norm"].as_f64().unwrap() > 1e-3, "{m}");
    }
}

#[test]
fn an_anchor_setting_beside_a_pair_hook_is_refused_naming_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = write(
        d,
        "pairs.rhai",
        "fn pair(group) { #{chosen: 0, rejected: 0} }\n",
    );
    let recipe = recipe(d, "");
    let rule = format!("pairs.rule=\"{}\"", hook.display());
    let out = run(d, &recipe, "run", &[&rule, "pairs.all_correct=\"anchor\""]);
    assert_user_error(&out, &["pairs.all_correct", "pairs.rhai", "fn pair(group)"]);
    let out = run(d, &recipe, "run2", &["pairs.all_correct=\"always\""]);
    assert_user_error(&out, &["pairs.all_correct", "`always`", "skip, anchor"]);
}
