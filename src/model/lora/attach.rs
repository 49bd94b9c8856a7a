//! Fresh adapters on a policy's weights (A seeded like PEFT's init, B zero), the training view
//! that pairs them with the frozen base, and the merged weights `W + (α/r)·B·A`.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};

use super::{Adapter, LoraConfig, Target};
use crate::model::decoder::Weights;
use crate::rng::{self, Rng};

/// Adapters attached to a policy.
pub struct LoraAttached {
    pub config: LoraConfig,
    /// `base_model_name_or_path` of the saved adapter: the model the run loaded.
    pub base_model: String,
    /// The adapter variables under their PEFT names, sorted by name; the only trainable tensors.
    pub vars: Vec<(String, Var)>,
    /// The base weights detached (no gradient, shared storage) with the adapters in place.
    pub weights: Weights,
}

/// The PEFT names of the `A` and `B` tensors of the adapter on `module` (an HF weight name
/// without `.weight`, e.g. `model.layers.0.self_attn.q_proj`).
pub fn peft_names(module: &str) -> (String, String) {
    (
        format!("base_model.model.{module}.lora_A.weight"),
        format!("base_model.model.{module}.lora_B.weight"),
    )
}

/// `A` as PEFT initialises it (`kaiming_uniform_(a=√5)`, i.e. uniform in `±1/√in`), from a stream
/// of the run seed, the layer and the projection.
///
/// # Shapes
/// → `[rank, inner]` (f32).
fn init_a(
    rank: usize,
    inner: usize,
    seed: u64,
    (layer, t): (usize, Target),
    device: &Device,
) -> Result<Tensor> {
    let bound = 1.0 / (inner as f64).sqrt();
    let parts = [
        rng::hash_str("lora"),
        layer as u64,
        rng::hash_str(t.hf_name()),
    ];
    let mut g = Rng::derived(seed, &parts);
    let values: Vec<f32> = (0..rank * inner)
        .map(|_| ((2.0 * g.next_f64() - 1.0) * bound) as f32)
        .collect();
    Ok(Tensor::from_vec(values, (rank, inner), device)?)
}

/// Attaches adapters to a detached copy of `base` (the same storage): every value is a function
/// of `seed`, the layer and the projection only.
pub fn attach(
    base: &Weights,
    config: &LoraConfig,
    seed: u64,
    base_model: &str,
) -> Result<LoraAttached> {
    let mut weights = base.detached();
    let mut vars = Vec::new();
    let scale = config.scale();
    for (l, layer) in weights.layers.iter_mut().enumerate() {
        for &t in &config.targets {
            let Some(w) = layer.projection(t).0.dense() else {
                anyhow::bail!("LoRA adapters need dense base weights, not quantized ones");
            };
            let (out, inner) = w.dims2()?;
            let a = init_a(config.rank, inner, seed, (l, t), w.device())?;
            let a = Var::from_tensor(&a.to_dtype(w.dtype())?)?;
            let b = Var::zeros((out, config.rank), w.dtype(), w.device())?;
            let adapter = Adapter {
                a: a.as_tensor().clone(),
                b: b.as_tensor().clone(),
                scale,
            };
            layer.lora.set(t, adapter);
            let (name_a, name_b) = peft_names(&t.module_path(l));
            vars.push((name_a, a));
            vars.push((name_b, b));
        }
    }
    vars.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(LoraAttached {
        config: config.clone(),
        base_model: base_model.to_string(),
        vars,
        weights,
    })
}

/// The base tensors (HF names) with every adapted weight replaced by `W + scale·B·A`, computed
/// in the weights' dtype.
///
/// # Shapes
/// Each merged weight keeps its `[out, in]`; adapters are `A: [r, in]`, `B: [out, r]`.
pub fn merged_tensors(
    base: Vec<(String, Tensor)>,
    adapters: &HashMap<String, Tensor>,
    scale: f64,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::with_capacity(base.len());
    for (name, w) in base {
        let pair = name.strip_suffix(".weight").and_then(|module| {
            let (a, b) = peft_names(module);
            adapters.get(&a).zip(adapters.get(&b))
        });
        let merged = match pair {
            Some((a, b)) => {
                let delta = b.matmul(a)?.affine(scale, 0.0)?;
                (&w + delta.to_device(w.device())?)
                    .with_context(|| format!("merging the adapter into {name}"))?
            }
            None => w,
        };
        out.insert(name, merged);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, ModelConfig, random_policy};

    pub(crate) fn tiny() -> ModelConfig {
        ModelConfig::tiny_for_tests(Arch::Llama)
    }

    #[test]
    fn a_is_uniform_within_one_over_root_fan_in_and_reproducible() {
        let a = init_a(8, 100, 3, (1, Target::Q), &Device::Cpu).unwrap();
        let v = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.abs() <= 0.1));
        assert!(v.iter().any(|x| x.abs() > 0.09), "the bound is reached");
        let again = init_a(8, 100, 3, (1, Target::Q), &Device::Cpu).unwrap();
        assert_eq!(v, again.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let other = init_a(8, 100, 3, (1, Target::K), &Device::Cpu).unwrap();
        assert_ne!(v, other.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn adapters_have_peft_names_and_shapes_and_b_starts_at_zero() {
        let policy = random_policy(&tiny(), 1).unwrap();
        let config = LoraConfig {
            rank: 3,
            alpha: 6.0,
            targets: vec![Target::Q, Target::Down],
        };
        let att = attach(policy.weights(), &config, 5, "m").unwrap();
        assert_eq!(att.vars.len(), 2 * 2 * 2);
        let shape = |n: &str| {
            let (_, v) = att.vars.iter().find(|(k, _)| k == n).unwrap();
            v.as_tensor().dims().to_vec()
        };
        let p = "base_model.model.model.layers.1";
        assert_eq!(
            shape(&format!("{p}.self_attn.q_proj.lora_A.weight")),
            [3, 16]
        );
        assert_eq!(
            shape(&format!("{p}.self_attn.q_proj.lora_B.weight")),
            [16, 3]
        );
        assert_eq!(shape(&format!("{p}.mlp.down_proj.lora_A.weight")), [3, 24]);
        assert_eq!(shape(&format!("{p}.mlp.down_proj.lora_B.weight")), [16, 3]);
        for (name, v) in &att.vars {
            let sum = v.as_tensor().abs().unwrap().sum_all().unwrap();
            let sum = sum.to_scalar::<f32>().unwrap();
            assert_eq!(name.contains("lora_B"), sum == 0.0, "{name}");
        }
        let q = att.weights.layers[0].q.dense().unwrap();
        assert!(!q.track_op(), "the base is frozen");
    }
}
