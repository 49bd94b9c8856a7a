//! Attention `softmax(scale · q·kᵀ + mask) · v` as one op that never stores the probabilities:
//! the forward keeps its output only, and the backward recomputes the probabilities one block of
//! query rows at a time. A layer then holds `O(R·D)` for its gradient instead of the
//! `[B, G, R, S]` probabilities, the term that grows with the square of the sequence length.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail};
use rayon::prelude::*;

use super::softmax::softmax_in_place;
use super::{AttnDims, attn_dims, f32_slice, mm};

/// Query rows per block: a task's only `S`-long buffers are one block of probabilities and of
/// their gradient.
const ROWS: usize = 64;

struct Flash {
    scale: f32,
}

/// The mask and its [`visible_ends`].
type Masks<'a> = (&'a [f32], &'a [usize]);

/// One group's operands: its `r × d` queries and `s × 2d` keys-and-values, the mask rows, and
/// for each mask row the end of its visible keys ([`visible_ends`]).
struct Group<'a> {
    q: &'a [f32],
    kv: &'a [f32],
    mask: &'a [f32],
    ends: &'a [usize],
}

/// For each mask row (`s` keys), one past the last key that is not −∞ (0 when every key is):
/// the keys after it get probability exactly 0, so every product stops there. Found once per
/// call; every block of query rows in forward and backward looks it up.
fn visible_ends(mask: &[f32], s: usize) -> Vec<usize> {
    mask.chunks(s)
        .map(|m| {
            m.iter()
                .rposition(|&x| x != f32::NEG_INFINITY)
                .map_or(0, |j| j + 1)
        })
        .collect()
}

impl<'a> Group<'a> {
    /// Group `bg` (batch row × KV group) of the operands.
    /// `m` is the whole mask and `ends` its [`visible_ends`].
    fn of(dm: AttnDims, bg: usize, (q, kv): (&'a [f32], &'a [f32]), (m, ends): Masks<'a>) -> Self {
        let mrow = if dm.bm == 1 { 0 } else { bg / dm.g };
        Group {
            q: &q[bg * dm.r * dm.d..(bg + 1) * dm.r * dm.d],
            kv: &kv[bg * dm.s * 2 * dm.d..(bg + 1) * dm.s * 2 * dm.d],
            mask: &m[mrow * dm.t * dm.s..(mrow + 1) * dm.t * dm.s],
            ends: &ends[mrow * dm.t..(mrow + 1) * dm.t],
        }
    }

    /// The keys that rows `row0 .. row0 + n` can see at all: one past the last key whose mask is
    /// not −∞ in any of those rows (a causal block sees none of the keys after its last row).
    /// Probabilities past it are exactly 0, so every product below stops there.
    fn visible(&self, dm: AttnDims, row0: usize, n: usize) -> usize {
        (row0..row0 + n)
            .map(|i| self.ends[i % dm.t])
            .max()
            .unwrap_or(0)
    }

    /// Writes into the first `len` columns of `p` (`n × s`) the probabilities of query rows
    /// `row0 .. row0 + n` over the first `len` keys, the keys after them being masked.
    fn probs(
        &self,
        dm: AttnDims,
        scale: f32,
        (row0, n, len): (usize, usize, usize),
        p: &mut [f32],
    ) {
        let (s, d) = (dm.s, dm.d);
        // SAFETY: p is n×s row-major (the first len columns written); the queries rows row0.. are
        // n×d row-major inside q; kᵀ (d×len) reads kv's first d columns, column stride 2d.
        unsafe {
            mm(
                (n, len, d),
                (p.as_mut_ptr(), 1, s as isize),
                (self.q[row0 * d..].as_ptr(), 1, d as isize),
                (self.kv.as_ptr(), 2 * d as isize, 1),
                false,
            )
        };
        for (i, row) in p.chunks_mut(s).enumerate() {
            let m = &self.mask[((row0 + i) % dm.t) * s..][..len];
            let row = &mut row[..len];
            for (x, m) in row.iter_mut().zip(m) {
                *x = *x * scale + m;
            }
            softmax_in_place(row);
        }
    }
}

