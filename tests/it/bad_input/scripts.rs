//! Bad experiment scripts in a real run: syntax errors, runaway code, forbidden imports and hooks
//! that return the wrong thing. Each names the script file and the function (or line).

use std::time::{Duration, Instant};

use super::{with_script, with_script_files};

#[test]
fn script_syntax_error_names_file_and_line() {
    with_script("fn weight(stats) {\n  let x = 1 +;\n}\n").assert(&["exp.rhai:2:", "syntax error"]);
}

#[test]
fn runaway_loop_in_a_hook_stops_at_the_operation_limit() {
    let started = Instant::now();
    let r = with_script("fn weight(stats) { loop { } }\n");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    r.assert(&["exp.rhai", "weight", "script.max_operations"]);
}

#[test]
fn recursion_bomb_in_a_hook_stops_at_the_call_depth_limit() {
    with_script("fn f(n) { f(n + 1) + f(n + 2) }\nfn weight(stats) { f(0) }\n").assert(&[
        "exp.rhai",
        "weight",
        "script.max_call_depth",
    ]);
}

#[test]
fn giant_string_in_a_hook_hits_the_size_limit() {
    with_script("fn grade(response, example) { let s = \"x\"; loop { s += s; } }\n").assert(&[
        "exp.rhai",
        "grade",
        "script.max_string_size",
    ]);
}

#[test]
fn import_outside_plugins_and_the_script_folder_is_refused() {
    with_script_files(&[
        ("secret.rhai", "fn weight(s) { 1.0 }\n"),
        (
            "exp/sneaky.rhai",
            "import \"../secret\" as s;\nfn weight(stats) { s::weight(stats) }\n",
        ),
    ])
    .assert(&["sneaky.rhai:1:", "outside plugins/ and the script's folder"]);
}

#[test]
fn weight_hook_returning_a_string_names_the_function() {
    with_script("fn weight(stats) { \"heavy\" }\n").assert(&[
        "exp.rhai",
        "weight(stats)",
        "expected a number",
    ]);
}

#[test]
fn weight_hook_returning_infinity_names_the_function() {
    with_script("fn weight(stats) { 1.0 / 0.0 }\n").assert(&[
        "exp.rhai",
        "weight(stats)",
        "finite",
    ]);
}

#[test]
fn grade_hook_returning_a_number_names_the_function() {
    with_script("fn grade(response, example) { 1 }\n").assert(&[
        "exp.rhai",
        "grade(response, example)",
        "expected a bool",
    ]);
}

#[test]
fn pair_hook_returning_a_response_not_in_the_group_is_refused() {
    with_script("fn pair(group) { #{chosen: \"made up\", rejected: 0} }\n").assert(&[
        "exp.rhai",
        "pair",
        "made up",
        "not in the group",
    ]);
}

#[test]
fn loss_hook_producing_nan_stops_with_the_step() {
    with_script("fn loss(batch) { (batch.chosen_logps - batch.chosen_logps) / 0.0 }\n").assert(&[
        "training step 1",
        "NaN",
        "fn loss(batch)",
        "exp.rhai",
    ]);
}

#[test]
fn loss_hook_producing_infinity_stops_with_the_step() {
    with_script("fn loss(batch) { batch.chosen_logps * 0.0 + 1.0 / 0.0 }\n").assert(&[
        "training step 1",
        "inf",
        "fn loss(batch)",
        "exp.rhai",
    ]);
}
