//! The trainable policy: every weight a `Var` in a `candle_nn::VarMap` under its HF name, plus the
//! decoder view of the same tensors; with LoRA attached, only the adapters train.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::config::ModelConfig;
use super::decoder::{LayerWeights, Weights};
use super::lora::{self, ADAPTER_WEIGHTS, LoraAttached, LoraConfig};
use crate::error::user_error;
use crate::store::{write_atomic, write_atomic_with};

/// A decoder whose weights receive gradients.
pub struct Policy {
    pub config: ModelConfig,
    varmap: VarMap,
    weights: Weights,
    /// The adapters, when LoRA is on: then they alone train and the base weights are frozen.
    lora: Option<LoraAttached>,
}

/// The HF names and shapes every model of `cfg` must have.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, v, hd) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.vocab_size,
        cfg.head_dim,
    );
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        if cfg.qkv_bias() {
            out.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
            out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    out
}

impl Policy {
    /// Builds the policy from HF-named f32 tensors; every expected tensor must be present with
    /// its shape (extra tensors are ignored).
    pub fn from_tensors(
        config: ModelConfig,
        mut tensors: HashMap<String, Tensor>,
        origin: &str,
    ) -> Result<Policy> {
        let varmap = VarMap::new();
        let mut vars: HashMap<String, Tensor> = HashMap::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("var map lock poisoned"))?;
            for (name, shape) in expected_tensors(&config) {
                let t = tensors
                    .remove(&name)
                    .ok_or_else(|| user_error(format!("{origin}: tensor `{name}` is missing")))?;
                if t.dims() != shape.as_slice() {
                    return Err(user_error(format!(
                        "{origin}: tensor `{name}` has shape {:?}, the config needs {shape:?}",
                        t.dims()
                    )));
                }
                let var = Var::from_tensor(&t.to_dtype(DType::F32)?.contiguous()?)?;
                vars.insert(name.clone(), var.as_tensor().clone());
                data.insert(name, var);
            }
        }
        let weights = weights_from(&config, &mut vars)?;
        Ok(Policy {
            config,
            varmap,
            weights,
            lora: None,
        })
    }

    /// The same policy with every weight copied to `device` (before LoRA is attached).
    pub fn to_device(&self, device: &Device) -> Result<Policy> {
        if self.lora.is_some() {
            anyhow::bail!("internal: a policy moves to its device before LoRA is attached");
        }
        let mut tensors = HashMap::new();
        for (name, var) in self.base_vars() {
            tensors.insert(name, var.as_tensor().detach().to_device(device)?);
        }
        Policy::from_tensors(self.config.clone(), tensors, "policy")
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.weights.embed.device()
    }

    /// The weights, tracked by autograd: every weight, or with LoRA only the adapters (the base
    /// weights detached, so no gradient is computed for them).
    pub fn weights(&self) -> &Weights {
        self.lora.as_ref().map_or(&self.weights, |l| &l.weights)
    }

    /// The same weights without gradient tracking (shares storage; sees every update), adapters
    /// included.
    pub fn frozen(&self) -> Weights {
        self.weights().detached()
    }

    /// The base weights without adapters and without gradient tracking: the reference model
    /// (with LoRA, the model the adapters sit on, as in PEFT/TRL).
    pub fn base(&self) -> Weights {
        self.weights.detached()
    }

    /// Every trainable variable with its name, sorted by name: the base weights under HF names,
    /// or with LoRA only the adapters under PEFT names.
    pub fn vars(&self) -> Vec<(String, Var)> {
        match &self.lora {
            Some(l) => l.vars.clone(),
            None => self.base_vars(),
        }
    }

    /// The base weights with their HF names, sorted by name.
    fn base_vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Attaches fresh LoRA adapters (A seeded from `seed`, B zero); from then on [`vars`]
    /// lists only them and the saved model is merged. `base_model` goes into the adapter config.
    ///
    /// [`vars`]: Policy::vars
    pub fn attach_lora(&mut self, config: &LoraConfig, seed: u64, base_model: &str) -> Result<()> {
        if self.lora.is_some() {
            anyhow::bail!("internal: LoRA is attached twice");
        }
        self.lora = Some(lora::attach(&self.weights, config, seed, base_model)?);
        Ok(())
    }

    /// The LoRA settings, when adapters are attached.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref().map(|l| &l.config)
    }

    /// The file of a saved model folder that holds [`vars`](Policy::vars) under their names:
    /// `adapter_model.safetensors` with LoRA, else `model.safetensors`.
    pub fn trainable_file(&self) -> &'static str {
        if self.lora.is_some() {
            ADAPTER_WEIGHTS
        } else {
            "model.safetensors"
        }
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Writes an HF model folder: `config.json`, `model.safetensors` and `tokenizer.json`, each
    /// written to a temporary name and renamed, so a reader never sees a half-written file. With
    /// LoRA the model holds the merged weights `W + (α/r)·B·A`, and the PEFT adapter
    /// (`adapter_config.json`, `adapter_model.safetensors`) is written beside it.
    pub fn save_hf(&self, dir: &Path, tokenizer: &super::tokenizer::Tokenizer) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = serde_json::to_string_pretty(&self.config.to_hf_json())?;
        write_atomic(&dir.join("config.json"), config.as_bytes())?;
        write_atomic_with(&dir.join("tokenizer.json"), |tmp| tokenizer.save(tmp))?;
        write_atomic_with(&dir.join("model.safetensors"), |tmp| {
            self.save_safetensors(tmp)
        })?;
        match &self.lora {
            Some(l) => lora::write_adapter(dir, l),
            None => Ok(()),
        }
    }

    /// Writes the weights (merged with the adapters under LoRA) as one safetensors file with HF
    /// names.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let base: Vec<(String, Tensor)> = self
            .base_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().detach()))
            .collect();
        let tensors: HashMap<String, Tensor> = match &self.lora {
            Some(l) => {
                let adapters = l.vars.iter();
                let adapters = adapters.map(|(k, v)| (k.clone(), v.as_tensor().detach()));
                lora::merged_tensors(base, &adapters.collect(), l.config.scale())?
            }
            None => base.into_iter().collect(),
        };
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn weights_from(cfg: &ModelConfig, vars: &mut HashMap<String, Tensor>) -> Result<Weights> {
    let mut take = |name: String| {
        vars.remove(&name)
            .with_context(|| format!("internal: {name} not loaded"))
    };
    let embed = take("model.embed_tokens.weight".into())?;
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        let bias =
            |take: &mut dyn FnMut(String) -> Result<Tensor>, n: &str| -> Result<Option<Tensor>> {
                if cfg.qkv_bias() {
                    take(format!("{p}.self_attn.{n}_proj.bias")).map(Some)
                } else {
                    Ok(None)
                }
            };
        layers.push(LayerWeights {
            attn_norm: take(format!("{p}.input_layernorm.weight"))?,
            q: take(format!("{p}.self_attn.q_proj.weight"))?.into(),
            k: take(format!("{p}.self_attn.k_proj.weight"))?.into(),
            v: take(format!("{p}.self_attn.v_proj.weight"))?.into(),
            q_bias: bias(&mut take, "q")?,
            k_bias: bias(&mut take, "k")?,
            v_bias: bias(&mut take, "v")?,
            o: take(format!("{p}.self_attn.o_proj.weight"))?.into(),
            mlp_norm: take(format!("{p}.post_attention_layernorm.weight"))?,
            gate: take(format!("{p}.mlp.gate_proj.weight"))?.into(),
            up: take(format!("{p}.mlp.up_proj.weight"))?.into(),
            down: take(format!("{p}.mlp.down_proj.weight"))?.into(),
            lora: Default::default(),
        });
    }
    let norm = take("model.norm.weight".into())?;
    let lm_head = if cfg.tie_embeddings {
        None
    } else {
        Some(take("lm_head.weight".into())?)
    };
    Ok(Weights {
        embed,
        layers,
        norm,
        lm_head,
        quant_head: None,
    })
}
