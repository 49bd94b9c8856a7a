//! Models on the Hugging Face hub: `org/name[@revision]` (an HF model folder) or
//! `org/name[@revision]/FILE.gguf` (one GGUF file of a repo), fetched with the `hf-hub` crate into
//! the standard HF cache (`HF_HOME`), from `HF_ENDPOINT` with `HF_TOKEN`; with `HF_HUB_OFFLINE=1`
//! only the cache is read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::error::user_error;

/// Tries per file before a dropped connection or a server error is given up on.
const TRIES: u32 = 3;

/// A model on the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit sha; `main` when not given.
    pub revision: String,
    /// A GGUF file in the repo; `None` for the HF folder layout.
    pub file: Option<String>,
}

impl HubId {
    /// `org/name[@revision][/FILE.gguf]`, optionally prefixed `hf://`; `None` for anything else
    /// (a local path starts with `/`, `.` or `~`, or has more parts without a `.gguf` file).
    pub fn parse(text: &str) -> Option<HubId> {
        let text = text.strip_prefix("hf://").unwrap_or(text);
        let mut parts = text.splitn(3, '/');
        let (org, name_rev) = (parts.next()?, parts.next()?);
        let (name, revision) = match name_rev.split_once('@') {
            Some((n, r)) if !r.is_empty() => (n, r),
            Some(_) => return None,
            None => (name_rev, "main"),
        };
        let file = parts.next().map(str::to_string);
        let word = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let file_ok = file.as_deref().is_none_or(|f| f.ends_with(".gguf"));
        (word(org) && word(name) && word(revision) && file_ok).then(|| HubId {
            repo: format!("{org}/{name}"),
            revision: revision.to_string(),
            file,
        })
    }
}

impl HubId {
    /// The hub id `text` names, unless it is an existing local path (which always wins).
    pub fn unless_local(text: &str) -> Option<HubId> {
        HubId::parse(text).filter(|_| !Path::new(text).exists())
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repo, self.revision)?;
        match &self.file {
            Some(file) => write!(f, "/{file}"),
            None => Ok(()),
        }
    }
}

/// A model fetched from the hub: its local folder or file and the commit it came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    pub commit: String,
}

/// The files of `id` in the local HF cache, downloaded first unless they are there; `key` (the
/// recipe key or flag) is named in every error.
pub fn fetch(id: &HubId, key: &str) -> Result<Fetched> {
    let cache = Cache::from_env();
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    // A commit sha names content that never changes: a cached snapshot of it needs no request.
    let is_commit = id.revision.len() == 40 && id.revision.chars().all(|c| c.is_ascii_hexdigit());
    if offline || is_commit && from_cache(&cache, id, key).is_ok() {
        return from_cache(&cache, id, key);
    }
    let endpoint =
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
    let token = std::env::var("HF_TOKEN").ok().or_else(|| cache.token());
    let api = ApiBuilder::from_cache(cache.clone())
        .with_endpoint(endpoint.trim_end_matches('/').to_string())
        .with_token(token)
        .with_progress(false)
        .with_retries(TRIES as usize)
        .build()
        .map_err(|e| anyhow!("{key} = \"{id}\": cannot start the hub client: {e}"))?;
    let repo = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let info = with_tries(id, key, "listing its files", || repo.info())?;
    let names: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let wanted = wanted_files(id, &names, key)?;
    let pinned = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        info.sha.clone(),
    ));
    tracing::info!(
        "fetching {} files of {id} (commit {})",
        wanted.len(),
        info.sha
    );
    let mut paths = Vec::with_capacity(wanted.len());
    for name in &wanted {
        paths.push(with_tries(id, key, &format!("downloading {name}"), || {
            pinned.get(name)
        })?);
    }
    // So that `HF_HUB_OFFLINE=1` finds this revision by its name later.
    let refs = cache.path().join(repo_folder(id)).join("refs");
    std::fs::create_dir_all(&refs)?;
    std::fs::write(refs.join(&id.revision), &info.sha)?;
    let path = match &id.file {
        Some(_) => paths.swap_remove(0),
        None => paths[0].parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    Ok(Fetched {
        path,
        commit: info.sha,
    })
}

/// A model argument (`--model`, `model.path`): an existing local path as it is, else a hub id
/// fetched into the HF cache, else the path as given (loading it then says what is missing).
pub fn local_model(path: &Path, key: &str) -> Result<PathBuf> {
    match path.to_str().and_then(HubId::unless_local) {
        Some(id) => Ok(fetch(&id, key)?.path),
        None => Ok(path.to_path_buf()),
    }
}