impl CustomOp3 for Flash {
    fn name(&self) -> &'static str {
        "flash-attention"
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
        let (q, kv, mask) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
            f32_slice(s3, l3, self.name())?,
        );
        let dm = attn_dims(self.name(), l1, l2, l3, 2)?;
        let (r, s, d) = (dm.r, dm.s, dm.d);
        let ends = visible_ends(mask, s);
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(r * d).enumerate().for_each(|(bg, o)| {
            let grp = Group::of(dm, bg, (q, kv), (mask, &ends));
            o.par_chunks_mut(ROWS * d)
                .enumerate()
                .for_each(|(blk, ob)| {
                    let (row0, n) = (blk * ROWS, ob.len() / d);
                    let len = grp.visible(dm, row0, n);
                    let mut p = vec![0f32; n * s];
                    grp.probs(dm, self.scale, (row0, n, len), &mut p);
                    // SAFETY: ob is n×d row-major, p n×s row-major, v (len×d) kv's last d columns,
                    // row stride 2d.
                    unsafe {
                        mm(
                            (n, d, len),
                            (ob.as_mut_ptr(), 1, d as isize),
                            (p.as_ptr(), 1, s as isize),
                            (grp.kv[d..].as_ptr(), 1, 2 * d as isize),
                            false,
                        )
                    };
                });
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        kv: &Tensor,
        mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // delta_i = Σ_j p_ij · dp_ij = do_i · o_i, the softmax gradient's row term.
        let grad = grad.contiguous()?;
        let delta = (&grad * res)?.sum_keepdim(3)?.contiguous()?;
        let (dq, dkv) = self.backward(&[q, kv, mask, &grad, &delta])?;
        Ok((Some(dq), Some(dkv), None))
    }
}

impl Flash {
    /// `dq` and `dkv` from q, kv, mask, the output's gradient `do` and `delta` (`[B, G, R, 1]`).
    fn backward(&self, t: &[&Tensor; 5]) -> Result<(Tensor, Tensor)> {
        let dm = attn_dims(
            "flash-attention",
            t[0].layout(),
            t[1].layout(),
            t[2].layout(),
            2,
        )?;
        let guards: Vec<_> = t.iter().map(|x| x.storage_and_layout()).collect();
        let data = guards
            .iter()
            .map(|(storage, layout)| match &**storage {
                Storage::Cpu(c) => f32_slice(c, layout, "flash-attention"),
                _ => bail!("flash-attention: expected a CPU tensor"),
            })
            .collect::<Result<Vec<&[f32]>>>()?;
        let [q, kv, mask, dout, delta] = data[..] else {
            bail!("flash-attention: five operands");
        };
        let (r, s, d) = (dm.r, dm.s, dm.d);
        let ends = visible_ends(mask, s);
        let mut dq = vec![0f32; q.len()];
        let mut dkv = vec![0f32; kv.len()];
        // Row chunks per group so that a batch of one still fills every thread.
        let groups = q.len() / (r * d);
        let per_group = (2 * rayon::current_num_threads()).div_ceil(groups.max(1));
        let chunk_rows = r.div_ceil(per_group).div_ceil(ROWS).max(1) * ROWS;
        dq.par_chunks_mut(r * d)
            .zip(dkv.par_chunks_mut(s * 2 * d))
            .enumerate()
            .for_each(|(bg, (dqg, dkvg))| {
                let grp = Group::of(dm, bg, (q, kv), (mask, &ends));
                let partials: Vec<Vec<f32>> = dqg
                    .par_chunks_mut(chunk_rows * d)
                    .enumerate()
                    .map(|(c, dqc)| {
                        let row0 = c * chunk_rows;
                        let rows = row0..row0 + dqc.len() / d;
                        let (o, dl) = (&dout[bg * r * d..], &delta[bg * r..]);
                        self.chunk_grads(dm, &grp, rows, (o, dl), dqc)
                    })
                    .collect();
                for part in partials {
                    dkvg.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
                }
            });
        let dev = t[0].device();
        Ok((
            Tensor::from_vec(dq, t[0].shape(), dev)?,
            Tensor::from_vec(dkv, t[1].shape(), dev)?,
        ))
    }

