//! Hub ids (`model.path = "org/name[@revision]"`, `--model`) against a loopback server that
//! answers in the Hugging Face hub's URL layout: files land in the HF cache, the manifest records
//! the commit, `HF_TOKEN` is sent, `HF_HUB_OFFLINE=1` reads the cache, a 404 exits 2 naming the id,
//! a dropped connection is retried and then reported.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::{assert_user_error, shared, stderr, stdout, trainer, write};
use crate::pipeline::tiny_model;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Repos by id: file name → content.
type Repos = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

struct FakeHub {
    port: u16,
    /// Connections to close without an answer before answering again.
    drop_next: Arc<AtomicUsize>,
    /// The `Authorization` header of every request.
    auth: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    fn start(repos: Repos) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let drop_next = Arc::new(AtomicUsize::new(0));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let (d, a) = (drop_next.clone(), auth.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &repos, &d, &a);
            }
        });
        FakeHub {
            port,
            drop_next,
            auth,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(
    mut stream: TcpStream,
    repos: &Repos,
    drop_next: &AtomicUsize,
    auth: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    auth.lock()
        .unwrap()
        .push(headers.get("authorization").cloned().unwrap_or_default());
    if drop_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Ok(()); // the connection closes with no answer
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let (status, extra, body) = route(&path, &headers, repos);
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

fn route(
    path: &str,
    headers: &BTreeMap<String, String>,
    repos: &Repos,
) -> (&'static str, Vec<(String, String)>, Vec<u8>) {
    let not_found = ("404 Not Found", vec![], b"not found".to_vec());
    // /api/models/ORG/NAME/revision/REV
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.split('/').collect();
        let [org, name, "revision", rev] = parts.as_slice() else {
            return not_found;
        };
        let Some(files) = repos.get(&format!("{org}/{name}")) else {
            return not_found;
        };
        if *rev != "main" && *rev != SHA {
            return not_found;
        }
        let siblings: Vec<_> = files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "sha": SHA, "siblings": siblings }).to_string();
        return ("200 OK", vec![], body.into_bytes());
    }
    // /ORG/NAME/resolve/REV/FILE
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let [org, name, "resolve", rev, file] = parts.as_slice() else {
        return not_found;
    };
    let Some(content) = repos
        .get(&format!("{org}/{name}"))
        .filter(|_| *rev == "main" || *rev == SHA)
        .and_then(|files| files.get(*file))
    else {
        return not_found;
    };
    let (start, end) = match headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    {
        Some((a, b)) => (
            a.parse::<usize>().unwrap_or(0),
            b.parse::<usize>().unwrap_or(content.len() - 1),
        ),
        None => (0, content.len() - 1),
    };
    let end = end.min(content.len() - 1);
    let extra = vec![
        ("etag".to_string(), format!("\"{}\"", sha256_hex(content))),
        ("x-repo-commit".to_string(), SHA.to_string()),
        (
            "content-range".to_string(),
            format!("bytes {start}-{end}/{}", content.len()),
        ),
    ];
    ("206 Partial Content", extra, content[start..=end].to_vec())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    trainer::store::hex(&sha2::Sha256::digest(bytes))
}

/// The tiny model folder, with a chat template, as a repo.
fn tiny_repo(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let model = tiny_model(dir);
    let config = serde_json::json!({"chat_template": "Q: {{ messages[-1]['content'] }}\nA:"});
    write(&model, "tokenizer_config.json", &config.to_string());
    std::fs::read_dir(&model)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

fn hub_env<'a>(hub: &'a str, home: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HF_ENDPOINT", hub),
        ("HF_HOME", home),
        ("HF_TOKEN", "hf_test_token"),
    ]
}