/// The files a run reads: the GGUF file, or the config, weights and tokenizer files of a folder.
fn wanted_files(id: &HubId, names: &[String], key: &str) -> Result<Vec<String>> {
    if let Some(file) = &id.file {
        return match names.iter().any(|n| n == file) {
            true => Ok(vec![file.clone()]),
            false => Err(user_error(format!(
                "{key} = \"{id}\": the repo has no file {file} at {}",
                id.revision
            ))),
        };
    }
    const SIDE_FILES: [&str; 5] = [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
        "special_tokens_map.json",
    ];
    if !names.iter().any(|n| n == "config.json") {
        return Err(user_error(format!(
            "{key} = \"{id}\": the repo has no config.json (for a GGUF repo, name the file: \
             {}/FILE.gguf)",
            id.repo
        )));
    }
    let weights: Vec<String> = names
        .iter()
        .filter(|n| !n.contains('/') && n.ends_with(".safetensors"))
        .cloned()
        .collect();
    if weights.is_empty() {
        return Err(user_error(format!(
            "{key} = \"{id}\": the repo has no *.safetensors weights (PyTorch .bin files are not read)"
        )));
    }
    let mut out = vec!["config.json".to_string()];
    out.extend(
        SIDE_FILES
            .iter()
            .filter(|f| names.iter().any(|n| n == *f))
            .map(|f| f.to_string()),
    );
    out.extend(weights);
    Ok(out)
}

/// Runs `call` up to [`TRIES`] times while the failure is the connection's or the server's (5xx);
/// a 4xx answer is the id's fault and stops at once (exit 2).
fn with_tries<T>(
    id: &HubId,
    key: &str,
    what: &str,
    mut call: impl FnMut() -> Result<T, ApiError>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        let err = match call() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if let Some(code) = status(&err).filter(|c| (400..500).contains(c)) {
            let why = match code {
                401 | 403 => "it is private or gated: set HF_TOKEN to a token with access",
                404 => "no such repo, revision or file",
                _ => "the hub refused the request",
            };
            return Err(user_error(format!(
                "{key} = \"{id}\": {what}: the hub answered {code} ({why})"
            )));
        }
        if attempt >= TRIES {
            return Err(anyhow!(
                "{key} = \"{id}\": {what} failed {TRIES} times, the last with: {err}"
            ));
        }
        tracing::warn!("{id}: {what} failed ({err}); trying again");
        std::thread::sleep(Duration::from_millis(250 << attempt));
        attempt += 1;
    }
}

fn status(err: &ApiError) -> Option<u16> {
    match err {
        ApiError::RequestError(e) => match e.as_ref() {
            ureq2::Error::Status(code, _) => Some(*code),
            ureq2::Error::Transport(_) => None,
        },
        ApiError::TooManyRetries(inner) => status(inner),
        _ => None,
    }
}

fn repo_folder(id: &HubId) -> String {
    format!("models--{}", id.repo.replace('/', "--"))
}

/// `HF_HUB_OFFLINE=1`: the snapshot the revision names in the cache, or an error saying so.
fn from_cache(cache: &Cache, id: &HubId, key: &str) -> Result<Fetched> {
    let repo = cache.path().join(repo_folder(id));
    let commit = std::fs::read_to_string(repo.join("refs").join(&id.revision))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| id.revision.clone());
    let snapshot = repo.join("snapshots").join(&commit);
    let path = match &id.file {
        Some(file) => snapshot.join(file),
        None => snapshot.clone(),
    };
    let marker = match &id.file {
        Some(_) => path.clone(),
        None => path.join("config.json"),
    };
    if marker.is_file() {
        Ok(Fetched { path, commit })
    } else {
        Err(user_error(format!(
            "{key} = \"{id}\": not in the HF cache ({}), and HF_HUB_OFFLINE=1 forbids downloading it",
            repo.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_parse_with_revision_and_file() {
        let id = HubId::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("HuggingFaceTB/SmolLM2-135M-Instruct", "main")
        );
        let id = HubId::parse("hf://org/name@v1.0/model.Q4_1.gguf").unwrap();
        assert_eq!(id.revision, "v1.0");
        assert_eq!(id.file.as_deref(), Some("model.Q4_1.gguf"));
        assert_eq!(id.to_string(), "org/name@v1.0/model.Q4_1.gguf");
    }

    #[test]
    fn local_looking_paths_are_not_hub_ids() {
        for text in [
            "./org/name",
            "../x/y",
            "/abs/path",
            "~/m/n",
            "one",
            "a/b/c/d",
            "a/b@",
            "a/b/notes.txt",
        ] {
            assert_eq!(HubId::parse(text), None, "{text}");
        }
    }
}
