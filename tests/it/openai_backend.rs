//! `sampling.backend = "openai"` against a real OpenAI-compatible server: llama.cpp's, from the
//! PyPI package `llama-cpp-python[server]`, serving the SmolLM2 GGUF of `../shared` on loopback.
//! Completions, the resume, a server killed mid-run; and the recipe errors that need no server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{assert_user_error, root, shared, stderr, stdout, trainer, venv_python, write};

/// The API key the test server demands; it must never reach the run folder or the cache.
const KEY: &str = "sk-test-7f3a9c1e";

/// The python of a venv holding `llama-cpp-python[server]` (see [`venv_python`]).
fn llama_python() -> Option<PathBuf> {
    venv_python("LLAMA_CPP_PYTHON", "trainer-llama-venv", "llama-cpp-python")
}

/// A running `python -m llama_cpp.server`, killed when dropped (also when a test fails).
struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl LlamaServer {
    /// Starts the server on `port` and waits until `/v1/models` answers.
    fn start(python: &Path, model: &Path, port: u16, log: PathBuf) -> LlamaServer {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--model_alias", "smollm2", "--host", "127.0.0.1"])
            .args([
                "--port",
                &port.to_string(),
                "--n_ctx",
                "1024",
                "--n_threads",
                "2",
                // One token per eval: a prompt's logits then do not depend on how much of it the
                // server reuses from the previous request's cache (batched and single-token evals
                // round differently on AVX2, which changed a resampled completion here).
                "--n_batch",
                "1",
                "--n_ubatch",
                "1",
            ])
            .args(["--api_key", KEY])
            // OpenMP's default spin-wait starves llama.cpp on a busy machine (a 128-token reply
            // took 89-177 s instead of 3 s here while other builds ran).
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("python starts");
        let mut server = LlamaServer { child, port, log };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let url = format!("{}/models", self.base_url());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}): {}", self.log_text());
            }
            let answer = ureq::get(&url)
                .header("Authorization", format!("Bearer {KEY}"))
                .call();
            if answer.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the server did not answer in 120 s: {}", self.log_text());
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Completion requests the server has answered, from its access log.
    fn completions_served(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"POST /v1/completions HTTP/1.1\" 200"))
            .count()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The python, the GGUF and a started server, or `None` (skipped).
fn setup(dir: &Path, port: u16) -> Option<(PathBuf, PathBuf, LlamaServer)> {
    let model = shared()?.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let python = llama_python()?;
    let server = LlamaServer::start(&python, &model, port, dir.join("server-1.log"));
    Some((python, model, server))
}

/// A recipe sampling `questions` GSM8K questions × `n` on the server at `base_url`.
fn server_recipe(dir: &Path, model: &Path, base_url: &str, questions: usize, n: usize) -> PathBuf {
    let shared = root().join("../shared");
    let text = format!(
        "[run]\nname = \"server\"\ncache = \"{cache}\"\n\n[model]\npath = \"{model}\"\ntemplate = \"chatml\"\n\n\
         [data]\ntrain = \"{train}\"\nformat = \"gsm8k\"\nlimit = {questions}\n\
         instruction = \"Solve the problem step by step. End with a line of the form '#### <number>'.\"\n\n\
         [sampling]\nbackend = \"openai\"\nn = {n}\ntemperature = 0.7\ntop_p = 0.95\nmax_new_tokens = 32\nseed = 7\n\n\
         [sampling.openai]\nbase_url = \"{base_url}\"\napi_key_env = \"LLAMA_TEST_KEY\"\nconcurrency = 2\n\
         timeout_secs = 60\nmax_retries = 1\n\n\
         [sampling.openai.params]\ntop_k = 0\nmin_p = 0.0\nrepeat_penalty = 1.0\n",
        cache = dir.join("cache").display(),
        model = model.display(),
        train = shared.join("data/gsm8k/train.jsonl").display(),
    );
    write(dir, "recipe.toml", &text)
}

