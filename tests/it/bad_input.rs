//! Bad input on the pipeline's data files and hooks: each case exits 2 with one message that
//! names the file and line, the recipe key or the script function, and never panics.

use std::path::Path;

use crate::common::{assert_user_error, write};
use crate::pipeline::{recipe, run};

/// Runs the tiny pipeline without eval, the training file replaced by `text`, plus `sets`.
fn with_data_file(text: &[u8], sets: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, text).unwrap();
    let set = format!("data.train=\"{}\"", bad.display());
    let mut all = vec![set.as_str(), "eval.data=\"\""];
    all.extend_from_slice(sets);
    let out = run(dir.path(), &recipe, "run", &all);
    (dir, out)
}

/// Runs the tiny pipeline with `sets` on top of its recipe.
fn tiny_run(sets: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    run(dir.path(), &recipe, "run", sets)
}

fn with_train_file(text: &[u8]) -> (tempfile::TempDir, std::process::Output) {
    with_data_file(text, &[])
}

/// `trainer train --pairs` on a pairs file holding `text`.
fn train_on_pairs(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let pairs = write(dir.path(), "off.jsonl", text);
    let out_dir = dir.path().join("run");
    crate::common::trainer(
        &[
            "train",
            "--config",
            recipe.to_str().unwrap(),
            "--pairs",
            pairs.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    )
}

const GOOD: &str = r##"{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}"##;

#[test]
fn malformed_jsonl_line_names_file_and_line() {
    let (_d, out) = with_train_file(format!("{GOOD}\n{GOOD}\n{{\"question\": \n").as_bytes());
    assert_user_error(&out, &["bad.jsonl:3"]);
}

#[test]
fn missing_field_names_file_line_and_field() {
    let (_d, out) =
        with_train_file(format!("{GOOD}\n{{\"question\": \"What is 2 + 2?\"}}\n").as_bytes());
    assert_user_error(&out, &["bad.jsonl:2", "answer"]);
}

#[test]
fn wrong_field_type_names_file_and_line() {
    let (_d, out) = with_train_file(b"{\"question\": 7, \"answer\": \"#### 7\"}\n");
    assert_user_error(&out, &["bad.jsonl:1", "question"]);
}

#[test]
fn non_utf8_bytes_name_file_and_line() {
    let mut bytes = format!("{GOOD}\n").into_bytes();
    bytes.extend_from_slice(b"{\"question\": \"caf\xe9\", \"answer\": \"#### 1\"}\n");
    let (_d, out) = with_train_file(&bytes);
    assert_user_error(&out, &["bad.jsonl:2"]);
}

#[test]
fn empty_training_file_is_refused() {
    let (_d, out) = with_train_file(b"");
    assert_user_error(&out, &["bad.jsonl"]);
}

#[test]
fn gold_answer_without_a_number_names_the_line() {
    let (_d, out) = with_train_file(
        format!("{GOOD}\n{{\"question\": \"Hi?\", \"answer\": \"no number here\"}}\n").as_bytes(),
    );
    assert_user_error(&out, &["bad.jsonl:2"]);
}

#[test]
fn missing_data_file_names_the_key_or_path() {
    let out = tiny_run(&["data.train=\"/nonexistent/train.jsonl\""]);
    assert_user_error(
        &out,
        &["data.train", "/nonexistent/train.jsonl", "no such file"],
    );
}

#[test]
fn malformed_off_policy_pairs_file_names_file_and_line() {
    let out = train_on_pairs(
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n{\"prompt\": \"a\", \"chosen\": \"b\"}\n",
    );
    assert_user_error(&out, &["off.jsonl:2", "rejected"]);
}

fn with_script(dir: &Path, body: &str) -> std::process::Output {
    let recipe = recipe(dir, "");
    let script = write(dir, "exp.rhai", body);
    let out_dir = dir.join("run");
    crate::common::trainer(
        &[
            "--script",
            script.to_str().unwrap(),
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--set",
            "eval.data=\"\"",
        ],
        &[],
    )
}

#[test]
fn pair_hook_returning_a_response_not_in_the_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = with_script(
        dir.path(),
        "fn pair(group) { #{chosen: \"made up\", rejected: 0} }\n",
    );
    assert_user_error(&out, &["pair", "made up"]);
}

#[test]
fn loss_hook_producing_nan_stops_with_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = with_script(
        dir.path(),
        "fn loss(batch) { (batch.chosen_logps - batch.chosen_logps) / 0.0 }\n",
    );
    assert_user_error(&out, &["training step 1", "NaN", "exp.rhai"]);
}

#[test]
fn giant_string_in_a_hook_hits_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = with_script(
        dir.path(),
        "fn grade(response, example) { let s = \"x\"; loop { s += s; } }\n",
    );
    assert_user_error(&out, &["grade"]);
}

#[test]
fn weight_hook_returning_a_string_names_the_function() {
    let dir = tempfile::tempdir().unwrap();
    let out = with_script(dir.path(), "fn weight(stats) { \"heavy\" }\n");
    assert_user_error(&out, &["weight"]);
}

#[test]
fn malformed_eval_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let bad = write(dir.path(), "eval.jsonl", &format!("{GOOD}\n[1, 2]\n"));
    let set = format!("eval.data=\"{}\"", bad.display());
    let out = run(dir.path(), &recipe, "run", &[&set]);
    assert_user_error(&out, &["eval.jsonl:2"]);
}

#[test]
fn zero_samples_per_question_names_the_key() {
    let out = tiny_run(&["sampling.n=0"]);
    assert_user_error(&out, &["sampling.n"]);
}

#[test]
fn missing_tokenizer_file_names_the_path() {
    let out = tiny_run(&["model.tokenizer=\"/nonexistent/tokenizer.json\""]);
    assert_user_error(
        &out,
        &[
            "model.tokenizer",
            "/nonexistent/tokenizer.json",
            "no such file",
        ],
    );
}

#[test]
fn hybrid_mode_without_an_off_policy_file_names_the_key() {
    let out = tiny_run(&["pairs.mode=\"hybrid\""]);
    assert_user_error(&out, &["pairs.off_policy"]);
}

#[test]
fn math_problem_without_its_field_names_file_and_line() {
    let (_d, out) = with_data_file(
        b"{\"question\": \"1+1\", \"answer\": \"2\"}\n",
        &["data.format=\"math\"", "grade.grader=\"math\""],
    );
    assert_user_error(&out, &["bad.jsonl:1", "problem"]);
}

#[test]
fn empty_response_in_a_pairs_file_names_file_and_line() {
    let out = train_on_pairs("{\"prompt\": \"a\", \"chosen\": \"\", \"rejected\": \"c\"}\n");
    assert_user_error(&out, &["off.jsonl:1", "chosen"]);
}
