//! Log-softmax over the vocabulary fused with the gather of each row's target, with a backward
//! that needs only the logits and the per-row logsumexp (the composed version keeps several
//! `[N, V]` intermediates alive until the backward pass).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::f32_slice;

/// Per-row `log Σ exp(x)` and `log Σ softmax(x)²`, filled by the forward.
#[derive(Debug)]
struct RowStats {
    lse: Vec<f32>,
    log_sq: Vec<f32>,
}

/// `log p(target)` per row; the stats are shared with the caller (for the WPO term) and the backward.
struct TargetLogprob {
    targets: Arc<Vec<u32>>,
    stats: Arc<OnceLock<RowStats>>,
}

/// `(log Σ exp(x), log Σ softmax(x)²)` of one row, accumulated in f64.
fn row_lse(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut s1, mut s2) = (0f64, 0f64);
    for &x in row {
        let e = ((x - max) as f64).exp();
        s1 += e;
        s2 += e * e;
    }
    let ln1 = s1.ln();
    ((max as f64 + ln1) as f32, (s2.ln() - 2.0 * ln1) as f32)
}

impl CustomOp1 for TargetLogprob {
    fn name(&self) -> &'static str {
        "target-logprob"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let (n, v) = layout.shape().dims2()?;
        if self.targets.len() != n || self.targets.iter().any(|&t| t as usize >= v) {
            bail!(
                "target-logprob: {} targets for {n} rows of {v}",
                self.targets.len()
            );
        }
        let rows: Vec<(f32, f32, f32)> = x
            .par_chunks(v)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                let (lse, log_sq) = row_lse(row);
                (row[t as usize] - lse, lse, log_sq)
            })
            .collect();
        let stats = RowStats {
            lse: rows.iter().map(|r| r.1).collect(),
            log_sq: rows.iter().map(|r| r.2).collect(),
        };
        if self.stats.set(stats).is_err() {
            bail!("target-logprob: the op ran twice");
        }
        let out = rows.iter().map(|r| r.0).collect();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let Some(stats) = self.stats.get() else {
            bail!("target-logprob: backward before forward");
        };
        let op = TargetLogprobGrad {
            targets: self.targets.clone(),
            lse: &stats.lse,
        };
        Ok(Some(logits.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `grad_logits[i, j] = g_i · (1[j = target_i] − exp(x_ij − lse_i))`.
struct TargetLogprobGrad<'a> {
    targets: Arc<Vec<u32>>,
    lse: &'a [f32],
}

impl CustomOp2 for TargetLogprobGrad<'_> {
    fn name(&self) -> &'static str {
        "target-logprob-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let (n, v) = l1.shape().dims2()?;
        if g.len() != n {
            bail!("target-logprob-grad: {} gradients for {n} rows", g.len());
        }
        let mut out = vec![0f32; n * v];
        out.par_chunks_mut(v).enumerate().for_each(|(i, o)| {
            let (lse, gi) = (self.lse[i], g[i]);
            for (o, &xj) in o.iter_mut().zip(&x[i * v..(i + 1) * v]) {
                *o = -gi * (xj - lse).exp();
            }
            o[self.targets[i] as usize] += gi;
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Per-row log-prob of the target and the detached `log Σ_v p_v²` (the WPO term's normaliser),
/// from one pass over the logits.
///
/// # Shapes
/// `logits`: `[N, V]` f32 on the CPU, `targets`: `N` ids → (`[N]` with gradient, `[N]` detached).
pub fn target_logprobs(logits: &Tensor, targets: Vec<u32>) -> Result<(Tensor, Tensor)> {
    let stats = Arc::new(OnceLock::new());
    let op = TargetLogprob {
        targets: Arc::new(targets),
        stats: stats.clone(),
    };
    let logp = logits.contiguous()?.apply_op1(op)?;
    let Some(stats) = stats.get() else {
        bail!("target-logprob: the forward left no row statistics");
    };
    let n = stats.log_sq.len();
    let log_sq = Tensor::from_slice(&stats.log_sq, n, logits.device())?;
    Ok((logp, log_sq))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::super::testing::{grads_of, randn, rel_diff};
    use crate::model::score::token_logprobs_composed;

    fn targets(n: usize, v: usize) -> Vec<u32> {
        (0..n).map(|i| ((i * 7919 + 3) % v) as u32).collect()
    }

    fn as_column(ids: &[u32]) -> candle_core::Result<Tensor> {
        Tensor::from_slice(ids, (ids.len(), 1), &Device::Cpu)
    }

    #[test]
    fn target_logprobs_equal_the_composed_logprobs_and_aligned_terms() -> candle_core::Result<()> {
        let (n, v) = (9, 1000);
        let logits = randn(&[n, v], 3.0)?;
        let ids = targets(n, v);
        let (logp, log_sq) = super::target_logprobs(&logits, ids.clone())?;
        let (ref_logp, ref_aligned) = token_logprobs_composed(&logits, &as_column(&ids)?)?;
        let d = rel_diff(&logp, &ref_logp)?;
        assert!(d <= 1e-6, "log-probs: relative difference {d}");
        let d = rel_diff(&(&logp - &log_sq)?, &ref_aligned)?;
        assert!(d <= 1e-6, "aligned terms: relative difference {d}");
        Ok(())
    }

    #[test]
    fn target_logprob_gradient_equals_the_composed_gradient() -> candle_core::Result<()> {
        let (n, v) = (9, 1000);
        let logits = Var::from_tensor(&randn(&[n, v], 3.0)?)?;
        let ids = targets(n, v);
        let column = as_column(&ids)?;
        let probe = randn(&[n], 1.0)?;
        let fused = grads_of(&[&logits], &probe, |t| {
            Ok(super::target_logprobs(&t[0], ids.clone())?.0)
        })?;
        let composed = grads_of(&[&logits], &probe, |t| {
            Ok(token_logprobs_composed(&t[0], &column)?.0)
        })?;
        let d = rel_diff(&fused[0], &composed[0])?;
        assert!(d <= 1e-5, "relative difference {d}");
        Ok(())
    }

    #[test]
    fn target_logprobs_reject_a_target_outside_the_vocabulary() -> candle_core::Result<()> {
        let logits = randn(&[2, 5], 1.0)?;
        assert!(super::target_logprobs(&logits, vec![1, 5]).is_err());
        Ok(())
    }
}
