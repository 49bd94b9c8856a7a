//! Everything scripts can call, registered in one place: the `Tensor` type with its operators and
//! functions, assertions for `test_*` functions, and seeded helpers. Each function's doc shows a
//! Rhai example.

use candle_core::{DType, Device, Tensor};
use rhai::{Array, Dynamic, Engine, EvalAltResult, Position};

use super::tensor::{self as t, ScriptTensor};

type Res<T> = Result<T, Box<EvalAltResult>>;
type TensorFn = fn(&Tensor) -> candle_core::Result<Tensor>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(
        msg.into().into(),
        Position::NONE,
    )))
}

fn lift(r: candle_core::Result<Tensor>) -> Res<ScriptTensor> {
    match r {
        Ok(t) => Ok(ScriptTensor(t)),
        Err(e) => fail(format!("tensor operation failed: {e}")),
    }
}

/// A Rhai number (INT or FLOAT) as f64.
fn number(d: &Dynamic, what: &str) -> Res<f64> {
    if let Ok(f) = d.as_float() {
        return Ok(f);
    }
    if let Ok(i) = d.as_int() {
        return Ok(i as f64);
    }
    fail(format!("{what}: expected a number, got {}", d.type_name()))
}

/// Registers the whole script API on `engine`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptTensor>("Tensor");
    register_arithmetic(engine);
    register_unary(engine);
    register_binary_functions(engine);
    register_reductions(engine);
    register_constructors(engine);
    register_assertions(engine);
    register_helpers(engine);
    register_graders(engine);
}

macro_rules! arithmetic {
    ($engine:ident, $sym:literal, $op:literal) => {
        $engine.register_fn($sym, |a: ScriptTensor, b: ScriptTensor| {
            let b = b.0.to_dtype(a.0.dtype());
            lift(b.and_then(|b| t::binary(&a.0, &b, $op)))
        });
        $engine.register_fn($sym, |a: ScriptTensor, b: f64| {
            lift(t::tensor_scalar(&a.0, b, $op))
        });
        $engine.register_fn($sym, |a: ScriptTensor, b: i64| {
            lift(t::tensor_scalar(&a.0, b as f64, $op))
        });
        $engine.register_fn($sym, |a: f64, b: ScriptTensor| {
            lift(t::scalar_tensor(a, &b.0, $op))
        });
        $engine.register_fn($sym, |a: i64, b: ScriptTensor| {
            lift(t::scalar_tensor(a as f64, &b.0, $op))
        });
    };
}

/// `+ - * /` between tensors, and between a tensor and a float or an integer, in either order.
///
/// ```rhai
/// let m = batch.beta * (batch.chosen_logps - batch.ref_chosen_logps) - 1;
/// let half = 1 / (2.0 * batch.beta);
/// ```
fn register_arithmetic(engine: &mut Engine) {
    arithmetic!(engine, "+", '+');
    arithmetic!(engine, "-", '-');
    arithmetic!(engine, "*", '*');
    arithmetic!(engine, "/", '/');
    engine.register_fn("-", |a: ScriptTensor| lift(a.0.neg()));
}

/// Element-wise functions. PyTorch's gradient conventions hold at kinks: `relu` and `abs` have
/// gradient 0 at 0, `clamp` passes the gradient on its closed interval.
///
/// ```rhai
/// let l = -log_sigmoid(batch.beta * m);      // DPO
/// let p = relu(batch.ref_chosen_logps - batch.chosen_logps);   // DPOP penalty
/// let w = clamp(exp(batch.chosen_wpo + batch.rejected_wpo), 0.0, 1.0);
/// ```
fn register_unary(engine: &mut Engine) {
    let unary: [(&str, TensorFn); 13] = [
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
        ("detach", |x| Ok(x.detach())),
    ];
    for (name, f) in unary {
        engine.register_fn(name, move |x: ScriptTensor| lift(f(&x.0)));
    }
    engine.register_fn("pow", |x: ScriptTensor, e: Dynamic| {
        let e = number(&e, "pow exponent")?;
        lift(x.0.powf(e))
    });
    engine.register_fn("clamp", |x: ScriptTensor, lo: Dynamic, hi: Dynamic| {
        let lo = number(&lo, "clamp lower bound")?;
        let hi = number(&hi, "clamp upper bound")?;
        if lo > hi {
            return fail(format!("clamp: lower bound {lo} is above upper bound {hi}"));
        }
        lift(t::clamp(&x.0, lo, hi))
    });
}

