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

#[test]
fn a_script_that_imports_itself_is_a_circular_import_not_a_stack_overflow() {
    with_script("import \"exp\" as me;\nfn weight(stats) { 1.0 }\n").assert(&[
        "exp.rhai:1:",
        "circular import",
        "exp.rhai imports",
    ]);
}

#[test]
fn two_scripts_importing_each_other_name_the_circle_in_run_check_and_export() {
    let files = [
        ("b.rhai", "import \"exp\" as a;\nfn helper() { 1 }\n"),
        ("exp.rhai", "import \"b\" as b;\nfn weight(stats) { 1.0 }\n"),
    ];
    let r = with_script_files(&files);
    let line = r.assert(&["b.rhai:1:", "circular import"]);
    assert!(
        line.contains("exp.rhai imports") && line.contains("b.rhai imports"),
        "{line}"
    );
    let script = r.dir.path().join("exp.rhai");
    let check = crate::common::trainer(&["check", "--script", script.to_str().unwrap()], &[]);
    crate::common::assert_user_error(&check, &["b.rhai:1:", "circular import"]);
    let export = r.dir.path().join("exported.toml");
    let out = crate::common::trainer(
        &[
            "recipe",
            "--script",
            script.to_str().unwrap(),
            "--export",
            export.to_str().unwrap(),
        ],
        &[],
    );
    crate::common::assert_user_error(&out, &["circular import"]);
    assert!(
        !export.exists(),
        "a refused export wrote {}",
        export.display()
    );
}

#[test]
fn a_weight_finite_in_f64_but_not_in_f32_names_the_hook() {
    with_script("fn weight(stats) { 1e308 }\n").assert(&["exp.rhai", "weight", "overflows f32"]);
}

#[test]
fn a_pair_hook_that_skips_every_question_is_named() {
    with_script("fn pair(group) { () }\n").assert(&[
        "no preference pairs",
        "by fn pair(group) in",
        "exp.rhai",
    ]);
}

#[test]
fn a_loss_reading_a_missing_batch_key_fails_before_any_model_work_naming_the_params_table() {
    let r = with_script(
        "fn loss(batch) {\n  let m = batch.beta * (batch.chosen_logps - batch.ref_chosen_logps);\n  \
         -log_sigmoid(m - batch.margin_target)\n}\n",
    );
    r.assert(&[
        "fn loss(batch)",
        "synthetic inputs, checked before any model work",
        "chosen_logps",
        "--set loss.params.NAME=VALUE",
    ]);
    assert!(
        !r.dir.path().join("run").exists(),
        "the run folder was made"
    );
    assert!(!r.dir.path().join("cache").exists(), "model work was done");
}

#[test]
fn a_weight_hook_reading_a_missing_stats_key_names_the_keys_it_was_given() {
    with_script("fn weight(stats) { 1.0 + stats.difficulty * 2.0 }\n").assert(&[
        "fn weight(stats)",
        "synthetic inputs",
        "stats.id, n, pc, pe, invalid, answers",
        "weight.params",
    ]);
}