    /// Turns `dp` (`n × s`, its first `len` columns) into the scores' gradient
    /// `ds = scale · p · (dp − delta)`, row by row.
    fn scores_grad(&self, p: &[f32], dp: &mut [f32], deltas: &[f32], (s, len): (usize, usize)) {
        for ((pr, dpr), &dl) in p.chunks(s).zip(dp.chunks_mut(s)).zip(deltas) {
            for (g, y) in dpr[..len].iter_mut().zip(&pr[..len]) {
                *g = self.scale * y * (*g - dl);
            }
        }
    }

    /// The gradients of one chunk of query rows: writes `dq` of those rows into `dqc` and returns
    /// their contribution to the group's `dkv` (`s × 2d`).
    fn chunk_grads(
        &self,
        dm: AttnDims,
        grp: &Group,
        rows: std::ops::Range<usize>,
        (dout, delta): (&[f32], &[f32]),
        dqc: &mut [f32],
    ) -> Vec<f32> {
        let (s, d) = (dm.s, dm.d);
        let mut dkv = vec![0f32; s * 2 * d];
        let mut p = vec![0f32; ROWS * s];
        let mut dp = vec![0f32; ROWS * s];
        for row0 in rows.clone().step_by(ROWS) {
            let n = ROWS.min(rows.end - row0);
            let len = grp.visible(dm, row0, n);
            let (p, dp) = (&mut p[..n * s], &mut dp[..n * s]);
            grp.probs(dm, self.scale, (row0, n, len), p);
            let dob = &dout[row0 * d..(row0 + n) * d];
            // SAFETY (all four products, over the first len keys): p and dp are n×s row-major,
            // dob and the queries n×d row-major, k and v the s×d halves of kv (row stride 2d),
            // dqc's rows row0.. n×d inside the chunk, dkv s×2d row-major.
            unsafe {
                // dp = do · vᵀ
                mm(
                    (n, len, d),
                    (dp.as_mut_ptr(), 1, s as isize),
                    (dob.as_ptr(), 1, d as isize),
                    (grp.kv[d..].as_ptr(), 2 * d as isize, 1),
                    false,
                );
            }
            self.scores_grad(p, dp, &delta[row0..row0 + n], (s, len));
            let local = (row0 - rows.start) * d;
            unsafe {
                // dq = ds · k
                mm(
                    (n, d, len),
                    (dqc[local..].as_mut_ptr(), 1, d as isize),
                    (dp.as_ptr(), 1, s as isize),
                    (grp.kv.as_ptr(), 1, 2 * d as isize),
                    false,
                );
                // dk += dsᵀ · q
                mm(
                    (len, d, n),
                    (dkv.as_mut_ptr(), 1, 2 * d as isize),
                    (dp.as_ptr(), s as isize, 1),
                    (grp.q[row0 * d..].as_ptr(), 1, d as isize),
                    true,
                );
                // dv += pᵀ · do
                mm(
                    (len, d, n),
                    (dkv[d..].as_mut_ptr(), 1, 2 * d as isize),
                    (p.as_ptr(), s as isize, 1),
                    (dob.as_ptr(), 1, d as isize),
                    true,
                );
            }
        }
        dkv
    }
}

