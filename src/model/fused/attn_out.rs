//! Attention's `probs · v` written straight into the `[B, T, heads·D]` layout the output
//! projection reads: the composed version keeps the `[B, heads, T, D]` product and a transposed
//! copy of it.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{f32_slice, mm};

struct AttnOut {
    /// Query positions `T`; `R / T` query heads share each KV group.
    t: usize,
}

impl CustomOp2 for AttnOut {
    fn name(&self) -> &'static str {
        "attention-out"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, v) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        let (b, g, r, s) = l1.shape().dims4()?;
        let (vb, vg, vs, d) = l2.shape().dims4()?;
        let t = self.t;
        if (vb, vg, vs) != (b, g, s) || t == 0 || r % t != 0 {
            bail!("attention-out: probs {:?}, v {:?}", l1.dims(), l2.dims());
        }
        let (rep, width) = (r / t, g * (r / t) * d);
        let mut out = vec![0f32; b * t * width];
        // One task per batch row: its `T × width` block holds every head of every position.
        out.par_chunks_mut(t * width)
            .enumerate()
            .for_each(|(bi, block)| {
                for gi in 0..g {
                    let bg = bi * g + gi;
                    let vb = &v[bg * s * d..(bg + 1) * s * d];
                    for j in 0..rep {
                        let pb = &p[(bg * r + j * t) * s..(bg * r + (j + 1) * t) * s];
                        let col = (gi * rep + j) * d;
                        // SAFETY: rows i < t of the destination start at i·width + col and hold
                        // d elements inside `block` (col + d ≤ width); pb is t×s and vb s×d,
                        // both row-major.
                        unsafe {
                            mm(
                                (t, d, s),
                                (block.as_mut_ptr().add(col), 1, width as isize),
                                (pb.as_ptr(), 1, s as isize),
                                (vb.as_ptr(), 1, d as isize),
                                false,
                            )
                        };
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, t, width))))
    }

    fn bwd(
        &self,
        probs: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, g, r, _) = probs.dims4()?;
        let d = v.dim(3)?;
        let heads = g * (r / self.t);
        let grad = grad
            .reshape((b, self.t, heads, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, g, r, d))?;
        let d_probs = grad.matmul(&v.t()?)?;
        let d_v = probs.t()?.matmul(&grad)?;
        Ok((Some(d_probs), Some(d_v)))
    }
}

/// `probs · v` per KV group, laid out as `[B, T, heads · D]` (head `g·R/T + j` reads rows
/// `j·T .. (j+1)·T` of group `g`).
///
/// # Shapes
/// `probs`: `[B, G, R, S]` with `R` a multiple of `t`, `v`: `[B, G, S, D]`, f32 on the CPU →
/// `[B, t, G·(R/t)·D]`.
pub fn attention_out(probs: &Tensor, v: &Tensor, t: usize) -> Result<Tensor> {
    probs
        .contiguous()?
        .apply_op2(&v.contiguous()?, AttnOut { t })
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::super::testing::{grads_of, randn, rel_diff};
    use super::attention_out;

    /// probs `[2, 3, 2·5, 7]` (two heads per group, T = 5), v `[2, 3, 7, 4]`.
    fn composed(p: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        p.matmul(v)?
            .reshape((2, 6, 5, 4))?
            .transpose(1, 2)?
            .reshape((2, 5, 24))
    }

    #[test]
    fn fused_attention_output_equals_matmul_and_transpose() -> candle_core::Result<()> {
        let (p, v) = (randn(&[2, 3, 10, 7], 1.0)?, randn(&[2, 3, 7, 4], 1.0)?);
        let d = rel_diff(&attention_out(&p, &v, 5)?, &composed(&p, &v)?)?;
        assert!(d <= 1e-6, "relative difference {d}");
        Ok(())
    }

    #[test]
    fn fused_attention_output_gradients_equal_the_composed_gradients() -> candle_core::Result<()> {
        let p = Var::from_tensor(&randn(&[2, 3, 10, 7], 1.0)?)?;
        let v = Var::from_tensor(&randn(&[2, 3, 7, 4], 1.0)?)?;
        let probe = randn(&[2, 5, 24], 1.0)?;
        let fused = grads_of(&[&p, &v], &probe, |t| attention_out(&t[0], &t[1], 5))?;
        let reference = grads_of(&[&p, &v], &probe, |t| composed(&t[0], &t[1]))?;
        for (a, b) in fused.iter().zip(&reference) {
            let d = rel_diff(a, b)?;
            assert!(d <= 1e-5, "relative difference {d}");
        }
        Ok(())
    }
}
