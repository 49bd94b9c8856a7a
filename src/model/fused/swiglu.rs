//! SwiGLU's `silu(gate) · up` as one op: autograd keeps the two inputs, where the composed version
//! also keeps `silu(gate)`, an `[.., intermediate]` tensor per layer.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::f32_slice;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `silu(g)` with candle's f32 formula, so the fused forward equals the composed one bit for bit.
fn silu(g: f32) -> f32 {
    g / (1.0 + (-g).exp())
}

struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        if l1.shape() != l2.shape() {
            bail!("silu-mul: gate {:?}, up {:?}", l1.dims(), l2.dims());
        }
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
            .for_each(|(o, (g, u))| {
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = silu(g) * u;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let both = gate.apply_op3_no_bwd(up, &grad, &SiluMulGrad)?;
        let n = gate.elem_count();
        let flat = both.flatten_all()?;
        let dg = flat.narrow(0, 0, n)?.reshape(gate.shape())?;
        let du = flat.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((Some(dg), Some(du)))
    }
}

/// The gradients of `silu(g) · u` for an output gradient `d`, as one `[2, ..]` tensor:
/// `d · u · σ(g)·(1 + g·(1 − σ(g)))` for the gate, then `d · silu(g)` for up.
struct SiluMulGrad;

impl CustomOp3 for SiluMulGrad {
    fn name(&self) -> &'static str {
        "silu-mul-grad"
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
        let g = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        let d = f32_slice(s3, l3, self.name())?;
        let n = g.len();
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        dg.par_chunks_mut(CHUNK)
            .zip(du.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
            .zip(d.par_chunks(CHUNK))
            .for_each(|(((dg, du), (g, u)), d)| {
                for i in 0..g.len() {
                    let s = 1.0 / (1.0 + (-g[i]).exp());
                    dg[i] = d[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                    du[i] = d[i] * silu(g[i]);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

/// `silu(gate) · up`, elementwise.
///
/// # Shapes
/// `gate`, `up`: the same shape, f32 on the CPU → that shape.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul)
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::super::testing::{grads_of, randn, rel_diff};
    use super::silu_mul;

    fn composed(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
        g.silu()? * u
    }

    #[test]
    fn fused_swiglu_equals_the_composed_product_bit_for_bit() -> candle_core::Result<()> {
        let (g, u) = (randn(&[3, 5, 40_000], 4.0)?, randn(&[3, 5, 40_000], 1.0)?);
        let d = (silu_mul(&g, &u)? - composed(&g, &u)?)?
            .abs()?
            .flatten_all()?;
        assert_eq!(d.max(0)?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }

    #[test]
    fn fused_swiglu_gradients_equal_the_composed_gradients() -> candle_core::Result<()> {
        let g = Var::from_tensor(&randn(&[4, 7, 9], 4.0)?)?;
        let u = Var::from_tensor(&randn(&[4, 7, 9], 1.0)?)?;
        let probe = randn(&[4, 7, 9], 1.0)?;
        let fused = grads_of(&[&g, &u], &probe, |t| silu_mul(&t[0], &t[1]))?;
        let reference = grads_of(&[&g, &u], &probe, |t| composed(&t[0], &t[1]))?;
        for (a, b) in fused.iter().zip(&reference) {
            let d = rel_diff(a, b)?;
            assert!(d <= 1e-5, "relative difference {d}");
        }
        Ok(())
    }
}
