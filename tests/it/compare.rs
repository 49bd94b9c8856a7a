//! `trainer compare`: runs grouped by their whole recipe less the seeds (two values of one loss
//! parameter never merge), runs evaluated differently refused, duplicate seeds flagged, `--by`
//! checked, paired differences to a baseline run, and sweep folders read.

use std::path::Path;

use crate::common::{assert_user_error, stderr, stdout, trainer};
use crate::pipeline::{recipe, run};

fn finished(dir: &Path, recipe: &Path, out: &str, sets: &[&str]) {
    let o = run(dir, recipe, out, sets);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

fn compare(dir: &Path, args: &[&str]) -> std::process::Output {
    let png = dir.join("compare.png");
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    all.extend(["--out", png.to_str().unwrap()]);
    trainer(&all, &[])
}

#[test]
fn two_values_of_one_loss_parameter_stay_apart_and_a_baseline_gives_paired_differences() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = recipe(d, "");
    for (out, lambda, seed) in [
        ("l1-s1", "1.0", "1"),
        ("l1-s2", "1.0", "2"),
        ("l50-s1", "50.0", "1"),
    ] {
        let sets = [
            "loss.name=\"dpop\"".to_string(),
            format!("loss.lambda={lambda}"),
            format!("run.seed={seed}"),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        finished(d, &recipe, out, &sets);
    }
    let p = |n: &str| d.join(n).display().to_string();
    let out = compare(
        d,
        &[
            &p("l1-s1"),
            &p("l1-s2"),
            &p("l50-s1"),
            "--baseline",
            &p("l50-s1"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("| loss.lambda | n | seeds |"), "{table}");
    let rows: Vec<&str> = table.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].starts_with("| 1.0 | 2 | 1,2 |"), "{table}");
    assert!(rows[1].starts_with("| 50.0 | 1 | 1 |"), "{table}");
    assert!(table.contains("McNemar p"), "{table}");
    // The baseline against itself: no question changes.
    assert!(
        rows[1].contains("+0.0 points [+0.0, +0.0] (0 gained, 0 lost) | 1.000 |"),
        "{table}"
    );
    assert!(d.join("compare.png").is_file());

    // --by naming only the seed-free key is the same grouping; --by on a key that does not tell
    // the runs apart is refused, naming the key that does.
    let by = compare(d, &[&p("l1-s1"), &p("l50-s1"), "--by", "loss.name"]);
    assert_user_error(&by, &["--by loss.name", "loss.lambda"]);
}

#[test]
fn runs_evaluated_differently_are_refused_and_duplicate_seeds_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = recipe(d, "");
    finished(d, &recipe, "a", &[]);
    finished(d, &recipe, "b", &[]);
    finished(d, &recipe, "c", &["eval.max_new_tokens=8"]);
    let p = |n: &str| d.join(n).display().to_string();
    let out = compare(d, &[&p("a"), &p("c")]);
    assert_user_error(&out, &["evaluated differently", "eval.max_new_tokens"]);
    let out = compare(d, &[&p("a"), &p("b")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(duplicate seeds!)"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("share seeds"), "{}", stderr(&out));
}

#[test]
fn a_sweep_folder_is_read_as_the_runs_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = recipe(d, "");
    let sweep = d.join("sweep");
    let out = trainer(
        &[
            "sweep",
            "--config",
            recipe.to_str().unwrap(),
            "--grid",
            "weight.scheme=uniform,plug_and_play",
            "--seeds",
            "1,2",
            "--out",
            sweep.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = compare(d, &[sweep.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("| weight.scheme | n |"), "{table}");
    assert!(table.contains("| plug_and_play | 2 | 1,2 |"), "{table}");
    assert!(table.contains("| uniform | 2 | 1,2 |"), "{table}");
}
