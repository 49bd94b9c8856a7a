//! `x · Wᵀ (+ b)` for a frozen weight `W`: a custom op on `x` alone whose backward computes only
//! `dy · W`. Candle's matmul backward always computes the gradient of both operands, so a plain
//! `x.matmul(&w.detach().t())` would spend a full `[out, in]` weight gradient per call (about a
//! third of the backward) and leave it in the gradient store, where nothing ever removes it.

use candle_core::backend::BackendStorage;
use candle_core::op::Add;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, bail,
};

/// The op: the weight and bias live inside it, so autograd sees `x` as its only input.
struct FrozenLinear {
    /// `[out, in]`, tracking no gradient.
    w: Tensor,
    /// `[out]`, tracking no gradient.
    b: Option<Tensor>,
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
        if let Some(b) = &self.b
            && b.dims() != [out]
        {
            bail!("frozen-linear: a bias {:?} for {out} outputs", b.dims());
        }
        Ok((rows, out, inner))
    }

    /// Runs the backend's own matmul and broadcast add (the kernels `Tensor::matmul` and
    /// `broadcast_add` use, so the values are the same bits) on the storages `pick` finds.
    fn run<S: BackendStorage>(
        &self,
        x: &S,
        xl: &Layout,
        pick: impl Fn(&Storage) -> Option<&S>,
    ) -> Result<(S, Shape)> {
        let (rows, out, inner) = self.dims(xl)?;
        let (ws, wl) = self.w.storage_and_layout();
        let Some(w) = pick(&ws) else {
            bail!("frozen-linear: the input and the weight are on different devices");
        };
        let y = x.matmul(w, (1, rows, out, inner), xl, &wl.transpose(0, 1)?)?;
        let shape = Shape::from((rows, out));
        let Some(b) = &self.b else {
            return Ok((y, shape));
        };
        let (bs, bl) = b.storage_and_layout();
        let Some(bias) = pick(&bs) else {
            bail!("frozen-linear: the input and the bias are on different devices");
        };
        let y =
            y.binary_impl::<Add>(bias, &Layout::contiguous(&shape), &bl.broadcast_as(&shape)?)?;
        Ok((y, shape))
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(s, l, |st| match st {
            Storage::Cpu(c) => Some(c),
            _ => None,
        })
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        self.run(s, l, |st| match st {
            Storage::Cuda(c) => Some(c),
            _ => None,
        })
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.matmul(&self.w)?))
    }
}

/// `x · Wᵀ (+ b)` with a gradient for `x` only (`W` and `b` are treated as constants).
///
/// # Shapes
/// `x`: `[rows, in]`, `w`: `[out, in]`, `b`: `[out]` → `[rows, out]`.
pub fn frozen_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    x.apply_op1(FrozenLinear {
        w: w.detach(),
        b: b.map(Tensor::detach),
    })
}

/// `x · Wᵀ (+ b)`, taking [`frozen_linear`] when `x` carries gradients and neither `w` nor `b`
/// does (a frozen base weight under LoRA: candle's matmul and broadcast add would compute and keep
/// their gradients); otherwise candle's ops.
///
/// # Shapes
/// `x`: `[rows, in]`, `w`: `[out, in]`, `b`: `[out]` → `[rows, out]`.
pub fn linear_2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let frozen = !w.track_op() && b.is_none_or(|b| !b.track_op());
    if x.track_op() && frozen {
        return frozen_linear(x, w, b);
    }
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `x · Wᵀ` as [`linear_2d`] computes it.
///
/// # Shapes
/// `x`: `[rows, in]`, `w`: `[out, in]` → `[rows, out]`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    linear_2d(x, w, None)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn randn(dims: &[usize]) -> Tensor {
        Tensor::randn(0f32, 1.0, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_frozen_op_gives_the_same_bits_as_matmul_and_broadcast_add() {
        let (x, w, b) = (randn(&[7, 5]), randn(&[3, 5]), randn(&[3]));
        let a = frozen_linear(&x, &w, None)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let plain = x.matmul(&w.t().unwrap()).unwrap();
        assert_eq!(a, plain.to_vec2::<f32>().unwrap());
        let a = frozen_linear(&x, &w, Some(&b)).unwrap();
        let plain = plain.broadcast_add(&b).unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), plain.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn the_input_gradient_matches_matmul_and_no_weight_gradient_is_stored() {
        let x = Var::from_tensor(&randn(&[6, 4])).unwrap();
        let (w, b) = (randn(&[5, 4]), randn(&[5]));
        let probe = randn(&[6, 5]);
        let frozen = (linear_2d(x.as_tensor(), &w, Some(&b)).unwrap() * &probe).unwrap();
        let store = frozen.sum_all().unwrap().backward().unwrap();
        let got = store.get(x.as_tensor()).unwrap();
        let wt = w.t().unwrap();
        let plain = x
            .as_tensor()
            .matmul(&wt)
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let plain = (plain * &probe).unwrap();
        let plain_store = plain.sum_all().unwrap().backward().unwrap();
        let want = plain_store.get(x.as_tensor()).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() <= 1e-5);
        assert!(
            plain_store.get(&wt).is_some(),
            "matmul stores a gradient for wᵀ"
        );
        let shapes = |s: &candle_core::backprop::GradStore| {
            let mut v: Vec<Vec<usize>> = s
                .get_ids()
                .map(|id| s.get_id(*id).map(|t| t.dims().to_vec()).unwrap_or_default())
                .collect();
            v.sort();
            v
        };
        let (ours, theirs) = (shapes(&store), shapes(&plain_store));
        assert!(theirs.contains(&vec![4, 5]), "{theirs:?}");
        assert!(
            !ours.contains(&vec![4, 5]) && !ours.contains(&vec![5, 4]),
            "{ours:?}"
        );
        assert_eq!(ours.len() + 2, theirs.len(), "{ours:?} {theirs:?}");
    }

    /// Timing, not a check: `cargo test --lib -- --ignored --nocapture frozen_backward_time`
    /// (candle's kernels are built with opt-level 3 in every profile).
    #[test]
    #[ignore]
    fn frozen_backward_time_against_matmul_with_a_detached_weight() {
        let (rows, inner, out) = (1024, 576, 1536);
        let x = Var::from_tensor(&randn(&[rows, inner])).unwrap();
        let w = randn(&[out, inner]);
        let time = |frozen: bool| {
            let start = std::time::Instant::now();
            for _ in 0..5 {
                let y = if frozen {
                    frozen_linear(x.as_tensor(), &w, None).unwrap()
                } else {
                    x.as_tensor().matmul(&w.t().unwrap()).unwrap()
                };
                let store = y.sum_all().unwrap().backward().unwrap();
                assert!(store.get(x.as_tensor()).is_some());
            }
            start.elapsed().as_secs_f64() / 5.0
        };
        let (plain, frozen) = (time(false), time(true));
        let (plain2, frozen2) = (time(false), time(true));
        println!(
            "x·Wᵀ forward + backward, x [{rows}, {inner}], W [{out}, {inner}]: \
             matmul with a detached W {:.1} ms, frozen-linear {:.1} ms",
            1e3 * plain.min(plain2),
            1e3 * frozen.min(frozen2)
        );
    }
}
