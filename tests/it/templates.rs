//! Chat templates through the binary: the model's own Jinja template renders transformers'
//! `apply_chat_template` text and ids exactly, a run prompts with it, a broken one exits 2 naming
//! the file.

use std::path::Path;

use crate::common::{assert_user_error, shared, stderr, stdout, trainer, write};
use crate::pipeline::tiny_model;

/// `../shared/fixtures/smollm2_chat_template.json`: six conversations rendered by transformers
/// 5.x `apply_chat_template` on SmolLM2-135M-Instruct (ids only for texts without digits).
#[test]
fn the_model_s_own_template_renders_transformers_text_and_ids_exactly() {
    let Some(shared) = shared() else { return };
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared.join("fixtures/smollm2_chat_template.json")).unwrap(),
    )
    .unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            serde_json::json!({"messages": c["messages"], "add_generation_prompt": c["add_generation_prompt"]})
                .to_string()
        })
        .collect();
    let conv = write(dir.path(), "conv.jsonl", &(lines.join("\n") + "\n"));
    let model = shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = trainer(
        &[
            "template",
            "--model",
            model.to_str().unwrap(),
            "--conversations",
            conv.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rendered: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rendered.len(), cases.len());
    let mut ids_checked = 0;
    for (case, got) in cases.iter().zip(&rendered) {
        assert_eq!(got["text"], case["text"]);
        if let Some(ids) = case.get("input_ids") {
            assert_eq!(&got["input_ids"], ids, "{}", case["text"]);
            ids_checked += 1;
        }
    }
    assert_eq!(ids_checked, 4, "the fixture gives ids for four texts");
}

fn with_template(dir: &Path, template: &str) -> std::path::PathBuf {
    let model = tiny_model(dir);
    let config = serde_json::json!({"eos_token": "</s>", "chat_template": template});
    write(&model, "tokenizer_config.json", &config.to_string());
    model
}

fn eval_recipe(dir: &Path, model: &Path, extra: &str) -> std::path::PathBuf {
    let test = crate::pipeline::questions(dir, "test.jsonl", 2, 50);
    let text = format!(
        "[run]\ncache = \"{cache}\"\n[model]\npath = \"{model}\"\n{extra}\n[data]\ntrain = \"{test}\"\n\
         [eval]\ndata = \"{test}\"\n[sampling]\nmax_new_tokens = 4\n",
        cache = dir.join("cache").display(),
        model = model.display(),
        test = test.display(),
    );
    write(dir, "recipe.toml", &text)
}

#[test]
fn a_run_prompts_with_the_model_s_own_template() {
    let dir = tempfile::tempdir().unwrap();
    let model = with_template(dir.path(), "Q: {{ messages[-1]['content'] }}\nA:");
    let recipe = eval_recipe(dir.path(), &model, "");
    let out_dir = dir.path().join("run");
    let out = trainer(
        &[
            "eval",
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[("RUST_LOG", "info")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"a question renders as "Q: <question>\nA:""#),
        "{}",
        stderr(&out)
    );
    // An explicit choice still wins over the model's own template.
    let recipe = eval_recipe(dir.path(), &model, "template = \"chatml\"");
    let out = trainer(
        &[
            "eval",
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--force",
        ],
        &[("RUST_LOG", "info")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("chat template: ChatML"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_template_that_fails_to_render_exits_2_naming_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = with_template(dir.path(), "{{ raise_exception('system turns only') }}");
    let recipe = eval_recipe(dir.path(), &model, "");
    let out_dir = dir.path().join("run");
    let out = trainer(
        &[
            "eval",
            "--config",
            recipe.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_user_error(&out, &["tokenizer_config.json", "system turns only"]);
    assert!(
        !out_dir.exists(),
        "no run folder for a template that cannot render"
    );
    let broken = with_template(&dir.path().join("b"), "{% for m in messages %}");
    let out = trainer(
        &[
            "template",
            "--model",
            broken.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        &[],
    );
    assert_user_error(&out, &["tokenizer_config.json", "does not parse"]);
}

#[test]
fn bf16_is_refused_naming_the_key() {
    let out = trainer(&["recipe", "--set", "model.dtype=\"bf16\""], &[]);
    assert_user_error(&out, &["model.dtype", "only \"f32\""]);
}
