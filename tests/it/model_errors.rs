//! Bad model input stops with exit 2 and a message naming the path and what is wrong.

use std::io::Read;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

use crate::common::{assert_user_error, shared, write};

fn generate(model: &str) -> std::process::Output {
    crate::common::trainer(
        &[
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--max-new-tokens",
            "2",
        ],
        &[],
    )
}

const CONFIG: &str = r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": true}"#;

#[test]
fn missing_model_path_is_named() {
    assert_user_error(
        &generate("no/such/model.gguf"),
        &["no/such/model.gguf", "no such file or folder"],
    );
}

#[test]
fn folder_without_config_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    assert_user_error(&generate(p), &[p, "no config.json"]);
}

#[test]
fn config_json_with_a_missing_field_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "config.json",
        r#"{"model_type": "llama", "vocab_size": 16}"#,
    );
    assert_user_error(
        &generate(dir.path().to_str().unwrap()),
        &["config.json", "missing field `hidden_size`"],
    );
}

#[test]
fn unsupported_model_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "config.json",
        &CONFIG.replace("\"llama\"", "\"gpt_neox\""),
    );
    assert_user_error(
        &generate(dir.path().to_str().unwrap()),
        &["config.json", "gpt_neox", "not supported"],
    );
}

#[test]
fn truncated_safetensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.json", CONFIG);
    let t = Tensor::zeros((16, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let full = dir.path().join("full.bin");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("model.embed_tokens.weight".to_string(), t)]),
        &full,
    )
    .unwrap();
    let bytes = std::fs::read(&full).unwrap();
    std::fs::remove_file(&full).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    assert_user_error(
        &generate(dir.path().to_str().unwrap()),
        &["model.safetensors", "truncated or corrupt"],
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.json", CONFIG);
    let t = Tensor::zeros((16, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let tensors = std::collections::HashMap::from([("model.embed_tokens.weight".to_string(), t)]);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    assert_user_error(
        &generate(dir.path().to_str().unwrap()),
        &["input_layernorm.weight", "is missing"],
    );
}

#[test]
fn gguf_of_an_unsupported_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let arch = gguf_file::Value::String("gpt2".into());
    let t = QTensor::quantize(
        &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &t)],
    )
    .unwrap();
    drop(f);
    let p = path.to_str().unwrap();
    assert_user_error(&generate(p), &[p, "architecture `gpt2`", "not supported"]);
}

#[test]
fn non_gguf_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "model.gguf", "definitely not a model");
    let p = p.to_str().unwrap();
    assert_user_error(&generate(p), &[p, "not a readable GGUF file"]);
}

#[test]
fn truncated_gguf_is_refused() {
    let Some(shared) = shared() else { return };
    let mut head = vec![0u8; 8 << 20];
    std::fs::File::open(shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    std::fs::write(&path, &head).unwrap();
    let p = path.to_str().unwrap();
    assert_user_error(&generate(p), &[p, "truncated"]);
    std::fs::write(&path, &head[..4096]).unwrap();
    assert_user_error(&generate(p), &[p, "not a readable GGUF file"]);
}
