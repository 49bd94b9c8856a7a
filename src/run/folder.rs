//! The run folder: its name (or the unfinished run a rerun takes up again), the recipe and scripts
//! copied into it, and plain JSONL outputs written atomically.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::error::user_error;
use crate::recipe::{OutDir, RunSpec, ScriptChoice};
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

/// The marker of a run that has not finished: it holds the run's key (command, recipe, scripts).
pub const IN_PROGRESS: &str = "in_progress";

/// The lock a process holds on the run folder it writes (ignored when judging a folder empty).
pub const LOCK: &str = ".trainer.lock";

/// A run folder this process owns until it drops the lock.
pub struct RunFolder {
    pub dir: PathBuf,
    _lock: File,
}

/// Where a run will write, decided before any work: [`plan_run_dir`], then [`open_run_dir`].
pub struct Planned {
    out: Option<PathBuf>,
    clear: bool,
}

/// Checks where the run of `key` may write. An explicit `--out` must be new, empty, or an
/// unfinished run of the same key (taken up again); a finished or different run is replaced only
/// with `force`, and a folder that holds anything else is written into only with `force`.
pub fn plan_run_dir(run: &RunSpec, key: &str, force: bool) -> Result<Planned> {
    Ok(match &run.out {
        OutDir::Dir(d) => Planned {
            clear: claim(d, key, force)?,
            out: Some(d.clone()),
        },
        OutDir::Timestamped => Planned {
            out: None,
            clear: false,
        },
    })
}

/// The planned run folder, locked and marked in progress with `key`. Without `--out`, the newest
/// unfinished `runs/<name>-*` folder of the same key is taken up again, else a new one is made.
pub fn open_run_dir(planned: Planned, run: &RunSpec, key: &str) -> Result<RunFolder> {
    let folder = match planned.out {
        Some(d) => {
            create(&d)?;
            let folder = lock(&d)?;
            if planned.clear {
                clear_run(&d)?;
            }
            folder
        }
        None => match unfinished_run(Path::new("runs"), &folder_name(run), key)? {
            Some(dir) => {
                tracing::info!("resuming the unfinished run {}", dir.display());
                lock(&dir)?
            }
            None => {
                let dir =
                    PathBuf::from("runs").join(format!("{}-{}", folder_name(run), timestamp()));
                create(&dir)?;
                lock(&dir)?
            }
        },
    };
    write_atomic(&folder.dir.join(IN_PROGRESS), key.as_bytes())?;
    Ok(folder)
}

/// The name a run folder starts with: `run.name`, or the script's file stem when the name is the
/// default one and a script is given (`runs/plug_and_play-<time>`).
fn folder_name(run: &RunSpec) -> String {
    match &run.script {
        ScriptChoice::File(path) if run.name == "default" => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| run.name.clone()),
        _ => run.name.clone(),
    }
}

fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        user_error(format!(
            "--out {}: cannot create the run folder: {e}",
            dir.display()
        ))
    })
}

/// Whether `dir` may be used as the run folder of `key`; `Ok(true)` when an old run in it is to
/// be cleared first (`force`).
fn claim(dir: &Path, key: &str, force: bool) -> Result<bool> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(user_error(format!("--out {shown}: {e}"))),
        Ok(m) if !m.is_dir() => {
            return Err(user_error(format!(
                "--out {shown}: is a file, not a folder"
            )));
        }
        Ok(_) => {}
    }
    let entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| user_error(format!("--out {shown}: cannot list it: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != LOCK)
        .collect();
    if entries.is_empty() {
        return Ok(false);
    }
    let marker = std::fs::read_to_string(dir.join(IN_PROGRESS)).ok();
    if marker.as_deref() == Some(key) {
        tracing::info!("resuming the unfinished run in {shown}");
        return Ok(false);
    }
    let is_run = dir.join("recipe.toml").is_file()
        && (marker.is_some() || dir.join("manifest.json").is_file());
    let what = match (is_run, marker.is_some()) {
        (true, true) => "holds an unfinished run of a different recipe or command",
        (true, false) => "holds a finished run",
        (false, _) => "is not empty and is not a run folder",
    };
    let remedy = if is_run {
        "replace that run"
    } else {
        "write into it anyway (files of the same names are replaced)"
    };
    if !force {
        return Err(user_error(format!(
            "--out {shown}: {what}; choose a new or empty folder, or pass --force to {remedy}"
        )));
    }
    tracing::warn!("--out {shown}: {what}; --force: going on to {remedy}");
    Ok(is_run)
}

/// Empties a run folder except for the lock.
fn clear_run(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == LOCK {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Takes the run folder's lock, or says which folder another process is using.
fn lock(dir: &Path) -> Result<RunFolder> {
    let path = dir.join(LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(RunFolder {
            dir: dir.to_path_buf(),
            _lock: file,
        }),
        Err(std::fs::TryLockError::WouldBlock) => Err(user_error(format!(
            "{}: another trainer process is using this run folder (it holds {LOCK}); wait for \
             it to end or choose another --out",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("locking {}", path.display())))
        }
    }
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
