//! Atomic writes, the one way the trainer writes a whole file or folder: the content goes to a
//! temporary name beside the target, is synced, and is renamed into place, so a reader (or a
//! rerun after a kill) sees the old content or the new one, never a part.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// The temporary name a write to `path` goes through: `.NAME.tmp` in the same folder.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` through a temporary file, a sync and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display()))
    })
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// Lets `write` fill a temporary file (for writers that take a path), then syncs it and renames it
/// to `path`. On failure the temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(path);
    let done = write(&tmp).and_then(|()| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))
    });
    let done = done.and_then(|()| {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Checks that `path` can take a file a command writes for the user (`what` names the flag):
/// not a folder, and in a folder that exists. A user error otherwise.
pub fn check_output_file(path: &Path, what: &str) -> Result<()> {
    let shown = path.display();
    if path.is_dir() {
        return Err(crate::error::user_error(format!(
            "{what} {shown}: is a folder; give a file name"
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent
        && !parent.is_dir()
    {
        return Err(crate::error::user_error(format!(
            "{what} {shown}: the folder {} does not exist",
            parent.display()
        )));
    }
    Ok(())
}

/// Builds a folder atomically: `fill` writes into an empty temporary folder beside `dir`, which
/// then replaces `dir`. An older `dir` is renamed away first and removed after, so at every
/// moment `dir` is either the old folder, the new one, or absent.
pub fn write_dir_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(err) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err);
    }
    let old = retire_dir(dir)?;
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    remove_retired(old)
}

/// Removes a folder without ever leaving a half-removed one under its name: it is first renamed
/// to `.NAME.old`, then deleted.
pub fn remove_dir_atomic(dir: &Path) -> Result<()> {
    remove_retired(retire_dir(dir)?)
}

/// Renames `dir` (if present) out of the way to `.NAME.old`; returns the new name.
fn retire_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let old = dir.with_file_name(format!(".{name}.old"));
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    if !dir.exists() {
        return Ok(None);
    }
    std::fs::rename(dir, &old)
        .with_context(|| format!("renaming {} to {}", dir.display(), old.display()))?;
    Ok(Some(old))
}

fn remove_retired(old: Option<PathBuf>) -> Result<()> {
    match old {
        Some(old) => {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temp_sibling(&path).exists());
    }

    #[test]
    fn a_folder_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ckpt");
        write_dir_atomic(&target, |d| write_atomic(&d.join("x"), b"1")).unwrap();
        write_dir_atomic(&target, |d| write_atomic(&d.join("y"), b"2")).unwrap();
        assert!(!target.join("x").exists());
        assert_eq!(std::fs::read(target.join("y")).unwrap(), b"2");
        assert!(!temp_sibling(&target).exists());
    }

    #[test]
    fn a_folder_whose_fill_fails_leaves_no_temporary_folder() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("latest");
        let err = write_dir_atomic(&target, |tmp| {
            std::fs::write(tmp.join("half.bin"), b"part")?;
            anyhow::bail!("no space left on device")
        });
        assert!(err.is_err());
        assert!(!target.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
