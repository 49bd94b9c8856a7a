//! Rust validates what hooks return: wrong types, non-finite weights, wrong shapes and responses
//! that are not in the group are errors naming the script and the function.

use candle_core::{Device, Tensor};
use serde::Serialize;
use trainer::grade::Verdict;
use trainer::script::LossInputs;
use trainer::script::{HookKind, Picked, ScriptHost};

use crate::common::write;

fn host_with(text: &str) -> (tempfile::TempDir, ScriptHost, trainer::script::UnitId) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "hook.rhai", text);
    let mut host = ScriptHost::new(&crate::common::limits(), Some(&path));
    let unit = host.load_file(&path).unwrap();
    (dir, host, unit)
}

#[derive(Serialize)]
struct Stats {
    n: i64,
    pc: i64,
    pe: i64,
}

fn weight_error(body: &str) -> String {
    let (_d, host, unit) = host_with(&format!("fn weight(stats) {{ {body} }}\n"));
    let hook = host.require_hook(unit, HookKind::Weight).unwrap();
    let err = host
        .call_weight(hook, &Stats { n: 4, pc: 1, pe: 3 }, &[])
        .unwrap_err();
    assert_eq!(trainer::exit_code(&err), 2);
    format!("{err:#}")
}

#[test]
fn non_finite_or_negative_weight_is_refused() {
    for body in ["0.0 / 0.0", "1.0 / 0.0", "-1.0"] {
        let msg = weight_error(body);
        assert!(
            msg.contains("hook.rhai") && msg.contains("weight(stats)") && msg.contains("finite"),
            "{msg}"
        );
    }
}

#[test]
fn weight_of_the_wrong_type_is_refused() {
    let msg = weight_error("\"heavy\"");
    assert!(msg.contains("expected a number"), "{msg}");
}

#[test]
fn integer_weight_is_accepted() {
    let (_d, host, unit) = host_with("fn weight(stats) { stats.pe }\n");
    let hook = host.require_hook(unit, HookKind::Weight).unwrap();
    assert_eq!(
        host.call_weight(hook, &Stats { n: 4, pc: 1, pe: 3 }, &[])
            .unwrap(),
        3.0
    );
}

#[derive(Serialize)]
struct Example {
    gold: String,
}

#[test]
fn grade_hook_may_return_bool_or_map() {
    let (_d, host, unit) = host_with(
        "fn grade(r, ex) { if r == \"b\" { return r == ex.gold; } #{correct: r == ex.gold, answer: r} }\n",
    );
    let hook = host.require_hook(unit, HookKind::Grade).unwrap();
    let ex = Example { gold: "a".into() };
    let g = host.call_grade(hook, "a", &ex).unwrap();
    assert_eq!((g.verdict, g.answer.as_str()), (Verdict::Correct, "a"));
    assert_eq!(
        host.call_grade(hook, "b", &ex).unwrap().verdict,
        Verdict::Wrong
    );
    assert_eq!(
        host.call_grade(hook, "", &ex).unwrap().verdict,
        Verdict::Invalid
    );
}

#[test]
fn grade_hook_returning_a_number_is_refused() {
    let (_d, host, unit) = host_with("fn grade(r, ex) { 1 }\n");
    let hook = host.require_hook(unit, HookKind::Grade).unwrap();
    let msg = format!(
        "{:#}",
        host.call_grade(hook, "a", &Example { gold: "a".into() })
            .unwrap_err()
    );
    assert!(
        msg.contains("grade(response, example)") && msg.contains("expected a bool"),
        "{msg}"
    );
}

#[derive(Serialize)]
struct Group {
    samples: Vec<String>,
}

#[test]
fn pair_hook_response_must_be_in_the_group() {
    let (_d, host, unit) =
        host_with("fn pair(g) { #{chosen: g.samples[0], rejected: \"made up\"} }\n");
    let hook = host.require_hook(unit, HookKind::Pair).unwrap();
    let group = Group {
        samples: vec!["x".into(), "y".into()],
    };
    let err = host
        .call_pair(hook, &group, &["x", "y"], Some("gold"))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("not in the group") && msg.contains("made up"),
        "{msg}"
    );
    assert_eq!(trainer::exit_code(&err), 2);
}

#[test]
fn pair_hook_can_pick_by_index_text_or_gold_and_skip() {
    let (_d, host, unit) = host_with(
        "fn pair(g) { if g.samples.len() == 1 { return (); } if g.samples.len() == 3 { return #{chosen: \"gold\", rejected: 2}; } #{chosen: 1, rejected: \"x\"} }\n",
    );
    let hook = host.require_hook(unit, HookKind::Pair).unwrap();
    let two = Group {
        samples: vec!["x".into(), "y".into()],
    };
    let p = host
        .call_pair(hook, &two, &["x", "y"], None)
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.chosen, p.rejected),
        (Picked::Sample(1), Picked::Sample(0))
    );
    let three = Group {
        samples: vec!["x".into(), "y".into(), "z".into()],
    };
    let p = host
        .call_pair(hook, &three, &["x", "y", "z"], Some("gold"))
        .unwrap()
        .unwrap();
    assert_eq!((p.chosen, p.rejected), (Picked::Gold, Picked::Sample(2)));
    let one = Group {
        samples: vec!["x".into()],
    };
    assert!(host.call_pair(hook, &one, &["x"], None).unwrap().is_none());
}

fn batch(b: usize) -> LossInputs {
    let t = Tensor::new(vec![-1.0f32; b], &Device::Cpu).unwrap();
    LossInputs {
        chosen_logps: t.clone(),
        rejected_logps: t.clone(),
        ref_chosen_logps: t.clone(),
        ref_rejected_logps: t.clone(),
        chosen_tokens: t.clone(),
        rejected_tokens: t.clone(),
        weight: t.clone(),
        chosen_wpo: t.clone(),
        rejected_wpo: t,
    }
}

#[test]
fn loss_hook_must_return_a_tensor_of_the_right_shape() {
    let (_d, host, unit) = host_with("fn loss(batch) { 1.0 }\n");
    let hook = host.require_hook(unit, HookKind::Loss).unwrap();
    let msg = format!(
        "{:#}",
        host.call_loss(
            hook,
            &batch(3),
            &crate::common::fixture_loss().hook_params()
        )
        .unwrap_err()
    );
    assert!(msg.contains("expected a Tensor"), "{msg}");

    let (_d, host, unit) = host_with("fn loss(batch) { tensor([1.0, 2.0]) }\n");
    let hook = host.require_hook(unit, HookKind::Loss).unwrap();
    let msg = format!(
        "{:#}",
        host.call_loss(
            hook,
            &batch(3),
            &crate::common::fixture_loss().hook_params()
        )
        .unwrap_err()
    );
    assert!(msg.contains("shape [2]") && msg.contains("[3]"), "{msg}");
}

#[test]
fn runtime_error_in_a_hook_names_file_line_and_function() {
    let (_d, host, unit) =
        host_with("fn helper(b) {\n  b.nothing + 1\n}\nfn loss(batch) { helper(batch) }\n");
    let hook = host.require_hook(unit, HookKind::Loss).unwrap();
    let msg = format!("{:#}", host.call_loss(hook, &batch(2), &[]).unwrap_err());
    assert!(
        msg.contains("hook.rhai:2:") && msg.contains("in fn helper"),
        "{msg}"
    );
}
