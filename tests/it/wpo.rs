//! WPO (arXiv 2406.11827): the pair weights match TRL on SmolLM2, and they are detached — the
//! gradient of the weighted loss equals the weighted sum of per-pair gradients with the weights
//! held constant.

use candle_core::{DType, Tensor};
use trainer::model::{Arch, ModelConfig, random_policy};
use trainer::recipe::{HookSource, LossSpec, Weighting};
use trainer::rng::Rng;
use trainer::script::LossOutput;
use trainer::script::{HookKind, ScriptHost};
use trainer::train::reduce;
use trainer::train::{TokenPair, forward_pairs, loss_inputs};

use crate::common::{shared, stdout, trainer};

fn tiny() -> ModelConfig {
    ModelConfig {
        arch: Arch::Llama,
        vocab_size: 40,
        hidden_size: 16,
        intermediate_size: 32,
        num_layers: 2,
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 8,
        rope_theta: 10_000.0,
        rms_eps: 1e-6,
        max_position: 64,
        tie_embeddings: true,
        bos_token_id: None,
        eos_token_id: Some(1),
        rope_scaling: None,
        sliding_window: None,
    }
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn wpo_weights_are_detached() {
    let cfg = tiny();
    let policy = random_policy(&cfg, 5).unwrap();
    let mut rng = Rng::new(9);
    let mut ids = |n: usize| {
        (0..n)
            .map(|_| 2 + rng.below(38) as u32)
            .collect::<Vec<u32>>()
    };
    let pairs: Vec<TokenPair> = (0..3)
        .map(|i| TokenPair {
            prompt: ids(3 + i),
            chosen: ids(2 + i),
            rejected: ids(4 - i),
        })
        .collect();
    let mut host = ScriptHost::new(&crate::common::limits(), None);
    let hook =
        trainer::script::from_source(&mut host, HookKind::Loss, &HookSource::Plugin("dpo".into()))
            .unwrap();
    let spec = LossSpec {
        weighting: Weighting::Wpo { clamp: false },
        ..crate::common::fixture_loss()
    };
    let refs = [-20.0, -25.0, -18.0];
    let refs_r = [-22.0, -19.0, -24.0];
    let vars: Vec<_> = policy.vars().into_iter().map(|(_, v)| v).collect();
    // the weighted loss, backpropagated
    let fwd = forward_pairs(&cfg, policy.weights(), &pairs, 0).unwrap();
    let inputs = loss_inputs(&fwd, &refs, &refs_r, &[1.0; 3]).unwrap();
    let out = host.call_loss(hook, &inputs, &spec.hook_params()).unwrap();
    let joint = reduce(&out, &inputs, spec.weighting)
        .unwrap()
        .backward()
        .unwrap();
    let w: Vec<f64> = (&fwd.chosen_wpo + &fwd.rejected_wpo)
        .unwrap()
        .exp()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    // unclamped weights can exceed 1 (a token likelier than the distribution's self-overlap); what
    // matters here is that they differ between pairs, so a wrong placement would show
    let spread =
        w.iter().cloned().fold(f64::MIN, f64::max) - w.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        w.iter().all(|x| x.is_finite() && *x > 0.0) && spread > 0.05,
        "{w:?}"
    );
    // each pair alone, its gradient scaled by its (constant) weight
    let plain = crate::common::fixture_loss();
    let mut summed: Vec<Option<Tensor>> = vec![None; vars.len()];
    for (i, p) in pairs.iter().enumerate() {
        let f = forward_pairs(&cfg, policy.weights(), std::slice::from_ref(p), 0).unwrap();
        let inp = loss_inputs(&f, &refs[i..=i], &refs_r[i..=i], &[1.0]).unwrap();
        let LossOutput::PerPair(l) = host.call_loss(hook, &inp, &plain.hook_params()).unwrap()
        else {
            panic!()
        };
        let g = (l.sum_all().unwrap() * (w[i] / 3.0))
            .unwrap()
            .backward()
            .unwrap();
        for (slot, v) in summed.iter_mut().zip(&vars) {
            if let Some(gi) = g.get(v.as_tensor()) {
                *slot = Some(match slot.take() {
                    Some(a) => (a + gi).unwrap(),
                    None => gi.clone(),
                });
            }
        }
    }
    let mut worst = 0f64;
    for (slot, v) in summed.iter().zip(&vars) {
        let a = flat(joint.get(v.as_tensor()).unwrap());
        let b = flat(slot.as_ref().unwrap());
        let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-12);
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        worst = worst.max(diff / scale);
    }
    assert!(worst < 1e-3, "relative difference {worst:.2e}");
}

#[test]
fn score_with_wpo_weighting_matches_trl() {
    let Some(dir) = shared() else { return };
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("fixtures/smollm2_dpo_reference.json")).unwrap(),
    )
    .unwrap();
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
            "dpo",
            "--set",
            "loss.weighting=\"wpo\"",
            "--grad-norm",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = &fixture["losses"]["dpo_wpo"];
    for i in 0..3 {
        let w = fixture["wpo_weight"][i].as_f64().unwrap();
        assert!(
            (lines[i]["wpo_weight"].as_f64().unwrap() - w).abs() < 1e-4,
            "pair {i}: {} vs {w}",
            lines[i]["wpo_weight"]
        );
        let l = expected["per_pair"][i].as_f64().unwrap();
        assert!(
            (lines[i]["loss"].as_f64().unwrap() - l).abs() < 1e-4,
            "pair {i} loss"
        );
    }
    assert!(
        (lines[3]["mean_loss"].as_f64().unwrap() - expected["mean"].as_f64().unwrap()).abs() < 1e-4
    );
    let g = expected["grad_norm"].as_f64().unwrap();
    assert!((lines[3]["grad_norm"].as_f64().unwrap() - g).abs() / g < 1e-3);
}
