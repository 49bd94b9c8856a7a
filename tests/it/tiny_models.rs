//! Tiny random Llama and Qwen2 decoders train: the DPO loss falls and every weight receives a
//! non-zero gradient (nothing is cut off by an op without a backward).

use candle_core::DType;
use candle_nn::Optimizer;
use trainer::model::{Arch, ModelConfig, random_policy};
use trainer::recipe::HookSource;
use trainer::rng::Rng;
use trainer::script::{HookKind, ScriptHost};
use trainer::train::reduce;
use trainer::train::{TokenPair, forward_pairs, loss_inputs};

/// A two-layer decoder of `arch` with grouped KV heads (tied embeddings for Llama).
pub fn tiny(arch: Arch) -> ModelConfig {
    ModelConfig {
        arch,
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rope_theta: 10_000.0,
        rms_eps: 1e-6,
        max_position: 128,
        tie_embeddings: arch == Arch::Llama,
        bos_token_id: None,
        eos_token_id: Some(1),
        rope_scaling: None,
        sliding_window: None,
    }
}

fn random_pairs(n: usize, seed: u64) -> Vec<TokenPair> {
    let mut rng = Rng::new(seed);
    let mut ids = |len: usize| {
        (0..len)
            .map(|_| 2 + rng.below(62) as u32)
            .collect::<Vec<u32>>()
    };
    (0..n)
        .map(|i| TokenPair {
            prompt: ids(3 + i % 3),
            chosen: ids(4 + i % 2),
            rejected: ids(5 - i % 2),
        })
        .collect()
}

fn trains(arch: Arch) {
    let cfg = tiny(arch);
    let policy = random_policy(&cfg, 7).unwrap();
    let pairs = random_pairs(4, 11);
    let mut host = ScriptHost::new(&crate::common::limits(), None);
    let hook =
        trainer::script::from_source(&mut host, HookKind::Loss, &HookSource::Plugin("dpo".into()))
            .unwrap();
    let spec = crate::common::fixture_loss();
    let reference = forward_pairs(&cfg, &policy.frozen(), &pairs, 0).unwrap();
    let ref_c: Vec<f64> = reference
        .chosen_logps
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let ref_r: Vec<f64> = reference
        .rejected_logps
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let vars: Vec<_> = policy.vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = candle_nn::AdamW::new(
        vars.clone(),
        candle_nn::ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut losses = Vec::new();
    for step in 0..15 {
        let fwd = forward_pairs(&cfg, policy.weights(), &pairs, 0).unwrap();
        let inputs = loss_inputs(&fwd, &ref_c, &ref_r, &[1.0; 4]).unwrap();
        let out = host.call_loss(hook, &inputs, &spec.hook_params()).unwrap();
        let loss = reduce(&out, &inputs, spec.weighting).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let grads = loss.backward().unwrap();
        if step == 0 {
            for (name, var) in policy.vars() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{arch:?}: no gradient for {name}"));
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm > 0.0, "{arch:?}: zero gradient for {name}");
            }
        }
        opt.step(&grads).unwrap();
    }
    assert!(
        (losses[0] - std::f32::consts::LN_2).abs() < 1e-6,
        "{arch:?}: initial loss {}",
        losses[0]
    );
    assert!(
        *losses.last().unwrap() < 0.5 * losses[0],
        "{arch:?}: losses {losses:?}"
    );
}

#[test]
fn tiny_llama_trains_and_every_weight_gets_a_gradient() {
    trains(Arch::Llama);
}

#[test]
fn tiny_qwen2_trains_and_every_weight_gets_a_gradient() {
    trains(Arch::Qwen2);
}
