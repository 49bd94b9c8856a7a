//! The `Tensor` functions of the script API: operators, element-wise functions, `max`/`min`,
//! reductions and constructors. Gradients follow PyTorch's conventions, also at kinks.

use candle_core::{DType, Device, Tensor};
use rhai::{Array, Dynamic};

use super::{Builder, Res, fail, func, number};
use crate::script::tensor::{self as t, ScriptTensor};

type TensorFn = fn(&Tensor) -> candle_core::Result<Tensor>;
type PairFn = fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>;

fn lift(r: candle_core::Result<Tensor>) -> Res<ScriptTensor> {
    match r {
        Ok(t) => Ok(ScriptTensor(t)),
        Err(e) => fail(format!("tensor operation failed: {e}")),
    }
}

pub(super) fn register(b: &mut Builder) {
    register_arithmetic(b);
    register_unary(b);
    register_binary_functions(b);
    register_comparisons(b);
    register_reductions(b);
    register_constructors(b);
}

macro_rules! arithmetic {
    ($b:ident, $sym:literal, $op:literal) => {
        func!($b, $sym, |a: ScriptTensor, b: ScriptTensor| {
            let b = b.0.to_dtype(a.0.dtype());
            lift(b.and_then(|b| t::binary(&a.0, &b, $op)))
        });
        func!($b, $sym, |a: ScriptTensor, b: f64| {
            lift(t::tensor_scalar(&a.0, b, $op))
        });
        func!($b, $sym, |a: ScriptTensor, b: i64| {
            lift(t::tensor_scalar(&a.0, b as f64, $op))
        });
        func!($b, $sym, |a: f64, b: ScriptTensor| {
            lift(t::scalar_tensor(a, &b.0, $op))
        });
        func!($b, $sym, |a: i64, b: ScriptTensor| {
            lift(t::scalar_tensor(a as f64, &b.0, $op))
        });
    };
}

fn register_arithmetic(b: &mut Builder) {
    b.group(
        "Arithmetic",
        "`+ - * /` between tensors (a scalar tensor broadcasts against `[B]`), and between a tensor \
         and a float or an integer in either order; unary `-`.",
        r#"
let chosen = tensor([-1.0, -2.0]);
let reference = tensor([-1.5, -1.5]);
let m = 0.5 * (chosen - reference) + 1;          // a margin
let half = 1 / (2.0 * m) - tensor(0.25);
assert_close(m, [1.25, 0.75], 1e-12);
assert_close(-half, [-0.15, -0.41666666666666663], 1e-12);
"#,
    );
    arithmetic!(b, "+", '+');
    arithmetic!(b, "-", '-');
    arithmetic!(b, "*", '*');
    arithmetic!(b, "/", '/');
    func!(b, "-", |a: ScriptTensor| lift(a.0.neg()));
}

fn register_unary(b: &mut Builder) {
    b.group(
        "Element-wise functions",
        "`relu` and `abs` have gradient 0 at 0; `clamp(x, lo, hi)` passes the gradient on its \
         closed interval; `detach` stops the gradient; `ln` and `log` are the natural logarithm, \
         `log1p(x)` is `ln(1 + x)`; `sign` is -1, 0 or 1 with no gradient.",
        r#"
let x = tensor([-1.0, 0.0, 2.0]);
let l = -log_sigmoid(0.1 * x);                    // DPO
let p = relu(tensor(-2.0) - x);                   // DPOP penalty
let w = clamp(exp(x), 0.0, 1.0);                  // WPO weights
assert_close(p, [0.0, 0.0, 0.0], 0.0);
assert_close(w, [0.36787944117144233, 1.0, 1.0], 1e-12);
assert_close(sigmoid(x) + sigmoid(neg(x)), 1.0, 1e-12);
assert_close(softplus(x) - softplus(-x), x, 1e-12);
assert_close(ln(exp(x)), log(exp(x)), 1e-12);
assert_close(sqrt(sqr(x)), abs(x), 1e-12);
assert_close(tanh(x), 2.0 * sigmoid(2.0 * x) - 1.0, 1e-12);
assert_close(log1p(exp(x)), softplus(x), 1e-12);
assert_close(sign(x), [-1.0, 0.0, 1.0], 0.0);
assert_close(pow(exp(x), 2), exp(2 * detach(x)), 1e-12);
"#,
    );
    let unary: [(&str, TensorFn); 15] = [
        ("log1p", |x| x.affine(1.0, 1.0)?.log()),
        ("sign", |x| Ok(x.sign()?.detach())),
        ("exp", |x| x.exp()),
        ("ln", |x| x.log()),
        ("log", |x| x.log()),
        ("sqrt", |x| x.sqrt()),
        ("sqr", |x| x.sqr()),
        ("tanh", |x| x.tanh()),
        ("abs", t::abs),
        ("relu", t::relu),
        ("sigmoid", t::sigmoid),
        ("log_sigmoid", t::log_sigmoid),
        ("softplus", t::softplus),
        ("neg", |x| x.neg()),
        ("detach", |x| Ok(t::detached::detach(x))),
    ];
    for (name, f) in unary {
        func!(b, name, move |x: ScriptTensor| lift(f(&x.0)));
    }
    func!(b, "pow", |x: ScriptTensor, e: Dynamic| {
        let e = number(&e, "pow exponent")?;
        lift(x.0.powf(e))
    });
    func!(b, "clamp", |x: ScriptTensor, lo: Dynamic, hi: Dynamic| {
        let lo = number(&lo, "clamp lower bound")?;
        let hi = number(&hi, "clamp upper bound")?;
        if lo > hi {
            return fail(format!("clamp: lower bound {lo} is above upper bound {hi}"));
        }
        lift(t::clamp(&x.0, lo, hi))
    });
}

