//! The script host seen from the command line: every plugin passes `trainer check`, and broken or
//! hostile scripts stop with exit 2 and a message naming file, line and function.

use std::time::{Duration, Instant};

use crate::common::{assert_user_error, root, stdout, trainer, write};

#[test]
fn every_plugin_passes_check() {
    for (path, _) in trainer::script::PLUGINS {
        let file = format!("plugins/{path}");
        let out = trainer(&["check", "--script", &file], &[]);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{file}: {text}{}",
            crate::common::stderr(&out)
        );
        if path.starts_with("loss/") {
            assert_eq!(text.matches("gradient check").count(), 2, "{file}: {text}");
        }
        assert!(text.contains("checks passed"), "{file}: {text}");
    }
}

#[test]
fn check_api_lists_every_group_of_script_functions_with_its_example() {
    let out = trainer(&["check", "--api"], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    for group in [
        "## Arithmetic",
        "## Element-wise functions",
        "## Assertions",
        "## Graders",
    ] {
        assert!(text.contains(group), "no `{group}` in:\n{text}");
    }
    assert!(text.contains("log_sigmoid, softplus"), "{text}");
    assert!(text.contains("    fn grade(response, example)"), "{text}");
    let both = trainer(&["check", "--api", "--script", "scripts/squared.rhai"], &[]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "--api with --script is refused"
    );
}

#[test]
fn embedded_plugins_are_the_files_on_disk() {
    let mut on_disk: Vec<String> = Vec::new();
    for dir in ["lib", "loss", "weight", "grade", "pair"] {
        for entry in std::fs::read_dir(root().join("plugins").join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            on_disk.push(format!("{dir}/{name}"));
        }
    }
    on_disk.sort();
    let mut embedded: Vec<String> = trainer::script::PLUGINS
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
    for (key, text) in trainer::script::PLUGINS {
        let disk = std::fs::read_to_string(root().join("plugins").join(key)).unwrap();
        assert_eq!(&disk, text, "{key}");
    }
}

#[test]
/// The bound guards against a hang, not a speed: the default limit stops the loop in ~2 s on an idle
/// machine, and other tests load the 2 cores meanwhile.
fn endless_loop_is_stopped_by_the_operation_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(
        dir.path(),
        "spin.rhai",
        "fn weight(stats) { loop { } }\nfn test_spin() { weight(#{}) }\n",
    );
    let started = Instant::now();
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_user_error(&out, &["spin.rhai", "check failed"]);
    assert!(
        stdout(&out).contains("script.max_operations"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn endless_loop_at_top_level_is_an_error_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(
        dir.path(),
        "top.rhai",
        "let i = 0;\nwhile true { i += 1; }\n",
    );
    let started = Instant::now();
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    // A hang guard, as above.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_user_error(&out, &["top.rhai", "script.max_operations"]);
}

#[test]
fn recursion_bomb_is_stopped_by_the_call_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(
        dir.path(),
        "bomb.rhai",
        "fn f(n) { f(n + 1) + f(n + 2) }\nfn test_bomb() { f(0) }\n",
    );
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert_user_error(&out, &["bomb.rhai"]);
    assert!(
        stdout(&out).contains("script.max_call_depth"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn giant_string_is_stopped_by_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "big.rhai", "let s = \"x\";\nloop { s += s; }\n");
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert_user_error(&out, &["big.rhai", "script.max_string_size"]);
}

#[test]
fn import_beside_the_script_and_from_plugins_works() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "helpers.rhai", "fn double(x) { x * 2.0 }\n");
    let s = write(
        dir.path(),
        "mine.rhai",
        "import \"helpers\" as h;\nimport \"loss/dpo\" as dpo;\nfn loss(batch) { h::double(dpo::loss(batch)) }\n\
         fn test_doubles() { let b = dpo::example(\"inside\"); assert_close(loss(b), dpo::loss(b) * 2.0, 1e-12); }\n",
    );
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        crate::common::stderr(&out)
    );
}

#[test]
fn eval_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(
        dir.path(),
        "ev.rhai",
        "fn weight(stats) { eval(\"1.0\") }\n",
    );
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert_user_error(&out, &["ev.rhai:1:", "eval"]);
}

#[test]
fn hook_with_wrong_arity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(dir.path(), "ar.rhai", "fn loss(a, b) { a }\n");
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert_user_error(&out, &["ar.rhai", "fn loss(a, b)", "loss(batch)"]);
}