/// `max` and `min` of two tensors or of a tensor and a number (either order); at ties the
/// gradient is split evenly, as `torch.maximum` does.
///
/// ```rhai
/// let hinge = max(0.0, 1.0 - batch.beta * m);
/// ```
fn register_binary_functions(engine: &mut Engine) {
    for (name, f) in [
        (
            "max",
            t::maximum as fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
        ),
        ("min", t::minimum),
    ] {
        engine.register_fn(name, move |a: ScriptTensor, b: ScriptTensor| {
            let b = b.0.to_dtype(a.0.dtype());
            lift(b.and_then(|b| f(&a.0, &b)))
        });
        engine.register_fn(name, move |a: ScriptTensor, b: Dynamic| {
            let s = lift(t::scalar_like(&a.0, number(&b, name)?))?;
            lift(f(&a.0, &s.0))
        });
        engine.register_fn(name, move |a: Dynamic, b: ScriptTensor| {
            let s = lift(t::scalar_like(&b.0, number(&a, name)?))?;
            lift(f(&s.0, &b.0))
        });
    }
}

/// Reductions to a scalar tensor, and reading values back.
///
/// ```rhai
/// let loss = mean(per_pair);           // a scalar tensor
/// let v = to_float(sum(batch.weight)); // a Rhai float
/// let xs = to_array(batch.chosen_logps);
/// let b = len(batch.weight);
/// ```
fn register_reductions(engine: &mut Engine) {
    engine.register_fn("mean", |x: ScriptTensor| lift(x.0.mean_all()));
    engine.register_fn("sum", |x: ScriptTensor| lift(x.0.sum_all()));
    engine.register_fn("len", |x: ScriptTensor| x.0.elem_count() as i64);
    engine.register_fn("to_float", |x: ScriptTensor| -> Res<f64> {
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
    engine.register_fn("to_array", |x: ScriptTensor| -> Res<Array> {
        match t::to_f64_vec(&x.0) {
            Ok(v) => Ok(v.into_iter().map(Dynamic::from_float).collect()),
            Err(e) => fail(e.to_string()),
        }
    });
    engine.register_fn("shape", |x: ScriptTensor| -> Array {
        x.0.dims()
            .iter()
            .map(|d| Dynamic::from_int(*d as i64))
            .collect()
    });
    engine.register_fn("to_string", |x: &mut ScriptTensor| describe(&x.0));
    engine.register_fn("to_debug", |x: &mut ScriptTensor| describe(&x.0));
}

fn describe(x: &Tensor) -> String {
    match t::to_f64_vec(x) {
        Ok(v) if x.rank() == 0 => format!("Tensor({})", v[0]),
        Ok(v) => format!("Tensor({v:?})"),
        Err(e) => format!("Tensor(<{e}>)"),
    }
}

/// Building tensors, mostly for `test_*` functions.
///
/// ```rhai
/// let x = tensor([0.5, -1.0, 2]);   // f64, shape [3]
/// let z = zeros_like(x);
/// let w = full_like(x, 1.5);
/// ```
fn register_constructors(engine: &mut Engine) {
    engine.register_fn("tensor", |values: Array| -> Res<ScriptTensor> {
        let mut out = Vec::with_capacity(values.len());
        for v in &values {
            out.push(number(v, "tensor")?);
        }
        lift(Tensor::new(out, &Device::Cpu))
    });
    engine.register_fn("tensor", |value: f64| {
        lift(Tensor::new(value, &Device::Cpu))
    });
    engine.register_fn("zeros_like", |x: ScriptTensor| lift(x.0.zeros_like()));
    engine.register_fn("ones_like", |x: ScriptTensor| lift(x.0.ones_like()));
    engine.register_fn("full_like", |x: ScriptTensor, v: Dynamic| {
        let v = number(&v, "full_like")?;
        lift(x.0.ones_like().and_then(|o| o.affine(v, 0.0)))
    });
    engine.register_fn("to_f32", |x: ScriptTensor| lift(x.0.to_dtype(DType::F32)));
}

/// Assertions for `fn test_*()` functions run by `trainer check`.
///
/// ```rhai
/// fn test_all_correct_gets_weight_one() {
///     assert_close(weight(#{n: 4, pc: 4, pe: 0, alpha: 1.0, eps: 0.01}), 1.0, 1e-12);
///     assert(true, "never fails");
///     assert_eq(1 + 1, 2);
/// }
/// ```
fn register_assertions(engine: &mut Engine) {
    engine.register_fn("assert", |cond: bool| -> Res<()> {
        if cond {
            Ok(())
        } else {
            fail("assertion failed")
        }
    });
    engine.register_fn("assert", |cond: bool, msg: &str| -> Res<()> {
        if cond {
            Ok(())
        } else {
            fail(format!("assertion failed: {msg}"))
        }
    });
    engine.register_fn("assert_eq", |a: Dynamic, b: Dynamic| -> Res<()> {
        let same = match (number(&a, "").ok(), number(&b, "").ok()) {
            (Some(x), Some(y)) => x == y,
            _ => a.type_name() == b.type_name() && a.to_string() == b.to_string(),
        };
        if same {
            Ok(())
        } else {
            fail(format!("assert_eq failed: {a} != {b}"))
        }
    });
    engine.register_fn(
        "assert_close",
        |a: Dynamic, b: Dynamic, tol: f64| -> Res<()> {
            let (xs, ys) = (values(&a)?, values(&b)?);
            if xs.len() != ys.len() && ys.len() != 1 {
                return fail(format!("assert_close: {} values vs {}", xs.len(), ys.len()));
            }
            for (i, x) in xs.iter().enumerate() {
                let y = if ys.len() == 1 { ys[0] } else { ys[i] };
                if (x - y).abs() > tol || x.is_nan() != y.is_nan() {
                    return fail(format!(
                        "assert_close failed at {i}: {x} vs {y} (tolerance {tol})"
                    ));
                }
            }
            Ok(())
        },
    );
}

/// A number, an array of numbers, or a tensor, as a flat list of f64.
fn values(d: &Dynamic) -> Res<Vec<f64>> {
    if let Some(x) = d.clone().try_cast::<ScriptTensor>() {
        return t::to_f64_vec(&x.0).or_else(|e| fail(e.to_string()));
    }
    if d.is_array() {
        let arr = d.clone().into_array().unwrap_or_default();
        return arr.iter().map(|v| number(v, "assert_close")).collect();
    }
    Ok(vec![number(d, "assert_close")?])
}

/// Seeded choices for pair and weight hooks (never `rand`: results must not depend on run order).
///
/// ```rhai
/// let i = pick(group.seed, len(group.samples));   // same seed, same index
/// let u = uniform(group.seed, 1);                 // in [0, 1), stream 1
/// ```
fn register_helpers(engine: &mut Engine) {
    engine.register_fn("pick", |seed: i64, n: i64| -> Res<i64> {
        if n <= 0 {
            return fail(format!("pick: n must be positive, got {n}"));
        }
        Ok(crate::rng::Rng::new(seed as u64).below(n as u64) as i64)
    });
    engine.register_fn("uniform", |seed: i64, stream: i64| -> f64 {
        crate::rng::Rng::derived(seed as u64, &[stream as u64]).next_f64()
    });
}

fn grade_map(g: crate::grade::Grade) -> rhai::Map {
    let verdict = match g.verdict {
        crate::grade::Verdict::Correct => "correct",
        crate::grade::Verdict::Wrong => "wrong",
        crate::grade::Verdict::Invalid => "invalid",
    };
    let mut m = rhai::Map::new();
    m.insert("correct".into(), Dynamic::from_bool(g.is_correct()));
    m.insert("answer".into(), Dynamic::from(g.answer));
    m.insert("verdict".into(), Dynamic::from(verdict.to_string()));
    m
}

fn optional(s: Option<String>) -> Dynamic {
    s.map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}

/// The native graders, for grade hooks. Each `grade_*` returns `#{correct, answer, verdict}`.
///
/// ```rhai
/// fn grade(response, example) { grade_gsm8k(response, example.gold) }
/// let a = gsm8k_answer("... #### 42");          // "42", or () when there is no number
/// let b = math_answer("so \\boxed{\\frac12}");   // "\\frac12", or ()
/// let same = math_equal("\\frac{1}{2}", "0.5"); // true
/// ```
fn register_graders(engine: &mut Engine) {
    engine.register_fn("grade_gsm8k", |r: &str, gold: &str| {
        grade_map(crate::grade::grade_gsm8k(r, gold))
    });
    engine.register_fn("grade_math", |r: &str, gold: &str| {
        grade_map(crate::grade::grade_math(r, gold))
    });
    engine.register_fn("grade_exact", |r: &str, gold: &str| {
        grade_map(crate::grade::grade_exact(r, gold))
    });
    engine.register_fn("gsm8k_answer", |r: &str| {
        optional(crate::grade::gsm8k_answer(r))
    });
    engine.register_fn("gsm8k_gold", |g: &str| crate::grade::gsm8k_gold(g));
    engine.register_fn("math_answer", |r: &str| {
        optional(crate::grade::math_answer(r))
    });
    engine.register_fn("math_equal", |a: &str, b: &str| {
        crate::grade::math_equal(a, b)
    });
    engine.register_fn("normalize_math", |a: &str| crate::grade::normalize_math(a));
}
