//! Bad models and tokenizers in a real run: missing, truncated, incomplete or unsupported. Each
//! names the path and what is wrong, before any run folder is made.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

use super::{Refusal, tiny_run};
use crate::common::{shared, write};
use crate::pipeline::recipe;

/// The tiny pipeline with `model.path` (and `more` settings) pointing at what `make` writes into
/// the test's folder.
fn with_model(make: impl FnOnce(&Path) -> PathBuf, more: &[&str]) -> (Refusal, String) {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let model = make(dir.path()).display().to_string();
    let set = format!("model.path=\"{model}\"");
    let mut sets = vec![set.as_str()];
    sets.extend_from_slice(more);
    let out = crate::pipeline::run(dir.path(), &recipe, "run", &sets);
    let refusal = Refusal { dir, out };
    assert!(
        !refusal.dir.path().join("run").exists(),
        "a run folder was made"
    );
    (refusal, model)
}

/// An HF folder `bad-model/` with `config.json` holding `config`.
fn folder_with_config(dir: &Path, config: &str) -> PathBuf {
    write(dir, "bad-model/config.json", config);
    dir.join("bad-model")
}

const CONFIG: &str = r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": true}"#;

#[test]
fn missing_model_path_is_named() {
    let (r, m) = with_model(|d| d.join("no/such/model.gguf"), &[]);
    r.assert(&[&m, "no such file or folder"]);
}

#[test]
fn model_folder_without_config_json_is_refused() {
    let (r, m) = with_model(
        |d| {
            std::fs::create_dir_all(d.join("empty-model")).unwrap();
            d.join("empty-model")
        },
        &[],
    );
    r.assert(&[&m, "no config.json"]);
}

#[test]
fn config_json_with_a_missing_field_names_the_field() {
    let (r, _) = with_model(
        |d| folder_with_config(d, r#"{"model_type": "llama", "vocab_size": 16}"#),
        &[],
    );
    r.assert(&["config.json", "missing field `hidden_size`"]);
}

#[test]
fn unsupported_model_type_is_named() {
    let (r, _) = with_model(
        |d| folder_with_config(d, &CONFIG.replace("\"llama\"", "\"gpt_neox\"")),
        &[],
    );
    r.assert(&["config.json", "gpt_neox", "not supported"]);
}

fn save_embedding(path: &Path) {
    let t = Tensor::zeros((16, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let tensors = std::collections::HashMap::from([("model.embed_tokens.weight".to_string(), t)]);
    candle_core::safetensors::save(&tensors, path).unwrap();
}

#[test]
fn truncated_safetensors_is_refused() {
    let (r, _) = with_model(
        |d| {
            let m = folder_with_config(d, CONFIG);
            let file = m.join("model.safetensors");
            save_embedding(&file);
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
            m
        },
        &[],
    );
    r.assert(&["model.safetensors", "truncated or corrupt"]);
}

#[test]
fn missing_tensor_is_named() {
    let (r, _) = with_model(
        |d| {
            let m = folder_with_config(d, CONFIG);
            save_embedding(&m.join("model.safetensors"));
            m
        },
        &[],
    );
    r.assert(&["input_layernorm.weight", "is missing"]);
}

#[test]
fn gguf_of_an_unsupported_architecture_is_refused() {
    let (r, m) = with_model(
        |d| {
            let path = d.join("m.gguf");
            let arch = gguf_file::Value::String("gpt2".into());
            let zeros = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
            let t = QTensor::quantize(&zeros, GgmlDType::F32).unwrap();
            let mut f = std::fs::File::create(&path).unwrap();
            gguf_file::write(
                &mut f,
                &[("general.architecture", &arch)],
                &[("token_embd.weight", &t)],
            )
            .unwrap();
            path
        },
        &[],
    );
    r.assert(&[&m, "architecture `gpt2`", "not supported"]);
}

#[test]
fn non_gguf_file_is_refused() {
    let (r, m) = with_model(|d| write(d, "model.gguf", "definitely not a model"), &[]);
    r.assert(&[&m, "not a readable GGUF file"]);
}

#[test]
fn truncated_gguf_is_refused() {
    let Some(shared) = shared() else { return };
    let mut head = vec![0u8; 8 << 20];
    std::fs::File::open(shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    let (r, m) = with_model(
        |d| {
            let path = d.join("cut.gguf");
            std::fs::write(&path, &head).unwrap();
            path
        },
        &[],
    );
    r.assert(&[&m, "truncated"]);
}

#[test]
fn missing_tokenizer_file_names_the_key_and_path() {
    tiny_run(&["model.tokenizer=\"/nonexistent/tokenizer.json\""]).assert(&[
        "model.tokenizer",
        "/nonexistent/tokenizer.json",
        "no such file",
    ]);
}

#[test]
fn truncated_tokenizer_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    let full = std::fs::read_to_string(dir.path().join("tiny-model/tokenizer.json")).unwrap();
    let cut = write(dir.path(), "cut/tokenizer.json", &full[..full.len() / 2]);
    let set = format!("model.tokenizer=\"{}\"", cut.display());
    let out = crate::pipeline::run(dir.path(), &recipe, "run", &[&set]);
    let r = Refusal { dir, out };
    r.assert(&[&cut.display().to_string(), "cannot load tokenizer"]);
}

#[test]
fn quantized_sampling_of_an_hf_folder_is_refused_naming_the_key() {
    let r = tiny_run(&["sampling.quantized=true"]);
    r.assert(&[
        "sampling.quantized",
        "needs a GGUF model file",
        "tiny-model",
    ]);
    assert!(!r.dir.path().join("run").exists(), "a run folder was made");
}

#[test]
fn config_values_that_break_the_math_name_the_field() {
    for (field, value, needle) in [
        (
            "rms_norm_eps",
            "-1",
            "rms_norm_eps = -1 must be a finite number > 0",
        ),
        (
            "rope_theta",
            "0",
            "rope_theta = 0 must be a finite number > 0",
        ),
        (
            "num_attention_heads",
            "3",
            "hidden_size = 8 is not a multiple of num_attention_heads = 3",
        ),
    ] {
        let config = CONFIG.replace('}', &format!(", \"{field}\": {value}}}"));
        let config = if field == "num_attention_heads" {
            CONFIG
                .replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3")
                .replace("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3")
        } else {
            config
        };
        let (r, _) = with_model(|d| folder_with_config(d, &config), &[]);
        r.assert(&[needle]);
    }
}

#[test]
fn a_model_whose_logits_are_nan_stops_sampling_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), "");
    // A model that loads (its values are finite in config.json) but computes NaN: every
    // embedding value NaN.
    let model = crate::pipeline::sized_model(&dir.path().join("nan"), 32, 2);
    let file = model.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let name = tensors
        .keys()
        .find(|k| k.contains("embed"))
        .unwrap()
        .clone();
    let shape = tensors[&name].shape().clone();
    tensors.insert(name, Tensor::full(f32::NAN, shape, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let set = format!("model.path=\"{}\"", model.display());
    let out = crate::pipeline::run(dir.path(), &recipe, "run", &[&set]);
    Refusal { dir, out }.assert(&["logits are NaN", "new token 1"]);
}