#[test]
fn gradient_check_catches_a_loss_that_detaches_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(
        dir.path(),
        "det.rhai",
        "fn loss(batch) { -log_sigmoid(detach(batch.chosen_logps) - batch.rejected_logps) }\n",
    );
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert_user_error(&out, &["det.rhai", "check failed"]);
    assert!(stdout(&out).contains("FAILED"));
    assert!(
        stdout(&out).contains("batch.chosen_logps gets no gradient at all"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn failing_test_function_reports_line_and_function() {
    let dir = tempfile::tempdir().unwrap();
    let s = write(
        dir.path(),
        "t.rhai",
        "fn test_math() {\n  assert_close(1.0, 2.0, 0.1);\n}\n",
    );
    let out = trainer(&["check", "--script", s.to_str().unwrap()], &[]);
    assert_user_error(&out, &["t.rhai", "check failed"]);
    let text = stdout(&out);
    assert!(
        text.contains("t.rhai:2:") && text.contains("in fn test_math"),
        "{text}"
    );
}

#[test]
fn pipeline_checks_hooks_before_any_model_work() {
    let out = trainer(
        &[
            "--script",
            "scripts/plug_and_play.rhai",
            "--set",
            "loss.name=nope",
        ],
        &[],
    );
    assert_user_error(&out, &["no plugin `nope`", "plugins/loss/"]);
}

#[test]
fn grade_and_pair_hooks_receive_their_params_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = crate::pipeline::recipe(d, "");
    // The grader accepts an answer when it ends with the gold plus `suffix`; the pair rule
    // takes the sample `chosen_index` says, so both params must arrive for the run to work.
    let script = crate::common::write(
        d,
        "p.rhai",
        "fn grade(response, example) {\n  \
         if example.strict != 1.0 || example.suffix != \"\" { throw \"params missing\"; }\n  \
         grade_gsm8k(response, example.gold)\n}\n\
         fn pair(group) {\n  \
         if group.mode != \"first-two\" { throw \"pair params missing\"; }\n  \
         #{chosen: 0, rejected: 1}\n}\n",
    );
    let out = crate::common::trainer(
        &[
            "--script",
            script.to_str().unwrap(),
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            d.join("run").to_str().unwrap(),
            "--set",
            "grade.params.strict=1",
            "--set",
            "grade.params.suffix=\"\"",
            "--set",
            "pairs.params.mode=\"first-two\"",
            "--set",
            "eval.grader=\"same\"",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}{}",
        crate::common::stdout(&out),
        crate::common::stderr(&out)
    );
    let pairs = std::fs::read_to_string(d.join("run/pairs.jsonl")).unwrap();
    assert!(pairs.contains("\"chosen_from\":\"sample 0\""), "{pairs}");
}

#[test]
fn check_runs_the_tests_of_the_modules_a_script_imports() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "helpers.rhai",
        "fn double(x) { 2.0 * x }\nfn test_double_is_wrong_on_purpose() { assert_eq(double(2.0), 5.0); }\n",
    );
    let script = write(
        dir.path(),
        "main.rhai",
        "import \"helpers\" as h;\nfn weight(stats) { h::double(1.0) }\nfn test_weight() { assert_eq(weight(#{}), 2.0); }\n",
    );
    let out = trainer(&["check", "--script", script.to_str().unwrap()], &[]);
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("test test_weight ... ok"), "{report}");
    assert!(
        report.contains("helpers.rhai::test_double_is_wrong_on_purpose ... FAILED"),
        "{report}"
    );
    assert!(report.contains("1 of 2 checks passed"), "{report}");
}

#[test]
fn a_loss_returning_metrics_logs_and_plots_them_and_a_taken_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = crate::pipeline::recipe(d, "");
    // SLiC-HF's hinge on the log-likelihood margin, reporting how many pairs still violate it.
    let slic = "fn loss(batch) {\n  \
                let m = batch.chosen_logps - batch.rejected_logps;\n  \
                let hinge = max(0.0, 1.0 - m);\n  \
                #{loss: hinge, metrics: #{violating: hinge > 0.0, hinge_mean: mean(hinge), pairs: len(m)}}\n}\n";
    let script = write(d, "slic.rhai", slic);
    let run = d.join("run");
    let out = trainer(
        &[
            "--script",
            script.to_str().unwrap(),
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let violating = v["violating"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&violating), "{line}");
        assert!(v["hinge_mean"].as_f64().unwrap() >= 0.0, "{line}");
        assert_eq!(v["pairs"].as_f64().unwrap(), 2.0, "{line}");
        assert!(
            v["rewards/margins"].is_number(),
            "the DPO rewards are still logged: {line}"
        );
    }
    assert!(run.join("hook_metrics.png").is_file());

    let taken = write(
        d,
        "taken.rhai",
        "fn loss(batch) { #{loss: -log_sigmoid(batch.chosen_logps - batch.rejected_logps), metrics: #{\"rewards/margins\": 1.0}} }\n",
    );
    let out = trainer(
        &[
            "--script",
            taken.to_str().unwrap(),
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            d.join("run2").to_str().unwrap(),
        ],
        &[],
    );
    assert_user_error(&out, &["fn loss(batch)", "metric `rewards/margins`"]);
}

#[test]
fn the_gradient_check_holds_detached_terms_constant_and_names_where_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    // KTO's reference point: the batch's mean reward, detached on purpose.
    let kto = write(
        dir.path(),
        "kto.rhai",
        "fn loss(batch) {\n  let r = batch.beta * (batch.chosen_logps - batch.ref_chosen_logps);\n  \
         let z = detach(mean(r));\n  -log_sigmoid(r - z)\n}\n",
    );
    let out = trainer(&["check", "--script", kto.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("2 of 2 checks passed"),
        "{}",
        stdout(&out)
    );
    // Rebuilding a tensor from its values cuts the graph: autograd sees half the gradient.
    let broken = write(
        dir.path(),
        "broken.rhai",
        "fn loss(batch) {\n  let c = 0.5 * batch.chosen_logps + 0.5 * tensor(to_array(batch.chosen_logps));\n  \
         -log_sigmoid(0.1 * (c - batch.rejected_logps))\n}\n",
    );
    let out = trainer(&["check", "--script", broken.to_str().unwrap()], &[]);
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("worst at batch.chosen_logps["), "{report}");
}

#[test]
fn a_weight_hook_dividing_integers_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = crate::pipeline::recipe(d, "");
    // pc < n on every question of this untrained model, so `pc / n` is 0 for each.
    let script = write(
        d,
        "intdiv.rhai",
        "fn weight(stats) { stats.pc / stats.n }\n",
    );
    let out = trainer(
        &[
            "--script",
            script.to_str().unwrap(),
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            d.join("run").to_str().unwrap(),
        ],
        &[],
    );
    let err = crate::common::stderr(&out);
    assert!(
        err.contains("question weights is 0") && err.contains("integer division"),
        "{err}"
    );
}
