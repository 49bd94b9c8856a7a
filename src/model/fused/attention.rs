//! Attention probabilities `softmax(scale · q·kᵀ + mask)` as one op: autograd keeps q, k and the
//! probabilities, where a matmul followed by a masked softmax also keeps the raw scores, one
//! `[B, heads, T, S]` tensor per layer.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::softmax::{SoftmaxGrad, softmax_in_place};
use super::{AttnDims, attn_dims, f32_slice, mm};

struct AttnProbs {
    scale: f32,
}

impl CustomOp3 for AttnProbs {
    fn name(&self) -> &'static str {
        "attention-probs"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        let mask = f32_slice(s3, l3, self.name())?;
        let AttnDims { g, r, t, s, d, bm } = attn_dims(self.name(), l1, l2, l3, 1)?;
        let mut out = vec![0f32; q.len() / d * s];
        out.par_chunks_mut(r * s).enumerate().for_each(|(bg, o)| {
            let (qb, kb) = (
                &q[bg * r * d..(bg + 1) * r * d],
                &k[bg * s * d..(bg + 1) * s * d],
            );
            // SAFETY: o is r×s row-major, qb r×d row-major, kb s×d row-major read as kᵀ (d×s,
            // column stride d); the slices have exactly those lengths.
            unsafe {
                mm(
                    (r, s, d),
                    (o.as_mut_ptr(), 1, s as isize),
                    (qb.as_ptr(), 1, d as isize),
                    (kb.as_ptr(), d as isize, 1),
                    false,
                )
            };
            let mrow = if bm == 1 { 0 } else { bg / g };
            for (i, row) in o.chunks_mut(s).enumerate() {
                let m = &mask[(mrow * t + i % t) * s..][..s];
                for (x, m) in row.iter_mut().zip(m) {
                    *x = *x * self.scale + m;
                }
                softmax_in_place(row);
            }
        });
        let (b, _, _, _) = l1.shape().dims4()?;
        Ok((CpuStorage::F32(out), Shape::from((b, g, r, s))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = SoftmaxGrad { scale: self.scale };
        let ds = res.apply_op2_no_bwd(&grad.contiguous()?, &op)?;
        let dq = ds.matmul(k)?;
        let dk = ds.t()?.matmul(q)?;
        Ok((Some(dq), Some(dk), None))
    }
}

/// `softmax(scale · q·kᵀ + mask)` over the keys; the mask gets no gradient. Query heads that
/// share a KV head are stacked in `q`'s third dim (`heads per group × T` rows).
///
/// # Shapes
/// `q`: `[B, G, R, D]`, `k`: `[B, G, S, D]`, `mask`: `[B or 1, 1, T, S]` with `R` a multiple
/// of `T`, all f32 on the CPU → `[B, G, R, S]`.
pub fn attention_probs(q: &Tensor, k: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let op = AttnProbs {
        scale: scale as f32,
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &mask.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::super::testing::{grads_of, randn, rel_diff};
    use super::attention_probs;
    use crate::model::ops::softmax_last_composed;

    /// q `[2, 3, 2·5, 4]` (two heads per group, T = 5), k `[2, 3, 7, 4]`.
    fn composed(q: &Tensor, k: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let scores = q.matmul(&k.t()?)?.reshape((2, 3, 2, 5, 7))?;
        let x = (scores * 0.5)?.broadcast_add(&mask.unsqueeze(1)?)?;
        softmax_last_composed(&x)?.reshape((2, 3, 10, 7))
    }

    fn mask() -> candle_core::Result<Tensor> {
        let m = randn(&[2, 1, 5, 7], 2.0)?;
        let hidden = Tensor::new(&[0f32, 0., 0., 0., 0., f32::NEG_INFINITY, 0.], m.device())?;
        m.broadcast_add(&hidden)
    }

    #[test]
    fn fused_attention_probs_equal_matmul_scale_mask_softmax() -> candle_core::Result<()> {
        let (q, k, m) = (
            randn(&[2, 3, 10, 4], 1.0)?,
            randn(&[2, 3, 7, 4], 1.0)?,
            mask()?,
        );
        let d = rel_diff(&attention_probs(&q, &k, &m, 0.5)?, &composed(&q, &k, &m)?)?;
        assert!(d <= 1e-6, "relative difference {d}");
        let shared = m.narrow(0, 0, 1)?;
        let d = rel_diff(
            &attention_probs(&q, &k, &shared, 0.5)?,
            &composed(&q, &k, &shared.repeat((2, 1, 1, 1))?)?,
        )?;
        assert!(d <= 1e-6, "one mask for every row: relative difference {d}");
        Ok(())
    }

    #[test]
    fn fused_attention_probs_gradients_equal_the_composed_gradients() -> candle_core::Result<()> {
        let q = Var::from_tensor(&randn(&[2, 3, 10, 4], 1.0)?)?;
        let k = Var::from_tensor(&randn(&[2, 3, 7, 4], 1.0)?)?;
        let (m, probe) = (mask()?, randn(&[2, 3, 10, 7], 1.0)?);
        let fused = grads_of(&[&q, &k], &probe, |t| {
            attention_probs(&t[0], &t[1], &m, 0.5)
        })?;
        let reference = grads_of(&[&q, &k], &probe, |t| composed(&t[0], &t[1], &m))?;
        for (a, b) in fused.iter().zip(&reference) {
            let d = rel_diff(a, b)?;
            assert!(d <= 1e-5, "relative difference {d}");
        }
        Ok(())
    }
}
