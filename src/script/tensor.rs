//! The tensor math behind the Rhai `Tensor` type: element-wise operations on candle tensors whose
//! gradients match PyTorch's conventions, including at kinks.
//!
//! # Shapes
//! Every function here is element-wise (or a full reduction) and keeps the dtype of its input, so
//! the same script runs on `[B]` f32 batches in training and on f64 batches in `trainer check`.

use candle_core::{Result, Tensor};

/// The Rhai-visible wrapper around a candle tensor.
#[derive(Clone, Debug)]
pub struct ScriptTensor(pub Tensor);

/// `b` on `a`'s device: a tensor a script built with `tensor(…)` lives on the CPU and meets batch
/// tensors that may live on a GPU.
fn on_device_of(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().same_device(b.device()) {
        Ok(b.clone())
    } else {
        b.to_device(a.device())
    }
}

/// `a ∘ b` with broadcasting (a scalar tensor broadcasts against `[B]`).
pub fn binary(a: &Tensor, b: &Tensor, op: char) -> Result<Tensor> {
    let (a, b) = if a.device().is_cpu() {
        (&on_device_of(b, a)?, b)
    } else {
        (a, &on_device_of(a, b)?)
    };
    match op {
        '+' => a.broadcast_add(b),
        '-' => a.broadcast_sub(b),
        '*' => a.broadcast_mul(b),
        _ => a.broadcast_div(b),
    }
}

/// `t ∘ s` for a float `s`.
pub fn tensor_scalar(t: &Tensor, s: f64, op: char) -> Result<Tensor> {
    match op {
        '+' => t.affine(1.0, s),
        '-' => t.affine(1.0, -s),
        '*' => t.affine(s, 0.0),
        _ => t.affine(1.0 / s, 0.0),
    }
}

/// `s ∘ t` for a float `s`.
pub fn scalar_tensor(s: f64, t: &Tensor, op: char) -> Result<Tensor> {
    match op {
        '+' => t.affine(1.0, s),
        '-' => t.affine(-1.0, s),
        '*' => t.affine(s, 0.0),
        _ => t.recip()?.affine(s, 0.0),
    }
}

/// `log(1 + e^x)`, stable for any `x`: `max(x, 0) + log(1 + e^{-|x|})`.
///
/// candle's `relu` and `abs` both take the right derivative at 0, so their kinks cancel and the
/// gradient is exactly `sigmoid(x)` everywhere, 0.5 at 0 included.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    x.relu()? + tail
}

/// `log σ(x) = −softplus(−x)`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    softplus(&x.neg()?)?.neg()
}

/// `σ(x) = exp(log σ(x))`, stable for any `x`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    log_sigmoid(x)?.exp()
}

/// `max(x, 0)` with PyTorch's gradient: 1 where `x > 0`, else 0 (also at 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let mask = x.gt(0.0)?.to_dtype(x.dtype())?;
    x.mul(&mask)
}

/// `|x|` with PyTorch's gradient `sign(x)` (0 at 0).
pub fn abs(x: &Tensor) -> Result<Tensor> {
    x.mul(&x.sign()?)
}

/// Clamps to `[lo, hi]`; the gradient passes where `lo <= x <= hi` (PyTorch's `clamp`).
pub fn clamp(x: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    let inside = x.ge(lo)?.mul(&x.le(hi)?)?;
    let clamped = x.detach().clamp(lo, hi)?;
    inside.where_cond(x, &clamped)
}

/// Element-wise maximum; at ties the gradient is split evenly (PyTorch's `torch.maximum`).
pub fn maximum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.broadcast_maximum(&on_device_of(a, b)?)
}

/// Element-wise minimum; at ties the gradient is split evenly (PyTorch's `torch.minimum`).
pub fn minimum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.broadcast_minimum(&on_device_of(a, b)?)
}

/// A scalar tensor of `value` with `like`'s dtype and device.
pub fn scalar_like(like: &Tensor, value: f64) -> Result<Tensor> {
    Tensor::new(value, like.device())?.to_dtype(like.dtype())
}

/// Every element as f64, for printing and assertions.
pub fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()
}

/// `a ⋚ b` element-wise as a mask of 0.0 / 1.0 in `a`'s dtype (broadcasting; no gradient), for
/// `op` one of `>`, `<`, `>=`, `<=`, `==`, `!=`.
pub fn compare(a: &Tensor, b: &Tensor, op: &str) -> Result<Tensor> {
    let b = on_device_of(a, b)?.to_dtype(a.dtype())?;
    let shape = a.shape().broadcast_shape_binary_op(b.shape(), "compare")?;
    let (a, b) = (a.broadcast_as(&shape)?, b.broadcast_as(&shape)?);
    let mask = match op {
        ">" => a.gt(&b)?,
        "<" => a.lt(&b)?,
        ">=" => a.ge(&b)?,
        "<=" => a.le(&b)?,
        "==" => a.eq(&b)?,
        _ => a.ne(&b)?,
    };
    mask.to_dtype(a.dtype())
}

/// `mask ? a : b` element-wise (`torch.where`): the gradient flows to `a` where the mask is
/// non-zero and to `b` elsewhere; the mask gets none.
pub fn select(mask: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let a = on_device_of(mask, a)?;
    let b = on_device_of(mask, b)?.to_dtype(a.dtype())?;
    let shape = mask
        .shape()
        .broadcast_shape_binary_op(a.shape(), "where")?
        .broadcast_shape_binary_op(b.shape(), "where")?;
    let keep = mask.detach().ne(0.0)?.broadcast_as(&shape)?;
    keep.where_cond(&a.broadcast_as(&shape)?, &b.broadcast_as(&shape)?)
}

