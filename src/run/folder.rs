//! The run folder: its name (or the unfinished run a rerun takes up again), the recipe and scripts
//! copied into it, and plain JSONL outputs written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::recipe::{OutDir, RunSpec};
use crate::store::write_atomic;

/// UTC `YYYYmmdd-HHMMSS` of now.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The run folder for `run` (created).
pub fn create_run_dir(run: &RunSpec) -> Result<PathBuf> {
    let dir = match &run.out {
        OutDir::Dir(d) => d.clone(),
        OutDir::Timestamped => PathBuf::from("runs").join(format!("{}-{}", run.name, timestamp())),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the run folder {}", dir.display()))?;
    Ok(dir)
}

/// The marker of a run that has not finished: it holds the run's key (command, recipe, scripts).
pub const IN_PROGRESS: &str = "in_progress";

/// The run folder for `run`, marked in progress with `key`. With an explicit `--out` that folder
/// is used (and resumed from); with a timestamped name, the newest unfinished `runs/<name>-*`
/// folder of the same key is taken up again, else a new one is created.
pub fn open_run_dir(run: &RunSpec, key: &str) -> Result<PathBuf> {
    let dir = match &run.out {
        OutDir::Dir(_) => create_run_dir(run)?,
        OutDir::Timestamped => match unfinished_run(Path::new("runs"), &run.name, key)? {
            Some(dir) => {
                tracing::info!("resuming the unfinished run {}", dir.display());
                dir
            }
            None => create_run_dir(run)?,
        },
    };
    write_atomic(&dir.join(IN_PROGRESS), key.as_bytes())?;
    Ok(dir)
}

/// Removes the in-progress marker of a finished run.
pub fn mark_finished(dir: &Path) -> Result<()> {
    let marker = dir.join(IN_PROGRESS);
    if marker.exists() {
        std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    }
    Ok(())
}

/// The newest folder `runs/<name>-*` whose in-progress marker holds `key`.
fn unfinished_run(runs: &Path, name: &str, key: &str) -> Result<Option<PathBuf>> {
    if !runs.is_dir() {
        return Ok(None);
    }
    let prefix = format!("{name}-");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(runs).with_context(|| format!("listing {}", runs.display()))? {
        let dir = entry?.path();
        let named = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
        let marker = std::fs::read_to_string(dir.join(IN_PROGRESS)).unwrap_or_default();
        if named && marker == key {
            found.push(dir);
        }
    }
    found.sort();
    Ok(found.pop())
}

/// Writes `items` as plain JSONL, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut buf = Vec::new();
    for item in items {
        serde_json::to_writer(&mut buf, item)?;
        buf.write_all(b"\n")?;
    }
    write_atomic(path, &buf)
}

/// Copies every script a run used into `dir/scripts/`, flattening paths (`plugins/loss/dpo.rhai`
/// → `plugins__loss__dpo.rhai`).
pub fn copy_scripts(dir: &Path, sources: &[(String, String)]) -> Result<()> {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    for (name, text) in sources {
        let flat: String = name
            .trim_start_matches('/')
            .replace(['/', '\\'], "__")
            .chars()
            .filter(|c| !matches!(c, ':' | '*' | '?'))
            .collect();
        write_atomic(&scripts.join(flat), text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_takes_up_the_newest_unfinished_run_of_the_same_key() {
        let runs = tempfile::tempdir().unwrap();
        let make = |name: &str, marker: Option<&str>| {
            let dir = runs.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(key) = marker {
                std::fs::write(dir.join(IN_PROGRESS), key).unwrap();
            }
        };
        make("tiny-20260101-000000", Some("k"));
        make("tiny-20260102-000000", Some("k"));
        make("tiny-20260103-000000", Some("other"));
        make("tiny-20260104-000000", None);
        make("big-20260105-000000", Some("k"));
        let found = unfinished_run(runs.path(), "tiny", "k").unwrap();
        assert_eq!(found, Some(runs.path().join("tiny-20260102-000000")));
        assert_eq!(unfinished_run(runs.path(), "tiny", "none").unwrap(), None);
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
    }
}
