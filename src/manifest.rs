//! Content hashes and the run manifest: what a run read (recipe, scripts, model, data), with the
//! binary version and seed, so a run can be compared and reproduced.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::atomic::{write_atomic, write_json_atomic};

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// A file the run read, with its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub path: String,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub trainer_version: String,
    pub recipe_sha256: String,
    pub seed: u64,
    pub scripts: BTreeMap<String, String>,
    pub model: Input,
    pub data: BTreeMap<String, Input>,
    /// The content key of the sample cache this run used.
    pub sample_cache_key: Option<String>,
    /// The command line that made the run.
    #[serde(default)]
    pub argv: Vec<String>,
    /// The last stage the command ran to: `sample`, `pairs`, `train`, `all` or `eval`.
    #[serde(default)]
    pub until: String,
    /// The server that sampled, with `sampling.backend = "openai"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_server: Option<SamplingServer>,
}

/// An OpenAI-compatible sampling server: its API root and the model id it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingServer {
    pub base_url: String,
    pub model: String,
}

/// The command line of this process, as text.
pub fn command_line() -> Vec<String> {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The version string recorded in manifests.
pub fn trainer_version() -> String {
    format!("trainer {}", env!("CARGO_PKG_VERSION"))
}
