//! Content hashes, the one place that hashes: sha256 of bytes, files and folders, hex digits, and
//! the short content keys that name cache entries.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A streaming sha256, for keys hashed from many parts.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: impl AsRef<[u8]>) {
        self.0.update(bytes);
    }

    /// The hex digest of everything given.
    pub fn hex(self) -> String {
        hex(&self.0.finalize())
    }
}

/// Lowercase hex digits of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 24 hex digits of the sha256 of `key` as JSON: the name of a cache entry whose
/// content `key` determines.
pub fn content_key<T: Serialize>(key: &T) -> String {
    let json = serde_json::to_string(key).unwrap_or_default();
    sha256_bytes(json.as_bytes())[..24].to_string()
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Hex sha256 of a file, or of a folder (every file's relative name and hash, sorted).
pub fn sha256_path(path: &Path) -> Result<String> {
    if path.is_file() {
        return sha256_file(path);
    }
    let mut entries = Vec::new();
    collect_files(path, path, &mut entries)?;
    entries.sort();
    let mut h = Sha256::new();
    for (rel, file) in entries {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(sha256_file(&file)?.as_bytes());
    }
    Ok(hex(&h.finalize()))
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

/// The version string recorded in manifests and in every content key.
pub fn trainer_version() -> String {
    format!("trainer {}", env!("CARGO_PKG_VERSION"))
}
