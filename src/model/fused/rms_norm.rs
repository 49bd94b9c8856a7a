//! RMSNorm `w · x / sqrt(mean(x²) + eps)` with an exact backward that keeps only `x` (the
//! inverse rms of a row is recomputed from it), where the composed version keeps `x²`, `x·inv`
//! and the output per call.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::f32_slice;

struct RmsNorm {
    eps: f32,
}

/// `1 / sqrt(mean(row²) + eps)`.
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let sq: f32 = row.iter().map(|x| x * x).sum();
    1.0 / (sq / row.len() as f32 + eps).sqrt()
}

/// The row length `H` of `x` and its weight, checked against each other.
fn row_len(lx: &Layout, lw: &Layout, op: &str) -> Result<usize> {
    let h = lx.shape().dims().last().copied().unwrap_or(0);
    if h == 0 || lw.shape().dims() != [h] {
        bail!("{op}: weight {:?} for rows of {h}", lw.shape());
    }
    Ok(h)
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let h = row_len(l1, l2, self.name())?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .for_each(|(o, row)| {
                let r = inv_rms(row, self.eps);
                for ((o, x), w) in o.iter_mut().zip(row).zip(w) {
                    *o = x * r * w;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let eps = self.eps;
        let gx = x.apply_op3_no_bwd(w, &grad, &RmsNormGradX { eps })?;
        let gw = x.apply_op2_no_bwd(&grad, &RmsNormGradW { eps })?;
        Ok((Some(gx), Some(gw)))
    }
}

/// `grad_x = r·(w⊙g) − x·r³·Σ(w⊙g⊙x)/H` per row, `r` the row's inverse rms.
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "rms-norm-grad-x"
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
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        let h = row_len(l1, l2, self.name())?;
        if g.len() != x.len() {
            bail!(
                "rms-norm-grad-x: {} gradients for {} inputs",
                g.len(),
                x.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h).zip(g.par_chunks(h)))
            .for_each(|(o, (x, g))| {
                let r = inv_rms(x, self.eps);
                let dot: f32 = x.iter().zip(g).zip(w).map(|((x, g), w)| x * g * w).sum();
                let c = r * r * r * dot / h as f32;
                for (((o, x), g), w) in o.iter_mut().zip(x).zip(g).zip(w) {
                    *o = r * w * g - x * c;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `grad_w = Σ_rows g ⊙ x · r`.
struct RmsNormGradW {
    eps: f32,
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "rms-norm-grad-w"
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
        let h = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        if g.len() != x.len() {
            bail!(
                "rms-norm-grad-w: {} gradients for {} inputs",
                g.len(),
                x.len()
            );
        }
        // Partial sums over fixed blocks of rows, added in block order: the result does not depend
        // on how rayon schedules the blocks or on the thread count (bit-exact reruns).
        let block = ROWS_PER_BLOCK * h;
        let partials: Vec<Vec<f32>> = x
            .par_chunks(block)
            .zip(g.par_chunks(block))
            .map(|(xb, gb)| {
                let mut acc = vec![0f32; h];
                for (x, g) in xb.chunks(h).zip(gb.chunks(h)) {
                    let r = inv_rms(x, self.eps);
                    for ((a, x), g) in acc.iter_mut().zip(x).zip(g) {
                        *a += g * x * r;
                    }
                }
                acc
            })
            .collect();
        let mut out = vec![0f32; h];
        for p in &partials {
            out.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        Ok((CpuStorage::F32(out), Shape::from(h)))
    }
}

/// Rows summed sequentially inside one block of the weight gradient.
const ROWS_PER_BLOCK: usize = 64;

/// RMSNorm as in HF Llama.
///
/// # Shapes
/// `x`: `[.., H]`, `w`: `[H]` (f32 on the CPU) → `[.., H]`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let op = RmsNorm { eps: eps as f32 };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::super::testing::{grads_of, randn, rel_diff};
    use crate::model::ops::rms_norm_composed;

    #[test]
    fn rms_norm_forward_equals_the_composed_rms_norm() -> candle_core::Result<()> {
        let x = randn(&[3, 7, 64], 2.0)?;
        let w = randn(&[64], 1.0)?;
        let d = rel_diff(
            &super::rms_norm(&x, &w, 1e-5)?,
            &rms_norm_composed(&x, &w, 1e-5)?,
        )?;
        assert!(d <= 1e-6, "relative difference {d}");
        Ok(())
    }

    #[test]
    fn rms_norm_gradients_equal_the_composed_gradients() -> candle_core::Result<()> {
        let x = Var::from_tensor(&randn(&[3, 7, 64], 2.0)?)?;
        let w = Var::from_tensor(&randn(&[64], 1.0)?)?;
        let probe = randn(&[3, 7, 64], 1.0)?;
        let fused = grads_of(&[&x, &w], &probe, |t| super::rms_norm(&t[0], &t[1], 1e-5))?;
        let composed = grads_of(&[&x, &w], &probe, |t| rms_norm_composed(&t[0], &t[1], 1e-5))?;
        for (name, (f, c)) in ["x", "w"].iter().zip(fused.iter().zip(&composed)) {
            let d = rel_diff(f, c)?;
            assert!(d <= 1e-5, "gradient of {name}: relative difference {d}");
        }
        Ok(())
    }

    #[test]
    fn rms_norm_weight_gradient_has_the_same_bits_on_one_and_four_threads()
    -> candle_core::Result<()> {
        // 1,000 rows: many blocks, so rayon's scheduling would show in a tree-shaped reduction.
        let x = Var::from_tensor(&randn(&[4, 250, 64], 2.0)?)?;
        let w = Var::from_tensor(&randn(&[64], 1.0)?)?;
        let probe = randn(&[4, 250, 64], 1.0)?;
        let grad_w = |threads: usize| -> candle_core::Result<Vec<u32>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let g = pool
                .install(|| grads_of(&[&x, &w], &probe, |t| super::rms_norm(&t[0], &t[1], 1e-5)))?;
            Ok(g[1].to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect())
        };
        assert_eq!(grad_w(1)?, grad_w(4)?);
        Ok(())
    }
}
