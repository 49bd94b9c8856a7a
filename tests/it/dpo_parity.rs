//! `trainer score` against TRL on SmolLM2 (../shared/fixtures/smollm2_dpo_reference.json): log-probs
//! and WPO means within 1e-3 relative, every loss variant's mean within 1e-4, gradient norms within
//! 1e-3 relative.

use std::sync::OnceLock;

use trainer::commands::score::{ScoreReport, score_hook, score_pairs};
use trainer::data::{PairRecord, read_pairs};
use trainer::model::{LoadedModel, load_model_on};
use trainer::recipe::{HookSource, LossSpec, WeightPlacement, Weighting};
use trainer::script::{HookRef, ScriptHost};
use trainer::train::LossFn;

use crate::common::{shared, smollm2_fixture, stdout, test_device, trainer};

struct Setup {
    model: LoadedModel,
    pairs: Vec<PairRecord>,
    fixture: serde_json::Value,
}

fn setup() -> Option<&'static Setup> {
    static CELL: OnceLock<Option<Setup>> = OnceLock::new();
    CELL.get_or_init(|| {
        let (path, fixture) = smollm2_fixture("smollm2_dpo_reference.json")?;
        let pairs = read_pairs(&shared()?.join("fixtures/pairs3.jsonl")).unwrap();
        Some(Setup {
            model: load_model_on(&path, None, &test_device()).unwrap(),
            pairs,
            fixture,
        })
    })
    .as_ref()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The loss `trainer score` computes: `hook` in `host` with the `[loss]` section `spec`.
fn loss_fn<'a>(host: &'a ScriptHost, hook: HookRef, spec: &'a LossSpec) -> LossFn<'a> {
    LossFn { host, hook, spec }
}

fn run(s: &Setup, plugin: &str, spec: LossSpec, weights: Option<&[f64]>) -> ScoreReport {
    let mut host = ScriptHost::new(&crate::common::limits(), None);
    let hook = score_hook(
        &mut host,
        None,
        Some(plugin),
        &HookSource::Plugin("dpo".into()),
    )
    .unwrap();
    let mut pairs = s.pairs.clone();
    if let Some(w) = weights {
        for (p, w) in pairs.iter_mut().zip(w) {
            p.weight = Some(*w);
        }
    }
    score_pairs(&s.model, &pairs, loss_fn(&host, hook, &spec), true, 512).unwrap()
}

fn assert_rel(actual: f64, expected: f64, tol: f64, what: &str) {
    let rel = (actual - expected).abs() / expected.abs().max(1e-12);
    assert!(
        rel <= tol,
        "{what}: {actual} vs {expected} (relative {rel:.2e} > {tol:.0e})"
    );
}

#[test]
fn log_probs_token_counts_and_wpo_means_match_trl() {
    let Some(s) = setup() else { return };
    let report = run(s, "dpo", crate::common::fixture_loss(), None);
    let fx = &s.fixture;
    for (side, rows) in [("chosen", 0), ("rejected", 1)] {
        let logps = floats(&fx["logps"][side]);
        let counts = floats(&fx["token_counts"][side]);
        let wpo = floats(&fx["wpo_aligned_mean"][side]);
        for (i, row) in report.rows.iter().enumerate() {
            let (lp, n, w) = if rows == 0 {
                (row.chosen_logps, row.chosen_tokens, row.chosen_wpo)
            } else {
                (row.rejected_logps, row.rejected_tokens, row.rejected_wpo)
            };
            assert_eq!(n as f64, counts[i], "{side} tokens of pair {i}");
            assert_rel(lp, logps[i], 1e-3, &format!("{side} logps of pair {i}"));
            assert!(
                (w - wpo[i]).abs() <= 1e-3 * wpo[i].abs().max(1e-2),
                "{side} wpo of pair {i}: {w} vs {}",
                wpo[i]
            );
        }
    }
}

/// (fixture key, plugin, spec, weights)
fn variants() -> Vec<(&'static str, &'static str, LossSpec, Option<Vec<f64>>)> {
    let base = LossSpec {
        beta: 0.1,
        ..crate::common::fixture_loss()
    };
    let weights = vec![1.0, 1.5, 2.25];
    vec![
        ("dpo", "dpo", base.clone(), None),
        ("ipo", "ipo", base.clone(), None),
        ("hinge", "hinge", base.clone(), None),
        (
            "robust",
            "robust",
            LossSpec {
                label_smoothing: 0.1,
                ..base.clone()
            },
            None,
        ),
        (
            "simpo",
            "simpo",
            LossSpec {
                beta: 2.0,
                gamma: 1.0,
                ..base.clone()
            },
            None,
        ),
        (
            "dpop",
            "dpop",
            LossSpec {
                lambda: 50.0,
                ..base.clone()
            },
            None,
        ),
        (
            "dpo_weight_inside",
            "dpo",
            base.clone(),
            Some(weights.clone()),
        ),
        (
            "dpo_weight_outside",
            "dpo",
            LossSpec {
                placement: WeightPlacement::Outside,
                ..base.clone()
            },
            Some(weights),
        ),
        (
            "dpo_wpo",
            "dpo",
            LossSpec {
                weighting: Weighting::Wpo { clamp: true },
                ..base
            },
            None,
        ),
    ]
}

