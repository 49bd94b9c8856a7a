//! Rotary embedding with the heads transpose folded in: `[B, T, heads, D]` in, `[B, heads, T, D]`
//! rotated out. Autograd keeps only the input (the composed version keeps a contiguous copy, the
//! two halves, the rotated copy and both products); the backward is the inverse rotation.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::f32_slice;

/// `cos` and `sin` of every (row, position, frequency), HF's non-interleaved layout: frequency
/// `i` rotates dims `i` and `i + D/2`.
///
/// # Shapes
/// `cos`, `sin`: `[B, T, D/2]` row-major.
#[derive(Debug)]
pub struct RopeTable {
    rows: usize,
    len: usize,
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// The table for `positions` (`[B, T]`, u32), with the same f32 arithmetic as
    /// [`crate::model::ops::rope_tables`], so the fused and composed rotations agree bit for bit.
    pub fn new(positions: &Tensor, inv_freq: &[f32]) -> Result<Arc<RopeTable>> {
        let (rows, len) = positions.dims2()?;
        let half = inv_freq.len();
        let pos = positions.flatten_all()?.to_vec1::<u32>()?;
        let freqs = pos
            .iter()
            .flat_map(|&p| inv_freq.iter().map(move |&f| p as f32 * f));
        let (cos, sin) = freqs.map(|x| (x.cos(), x.sin())).unzip();
        Ok(Arc::new(RopeTable {
            rows,
            len,
            half,
            cos,
            sin,
        }))
    }
}

/// `forward`: `[B, T, H, D]` → `[B, H, T, D]` rotated by +θ; otherwise `[B, H, T, D]` →
/// `[B, T, H, D]` rotated by −θ (the transpose of the forward, i.e. its gradient).
struct Rope {
    table: Arc<RopeTable>,
    forward: bool,
}

impl Rope {
    /// Rotates one `D`-row by the angles of table row `at`.
    fn rotate(&self, src: &[f32], dst: &mut [f32], at: usize) {
        let h = self.table.half;
        let (cos, sin) = (
            &self.table.cos[at * h..(at + 1) * h],
            &self.table.sin[at * h..(at + 1) * h],
        );
        let (x1, x2) = src.split_at(h);
        let (y1, y2) = dst.split_at_mut(h);
        for i in 0..h {
            let (c, s) = (cos[i], sin[i]);
            if self.forward {
                y1[i] = x1[i] * c - x2[i] * s;
                y2[i] = x2[i] * c + x1[i] * s;
            } else {
                y1[i] = x1[i] * c + x2[i] * s;
                y2[i] = x2[i] * c - x1[i] * s;
            }
        }
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope-transpose"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let (b, d1, d2, d) = layout.shape().dims4()?;
        let t = &self.table;
        let time = if self.forward { d1 } else { d2 };
        if d != 2 * t.half || time != t.len || (t.rows != b && t.rows != 1) {
            bail!(
                "rope: input {:?} for a table of {:?}",
                layout.dims(),
                (t.rows, t.len)
            );
        }
        let mut out = vec![0f32; x.len()];
        // Output rows are [b, d2, d1]; the source row of output (b, j, i) is (b, i, j).
        out.par_chunks_mut(d1 * d)
            .enumerate()
            .for_each(|(bj, block)| {
                let (bi, j) = (bj / d2, bj % d2);
                for (i, dst) in block.chunks_mut(d).enumerate() {
                    let src = ((bi * d1 + i) * d2 + j) * d;
                    let pos = if self.forward { i } else { j };
                    let row = if t.rows == 1 { 0 } else { bi };
                    self.rotate(&x[src..src + d], dst, row * t.len + pos);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, d2, d1, d))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Rope {
            table: self.table.clone(),
            forward: !self.forward,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// Rotates `x` by the table's angles and moves the heads before time.
///
/// # Shapes
/// `x`: `[B, T, H, D]` f32 on the CPU, `table` of `B` (or 1) rows and `T` positions →
/// `[B, H, T, D]` (contiguous).
pub fn rope_transpose(x: &Tensor, table: &Arc<RopeTable>) -> Result<Tensor> {
    let op = Rope {
        table: table.clone(),
        forward: true,
    };
    x.contiguous()?.apply_op1(op)
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::super::testing::{grads_of, randn, rel_diff};
    use super::{RopeTable, rope_transpose};
    use crate::model::ops::{apply_rope, default_inv_freq, rope_tables};

    fn positions() -> candle_core::Result<Tensor> {
        Tensor::new(
            &[[0u32, 1, 2, 3, 4], [7, 8, 9, 3, 4]],
            &candle_core::Device::Cpu,
        )
    }

    fn composed(x: &Tensor) -> candle_core::Result<Tensor> {
        let (cos, sin) = rope_tables(&positions()?, &default_inv_freq(8, 10_000.0))?;
        apply_rope(&x.transpose(1, 2)?.contiguous()?, &cos, &sin)
    }

    #[test]
    fn fused_rope_equals_the_composed_rotation_bit_for_bit() -> candle_core::Result<()> {
        let x = randn(&[2, 5, 3, 8], 3.0)?;
        let table = RopeTable::new(&positions()?, &default_inv_freq(8, 10_000.0))?;
        let fused = rope_transpose(&x, &table)?;
        let d = (fused - composed(&x)?)?.abs()?.flatten_all()?.max(0)?;
        assert_eq!(d.to_scalar::<f32>()?, 0.0);
        Ok(())
    }

    #[test]
    fn fused_rope_gradient_equals_the_composed_gradient() -> candle_core::Result<()> {
        let x = Var::from_tensor(&randn(&[2, 5, 3, 8], 3.0)?)?;
        let probe = randn(&[2, 3, 5, 8], 1.0)?;
        let table = RopeTable::new(&positions()?, &default_inv_freq(8, 10_000.0))?;
        let fused = grads_of(&[&x], &probe, |t| rope_transpose(&t[0], &table))?;
        let reference = grads_of(&[&x], &probe, |t| composed(&t[0]))?;
        let d = rel_diff(&fused[0], &reference[0])?;
        assert!(d <= 1e-6, "relative difference {d}");
        Ok(())
    }
}