#[test]
fn a_hub_id_is_fetched_into_the_hf_cache_and_its_commit_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut repos = Repos::new();
    repos.insert("test-org/tiny".into(), tiny_repo(dir.path()));
    let hub = FakeHub::start(repos);
    let home = dir.path().join("hf-home");
    let (endpoint, home_s) = (hub.endpoint(), home.display().to_string());
    let env = hub_env(&endpoint, &home_s);
    let test = crate::pipeline::questions(dir.path(), "test.jsonl", 2, 50);
    let out_dir = dir.path().join("run");
    let out = trainer(
        &[
            "eval",
            "--model",
            "test-org/tiny",
            "--set",
            &format!("eval.data=\"{}\"", test.display()),
            "--set",
            &format!("data.train=\"{}\"", test.display()),
            "--set",
            &format!("run.cache=\"{}\"", dir.path().join("cache").display()),
            "--set",
            "eval.max_new_tokens=4",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let snapshot = home.join("hub/models--test-org--tiny/snapshots").join(SHA);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(snapshot.join(f).is_file(), "{f} in the HF cache");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["model"]["revision"], SHA);
    assert!(
        hub.auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer hf_test_token"),
        "HF_TOKEN is sent with every request"
    );
    // The export pins the commit, so reproducing it fetches the same files.
    let export = std::fs::read_to_string(out_dir.join("export.toml")).unwrap();
    assert!(
        export.contains(&format!("path = \"test-org/tiny@{SHA}\"")),
        "{export}"
    );
    // Offline, from the cache alone (the endpoint now points nowhere).
    let offline = [
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ("HF_HOME", home_s.as_str()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let out = trainer(
        &["template", "--model", "test-org/tiny", "--prompt", "hi"],
        &offline,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Q: hi\nA:");
    let out = trainer(
        &["template", "--model", "test-org/other", "--prompt", "hi"],
        &offline,
    );
    assert_user_error(&out, &["test-org/other", "HF_HUB_OFFLINE=1"]);
}

#[test]
fn an_unknown_id_exits_2_naming_it_and_a_dropped_connection_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut repos = Repos::new();
    repos.insert("test-org/tiny".into(), tiny_repo(dir.path()));
    let hub = FakeHub::start(repos);
    let home = dir.path().join("hf-home");
    let (endpoint, home_s) = (hub.endpoint(), home.display().to_string());
    let env = hub_env(&endpoint, &home_s);
    let out = trainer(
        &["template", "--model", "test-org/nope", "--prompt", "hi"],
        &env,
    );
    assert_user_error(&out, &["--model = \"test-org/nope@main\"", "404"]);
    // One dropped connection: the next try gets the answer.
    hub.drop_next.store(1, Ordering::SeqCst);
    let out = trainer(
        &["template", "--model", "test-org/tiny", "--prompt", "hi"],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("trying again"), "{}", stderr(&out));
    // Every connection dropped: a clear error after the tries, no panic.
    hub.drop_next.store(1000, Ordering::SeqCst);
    let out = trainer(
        &["template", "--model", "test-org/tiny@v2", "--prompt", "hi"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("test-org/tiny@v2") && err.contains("failed 3 times"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_gguf_file_in_a_hub_repo_renders_as_the_local_file_does() {
    let Some(shared) = shared() else { return };
    let gguf: PathBuf = shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let dir = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    files.insert(
        "smollm2.Q4_1.gguf".to_string(),
        std::fs::read(&gguf).unwrap(),
    );
    let mut repos = Repos::new();
    repos.insert("test-org/smol-gguf".into(), files);
    let hub = FakeHub::start(repos);
    let home = dir.path().join("hf-home").display().to_string();
    let endpoint = hub.endpoint();
    let env = hub_env(&endpoint, &home);
    let args = |model: &str| {
        trainer(
            &[
                "template",
                "--model",
                model,
                "--prompt",
                "What is 2 + 2?",
                "--ids",
            ],
            &env,
        )
    };
    let remote = args("test-org/smol-gguf/smollm2.Q4_1.gguf");
    assert!(remote.status.success(), "{}", stderr(&remote));
    let local = args(gguf.to_str().unwrap());
    assert_eq!(stdout(&remote), stdout(&local));
}