fn register_binary_functions(b: &mut Builder) {
    b.group(
        "Maximum and minimum",
        "`max` and `min` of two tensors, or of a tensor and a number in either order; at ties the \
         gradient is split evenly, as `torch.maximum` does.",
        r#"
let m = tensor([0.5, 2.0]);
let hinge = max(0.0, 1.0 - m);                    // SLiC
assert_close(hinge, [0.5, 0.0], 1e-12);
assert_close(min(m, 1), [0.5, 1.0], 0.0);
assert_close(max(m, tensor([1.0, 1.0])), [1.0, 2.0], 0.0);
"#,
    );
    for (name, f) in [("max", t::maximum as PairFn), ("min", t::minimum)] {
        func!(b, name, move |a: ScriptTensor, b: ScriptTensor| {
            let b = b.0.to_dtype(a.0.dtype());
            lift(b.and_then(|b| f(&a.0, &b)))
        });
        func!(b, name, move |a: ScriptTensor, b: Dynamic| {
            let s = lift(t::scalar_like(&a.0, number(&b, name)?))?;
            lift(f(&a.0, &s.0))
        });
        func!(b, name, move |a: Dynamic, b: ScriptTensor| {
            let s = lift(t::scalar_like(&b.0, number(&a, name)?))?;
            lift(f(&s.0, &b.0))
        });
    }
}

fn register_comparisons(b: &mut Builder) {
    b.group(
        "Comparisons, selection and indexing",
        "`> < >= <= == !=` between a tensor and a tensor or a number give a mask of 0.0 and 1.0 \
         (no gradient); `where(mask, a, b)` takes `a` where the mask is non-zero and `b` \
         elsewhere, passing the gradient to the side it took (`torch.where`); `x[i]` is one \
         element as a scalar tensor (negative from the end) that keeps its gradient; `cat([..])` \
         joins tensors end to end.",
        r#"
let m = tensor([-1.0, 0.5, 2.0]);
assert_close(m > 0.0, [0.0, 1.0, 1.0], 0.0);
assert_close(m < 0, [1.0, 0.0, 0.0], 0.0);
assert_close(m >= tensor([0.5, 0.5, 0.5]), [0.0, 1.0, 1.0], 0.0);
assert_close(m <= 0.5, [1.0, 1.0, 0.0], 0.0);
assert_close(m == 2.0, [0.0, 0.0, 1.0], 0.0);
assert_close(m != 2.0, [1.0, 1.0, 0.0], 0.0);
let loss = where(m > 0.0, log_sigmoid(m), m * m);   // a piecewise loss
assert_close(loss, [1.0, -0.47407698418010663, -0.12692801104297263], 1e-12);
assert_close(m[-1], 2.0, 0.0);
assert_close(cat([m, tensor(3.0)]), [-1.0, 0.5, 2.0, 3.0], 0.0);
"#,
    );
    for op in [">", "<", ">=", "<=", "==", "!="] {
        func!(b, op, move |a: ScriptTensor, b: ScriptTensor| {
            lift(t::compare(&a.0, &b.0, op))
        });
        func!(b, op, move |a: ScriptTensor, b: Dynamic| {
            let s = lift(t::scalar_like(&a.0, number(&b, op)?))?;
            lift(t::compare(&a.0, &s.0, op))
        });
        func!(b, op, move |a: Dynamic, b: ScriptTensor| {
            let s = lift(t::scalar_like(&b.0, number(&a, op)?))?;
            lift(t::compare(&s.0, &b.0, op))
        });
    }
    register_selection(b);
}

/// `where`, `x[i]` and `cat`, documented with the comparisons above.
fn register_selection(b: &mut Builder) {
    func!(b, "where", |m: ScriptTensor,
                       a: ScriptTensor,
                       b: ScriptTensor| {
        lift(t::select(&m.0, &a.0, &b.0))
    });
    func!(b, "where", |m: ScriptTensor,
                       a: ScriptTensor,
                       b: Dynamic| {
        let s = lift(t::scalar_like(&a.0, number(&b, "where")?))?;
        lift(t::select(&m.0, &a.0, &s.0))
    });
    func!(b, "where", |m: ScriptTensor,
                       a: Dynamic,
                       b: ScriptTensor| {
        let s = lift(t::scalar_like(&b.0, number(&a, "where")?))?;
        lift(t::select(&m.0, &s.0, &b.0))
    });
    b.module
        .set_indexer_get_fn(|x: &mut ScriptTensor, i: i64| -> Res<ScriptTensor> {
            match t::index(&x.0, i) {
                Ok(t) => Ok(ScriptTensor(t)),
                Err(e) => fail(e),
            }
        });
    func!(b, "cat", |parts: Array| -> Res<ScriptTensor> {
        if parts.is_empty() {
            return fail("cat needs at least one tensor");
        }
        let mut tensors = Vec::with_capacity(parts.len());
        for p in parts {
            match p.try_cast::<ScriptTensor>() {
                Some(t) => tensors.push(t.0),
                None => return fail("cat takes an array of tensors"),
            }
        }
        lift(t::cat(&tensors))
    });
}