#[test]
fn every_loss_variant_matches_trl_mean_and_gradient_norm() {
    let Some(s) = setup() else { return };
    for (key, plugin, spec, weights) in variants() {
        let expected = &s.fixture["losses"][key];
        let report = run(s, plugin, spec, weights.as_deref());
        let mean = expected["mean"].as_f64().unwrap();
        assert!(
            (report.mean_loss - mean).abs() <= 1e-4,
            "{key}: mean {} vs {mean}",
            report.mean_loss
        );
        for (i, e) in floats(&expected["per_pair"]).iter().enumerate() {
            let got = report.rows[i].loss.unwrap();
            assert!((got - e).abs() <= 1e-4, "{key}: pair {i} loss {got} vs {e}");
        }
        assert_rel(
            report.grad_norm.unwrap(),
            expected["grad_norm"].as_f64().unwrap(),
            1e-3,
            &format!("{key} grad norm"),
        );
    }
}

#[test]
fn score_command_prints_one_line_per_pair_and_a_summary() {
    let Some(dir) = shared() else { return };
    let model = dir.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let pairs = dir.join("fixtures/pairs3.jsonl");
    let out = trainer(
        &[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--pairs",
            pairs.to_str().unwrap(),
            "--loss",
            "ipo",
            "--set",
            "loss.beta=0.1",
            "--grad-norm",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let text = stdout(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!((lines[0]["loss"].as_f64().unwrap() - 25.0).abs() < 1e-4);
    assert!((lines[3]["mean_loss"].as_f64().unwrap() - 25.0).abs() < 1e-4);
    let g = lines[3]["grad_norm"].as_f64().unwrap();
    assert!(
        (g - 151.09568527447763).abs() / 151.09568527447763 < 1e-3,
        "{g}"
    );
}

/// One AdamW step (lr 1e-5, PyTorch defaults, no weight decay) on the DPO loss; measured agreement:
/// log-probs within 2.2e-5 relative, loss 5e-6.
#[test]
fn one_adamw_step_matches_pytorch() {
    // A fresh model: this test changes its weights.
    let Some((path, fixture)) = smollm2_fixture("smollm2_dpo_reference.json") else {
        return;
    };
    let model = load_model_on(&path, None, &test_device()).unwrap();
    let pairs = read_pairs(&shared().unwrap().join("fixtures/pairs3.jsonl")).unwrap();
    let after = &fixture["after_one_adamw_step"];
    let mut host = ScriptHost::new(&crate::common::limits(), None);
    let hook = score_hook(
        &mut host,
        None,
        Some("dpo"),
        &HookSource::Plugin("dpo".into()),
    )
    .unwrap();
    let spec = LossSpec {
        beta: 0.1,
        ..crate::common::fixture_loss()
    };
    let before = score_pairs(&model, &pairs, loss_fn(&host, hook, &spec), false, 512).unwrap();
    let vars: Vec<_> = model.policy.vars().into_iter().map(|(_, v)| v).collect();
    let tokens: Vec<_> = pairs
        .iter()
        .map(|p| trainer::train::tokenize_pair(&model.tokenizer, p, 512).unwrap())
        .collect();
    let fwd = trainer::train::forward_pairs(
        &model.policy.config,
        model.policy.weights(),
        &tokens,
        model.tokenizer.pad_id(),
    )
    .unwrap();
    let refs_c: Vec<f64> = before.rows.iter().map(|r| r.chosen_logps).collect();
    let refs_r: Vec<f64> = before.rows.iter().map(|r| r.rejected_logps).collect();
    let inputs = trainer::train::loss_inputs(&fwd, &refs_c, &refs_r, &[1.0; 3]).unwrap();
    let out = host.call_loss(hook, &inputs, &spec.hook_params()).unwrap();
    let loss = trainer::train::reduce(&out, &inputs, spec.weighting).unwrap();
    let store = loss.backward().unwrap();
    let grads: Vec<_> = vars
        .iter()
        .map(|v| store.get(v.as_tensor()).cloned())
        .collect();
    let mut opt = trainer::train::AdamW::new(vars, trainer::train::AdamWConfig::default()).unwrap();
    opt.step(&grads, after["lr"].as_f64().unwrap(), 1.0)
        .unwrap();
    let mut refd = pairs.clone();
    for (p, r) in refd.iter_mut().zip(&before.rows) {
        p.ref_chosen_logps = Some(r.chosen_logps);
        p.ref_rejected_logps = Some(r.rejected_logps);
    }
    let now = score_pairs(&model, &refd, loss_fn(&host, hook, &spec), false, 512).unwrap();
    let (c, r) = (
        floats(&after["logps"]["chosen"]),
        floats(&after["logps"]["rejected"]),
    );
    for i in 0..3 {
        assert_rel(
            now.rows[i].chosen_logps,
            c[i],
            1e-4,
            &format!("chosen logps after the step, pair {i}"),
        );
        assert_rel(
            now.rows[i].rejected_logps,
            r[i],
            1e-4,
            &format!("rejected logps after the step, pair {i}"),
        );
    }
    let mean = after["dpo_mean"].as_f64().unwrap();
    assert!(
        (now.mean_loss - mean).abs() <= 1e-4,
        "DPO loss after one step: {} vs {mean}",
        now.mean_loss
    );
}
