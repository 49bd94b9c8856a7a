//! The reference pass: log-probs of every pair under the initial policy, computed once (no
//! reference model is held during training).

use anyhow::Result;
use candle_core::DType;

use crate::batch::{forward_pairs, tokenize_pair};
use crate::data::PairRecord;
use crate::model::LoadedModel;
use crate::progress;

/// Fills `ref_chosen_logps` / `ref_rejected_logps` of every record that lacks them, `batch_size`
/// pairs per forward.
pub fn fill_reference(
    model: &LoadedModel,
    records: &mut [PairRecord],
    batch_size: usize,
    max_length: usize,
) -> Result<()> {
    let todo: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].ref_chosen_logps.is_none())
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let weights = model.policy.frozen();
    let bar = progress::bar(todo.len() as u64, "reference");
    for chunk in todo.chunks(batch_size) {
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
        for (j, &i) in chunk.iter().enumerate() {
            records[i].ref_chosen_logps = Some(c[j]);
            records[i].ref_rejected_logps = Some(r[j]);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}
