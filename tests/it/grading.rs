//! `trainer grade` on the real datasets: every GSM8K gold answer given as a response is correct;
//! every MATH-500 gold answer is correct against itself in `\boxed{}` and a perturbed one is not.

use std::io::Write;

use crate::common::{shared, stdout, trainer};

fn grade_lines(grader: &str, lines: &[serde_json::Value]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    let out = trainer(
        &[
            "grade",
            "--grader",
            grader,
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), lines.len() + 1);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn gsm8k_grader_accepts_every_test_solution() {
    let Some(dir) = shared() else { return };
    let rows = records(&dir.join("data/gsm8k/test.jsonl"));
    let lines: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let answer = r["answer"].as_str().unwrap();
            let gold = answer.rsplit("####").next().unwrap().trim();
            serde_json::json!({"response": answer, "gold": gold})
        })
        .collect();
    let summary = grade_lines("gsm8k", &lines);
    assert_eq!(summary["correct"], 1319, "{summary}");
}

#[test]
fn math_grader_accepts_gold_answers_and_rejects_perturbed_ones() {
    let Some(dir) = shared() else { return };
    let rows = records(&dir.join("data/math500/test.jsonl"));
    let boxed = |r: &serde_json::Value, suffix: &str| {
        let a = r["answer"].as_str().unwrap();
        serde_json::json!({"response": format!("The answer is $\\boxed{{{a}{suffix}}}$."), "gold": a})
    };
    let same: Vec<_> = rows.iter().map(|r| boxed(r, "")).collect();
    assert_eq!(grade_lines("math", &same)["correct"], 500);
    let perturbed: Vec<_> = rows.iter().map(|r| boxed(r, "+1")).collect();
    let summary = grade_lines("math", &perturbed);
    assert_eq!(summary["correct"], 0, "{summary}");
    assert_eq!(summary["wrong"], 500, "{summary}");
    let solutions: Vec<_> = rows
        .iter()
        .map(|r| serde_json::json!({"response": r["solution"], "gold": r["answer"]}))
        .collect();
    assert_eq!(grade_lines("math", &solutions)["correct"], 500);
}

#[test]
fn grade_reports_malformed_input_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = crate::common::write(
        dir.path(),
        "bad.jsonl",
        "{\"response\": \"4\", \"gold\": \"4\"}\n{\"response\": 4\n",
    );
    let out = trainer(
        &[
            "grade",
            "--grader",
            "gsm8k",
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    crate::common::assert_user_error(&out, &["bad.jsonl:2:", "malformed JSON"]);
    let input = crate::common::write(dir.path(), "missing.jsonl", "{\"response\": \"4\"}\n");
    let out = trainer(
        &[
            "grade",
            "--grader",
            "gsm8k",
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    crate::common::assert_user_error(&out, &["missing.jsonl:1:", "missing field `gold`"]);
}
