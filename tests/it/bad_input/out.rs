//! `--out` that must not be written: a user's folder, a file, an unwritable place, a finished or
//! different run (without `--force`), and a folder another process is using.

use std::fs::File;

use crate::common::{assert_user_error, stderr, write};
use crate::pipeline::{recipe, run};

#[test]
fn out_naming_a_users_folder_refuses_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let mine = dir.path().join("mine");
    write(&mine, "recipe.toml", "# my own notes\n");
    write(&mine, "pairs.jsonl", "{\"mine\": true}\n");
    let out = run(dir.path(), &recipe, "mine", &[]);
    assert_user_error(
        &out,
        &[
            "--out",
            "mine",
            "is not empty and is not a run folder",
            "--force",
        ],
    );
    let mut names: Vec<String> = std::fs::read_dir(&mine)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["pairs.jsonl", "recipe.toml"], "nothing added");
    assert_eq!(
        std::fs::read_to_string(mine.join("recipe.toml")).unwrap(),
        "# my own notes\n"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("pairs.jsonl")).unwrap(),
        "{\"mine\": true}\n"
    );
}

#[test]
fn out_naming_the_filesystem_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let out = run(dir.path(), &recipe, "/", &[]);
    assert_user_error(&out, &["--out /", "is not empty and is not a run folder"]);
    assert!(
        !std::path::Path::new("/final").exists() && !std::path::Path::new("/recipe.toml").exists()
    );
}

#[test]
fn out_naming_a_file_or_an_uncreatable_folder_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    write(dir.path(), "a_file", "x");
    let out = run(dir.path(), &recipe, "a_file", &[]);
    assert_user_error(&out, &["--out", "a_file", "is a file, not a folder"]);
    let out = run(dir.path(), &recipe, "/proc/trainer-test/run", &[]);
    assert_user_error(
        &out,
        &[
            "--out /proc/trainer-test/run",
            "cannot create the run folder",
        ],
    );
}

#[test]
fn a_finished_run_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let first = run(dir.path(), &recipe, "run", &["eval.data=\"\""]);
    assert!(first.status.success(), "{}", stderr(&first));
    let summary = std::fs::read(dir.path().join("run/summary.json")).unwrap();
    let other = run(
        dir.path(),
        &recipe,
        "run",
        &["eval.data=\"\"", "train.lr=1e-4"],
    );
    assert_user_error(&other, &["holds a finished run", "--force"]);
    assert_eq!(
        std::fs::read(dir.path().join("run/summary.json")).unwrap(),
        summary
    );
    write(&dir.path().join("run"), "stale.txt", "from the old run");
    let forced = crate::common::trainer(
        &[
            "--script",
            "scripts/plug_and_play.rhai",
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            dir.path().join("run").to_str().unwrap(),
            "--set",
            "eval.data=\"\"",
            "--set",
            "train.lr=1e-4",
            "--force",
        ],
        &[],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        !dir.path().join("run/stale.txt").exists(),
        "the old run was replaced"
    );
    let text = std::fs::read_to_string(dir.path().join("run/recipe.toml")).unwrap();
    assert!(text.contains("lr = 0.0001"), "{text}");
}

#[test]
fn a_run_folder_another_process_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    let lock = File::create(busy.join(".trainer.lock")).unwrap();
    lock.try_lock().unwrap();
    let out = run(dir.path(), &recipe, "busy", &[]);
    assert_user_error(
        &out,
        &["busy", "another trainer process is using this run folder"],
    );
    drop(lock);
    assert!(!busy.join("final").exists() && !busy.join("recipe.toml").exists());
}
