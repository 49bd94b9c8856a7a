//! Bad data files: training, eval and pairs JSONL. Each names the file and line.

use super::{Refusal, tiny_run, train_on_pairs, with_data_file};
use crate::common::write;
use crate::pipeline::recipe;

const GOOD: &str = r##"{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}"##;

#[test]
fn malformed_jsonl_line_names_file_and_line() {
    with_data_file(
        format!("{GOOD}\n{GOOD}\n{{\"question\": \n").as_bytes(),
        &[],
    )
    .assert(&["bad.jsonl:3", "malformed JSON"]);
}

#[test]
fn missing_field_names_file_line_and_field() {
    with_data_file(
        format!("{GOOD}\n{{\"question\": \"What is 2 + 2?\"}}\n").as_bytes(),
        &[],
    )
    .assert(&["bad.jsonl:2", "answer"]);
}

#[test]
fn wrong_field_type_names_file_and_line() {
    with_data_file(b"{\"question\": 7, \"answer\": \"#### 7\"}\n", &[])
        .assert(&["bad.jsonl:1", "question"]);
}

#[test]
fn non_utf8_bytes_name_file_and_line() {
    let mut bytes = format!("{GOOD}\n").into_bytes();
    bytes.extend_from_slice(b"{\"question\": \"caf\xe9\", \"answer\": \"#### 1\"}\n");
    with_data_file(&bytes, &[]).assert(&["bad.jsonl:2", "UTF-8"]);
}

#[test]
fn empty_training_file_is_refused() {
    with_data_file(b"", &[]).assert(&["bad.jsonl"]);
}

#[test]
fn gold_answer_without_a_number_names_the_line() {
    with_data_file(
        format!("{GOOD}\n{{\"question\": \"Hi?\", \"answer\": \"no number here\"}}\n").as_bytes(),
        &[],
    )
    .assert(&["bad.jsonl:2"]);
}

#[test]
fn math_problem_without_its_field_names_file_and_line() {
    with_data_file(
        b"{\"question\": \"1+1\", \"answer\": \"2\"}\n",
        &["data.format=\"math\"", "grade.grader=\"math\""],
    )
    .assert(&["bad.jsonl:1", "problem"]);
}

#[test]
fn missing_data_file_names_the_key_or_path() {
    tiny_run(&["data.train=\"/nonexistent/train.jsonl\""]).assert(&[
        "data.train",
        "/nonexistent/train.jsonl",
        "no such file",
    ]);
}

#[test]
fn malformed_eval_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let bad = write(dir.path(), "eval.jsonl", &format!("{GOOD}\n[1, 2]\n"));
    let set = format!("eval.data=\"{}\"", bad.display());
    let out = crate::pipeline::run(dir.path(), &recipe, "run", &[&set]);
    Refusal { dir, out }.assert(&["eval.jsonl:2", "expected a JSON object"]);
}

#[test]
fn malformed_off_policy_pairs_file_names_file_and_line() {
    train_on_pairs(
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n{\"prompt\": \"a\", \"chosen\": \"b\"}\n",
    )
    .assert(&["off.jsonl:2", "rejected"]);
}

#[test]
fn empty_response_in_a_pairs_file_names_file_and_line() {
    train_on_pairs("{\"prompt\": \"a\", \"chosen\": \"\", \"rejected\": \"c\"}\n")
        .assert(&["off.jsonl:1", "chosen"]);
}

#[test]
fn huge_response_in_a_pairs_file_names_file_and_line() {
    let huge = "x".repeat(5 << 20);
    let text = format!(
        "{{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}}\n{{\"prompt\": \"a\", \"chosen\": \"{huge}\", \"rejected\": \"c\"}}\n"
    );
    train_on_pairs(&text).assert(&["off.jsonl:2", "over the limit of 4 MiB"]);
}

#[test]
fn negative_weight_in_a_pairs_file_names_file_and_line() {
    train_on_pairs("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\", \"weight\": -1}\n")
        .assert(&["off.jsonl:1", "weight"]);
}

#[test]
fn numbers_a_pairs_file_cannot_train_on_name_file_line_and_field() {
    let pair = |extra: &str| {
        format!("{{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"{extra}}}\n")
    };
    train_on_pairs(&pair(", \"weight\": 1e300")).assert(&[
        "off.jsonl:1",
        "`weight` = 1e300",
        "overflows f32",
    ]);
    train_on_pairs(&pair(
        ", \"ref_chosen_logps\": -1e300, \"ref_rejected_logps\": -2",
    ))
    .assert(&["off.jsonl:1", "`ref_chosen_logps`", "overflows f32"]);
    train_on_pairs(&pair(
        ", \"ref_chosen_logps\": 3.5, \"ref_rejected_logps\": -2",
    ))
    .assert(&["off.jsonl:1", "`ref_chosen_logps` = 3.5 is positive"]);
}

#[test]
fn a_pair_whose_chosen_is_its_rejected_names_file_and_line() {
    train_on_pairs("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"b\"}\n")
        .assert(&["off.jsonl:1", "chosen and rejected are the same text"]);
}

#[test]
fn a_folder_given_as_a_data_file_or_a_config_says_it_is_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let set = format!("data.train=\"{}\"", dir.path().display());
    tiny_run(&[&set]).assert(&["data.train", "is a folder, not a file"]);
    let out = crate::common::trainer(&["recipe", "--config", dir.path().to_str().unwrap()], &[]);
    crate::common::assert_user_error(&out, &["--config", "is a folder, not a file"]);
}
