//! `trainer sweep` on the tiny world: every cell × seed runs once, the summary files hold intervals
//! and paired differences, a rerun skips finished runs (and refuses ones of another recipe), bad
//! grid specs exit 2 before any run.

use crate::common::{assert_user_error, stderr, stdout, trainer};
use crate::pipeline::recipe;

fn sweep(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let recipe = recipe(dir, "");
    let out = dir.join("sweep");
    let mut args = vec![
        "sweep",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    trainer(&args, &[("RUST_LOG", "info")])
}

#[test]
fn a_sweep_runs_every_cell_and_seed_once_and_summarises_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec = [
        "--grid",
        "weight.scheme=uniform,plug_and_play",
        "--seeds",
        "1..2",
        "--baseline",
        "weight.scheme=uniform",
    ];
    let first = sweep(dir.path(), &spec);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = dir.path().join("sweep");
    for cell in ["weight.scheme-uniform", "weight.scheme-plug_and_play"] {
        for seed in [1, 2] {
            let run = out.join(cell).join(format!("seed-{seed}"));
            assert!(run.join("summary.json").is_file(), "{}", run.display());
            let recipe = std::fs::read_to_string(run.join("recipe.toml")).unwrap();
            assert!(recipe.contains(&format!("seed = {seed}")), "{recipe}");
        }
    }
    let jsonl = std::fs::read_to_string(out.join("sweep.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 4, "{jsonl}");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.starts_with("cell,seed,accuracy_before,accuracy_after"),
        "{csv}"
    );
    let table = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(
        stdout(&first).ends_with(&table),
        "the table is printed last"
    );
    assert!(
        table.contains("paired difference to weight.scheme=uniform"),
        "{table}"
    );
    assert!(
        table.contains("| weight.scheme=uniform | 2 |") && table.contains("baseline"),
        "{table}"
    );
    assert!(
        table.contains("| weight.scheme=plug_and_play | 2 |") && table.contains("over 2 seeds"),
        "{table}"
    );
    assert!(out.join("sweep.png").is_file());

    let again = sweep(dir.path(), &spec);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stderr(&again).matches("finished, skipped").count(),
        4,
        "{}",
        stderr(&again)
    );
    assert_eq!(stdout(&again), table, "the same runs give the same table");

    // Another setting in the same --out: the finished runs are not this sweep's, and reusing them
    // would report their accuracy under the new recipe.
    let mut changed = spec.to_vec();
    changed.extend(["--set", "train.max_grad_norm=0.5"]);
    let other = sweep(dir.path(), &changed);
    assert_user_error(
        &other,
        &[
            "weight.scheme-uniform/seed-1 holds a finished run that is not sweep cell",
            "train.max_grad_norm = 1.0 / 0.5",
        ],
    );
    assert!(!stderr(&other).contains("sweep run 1/4"), "no run started");
}

#[test]
fn bad_grid_specs_exit_2_naming_them_before_any_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &[
                "--script",
                "scripts/plug_and_play.rhai",
                "--grid",
                "weight.scheme=uniform",
            ],
            &[
                "--grid weight.scheme",
                "the script defines fn weight(stats)",
            ],
        ),
        (
            &["--grid", "train.lrr=1,2"],
            &["train.lrr", "unknown recipe key"],
        ),
        (&["--grid", "train.lr=fast,1e-4"], &["train.lr"]),
        (
            &["--grid", "loss.name="],
            &["--grid loss.name=", "non-empty list"],
        ),
        (&["--grid", "loss.name=dpo", "--seeds", "x"], &["--seeds x"]),
        (
            &[
                "--grid",
                "loss.name=dpo,ipo",
                "--baseline",
                "loss.name=simpo",
            ],
            &[
                "--baseline loss.name=simpo",
                "not a value of any --grid axis",
            ],
        ),
    ];
    for (extra, needles) in cases {
        let out = sweep(dir.path(), extra);
        assert_user_error(&out, needles);
        assert!(
            !dir.path().join("sweep").exists(),
            "{extra:?} made the sweep folder"
        );
    }
}

#[test]
fn a_sweep_table_in_the_recipe_gives_the_grid_seeds_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let table = "\n[sweep]\nseeds = \"3\"\nbaseline = \"weight.scheme=uniform\"\n\n[sweep.grid]\n\
                 \"weight.scheme\" = [\"uniform\", \"plug_and_play\"]\n";
    let recipe = recipe(dir.path(), table);
    let out_dir = dir.path().join("sweep");
    let args = [
        "sweep",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let out = trainer(&args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for cell in ["weight.scheme-uniform", "weight.scheme-plug_and_play"] {
        let run = out_dir.join(cell).join("seed-3");
        assert!(run.join("summary.json").is_file(), "{}", run.display());
    }
    let md = std::fs::read_to_string(out_dir.join("sweep.md")).unwrap();
    assert!(
        md.contains("paired difference to weight.scheme=uniform"),
        "{md}"
    );
    assert!(
        md.contains("gain over before") && md.contains("seeds improved"),
        "{md}"
    );
    assert!(md.contains("| weight.scheme=plug_and_play | 1 |"), "{md}");
    assert!(
        md.contains("% (n = 1, no interval)") && md.contains("not comparable with one seed"),
        "one seed gives a point, never an interval or a verdict: {md}"
    );
    assert!(!md.contains("within noise"), "{md}");
}

#[test]
fn a_sweep_without_any_grid_or_with_an_empty_axis_in_its_table_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = sweep(dir.path(), &[]);
    assert_user_error(&out, &["no grid", "[sweep.grid]"]);
    let recipe = recipe(dir.path(), "\n[sweep.grid]\n\"loss.name\" = []\n");
    let out_dir = dir.path().join("sweep");
    let args = [
        "sweep",
        "--config",
        recipe.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    assert_user_error(
        &trainer(&args, &[]),
        &["sweep.grid", "loss.name", "non-empty"],
    );
    assert!(!out_dir.exists());
}
