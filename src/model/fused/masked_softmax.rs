//! Attention's `softmax(scale · scores + mask)` as one op: autograd keeps the raw scores and the
//! probabilities, where scaling and masking as separate ops keep two more `[B, heads, T, S]`.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::f32_slice;
use super::softmax::{SoftmaxGrad, softmax_in_place};

struct MaskedSoftmax {
    scale: f32,
}

/// For each row of `x` (all dims but the last), the offset of its mask row; `mask` has x's rank
/// and each of its dims is 1 (broadcast) or x's.
fn mask_offsets(x: &Layout, mask: &Layout) -> Result<Vec<usize>> {
    let (xd, md) = (x.shape().dims(), mask.shape().dims());
    let s = xd.last().copied().unwrap_or(0);
    if xd.len() != md.len() || md.last() != Some(&s) {
        bail!("masked-softmax: mask {md:?} for scores {xd:?}");
    }
    let lead = &xd[..xd.len() - 1];
    let mut strides = vec![0usize; lead.len()];
    let mut step = s;
    for i in (0..lead.len()).rev() {
        match md[i] {
            1 => {}
            d if d == lead[i] => strides[i] = step,
            d => bail!(
                "masked-softmax: mask dim {i} is {d}, scores have {}",
                lead[i]
            ),
        }
        step *= md[i];
    }
    let rows: usize = lead.iter().product();
    let offsets = (0..rows)
        .map(|mut r| {
            let mut off = 0;
            for i in (0..lead.len()).rev() {
                off += (r % lead[i]) * strides[i];
                r /= lead[i];
            }
            off
        })
        .collect();
    Ok(offsets)
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let mask = f32_slice(s2, l2, self.name())?;
        let offsets = mask_offsets(l1, l2)?;
        let s = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(s)
            .zip(x.par_chunks(s).zip(offsets.par_iter()))
            .for_each(|(o, (row, &m))| {
                for ((o, x), m) in o.iter_mut().zip(row).zip(&mask[m..m + s]) {
                    *o = x * self.scale + m;
                }
                softmax_in_place(o);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = SoftmaxGrad { scale: self.scale };
        Ok((Some(res.apply_op2_no_bwd(&grad.contiguous()?, &op)?), None))
    }
}

/// `softmax(scale · x + mask)` over the last dimension; the mask gets no gradient.
///
/// # Shapes
/// `x`: `[.., S]` f32 on the CPU, `mask`: x's rank, each dim 1 or x's → like `x`.
pub fn masked_softmax(x: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let op = MaskedSoftmax {
        scale: scale as f32,
    };
    x.contiguous()?.apply_op2(&mask.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::super::testing::{grads_of, randn, rel_diff};
    use crate::model::causal_mask;
    use crate::model::ops::softmax_last_composed;

    fn composed(x: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
        softmax_last_composed(&(x * scale)?.broadcast_add(mask)?)
    }

    fn mask() -> candle_core::Result<Tensor> {
        causal_mask(5, 2, &candle_core::Device::Cpu)?.unsqueeze(1)
    }

    #[test]
    fn masked_softmax_equals_scaling_masking_and_the_composed_softmax() -> candle_core::Result<()> {
        let x = randn(&[2, 3, 2, 5, 7], 4.0)?;
        let d = rel_diff(
            &super::masked_softmax(&x, &mask()?, 0.125)?,
            &composed(&x, &mask()?, 0.125)?,
        )?;
        assert!(d <= 1e-6, "relative difference {d}");
        Ok(())
    }

    #[test]
    fn masked_softmax_gradient_equals_the_composed_gradient() -> candle_core::Result<()> {
        let x = Var::from_tensor(&randn(&[2, 3, 2, 5, 7], 4.0)?)?;
        let probe = randn(&[2, 3, 2, 5, 7], 1.0)?;
        let m = mask()?;
        let fused = grads_of(&[&x], &probe, |t| super::masked_softmax(&t[0], &m, 0.125))?;
        let reference = grads_of(&[&x], &probe, |t| composed(&t[0], &m, 0.125))?;
        let d = rel_diff(&fused[0], &reference[0])?;
        assert!(d <= 1e-5, "relative difference {d}");
        Ok(())
    }

    #[test]
    fn masked_softmax_takes_a_mask_per_batch_row() -> candle_core::Result<()> {
        let x = randn(&[2, 3, 1, 4, 4], 2.0)?;
        let m = randn(&[2, 1, 1, 4, 4], 2.0)?;
        let d = rel_diff(
            &super::masked_softmax(&x, &m, 0.5)?,
            &composed(&x, &m, 0.5)?,
        )?;
        assert!(d <= 1e-6, "relative difference {d}");
        Ok(())
    }
}