/// `softmax(scale · q·kᵀ + mask) · v` per KV group, the probabilities recomputed in backward
/// instead of kept; the mask gets no gradient. Query heads sharing a KV head are stacked in `q`'s
/// third dim (`heads per group × T` rows); `kv` holds k and v side by side in its last dim.
///
/// # Shapes
/// `q`: `[B, G, R, D]`, `kv`: `[B, G, S, 2·D]`, `mask`: `[B or 1, 1, T, S]` with `R` a multiple
/// of `T`, all f32 on the CPU → `[B, G, R, D]`.
pub fn flash_attention(q: &Tensor, kv: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let op = Flash {
        scale: scale as f32,
    };
    q.contiguous()?
        .apply_op3(&kv.contiguous()?, &mask.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::super::testing::{grads_of, randn, rel_diff};
    use super::flash_attention;
    use crate::model::ops::softmax_last_composed;

    /// q `[2, 3, 2·T, 4]` (two heads per group), kv `[2, 3, S, 8]`, mask `[2 or 1, 1, T, S]`.
    fn composed(q: &Tensor, kv: &Tensor, mask: &Tensor, t: usize) -> candle_core::Result<Tensor> {
        let (k, v) = (kv.narrow(3, 0, 4)?, kv.narrow(3, 4, 4)?);
        let s = k.dim(2)?;
        let scores = q.matmul(&k.t()?)?.reshape((2, 3, 2, t, s))?;
        let x = (scores * 0.5)?.broadcast_add(&mask.unsqueeze(1)?)?;
        softmax_last_composed(&x)?
            .reshape((2, 3, 2 * t, s))?
            .matmul(&v.contiguous()?)
    }

    /// A random mask with one key hidden from every query (as padding is).
    fn mask(t: usize, s: usize) -> candle_core::Result<Tensor> {
        let m = randn(&[2, 1, t, s], 2.0)?;
        let mut hidden = vec![0f32; s];
        hidden[s - 2] = f32::NEG_INFINITY;
        m.broadcast_add(&Tensor::new(hidden, m.device())?)
    }

    /// T = 75 makes 150 rows per group: two full blocks of 64 and a partial one.
    #[test]
    fn flash_attention_equals_matmul_mask_softmax_matmul() -> candle_core::Result<()> {
        for (t, s) in [(5, 7), (75, 80)] {
            let (q, kv, m) = (
                randn(&[2, 3, 2 * t, 4], 1.0)?,
                randn(&[2, 3, s, 8], 1.0)?,
                mask(t, s)?,
            );
            let got = flash_attention(&q, &kv, &m, 0.5)?;
            let d = rel_diff(&got, &composed(&q, &kv, &m, t)?)?;
            assert!(d <= 1e-6, "T = {t}: relative difference {d}");
            let shared = m.narrow(0, 0, 1)?;
            let d = rel_diff(
                &flash_attention(&q, &kv, &shared, 0.5)?,
                &composed(&q, &kv, &shared.repeat((2, 1, 1, 1))?, t)?,
            )?;
            assert!(
                d <= 1e-6,
                "T = {t}, one mask for every row: relative difference {d}"
            );
        }
        Ok(())
    }

    /// A causal mask over 5 past keys: the first block of 64 rows sees only 69 of the 80 keys,
    /// so its products stop early; the result must not change.
    #[test]
    fn flash_attention_skips_keys_no_row_of_a_block_sees() -> candle_core::Result<()> {
        let m = crate::model::decoder::causal_mask(75, 5, &candle_core::Device::Cpu)?;
        let q = Var::from_tensor(&randn(&[2, 3, 150, 4], 1.0)?)?;
        let kv = Var::from_tensor(&randn(&[2, 3, 80, 8], 1.0)?)?;
        let probe = randn(&[2, 3, 150, 4], 1.0)?;
        let got = flash_attention(&q, &kv, &m, 0.5)?;
        let want = composed(&q, &kv, &m.repeat((2, 1, 1, 1))?, 75)?;
        let d = rel_diff(&got, &want)?;
        assert!(d <= 1e-6, "relative difference {d}");
        let fused = grads_of(&[&q, &kv], &probe, |x| {
            flash_attention(&x[0], &x[1], &m, 0.5)
        })?;
        let reference = grads_of(&[&q, &kv], &probe, |x| composed(&x[0], &x[1], &m, 75))?;
        for (a, b) in fused.iter().zip(&reference) {
            let d = rel_diff(a, b)?;
            assert!(d <= 1e-5, "relative difference {d}");
        }
        Ok(())
    }

    #[test]
    fn flash_attention_gradients_equal_the_composed_gradients() -> candle_core::Result<()> {
        for (t, s) in [(5, 7), (75, 80)] {
            let q = Var::from_tensor(&randn(&[2, 3, 2 * t, 4], 1.0)?)?;
            let kv = Var::from_tensor(&randn(&[2, 3, s, 8], 1.0)?)?;
            let (m, probe) = (mask(t, s)?, randn(&[2, 3, 2 * t, 4], 1.0)?);
            let fused = grads_of(&[&q, &kv], &probe, |x| {
                flash_attention(&x[0], &x[1], &m, 0.5)
            })?;
            let reference = grads_of(&[&q, &kv], &probe, |x| composed(&x[0], &x[1], &m, t))?;
            for (a, b) in fused.iter().zip(&reference) {
                let d = rel_diff(a, b)?;
                assert!(d <= 1e-5, "T = {t}: relative difference {d}");
            }
        }
        Ok(())
    }
}
