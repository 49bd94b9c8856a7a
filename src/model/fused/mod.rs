//! CPU kernels with their own backward for the memory-heavy parts of the trainable decoder: each
//! keeps only what its gradient needs instead of every intermediate of the composed version.

mod attention;
mod attn_out;
mod flash;
mod logprob;
mod rms_norm;
mod rope;
mod softmax;
mod swiglu;

#[cfg(test)]
pub(super) mod testing;

pub use attention::attention_probs;
pub use attn_out::attention_out;
pub use flash::flash_attention;
pub use logprob::target_logprobs;
pub use rms_norm::rms_norm;
pub use rope::{RopeTable, rope_transpose};
pub use softmax::softmax_last;
pub use swiglu::silu_mul;

use candle_core::{CpuStorage, Layout, Result, bail};
use gemm::{Parallelism, gemm};

/// Dimensions of an attention call: `g` KV groups, `r` query rows per group (heads per group ×
/// T), `t` query positions, `s` key positions, `d` head dim, `bm` mask rows (1 or B).
#[derive(Clone, Copy)]
struct AttnDims {
    g: usize,
    r: usize,
    t: usize,
    s: usize,
    d: usize,
    bm: usize,
}

/// Checks q `[B, G, R, D]`, keys `[B, G, S, width·D]` (width 1: k; 2: k and v side by side) and
/// mask `[B or 1, 1, T, S]` with `R` a multiple of `T`.
fn attn_dims(op: &str, q: &Layout, k: &Layout, mask: &Layout, width: usize) -> Result<AttnDims> {
    let (b, g, r, d) = q.shape().dims4()?;
    let (kb, kg, s, kd) = k.shape().dims4()?;
    let (bm, one, t, ms) = mask.shape().dims4()?;
    let bad_mask = one != 1 || ms != s || (bm != 1 && bm != b) || t == 0 || r % t != 0;
    if (kb, kg, kd) != (b, g, width * d) || bad_mask {
        bail!(
            "{op}: q {:?}, k {:?}, mask {:?}",
            q.dims(),
            k.dims(),
            mask.dims()
        );
    }
    Ok(AttnDims { g, r, t, s, d, bm })
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`; each operand given by its pointer, column
/// stride and row stride (in elements). One thread: the kernels parallelise over their own blocks.
///
/// # Safety
/// Every pointer with its strides must address an `m×n`, `m×k` or `k×n` matrix inside one
/// allocation, and `dst` must not overlap the others.
unsafe fn mm(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    accumulate: bool,
) {
    // SAFETY: the caller's contract is gemm's.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            accumulate,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The f32 elements a contiguous CPU tensor covers.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expected f32 storage");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: expected a contiguous tensor");
    };
    Ok(&data[start..end])
}

/// Whether `x` takes the fused kernels: f32 on the CPU (other devices keep the composed ops).
pub fn applies(x: &candle_core::Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}
