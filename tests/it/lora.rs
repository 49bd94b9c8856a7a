//! LoRA: the adapted forward starts equal to the base, only adapters get gradients, a run through
//! the binary saves a PEFT adapter whose merge reproduces the trained model, bad `[train.lora]`
//! keys are named, and a LoRA run resumes from a checkpoint to the same bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use trainer::model::{
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, Arch, LoraConfig, Policy, Target, causal_mask, forward,
    load_model, logits_all, random_policy, read_adapter,
};
use trainer::train::{TokenPair, forward_pairs};

use crate::common::{assert_user_error, stderr, trainer, write};
use crate::pipeline::recipe;
use crate::tiny_models::tiny;

fn all_targets(rank: usize) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        targets: Target::ALL.to_vec(),
    }
}

/// Logits of every position of two fixed sequences.
fn logits(policy: &Policy, weights: &trainer::model::Weights) -> Tensor {
    let ids: Vec<u32> = (0..14).map(|i| 2 + (i * 7 % 50)).collect();
    let ids = Tensor::from_vec(ids, (2, 7), &Device::Cpu).unwrap();
    let pos = Tensor::arange(0u32, 7, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .repeat((2, 1))
        .unwrap();
    let mask = causal_mask(7, 0, &Device::Cpu).unwrap();
    let hidden = forward(&policy.config, weights, &ids, &pos, &mask, None).unwrap();
    logits_all(weights, &hidden).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    d.max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn the_lora_forward_at_init_equals_the_base_forward_exactly() {
    for arch in [Arch::Llama, Arch::Qwen2] {
        let mut policy = random_policy(&tiny(arch), 4).unwrap();
        let before = logits(&policy, &policy.frozen());
        policy.attach_lora(&all_targets(4), 9, "tiny").unwrap();
        let trained_view = logits(&policy, policy.weights());
        let a: Vec<f32> = before.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = trained_view.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{arch:?}");
        assert_eq!(policy.vars().len(), 2 * 7 * 2, "only the adapters train");
    }
}

/// Two pairs whose shapes differ from every weight matrix of [`tiny`] (prompt 4, chosen 5,
/// rejected 4 tokens: 36 rows of hidden states, 18 scored positions).
fn odd_pairs() -> Vec<TokenPair> {
    (0..2u32)
        .map(|i| TokenPair {
            prompt: vec![2 + i, 3, 4, 5],
            chosen: vec![6, 7 + i, 8, 9, 10],
            rejected: vec![11, 12, 13 + i, 14],
        })
        .collect()
}

#[test]
fn with_lora_only_the_adapters_get_gradients_and_no_frozen_weight_gradient_is_stored() {
    for arch in [Arch::Llama, Arch::Qwen2] {
        only_adapters_get_gradients(arch);
    }
}

fn only_adapters_get_gradients(arch: Arch) {
    let cfg = tiny(arch);
    let mut policy = random_policy(&cfg, 4).unwrap();
    let mut frozen_shapes: Vec<Vec<usize>> = Vec::new();
    for (_, var) in policy.vars() {
        if let [o, i] = var.as_tensor().dims() {
            frozen_shapes.push(vec![*o, *i]);
            frozen_shapes.push(vec![*i, *o]);
        }
    }
    policy.attach_lora(&all_targets(3), 1, "tiny").unwrap();
    let fwd = forward_pairs(&cfg, policy.weights(), &odd_pairs(), 0).unwrap();
    let loss = (fwd.chosen_logps - fwd.rejected_logps).unwrap().sum_all();
    let store = loss.unwrap().backward().unwrap();
    for (name, var) in policy.vars() {
        let g = store
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // dL/dA = 0 while B = 0; B's gradient is not.
        assert_eq!(name.contains("lora_B"), norm > 0.0, "{name}");
    }
    for id in store.get_ids() {
        let dims = store.get_id(*id).unwrap().dims().to_vec();
        assert!(
            !frozen_shapes.contains(&dims),
            "a gradient shaped like a frozen weight: {dims:?}"
        );
    }
}

/// A LoRA recipe for the tiny world in `dir` training on the TRL pairs of `pairs`.
fn lora_recipe(dir: &Path) -> PathBuf {
    let lora = "\n[train.lora]\nenabled = true\nrank = 4\nalpha = 8.0\n\
                target_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]\n";
    recipe(dir, lora)
}

fn trl_pairs(dir: &Path) -> PathBuf {
    let lines: Vec<String> = (0..5)
        .map(|i| {
            serde_json::json!({"prompt": format!("What is {i} + 1?\n"), "chosen": format!("{i} + 1 = {}\n#### {}", i + 1, i + 1), "rejected": "I do not know."})
                .to_string()
        })
        .collect();
    write(dir, "pairs.jsonl", &(lines.join("\n") + "\n"))
}

/// `trainer train --pairs` on the LoRA recipe into `dir/out`: 4 epochs of one step on all 5 pairs
/// (`--force`: the resume test hands it a folder holding only checkpoints).
fn train(dir: &Path, out: &str) -> PathBuf {
    let recipe = lora_recipe(dir);
    let pairs = trl_pairs(dir);
    let out_dir = dir.join(out);
    let args = [
        "train",
        "--config",
        recipe.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--set",
        "train.batch_size=5",
        "--set",
        "train.grad_accum=1",
        "--set",
        "train.epochs=4",
        "--set",
        "train.lr=1e-2",
        "--force",
    ];
    let output = trainer(&args, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    out_dir
}

fn safetensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check_adapter_files(run: &Path, model: &Path) {
    let text = std::fs::read_to_string(run.join("final").join(ADAPTER_CONFIG)).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["bias"], "none");
    assert_eq!(config["fan_in_fan_out"], false);
    let targets = serde_json::json!(["q_proj", "v_proj", "down_proj"]);
    assert_eq!(config["target_modules"], targets);
    assert_eq!(
        config["base_model_name_or_path"],
        model.display().to_string()
    );
    let tensors = safetensors(&run.join("final").join(ADAPTER_WEIGHTS));
    let mut want = HashMap::new();
    for l in 0..2 {
        let p = format!("base_model.model.model.layers.{l}");
        for (module, out, inner) in [("self_attn.q_proj", 32, 32), ("self_attn.v_proj", 16, 32)] {
            want.insert(format!("{p}.{module}.lora_A.weight"), vec![4, inner]);
            want.insert(format!("{p}.{module}.lora_B.weight"), vec![out, 4]);
        }
        want.insert(format!("{p}.mlp.down_proj.lora_A.weight"), vec![4, 64]);
        want.insert(format!("{p}.mlp.down_proj.lora_B.weight"), vec![32, 4]);
    }
    let got: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    assert_eq!(got, want);
}

/// The saved merged model is the base with `W + (α/r)·B·A` on the adapted weights and every other
/// tensor unchanged, bit for bit.
fn check_merged_weights(run: &Path, model: &Path) {
    let base = safetensors(&model.join("model.safetensors"));
    let merged = safetensors(&run.join("final").join("model.safetensors"));
    let adapter = safetensors(&run.join("final").join(ADAPTER_WEIGHTS));
    assert_eq!(base.len(), merged.len());
    let mut adapted = 0;
    for (name, w) in &base {
        let m = &merged[name];
        let module = name.trim_end_matches(".weight");
        let a = adapter.get(&format!("base_model.model.{module}.lora_A.weight"));
        let b = adapter.get(&format!("base_model.model.{module}.lora_B.weight"));
        match (a, b) {
            (Some(a), Some(b)) => {
                let want = (w + (b.matmul(a).unwrap() * 2.0).unwrap()).unwrap();
                assert!(max_abs_diff(m, &want) <= 1e-6, "{name}");
                assert!(max_abs_diff(m, w) > 0.0, "{name} did not train");
                adapted += 1;
            }
            _ => {
                let (x, y) = (w.flatten_all().unwrap(), m.flatten_all().unwrap());
                let (x, y): (Vec<f32>, Vec<f32>) = (x.to_vec1().unwrap(), y.to_vec1().unwrap());
                assert_eq!(x, y, "{name} changed");
            }
        }
    }
    assert_eq!(adapted, 6);
}

/// The base model with the saved adapter loaded gives the merged model's logits.
fn check_adapter_reproduces_merged(run: &Path, model: &Path) {
    let (config, tensors) = read_adapter(&run.join("final")).unwrap();
    let mut with_adapter = load_model(model, None).unwrap();
    with_adapter.policy.attach_lora(&config, 0, "").unwrap();
    for (name, var) in with_adapter.policy.vars() {
        var.set(&tensors[&name]).unwrap();
    }
    let merged = load_model(&run.join("final"), None).unwrap();
    let a = logits(&with_adapter.policy, &with_adapter.policy.frozen());
    let b = logits(&merged.policy, &merged.policy.frozen());
    assert!(max_abs_diff(&a, &b) <= 1e-4, "{}", max_abs_diff(&a, &b));
    let base = logits(&with_adapter.policy, &with_adapter.policy.base());
    assert!(
        max_abs_diff(&a, &base) > 1e-4,
        "the adapter changes the model"
    );
}

#[test]
fn a_lora_run_trains_only_adapters_and_saves_a_peft_adapter_whose_merge_is_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = train(dir.path(), "run");
    let model = dir.path().join("tiny-model");
    check_adapter_files(&run, &model);
    check_merged_weights(&run, &model);
    check_adapter_reproduces_merged(&run, &model);
    let m = metrics(&run);
    assert_eq!(m.len(), 4);
    assert_eq!(
        m[0]["rewards/margins"].as_f64(),
        Some(0.0),
        "B = 0: policy = reference"
    );
    let (first, last) = (
        m[0]["loss"].as_f64().unwrap(),
        m[3]["loss"].as_f64().unwrap(),
    );
    assert!(last < first, "loss {first} -> {last}");
    assert!(m[3]["rewards/margins"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_lora_run_resumes_from_a_checkpoint_to_the_same_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let whole = train(dir.path(), "whole");
    let moments = safetensors(&whole.join("checkpoints/step-000002/optimizer.bin"));
    assert_eq!(
        moments.len(),
        2 * 2 * 2 * 3,
        "m and v of each adapter tensor only"
    );
    assert!(moments.keys().all(|k| k.contains(".lora_")), "{moments:?}");
    // A run killed after step 2: its folder as it was then.
    let cut = dir.path().join("cut");
    std::fs::create_dir_all(cut.join("checkpoints")).unwrap();
    let step2 = cut.join("checkpoints/step-000002");
    std::fs::create_dir_all(&step2).unwrap();
    for entry in std::fs::read_dir(whole.join("checkpoints/step-000002")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, step2.join(path.file_name().unwrap())).unwrap();
    }
    let resumed = train(dir.path(), "cut");
    let bytes = |run: &Path| std::fs::read(run.join("final").join(ADAPTER_WEIGHTS)).unwrap();
    assert_eq!(bytes(&whole), bytes(&resumed));
    let loss = |run: &Path| -> Vec<f64> {
        metrics(run)
            .iter()
            .map(|m| m["loss"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(loss(&whole), loss(&resumed));
}

#[test]
fn bad_lora_keys_exit_2_naming_the_key() {
    let cases: [(&str, &[&str]); 5] = [
        ("train.lora.rank=0", &["train.lora.rank", "at least 1"]),
        ("train.lora.alpha=0.0", &["train.lora.alpha", "> 0"]),
        (
            "train.lora.target_modules=[]",
            &["train.lora.target_modules"],
        ),
        (
            "train.lora.target_modules=[\"q_proj\",\"qkv\"]",
            &["train.lora.target_modules", "`qkv`", "gate_proj"],
        ),
        ("train.lora.dropout=0.1", &["dropout"]),
    ];
    for (set, needles) in cases {
        let out = trainer(&["recipe", "--set", set], &[]);
        assert_user_error(&out, needles);
    }
}

#[test]
fn lora_keys_resolve_with_their_defaults() {
    let text = crate::common::stdout(&trainer(&["recipe"], &[]));
    assert!(text.contains("[train.lora]"), "{text}");
    let layered = trainer::recipe::load(&trainer::recipe::RecipeInput::default()).unwrap();
    let spec = layered.resolve().unwrap().train.lora;
    assert_eq!(spec, trainer::recipe::LoraSpec::Off);
}

#[test]
fn a_whole_lora_run_evaluates_the_adapted_model_and_reproduces_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = lora_recipe(dir.path());
    let out = crate::pipeline::run(dir.path(), &recipe, "run", &["train.lr=1e-2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.path().join("run");
    for f in [
        "eval_after.jsonl",
        "final/model.safetensors",
        "final/adapter_model.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let again = trainer(&["reproduce", run.to_str().unwrap()], &[]);
    let report = crate::common::stdout(&again);
    assert!(again.status.success(), "{report}{}", stderr(&again));
    assert!(report.contains("6 of 6 artifacts identical"), "{report}");
}
