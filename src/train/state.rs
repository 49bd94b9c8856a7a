//! The resume state a training checkpoint carries besides the weights: `optimizer.bin` (the AdamW
//! moments in safetensors format, tensors `m.<param>` and `v.<param>`; not `*.safetensors`, so the
//! folder still loads as a model) and `trainer_state.json` (the content key of the training
//! inputs, the steps done, the optimizer's step count, the data-order seed and the metrics so
//! far), written last inside a folder that is renamed into place whole. The data order is a pure
//! function of (seed, epoch), so the step number is the whole random state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::metrics::StepMetrics;
use super::optim::{AdamW, Moments};
use crate::model::LoadedModel;
use crate::store::{write_atomic_with, write_json_atomic};

/// `trainer_state.json`.
pub const STATE_FILE: &str = "trainer_state.json";
/// The AdamW moments.
pub const OPTIMIZER_FILE: &str = "optimizer.bin";

/// Where training stands after `step` optimizer steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The content key of what training depends on (pairs, model, recipe sections, scripts).
    pub key: String,
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    /// AdamW's step count (bias correction).
    pub optimizer_step: u64,
    /// The seed the data order derives from.
    pub seed: u64,
    /// One entry per step done.
    pub metrics: Vec<StepMetrics>,
}

impl TrainState {
    pub fn is_complete(&self) -> bool {
        self.step == self.total_steps
    }
}

/// Writes the resume files into a checkpoint folder being built: the moments (when `opt` is
/// given) first, the state last.
pub fn write_state(dir: &Path, state: &TrainState, opt: Option<(&AdamW, &[String])>) -> Result<()> {
    if let Some((opt, names)) = opt {
        let mut tensors = HashMap::new();
        for (name, mo) in names.iter().zip(opt.moments()?.iter()) {
            tensors.insert(
                format!("m.{name}"),
                Tensor::new(mo.m.as_slice(), &Device::Cpu)?,
            );
            tensors.insert(
                format!("v.{name}"),
                Tensor::new(mo.v.as_slice(), &Device::Cpu)?,
            );
        }
        write_atomic_with(&dir.join(OPTIMIZER_FILE), |tmp| {
            candle_core::safetensors::save(&tensors, tmp)
                .with_context(|| format!("writing {}", tmp.display()))
        })?;
    }
    write_json_atomic(&dir.join(STATE_FILE), state)
}

/// The state in `dir`, if it holds one that can be resumed from: complete, or with its moments.
fn read_state(dir: &Path) -> Result<Option<TrainState>> {
    let path = dir.join(STATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let state: TrainState = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a training state", path.display()))?;
    if state.metrics.len() != state.step {
        bail!(
            "{}: {} metrics for {} steps",
            path.display(),
            state.metrics.len(),
            state.step
        );
    }
    let resumable = state.is_complete() || dir.join(OPTIMIZER_FILE).is_file();
    Ok(resumable.then_some(state))
}

/// The furthest state among `dirs` whose key is `key`; states of other inputs are reported and
/// left alone.
pub fn find_latest(dirs: &[PathBuf], key: &str) -> Result<Option<(PathBuf, TrainState)>> {
    let mut best: Option<(PathBuf, TrainState)> = None;
    for dir in dirs {
        let Some(state) = read_state(dir)? else {
            continue;
        };
        if state.key != key {
            tracing::warn!(
                "{}: a checkpoint of other training inputs, not resumed from",
                dir.display()
            );
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| state.step > b.step) {
            best = Some((dir.clone(), state));
        }
    }
    Ok(best)
}

/// The checkpoint folders of a run: `checkpoints/step-*`, `checkpoints/latest` and `final`.
pub fn candidates(checkpoints: &Path, final_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![final_dir.to_path_buf(), checkpoints.join("latest")];
    if checkpoints.is_dir() {
        let listing = std::fs::read_dir(checkpoints)
            .with_context(|| format!("listing {}", checkpoints.display()))?;
        for entry in listing {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with("step-")) {
                dirs.push(path);
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Loads the weights (and, for an unfinished run, the moments) of the checkpoint in `dir`.
pub fn restore(model: &LoadedModel, opt: &mut AdamW, dir: &Path, state: &TrainState) -> Result<()> {
    // With LoRA the trainable tensors are the adapters, under their PEFT names.
    let weights = load(&dir.join(model.policy.trainable_file()))?;
    let vars = model.policy.vars();
    for (name, var) in &vars {
        let t = weights
            .get(name)
            .with_context(|| format!("{}: no tensor {name}", dir.display()))?;
        var.set(&t.to_device(var.device())?)
            .with_context(|| format!("{}: tensor {name}", dir.display()))?;
    }
    if state.is_complete() {
        return Ok(());
    }
    let path = dir.join(OPTIMIZER_FILE);
    let moments = load(&path)?;
    let take = |kind: &str, name: &str| -> Result<Vec<f32>> {
        let t = moments
            .get(&format!("{kind}.{name}"))
            .with_context(|| format!("{}: no tensor {kind}.{name}", path.display()))?;
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    };
    let restored = vars
        .iter()
        .map(|(n, _)| {
            Ok(Moments {
                m: take("m", n)?,
                v: take("v", n)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    opt.restore(state.optimizer_step, restored)
        .with_context(|| format!("{}", path.display()))
}

fn load(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(key: &str, step: usize, total: usize) -> TrainState {
        let m = StepMetrics {
            step: 1,
            loss: 0.5,
            ..StepMetrics::default()
        };
        TrainState {
            key: key.into(),
            step,
            total_steps: total,
            optimizer_step: step as u64,
            seed: 1,
            metrics: vec![m; step],
        }
    }

    fn put(dir: &Path, s: &TrainState, moments: bool) {
        std::fs::create_dir_all(dir).unwrap();
        write_json_atomic(&dir.join(STATE_FILE), s).unwrap();
        if moments {
            std::fs::write(dir.join(OPTIMIZER_FILE), b"m").unwrap();
        }
    }

    #[test]
    fn the_furthest_state_of_the_same_key_with_its_moments_is_chosen() {
        let root = tempfile::tempdir().unwrap();
        let ck = root.path().join("checkpoints");
        put(&ck.join("step-000002"), &state("k", 2, 9), true);
        put(&ck.join("step-000004"), &state("k", 4, 9), true);
        put(&ck.join("latest"), &state("k", 6, 9), false);
        put(&ck.join("step-000008"), &state("other", 8, 9), true);
        let dirs = candidates(&ck, &root.path().join("final")).unwrap();
        let (dir, found) = find_latest(&dirs, "k").unwrap().unwrap();
        assert_eq!((dir, found.step), (ck.join("step-000004"), 4));
        put(&root.path().join("final"), &state("k", 9, 9), false);
        let dirs = candidates(&ck, &root.path().join("final")).unwrap();
        let (_, found) = find_latest(&dirs, "k").unwrap().unwrap();
        assert!(found.is_complete());
        assert!(find_latest(&dirs, "new").unwrap().is_none());
    }
}