/// `log(sum(exp(x)))` over every element, stable: the maximum (detached) is taken out first.
pub fn logsumexp(x: &Tensor) -> Result<Tensor> {
    let m = x.detach().flatten_all()?.max(0)?;
    let shifted = x.broadcast_sub(&m)?;
    shifted.exp()?.sum_all()?.log()? + m
}

/// The standard deviation of every element with Bessel's correction (`torch.std`).
pub fn std(x: &Tensor) -> Result<Tensor> {
    let n = x.elem_count();
    let centered = x.broadcast_sub(&x.mean_all()?)?;
    let denom = n.saturating_sub(1).max(1) as f64;
    (centered.sqr()?.sum_all()? / denom)?.sqrt()
}

/// Element `i` of a 1-D tensor (negative counts from the end) as a scalar tensor that keeps the
/// gradient.
pub fn index(x: &Tensor, i: i64) -> std::result::Result<Tensor, String> {
    let flat = x.flatten_all().map_err(|e| e.to_string())?;
    let n = flat.elem_count() as i64;
    let at = if i < 0 { n + i } else { i };
    if x.rank() > 1 || at < 0 || at >= n {
        return Err(format!(
            "index {i} is out of range for a tensor of shape {:?}",
            x.dims()
        ));
    }
    flat.get(at as usize).map_err(|e| e.to_string())
}

/// The tensors joined end to end into one 1-D tensor (scalars count as one element).
pub fn cat(parts: &[Tensor]) -> Result<Tensor> {
    let flat: Vec<Tensor> = parts
        .iter()
        .map(|p| p.flatten_all())
        .collect::<Result<_>>()?;
    let dtype = flat[0].dtype();
    let flat: Vec<Tensor> = flat
        .iter()
        .map(|p| on_device_of(&flat[0], p)?.to_dtype(dtype))
        .collect::<Result<_>>()?;
    Tensor::cat(&flat, 0)
}

/// What `detach` returns, recorded on one call of a hook and replayed on the next ones: the
/// gradient check's finite differences then hold a detached term constant, as autograd does.
pub mod detached {
    use std::cell::RefCell;

    use candle_core::Tensor;

    enum Mode {
        Off,
        Record(Vec<Tensor>),
        Replay(Vec<Tensor>, usize),
    }

    thread_local! {
        static MODE: RefCell<Mode> = const { RefCell::new(Mode::Off) };
    }

    /// Runs `f`, recording every value `detach` returns (kept for [`replaying`]).
    pub fn recording<T>(f: impl FnOnce() -> T) -> T {
        MODE.with(|m| *m.borrow_mut() = Mode::Record(Vec::new()));
        f()
    }

    /// Runs `f` with `detach` returning the recorded values in order (the input's own when the
    /// recording has no more, or the shapes differ).
    pub fn replaying<T>(f: impl FnOnce() -> T) -> T {
        MODE.with(|m| {
            let mut mode = m.borrow_mut();
            let recorded = match std::mem::replace(&mut *mode, Mode::Off) {
                Mode::Record(v) | Mode::Replay(v, _) => v,
                Mode::Off => Vec::new(),
            };
            *mode = Mode::Replay(recorded, 0);
        });
        f()
    }

    /// Runs `f` with `detach` plain (neither recording nor replaying), keeping the recording.
    pub fn bypassing<T>(f: impl FnOnce() -> T) -> T {
        let saved = MODE.with(|m| std::mem::replace(&mut *m.borrow_mut(), Mode::Off));
        let out = f();
        MODE.with(|m| *m.borrow_mut() = saved);
        out
    }

    /// Stops recording or replaying.
    pub fn off() {
        MODE.with(|m| *m.borrow_mut() = Mode::Off);
    }

    /// `x` detached, recorded or replayed as the mode says.
    pub fn detach(x: &Tensor) -> Tensor {
        MODE.with(|m| match &mut *m.borrow_mut() {
            Mode::Off => x.detach(),
            Mode::Record(v) => {
                v.push(x.detach());
                x.detach()
            }
            Mode::Replay(v, i) => {
                let out = match v.get(*i) {
                    Some(t) if t.dims() == x.dims() => t.clone(),
                    _ => x.detach(),
                };
                *i += 1;
                out
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// d/dx of sum(where(x > 0, 2x, x²)) at x = [-1, 0.5, 3]: [2·(-1), 2, 2] = [-2, 2, 2], the
    /// gradient of the side each element took (`torch.where` gives the same).
    #[test]
    fn where_passes_the_gradient_to_the_side_it_took() {
        let x = Var::new(&[-1.0f64, 0.5, 3.0], &Device::Cpu).unwrap();
        let mask = compare(
            x.as_tensor(),
            &Tensor::new(0.0f64, &Device::Cpu).unwrap(),
            ">",
        )
        .unwrap();
        assert_eq!(to_f64_vec(&mask).unwrap(), [0.0, 1.0, 1.0]);
        let y = select(
            &mask,
            &(x.as_tensor() * 2.0).unwrap(),
            &x.as_tensor().sqr().unwrap(),
        )
        .unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = to_f64_vec(grads.get(x.as_tensor()).unwrap()).unwrap();
        assert_eq!(g, [-2.0, 2.0, 2.0]);
    }

    #[test]
    fn an_indexed_element_keeps_its_gradient_and_a_bad_index_is_an_error() {
        let x = Var::new(&[1.0f64, 2.0, 3.0], &Device::Cpu).unwrap();
        let last = index(x.as_tensor(), -1).unwrap();
        let grads = (last * 5.0).unwrap().backward().unwrap();
        let g = to_f64_vec(grads.get(x.as_tensor()).unwrap()).unwrap();
        assert_eq!(g, [0.0, 0.0, 5.0]);
        assert!(
            index(x.as_tensor(), 3)
                .unwrap_err()
                .contains("out of range")
        );
    }
}
