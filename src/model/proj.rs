//! A linear projection's weight: a dense tensor (the trainable f32 weights) or quantized blocks
//! (a GGUF file's `Q4_1` / `Q8_0` blocks with our own product, other encodings through candle's
//! `QMatMul`; for sampling only), behind one `forward`.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};

use super::ops;
use super::qblocks::QBlocks;

/// The weight `[out, in]` of a linear layer.
#[derive(Debug, Clone)]
pub enum Proj {
    /// A dense tensor, tracked by autograd when it is a policy variable.
    Dense(Tensor),
    /// Quantized blocks through candle's product; no gradient flows through them.
    Quant(QMatMul),
    /// `Q4_1` or `Q8_0` blocks through [`QBlocks`]'s product; no gradient either.
    Blocks(Arc<QBlocks>),
}

impl From<Tensor> for Proj {
    fn from(t: Tensor) -> Self {
        Proj::Dense(t)
    }
}

impl Proj {
    /// The dense tensor, `None` for quantized blocks.
    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            Proj::Dense(t) => Some(t),
            Proj::Quant(_) | Proj::Blocks(_) => None,
        }
    }

    /// The same weight without gradient tracking (quantized blocks have none to drop).
    pub fn detach(&self) -> Proj {
        match self {
            Proj::Dense(t) => Proj::Dense(t.detach()),
            Proj::Quant(q) => Proj::Quant(q.clone()),
            Proj::Blocks(b) => Proj::Blocks(b.clone()),
        }
    }

    /// `x · Wᵀ (+ b)` over the last dimension. Quantized blocks agree with the dense weight only
    /// approximately (they are its rounding; candle's `QMatMul` also rounds `x` to 8-bit blocks).
    ///
    /// # Shapes
    /// `x`: `[.., in]`, `b`: `[out]` → `[.., out]`.
    pub fn forward(&self, x: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let y = match self {
            Proj::Dense(w) => return ops::linear(x, w, b),
            Proj::Quant(q) => q.forward(&x.contiguous()?)?,
            Proj::Blocks(blocks) => blocks.forward(x)?,
        };
        match b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}
