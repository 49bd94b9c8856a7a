//! The native graders and answer extractors, for grade hooks.

use rhai::Dynamic;

use super::{Builder, func};
use crate::grade::{self, Grade, Verdict};

pub(super) fn register(b: &mut Builder) {
    b.group(
        "Graders",
        "The built-in graders: each `grade_*` returns `#{correct, answer, verdict}` with `verdict` \
         one of \"correct\", \"wrong\", \"invalid\" (no answer found); the extractors return the \
         answer text or `()`.",
        r#"
fn grade(response, example) { grade_gsm8k(response, example.gold) }
let g = grade("so 6 * 7 = 42\n#### 42", #{gold: "... #### 42"});
assert(g.correct && g.answer == "42" && g.verdict == "correct");
assert(!grade_math("so \\boxed{\\frac12}", "0.3").correct);
assert(grade_exact(" yes ", "yes").correct);
assert_eq(gsm8k_answer("... #### 42"), "42");   // () when there is no number
assert_eq(gsm8k_gold("Natalia sold 48 ... #### 72"), "72");
assert_eq(math_answer("so \\boxed{\\frac12}"), "\\frac12");
assert(math_equal("\\frac{1}{2}", "0.5"));
assert_eq(normalize_math("\\frac{1}{2}"), normalize_math("\\frac12"));
"#,
    );
    func!(b, "grade_gsm8k", |r: &str, gold: &str| {
        grade_map(grade::grade_gsm8k(r, gold))
    });
    func!(b, "grade_math", |r: &str, gold: &str| {
        grade_map(grade::grade_math(r, gold))
    });
    func!(b, "grade_exact", |r: &str, gold: &str| {
        grade_map(grade::grade_exact(r, gold))
    });
    func!(b, "gsm8k_answer", |r: &str| optional(grade::gsm8k_answer(
        r
    )));
    func!(b, "gsm8k_gold", |g: &str| grade::gsm8k_gold(g));
    func!(b, "math_answer", |r: &str| optional(grade::math_answer(r)));
    func!(b, "math_equal", |a: &str, b: &str| grade::math_equal(a, b));
    func!(b, "normalize_math", |a: &str| grade::normalize_math(a));
}

fn grade_map(g: Grade) -> rhai::Map {
    let verdict = match g.verdict {
        Verdict::Correct => "correct",
        Verdict::Wrong => "wrong",
        Verdict::Invalid => "invalid",
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
