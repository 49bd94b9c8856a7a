//! Assertions for the `test_*` functions `trainer check` runs, and the seeded helpers of pair and
//! weight hooks.

use rhai::Dynamic;

use super::{Builder, Res, fail, func, number};
use crate::script::tensor::{self as t, ScriptTensor};

pub(super) fn register(b: &mut Builder) {
    register_assertions(b);
    register_helpers(b);
}

fn register_assertions(b: &mut Builder) {
    b.group(
        "Assertions",
        "For `fn test_*()` functions, which `trainer check` runs. `assert_close(a, b, tol)` takes \
         numbers, arrays or tensors (a single `b` is compared with every value of `a`).",
        r#"
fn weight(stats) { 1.0 - stats.pc / stats.n }
fn test_a_question_always_solved_gets_weight_zero() {
    assert_close(weight(#{n: 4.0, pc: 4.0}), 0.0, 1e-12);
    assert(weight(#{n: 4.0, pc: 1.0}) > 0.5, "a hard question weighs more");
    assert(true);
    assert_eq(1 + 1, 2);
}
"#,
    );
    func!(b, "assert", |cond: bool| -> Res<()> {
        if cond {
            Ok(())
        } else {
            fail("assertion failed")
        }
    });
    func!(b, "assert", |cond: bool, msg: &str| -> Res<()> {
        if cond {
            Ok(())
        } else {
            fail(format!("assertion failed: {msg}"))
        }
    });
    func!(b, "assert_eq", |a: Dynamic, b: Dynamic| -> Res<()> {
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
    func!(b, "assert_close", |a: Dynamic, b: Dynamic, tol: f64| {
        assert_close(&a, &b, tol)
    });
}

fn assert_close(a: &Dynamic, b: &Dynamic, tol: f64) -> Res<()> {
    let (xs, ys) = (values(a)?, values(b)?);
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

fn register_helpers(b: &mut Builder) {
    b.group(
        "Seeded choices",
        "For pair and weight hooks: the same seed gives the same choice, whatever order questions \
         are processed in (there is no `rand`).",
        r#"
let seed = 1234;
let i = pick(seed, 8);                            // an index in 0..8
let u = uniform(seed, 1);                         // in [0, 1), stream 1
assert(i >= 0 && i < 8);
assert_eq(pick(seed, 8), i);
assert(u >= 0.0 && u < 1.0 && uniform(seed, 2) != u);
"#,
    );
    func!(b, "pick", |seed: i64, n: i64| -> Res<i64> {
        if n <= 0 {
            return fail(format!("pick: n must be positive, got {n}"));
        }
        Ok(crate::rng::Rng::new(seed as u64).below(n as u64) as i64)
    });
    func!(b, "uniform", |seed: i64, stream: i64| -> f64 {
        crate::rng::Rng::derived(seed as u64, &[stream as u64]).next_f64()
    });
}
