//! Softmax over the last dimension with a backward from the output alone,
//! `grad_in = y · (g − Σ g·y)` (the composed version keeps the shifted input and its exponential).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::f32_slice;

struct SoftmaxLast;

/// Writes `softmax(row)` into `out`.
fn softmax_row(row: &[f32], out: &mut [f32]) {
    out.copy_from_slice(row);
    softmax_in_place(out);
}

/// Replaces `out` by its softmax. Masked entries (−∞ in a row with a finite maximum) are set to
/// the 0 that `exp` would give without calling it: half of a causal row, the bits unchanged.
pub(super) fn softmax_in_place(out: &mut [f32]) {
    let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    let skip_masked = max.is_finite();
    for o in out.iter_mut() {
        *o = if skip_masked && *o == f32::NEG_INFINITY {
            0.0
        } else {
            (*o - max).exp()
        };
        sum += *o;
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "softmax-last"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(o, row)| softmax_row(row, o));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(
            &grad.contiguous()?,
            &SoftmaxGrad { scale: 1.0 },
        )?))
    }
}

/// `grad_in = scale · y · (g − Σ g·y)` per row, from the output `y = softmax(scale · x + c)` and
/// its gradient `g`.
pub(super) struct SoftmaxGrad {
    pub scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-last-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        if y.len() != g.len() {
            bail!(
                "softmax-last-grad: {} outputs, {} gradients",
                y.len(),
                g.len()
            );
        }
        let n = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(n)
            .zip(y.par_chunks(n).zip(g.par_chunks(n)))
            .for_each(|(o, (y, g))| {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for ((o, y), g) in o.iter_mut().zip(y).zip(g) {
                    *o = self.scale * y * (g - dot);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Softmax over the last dimension.
///
/// # Shapes
/// `[.., N]` f32 on the CPU → `[.., N]`.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(SoftmaxLast)
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::super::testing::{grads_of, randn, rel_diff};
    use crate::model::ops::softmax_last_composed;

    #[test]
    fn softmax_forward_equals_the_composed_softmax() -> candle_core::Result<()> {
        let x = randn(&[2, 3, 5, 37], 4.0)?;
        let d = rel_diff(&super::softmax_last(&x)?, &softmax_last_composed(&x)?)?;
        assert!(d <= 1e-6, "relative difference {d}");
        Ok(())
    }

    #[test]
    fn softmax_gradient_equals_the_composed_gradient() -> candle_core::Result<()> {
        let x = Var::from_tensor(&randn(&[2, 3, 5, 37], 4.0)?)?;
        let probe = randn(&[2, 3, 5, 37], 1.0)?;
        let fused = grads_of(&[&x], &probe, |t| super::softmax_last(&t[0]))?;
        let composed = grads_of(&[&x], &probe, |t| softmax_last_composed(&t[0]))?;
        let d = rel_diff(&fused[0], &composed[0])?;
        assert!(d <= 1e-5, "relative difference {d}");
        Ok(())
    }

    #[test]
    fn softmax_of_masked_rows_gives_zero_where_the_mask_is_minus_infinity()
    -> candle_core::Result<()> {
        let x =
            candle_core::Tensor::new(&[[0f32, f32::NEG_INFINITY, 1.0]], &candle_core::Device::Cpu)?;
        let y = super::softmax_last(&x)?.to_vec2::<f32>()?;
        assert_eq!(y[0][1], 0.0);
        assert!((y[0][0] + y[0][2] - 1.0).abs() < 1e-6);
        Ok(())
    }

    /// A causal row (the second half −∞) and a row with −∞ only: the softmax that skips `exp` on
    /// masked entries gives the bits of the one that exponentiates every entry.
    #[test]
    fn skipping_masked_entries_keeps_the_bits_of_exponentiating_them() {
        let every_entry = |row: &[f32]| -> Vec<f32> {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
            let inv = 1.0 / e.iter().sum::<f32>();
            e.iter().map(|x| x * inv).collect()
        };
        let causal: Vec<f32> = (0..64)
            .map(|i| {
                if i < 37 {
                    (i as f32 * 0.731).sin() * 3.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        for row in [causal, vec![f32::NEG_INFINITY; 5]] {
            let mut fast = row.clone();
            super::softmax_in_place(&mut fast);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&every_entry(&row)));
        }
    }
}
