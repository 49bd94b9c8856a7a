//! Data as Hugging Face users have it: parquet files for questions and pairs, TRL's
//! conversational pairs rendered through the chat template, and EOS appended to the chosen and
//! rejected texts of pairs from files (as TRL's `DPOTrainer` appends `eos_token_id`).

use std::path::{Path, PathBuf};

use crate::common::{assert_user_error, root, stderr, trainer, write};
use crate::pipeline::recipe;

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn train_on(dir: &Path, pairs: &Path, sets: &[&str]) -> (std::process::Output, PathBuf) {
    let recipe = recipe(dir, "");
    let out_dir = dir.join("run");
    let mut args = vec![
        "train",
        "--config",
        recipe.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    (trainer(&args, &[]), out_dir)
}

/// `tests/fixtures/pairs_conversational.parquet` (tests/python/make_parquet_fixtures.py): three
/// rows of `prompt`/`chosen`/`rejected` message lists, the third with a system turn.
#[test]
fn conversational_parquet_pairs_are_rendered_through_the_chat_template() {
    let dir = tempfile::tempdir().unwrap();
    let (out, run) = train_on(
        dir.path(),
        &fixture("pairs_conversational.parquet"),
        &["model.template=\"chatml\""],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pairs = jsonl(&run.join("pairs.jsonl"));
    assert_eq!(pairs.len(), 3);
    assert_eq!(
        pairs[0]["prompt"],
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    );
    // What the template adds after the prompt, then the tokenizer's EOS (ChatML's turn ends
    // with a newline, so EOS is appended, as TRL appends it).
    assert_eq!(pairs[0]["chosen"], "5<|im_end|>\n<|im_end|>");
    assert_eq!(pairs[0]["rejected"], "6<|im_end|>\n<|im_end|>");
    assert!(
        pairs[2]["prompt"].as_str().unwrap().starts_with(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 9 - 1?"
        )
    );
}

#[test]
fn eos_is_appended_to_string_pairs_from_a_file_unless_they_end_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        r#"{"prompt": "What is 1 + 1?\n", "chosen": "2", "rejected": "3"}"#,
        r#"{"prompt": "What is 2 + 2?\n", "chosen": "4<|im_end|>", "rejected": "5"}"#,
        r#"{"prompt": "What is 3 + 3?\n", "chosen": "6", "rejected": "7<|im_end|>"}"#,
    ];
    let pairs = write(dir.path(), "pairs3.jsonl", &(rows.join("\n") + "\n"));
    let (out, run) = train_on(dir.path(), &pairs, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<(String, String)> = jsonl(&run.join("pairs.jsonl"))
        .iter()
        .map(|p| {
            (
                p["chosen"].as_str().unwrap().to_string(),
                p["rejected"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [("2", "3"), ("4", "5"), ("6", "7")]
        .map(|(c, r)| (format!("{c}<|im_end|>"), format!("{r}<|im_end|>")));
    assert_eq!(got, want);
}

#[test]
fn questions_are_read_from_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let out_dir = dir.path().join("run");
    let data = format!("eval.data=\"{}\"", fixture("gsm8k_3.parquet").display());
    let out = trainer(
        &[
            "eval",
            "--config",
            recipe.to_str().unwrap(),
            "--set",
            &data,
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let evals = jsonl(&out_dir.join("eval_before.jsonl"));
    assert_eq!(evals.len(), 3);
}

#[test]
fn a_broken_parquet_file_or_conversations_without_a_template_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let fake = write(dir.path(), "pairs.parquet", "prompt,chosen,rejected\n");
    let (out, _) = train_on(dir.path(), &fake, &[]);
    assert_user_error(&out, &["pairs.parquet", "not a readable parquet file"]);
    // `trainer score` takes pairs as they are: a conversation needs the run's chat template.
    let model = crate::pipeline::tiny_model(dir.path());
    let out = trainer(
        &[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--pairs",
            fixture("pairs_conversational.parquet").to_str().unwrap(),
            "--loss",
            "dpo",
        ],
        &[],
    );
    assert_user_error(
        &out,
        &["pairs_conversational.parquet:1", "need a chat template"],
    );
}