fn register_reductions(b: &mut Builder) {
    b.group(
        "Reductions and reading values back",
        "`mean`, `sum`, `std` (with Bessel's correction, as `torch.std`) and `logsumexp` give a \
         scalar tensor; `to_float` reads a single value, `to_array` all of them, `len` counts them \
         and `shape` gives the dimensions.",
        r#"
let per_pair = tensor([1.0, 2.0, 4.0]);
let loss = mean(per_pair);                        // a scalar tensor
assert_eq(to_float(sum(per_pair)), 7.0);
assert_close(std(per_pair), 1.5275252316519465, 1e-12);
assert_close(logsumexp(per_pair), 4.169846019556285, 1e-12);
assert_eq(to_array(per_pair)[2], 4.0);
assert_eq(len(per_pair), 3);
assert_eq(shape(per_pair), [3]);
assert_eq(to_string(loss), to_debug(loss));
print(loss);                                      // Tensor(2.3333333333333335)
"#,
    );
    func!(b, "mean", |x: ScriptTensor| lift(x.0.mean_all()));
    func!(b, "sum", |x: ScriptTensor| lift(x.0.sum_all()));
    func!(b, "std", |x: ScriptTensor| lift(t::std(&x.0)));
    func!(b, "logsumexp", |x: ScriptTensor| lift(t::logsumexp(&x.0)));
    func!(b, "len", |x: ScriptTensor| x.0.elem_count() as i64);
    func!(b, "to_float", |x: ScriptTensor| -> Res<f64> {
        if x.0.elem_count() != 1 {
            return fail(format!(
                "to_float needs a single value, the tensor has shape {:?}",
                x.0.dims()
            ));
        }
        match t::to_f64_vec(&x.0) {
            Ok(v) => Ok(v[0]),
            Err(e) => fail(e.to_string()),
        }
    });
    func!(b, "to_array", |x: ScriptTensor| -> Res<Array> {
        match t::to_f64_vec(&x.0) {
            Ok(v) => Ok(v.into_iter().map(Dynamic::from_float).collect()),
            Err(e) => fail(e.to_string()),
        }
    });
    func!(b, "shape", |x: ScriptTensor| -> Array {
        x.0.dims()
            .iter()
            .map(|d| Dynamic::from_int(*d as i64))
            .collect()
    });
    func!(b, "to_string", |x: &mut ScriptTensor| describe(&x.0));
    func!(b, "to_debug", |x: &mut ScriptTensor| describe(&x.0));
}

fn describe(x: &Tensor) -> String {
    match t::to_f64_vec(x) {
        Ok(v) if x.rank() == 0 => format!("Tensor({})", v[0]),
        Ok(v) => format!("Tensor({v:?})"),
        Err(e) => format!("Tensor(<{e}>)"),
    }
}

fn register_constructors(b: &mut Builder) {
    b.group(
        "Building tensors",
        "Tensors built by a script are f64 on the CPU (mostly for `test_*` functions); they meet \
         the f32 batch tensors of training through the operators, which convert.",
        r#"
let x = tensor([0.5, -1.0, 2]);                   // f64, shape [3]
let s = tensor(1.5);                              // f64, a scalar
assert_close(zeros_like(x), 0.0, 0.0);
assert_close(ones_like(x), 1.0, 0.0);
assert_close(full_like(x, 1.5), s, 0.0);
assert_close(to_f32(x), [0.5, -1.0, 2.0], 0.0);
"#,
    );
    func!(b, "tensor", |values: Array| -> Res<ScriptTensor> {
        let mut out = Vec::with_capacity(values.len());
        for v in &values {
            out.push(number(v, "tensor")?);
        }
        lift(Tensor::new(out, &Device::Cpu))
    });
    func!(b, "tensor", |value: f64| lift(Tensor::new(
        value,
        &Device::Cpu
    )));
    func!(b, "zeros_like", |x: ScriptTensor| lift(x.0.zeros_like()));
    func!(b, "ones_like", |x: ScriptTensor| lift(x.0.ones_like()));
    func!(b, "full_like", |x: ScriptTensor, v: Dynamic| {
        let v = number(&v, "full_like")?;
        lift(x.0.ones_like().and_then(|o| o.affine(v, 0.0)))
    });
    func!(b, "to_f32", |x: ScriptTensor| lift(
        x.0.to_dtype(DType::F32)
    ));
}