fn sample_cmd(recipe: &Path, out: &Path) -> Vec<String> {
    let (recipe, out) = (recipe.display(), out.display());
    [
        "sample",
        "--config",
        &recipe.to_string(),
        "--out",
        &out.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn sample(recipe: &Path, out: &Path) -> std::process::Output {
    let args = sample_cmd(recipe, out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    trainer(&args, &[("LLAMA_TEST_KEY", KEY)])
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The one sample cache file under `dir/cache/samples`.
fn cache_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("cache/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every completion has text, the ids are that text in the model's tokenizer (with the end of
/// turn when the server stopped there), and there are `questions × n` of them in order.
fn check_completions(model: &Path, samples: &[serde_json::Value], questions: usize, n: usize) {
    let loaded = trainer::model::load_model(model, None).unwrap();
    let tok = &loaded.tokenizer;
    assert_eq!(samples.len(), questions * n);
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s["k"].as_u64().unwrap() as usize, i % n);
        let text = s["text"].as_str().unwrap();
        assert!(!text.trim().is_empty(), "empty completion: {s}");
        let ids: Vec<u32> = serde_json::from_value(s["token_ids"].clone()).unwrap();
        let decoded = tok.decode(&ids).unwrap();
        match s["finish"].as_str().unwrap() {
            "eos" => assert_eq!(decoded, format!("{text}<|im_end|>")),
            "length" => {
                assert_eq!(decoded, text);
                assert!(
                    ids.len().abs_diff(32) <= 2,
                    "{} ids for 32 tokens",
                    ids.len()
                );
            }
            other => panic!("finish {other}: {s}"),
        }
    }
}

#[test]
fn sampling_on_a_llama_cpp_server_keeps_every_completion_and_a_rerun_asks_only_for_the_missing() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_, model, server)) = setup(dir.path(), free_port()) else {
        return;
    };
    let recipe = server_recipe(dir.path(), &model, &server.base_url(), 4, 2);
    let first = dir.path().join("first");
    let out = sample(&recipe, &first);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let samples = read_jsonl(&first.join("samples.jsonl"));
    check_completions(&model, &samples, 4, 2);
    assert_eq!(server.completions_served(), 8, "one request per sample");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["sampling_server"]["model"], "smollm2");
    assert_eq!(manifest["sampling_server"]["base_url"], server.base_url());

    // Drop three completions from the cache: the rerun asks for exactly those three, and the
    // server, honouring the per-sample seed, gives back the same text.
    let cache = cache_file(dir.path());
    let text = std::fs::read_to_string(&cache).unwrap();
    let kept: Vec<&str> = text.lines().take(5).collect();
    std::fs::write(&cache, kept.join("\n") + "\n").unwrap();
    let second = dir.path().join("second");
    let out = sample(&recipe, &second);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(server.completions_served(), 8 + 3);
    assert_eq!(read_jsonl(&second.join("samples.jsonl")), samples);

    let third = dir.path().join("third");
    assert!(sample(&recipe, &third).status.success());
    assert_eq!(server.completions_served(), 11, "all cached: no request");

    let mut files = Vec::new();
    all_files(dir.path(), &mut files);
    for f in files.iter().filter(|f| !f.ends_with("server-1.log")) {
        let bytes = std::fs::read(f).unwrap();
        let hit = bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes());
        assert!(!hit, "the API key was written to {}", f.display());
    }
}

#[test]
fn a_server_killed_mid_run_stops_sampling_with_a_clear_error_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some((python, model, mut server)) = setup(dir.path(), port) else {
        return;
    };
    let (questions, n) = (6, 3);
    let recipe = server_recipe(dir.path(), &model, &server.base_url(), questions, n);
    let run = dir.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root())
        .args(sample_cmd(&recipe, &run))
        .env("LLAMA_TEST_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let samples_dir = dir.path().join("cache/samples");
    let started = Instant::now();
    loop {
        let lines = std::fs::read_dir(&samples_dir)
            .map_or(0, |d| d.map(|e| line_count(&e.unwrap().path())).sum());
        if lines >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no completion came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let cache = cache_file(dir.path());
    let kept = line_count(&cache);
    assert!(kept >= 2 && kept < questions * n, "{kept} kept");
    for needle in [
        server.base_url(),
        "question `".to_string(),
        format!("{kept} of {} completions are kept", questions * n),
    ] {
        assert!(err.contains(&needle), "`{needle}` not in: {err}");
    }
    assert!(
        !run.join("samples.jsonl").exists(),
        "no half-written samples file"
    );

    let restarted = LlamaServer::start(&python, &model, port, dir.path().join("server-2.log"));
    let out = sample(&recipe, &run);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(restarted.completions_served(), questions * n - kept);
    check_completions(
        &model,
        &read_jsonl(&run.join("samples.jsonl")),
        questions,
        n,
    );
}

#[test]
fn the_openai_backend_without_a_base_url_names_the_recipe_key() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = crate::pipeline::recipe(dir.path(), "");
    let out = crate::pipeline::run(dir.path(), &recipe, "run", &["sampling.backend=\"openai\""]);
    assert_user_error(&out, &["sampling.openai.base_url"]);
}

#[test]
fn an_unset_api_key_variable_is_named_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = crate::pipeline::recipe(dir.path(), "");
    let out = crate::pipeline::run(
        dir.path(),
        &recipe,
        "run",
        &[
            "sampling.backend=\"openai\"",
            "sampling.openai.base_url=\"http://127.0.0.1:9/v1\"",
            "sampling.openai.api_key_env=\"TRAINER_TEST_NO_SUCH_KEY\"",
        ],
    );
    assert_user_error(
        &out,
        &["sampling.openai.api_key_env", "TRAINER_TEST_NO_SUCH_KEY"],
    );
}

#[test]
fn an_unreachable_server_is_named_after_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = crate::pipeline::recipe(dir.path(), "");
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let set = format!("sampling.openai.base_url=\"{url}\"");
    let out = crate::pipeline::run(
        dir.path(),
        &recipe,
        "run",
        &[
            "sampling.backend=\"openai\"",
            &set,
            "sampling.openai.max_retries=1",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{url}/models")), "{err}");
    assert!(err.contains("gave up after 1 retries"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
