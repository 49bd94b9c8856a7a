//! A linear projection's weight: a dense tensor (the trainable f32 weights) or quantized blocks
//! (candle's `QMatMul` over a GGUF file's `QTensor`, for sampling only), behind one `forward`.

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};

use super::ops;

/// The weight `[out, in]` of a linear layer.
#[derive(Debug, Clone)]
pub enum Proj {
    /// A dense tensor, tracked by autograd when it is a policy variable.
    Dense(Tensor),
    /// Quantized blocks; no gradient flows through them.
    Quant(QMatMul),
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
            Proj::Quant(_) => None,
        }
    }

    /// The same weight without gradient tracking (quantized blocks have none to drop).
    pub fn detach(&self) -> Proj {
        match self {
            Proj::Dense(t) => Proj::Dense(t.detach()),
            Proj::Quant(q) => Proj::Quant(q.clone()),
        }
    }

    /// `x · Wᵀ (+ b)` over the last dimension. Quantized blocks quantize `x` to the blocks'
    /// dot-product type first (candle's `QMatMul`), so they agree with the dense weight only
    /// approximately.
    ///
    /// # Shapes
    /// `x`: `[.., in]`, `b`: `[out]` → `[.., out]`.
    pub fn forward(&self, x: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        match self {
            Proj::Dense(w) => ops::linear(x, w, b),
            Proj::Quant(q) => {
                let y = q.forward(&x.contiguous()?)?;
                match b {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}
