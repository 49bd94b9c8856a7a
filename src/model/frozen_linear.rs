//! `x · Wᵀ` for a frozen weight `W`: a custom op on `x` alone whose backward computes only
//! `dy · W`. Candle's matmul backward always computes the gradient of both operands, so a plain
//! `x.matmul(&w.detach().t())` would spend a full `[out, in]` weight gradient per call (about a
//! third of the backward) and leave it in the gradient store, where nothing ever removes it.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, bail,
};

/// The op: the weight lives inside it, so autograd sees `x` as its only input.
struct FrozenLinear {
    /// `[out, in]`, tracking no gradient.
    w: Tensor,
}

impl FrozenLinear {
    /// `(rows, out, in)` of `x · Wᵀ`, checked.
    fn dims(&self, x: &Layout) -> Result<(usize, usize, usize)> {
        let (rows, inner) = x.shape().dims2()?;
        let (out, w_in) = self.w.dims2()?;
        if inner != w_in {
            bail!(
                "frozen-linear: input rows of {inner} for a weight {:?}",
                self.w.dims()
            );
        }
        Ok((rows, out, inner))
    }
}

/// `x · wᵀ` with the backend's own matmul (the kernel `Tensor::matmul` uses, so the values are
/// the same bits).
fn backend_matmul<S: BackendStorage>(
    x: &S,
    xl: &Layout,
    w: &S,
    wl: &Layout,
    (rows, out, inner): (usize, usize, usize),
) -> Result<(S, Shape)> {
    let wt = wl.transpose(0, 1)?;
    let y = x.matmul(w, (1, rows, out, inner), xl, &wt)?;
    Ok((y, Shape::from((rows, out))))
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = self.dims(l)?;
        let (ws, wl) = self.w.storage_and_layout();
        let Storage::Cpu(w) = &*ws else {
            bail!("frozen-linear: the input is on the CPU, the weight is not");
        };
        backend_matmul(s, l, w, wl, dims)
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let dims = self.dims(l)?;
        let (ws, wl) = self.w.storage_and_layout();
        let Storage::Cuda(w) = &*ws else {
            bail!("frozen-linear: the input is on a GPU, the weight is not");
        };
        backend_matmul(s, l, w, wl, dims)
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.matmul(&self.w)?))
    }
}

/// `x · Wᵀ` with a gradient for `x` only (`W` is treated as a constant).
///
/// # Shapes
/// `x`: `[rows, in]`, `w`: `[out, in]` → `[rows, out]`.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.apply_op1(FrozenLinear { w: w.detach() })
}

/// `x · Wᵀ`, taking [`frozen_linear`] when `x` carries gradients and `w` does not (a frozen
/// base weight under LoRA); otherwise candle's matmul.
///
/// # Shapes
/// `x`: `[rows, in]`, `w`: `[out, in]` → `[rows, out]`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.track_op() && !w.track_op() {
        frozen_linear(x, w)
    } else {
        x.matmul(&w.t()?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn randn(dims: &[usize]) -> Tensor {
        Tensor::randn(0f32, 1.0, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_frozen_op_gives_the_same_bits_as_matmul() {
        let (x, w) = (randn(&[7, 5]), randn(&[3, 5]));
        let a = frozen_linear(&x, &w).unwrap().to_vec2::<f32>().unwrap();
        let b = x.matmul(&w.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_input_gradient_matches_matmul_and_no_weight_gradient_is_stored() {
        let x = Var::from_tensor(&randn(&[6, 4])).unwrap();
        let w = randn(&[5, 4]);
        let probe = randn(&[6, 5]);
        let frozen = (matmul_t(x.as_tensor(), &w).unwrap() * &probe).unwrap();
        let store = frozen.sum_all().unwrap().backward().unwrap();
        let got = store.get(x.as_tensor()).unwrap();
        let wt = w.t().unwrap();
        let plain = (x.as_tensor().matmul(&wt).unwrap() * &probe).unwrap();
        let plain_store = plain.sum_all().unwrap().backward().unwrap();
        let want = plain_store.get(x.as_tensor()).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() <= 1e-5);
        assert!(
            plain_store.get(&wt).is_some(),
            "matmul stores a gradient for wᵀ"
        );
        let ids = |s: &candle_core::backprop::GradStore| s.get_ids().count();
        assert_eq!(
            ids(&store) + 1,
            ids(&plain_store),
            "no weight gradient stored"
        );
    }
}
