//! The reference pass: log-probs of every pair under the initial policy, computed once (no
//! reference model is held during training). Each finished batch is appended to a checksummed
//! cache whose name is the content key of the whole pass (model, pairs, batching), so a killed
//! pass resumes and a rerun computes nothing.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::data::PairRecord;
use crate::model::LoadedModel;
use crate::store::{Batches, Resumable};
use crate::train::{forward_pairs, tokenize_pair};

/// One cached pair: its index among the records and the two log-probs as `f64` bits (exact).
#[derive(Serialize, Deserialize)]
struct Cached {
    index: usize,
    chosen: u64,
    rejected: u64,
}

/// Fills `ref_chosen_logps` / `ref_rejected_logps` of every record that lacks them, `batch_size`
/// pairs per forward, taking finished ones from `cache`, whose name must key the model, the
/// records and the batching (`run::keys::reference_key`). Batches are cut over the full list of
/// missing pairs, so a resumed pass forms the same batches as an uninterrupted one.
pub fn fill_reference(
    model: &LoadedModel,
    records: &mut [PairRecord],
    batch_size: usize,
    max_length: usize,
    cache: &Path,
) -> Result<()> {
    let todo: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].ref_chosen_logps.is_none())
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let mut done = Resumable::open(Some(cache), |c: &Cached| c.index)?;
    // The reference is the base model: with LoRA, the adapters are off (as in PEFT/TRL).
    let weights = model.policy.base();
    let batches = Batches {
        size: batch_size,
        label: "reference",
    };
    done.fill(
        &todo,
        |&i| i,
        batches,
        |chunk, _| {
            let tokens = chunk
                .iter()
                .map(|&i| tokenize_pair(&model.tokenizer, &records[i], max_length))
                .collect::<Result<Vec<_>>>()?;
            let fwd = forward_pairs(
                &model.policy.config,
                &weights,
                &tokens,
                model.tokenizer.pad_id(),
            )?;
            let c = fwd.chosen_logps.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let r = fwd.rejected_logps.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            Ok(chunk
                .iter()
                .enumerate()
                .map(|(j, &index)| Cached {
                    index,
                    chosen: c[j].to_bits(),
                    rejected: r[j].to_bits(),
                })
                .collect())
        },
    )?;
    for &i in &todo {
        let c = done
            .take(&i)
            .with_context(|| format!("{}: no reference for pair {}", cache.display(), i + 1))?;
        records[i].ref_chosen_logps = Some(f64::from_bits(c.chosen));
        records[i].ref_rejected_logps = Some(f64::from_bits(c.rejected));
    }
    Ok(())
}
