//! Append-only JSONL files that survive a kill: every record is one line with a checksum of its
//! content; on reopening, a torn or corrupt tail is cut off and the valid records are returned.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::hash::sha256_bytes;
use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An open log: append records, flush at item boundaries.
pub struct JsonlLog {
    path: PathBuf,
    out: BufWriter<File>,
    plain: bool,
}

/// The checksum stored with a line: the first 16 hex digits of sha256(content).
fn checksum(content: &str) -> String {
    sha256_bytes(content.as_bytes())[..16].to_string()
}

/// `{"sum":"…","rec":{…}}`: the record with its checksum.
fn encode<T: Serialize>(record: &T) -> Result<String> {
    let rec = serde_json::to_string(record)?;
    Ok(format!(
        "{{\"sum\":\"{}\",\"rec\":{rec}}}\n",
        checksum(&rec)
    ))
}

fn decode<T: DeserializeOwned>(line: &str) -> Option<T> {
    let rest = line.strip_prefix("{\"sum\":\"")?;
    let (sum, rest) = rest.split_at_checked(16)?;
    let rec = rest.strip_prefix("\",\"rec\":")?.strip_suffix('}')?;
    if checksum(rec) != sum {
        return None;
    }
    serde_json::from_str(rec).ok()
}

impl JsonlLog {
    /// Opens (or creates) `path`, returning the valid records and a log positioned after them;
    /// anything after the first invalid line is cut off.
    pub fn open<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, JsonlLog)> {
        Self::open_with(path, false)
    }

    /// Like [`open`](Self::open) for a plain JSONL file (one record per line, no checksum), for
    /// files people read, such as `metrics.jsonl`; a line that does not parse ends the valid part.
    pub fn open_plain<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, JsonlLog)> {
        Self::open_with(path, true)
    }

    fn open_with<T: DeserializeOwned>(path: &Path, plain: bool) -> Result<(Vec<T>, JsonlLog)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut records = Vec::new();
        let mut keep = 0u64;
        if path.exists() {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut offset = 0usize;
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                let Some(text) = std::str::from_utf8(line)
                    .ok()
                    .and_then(|t| t.strip_suffix('\n'))
                else {
                    break;
                };
                let rec = if plain {
                    serde_json::from_str(text).ok()
                } else {
                    decode(text)
                };
                let Some(rec) = rec else { break };
                records.push(rec);
                offset += line.len();
            }
            keep = offset as u64;
            if keep < bytes.len() as u64 {
                tracing::warn!(
                    "{}: cut {} bytes of torn or corrupt tail",
                    path.display(),
                    bytes.len() as u64 - keep
                );
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.set_len(keep)?;
        file.seek(SeekFrom::Start(keep))?;
        Ok((
            records,
            JsonlLog {
                path: path.to_path_buf(),
                out: BufWriter::new(file),
                plain,
            },
        ))
    }

    /// Appends one record (buffered until [`flush`](Self::flush)).
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = if self.plain {
            format!("{}\n", serde_json::to_string(record)?)
        } else {
            encode(record)?
        };
        self.out
            .write_all(line.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Writes buffered records to the file and the disk.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

/// Reads every valid record of a log (none if the file is absent).
pub fn read_log<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map_while(decode).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut_and_appending_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        {
            let (old, mut log) = JsonlLog::open::<Vec<u32>>(&path).unwrap();
            assert!(old.is_empty());
            log.append(&vec![1u32]).unwrap();
            log.append(&vec![2u32, 3]).unwrap();
            log.flush().unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"sum\":\"00\",\"rec\":[9");
        std::fs::write(&path, &bytes).unwrap();
        let (old, mut log) = JsonlLog::open::<Vec<u32>>(&path).unwrap();
        assert_eq!(old, vec![vec![1], vec![2, 3]]);
        log.append(&vec![4u32]).unwrap();
        log.flush().unwrap();
        assert_eq!(
            read_log::<Vec<u32>>(&path).unwrap(),
            vec![vec![1], vec![2, 3], vec![4]]
        );
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let (_, mut log) = JsonlLog::open::<String>(&path).unwrap();
        log.append(&"hello".to_string()).unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("hello", "hellp");
        std::fs::write(&path, text).unwrap();
        assert!(read_log::<String>(&path).unwrap().is_empty());
    }
}
