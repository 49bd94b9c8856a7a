//! The built-in arithmetic world: the supervised warm start learns, and `trainer sft` caches its
//! model by content.

use trainer::data::arith::{Split, generate};
use trainer::model::{ChatTemplate, LoadedModel, char_tokenizer, random_policy};
use trainer::recipe::SftSpec;
use trainer::stages::warm_start::{tiny_config, train_sft};

use crate::common::{stderr, stdout, trainer};

fn small_spec() -> SftSpec {
    SftSpec {
        hidden_size: 32,
        num_layers: 1,
        num_heads: 2,
        num_kv_heads: 1,
        intermediate_size: 64,
        init_seed: 1,
        examples: 64,
        steps: 40,
        batch_size: 8,
        lr: 1e-2,
        warmup_ratio: 0.05,
        data_seed: 1,
        level_mix: [1.0; 5],
    }
}

#[test]
fn sft_lowers_the_cross_entropy_of_solutions() {
    let spec = small_spec();
    let tokenizer = char_tokenizer().unwrap();
    let policy =
        random_policy(&tiny_config(&spec, tokenizer.vocab_size()), spec.init_seed).unwrap();
    let model = LoadedModel {
        policy,
        tokenizer,
        source: "memory".into(),
        chat_template: String::new(),
    };
    let problems = generate(spec.examples, Split::Train, spec.data_seed);
    let losses = train_sft(&model, &ChatTemplate::Plain, &problems, &spec).unwrap();
    assert_eq!(losses.len(), 40);
    // a uniform guess over 100 characters costs ln(100) = 4.6 nats
    assert!(
        (losses[0] - 100f64.ln()).abs() < 0.5,
        "first loss {}",
        losses[0]
    );
    assert!(losses[39] < 0.6 * losses[0], "losses {losses:?}");
}

#[test]
fn sft_command_trains_once_then_reuses_the_cached_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cache = format!("run.cache=\"{}\"", dir.path().join("cache").display());
    let args = [
        "sft",
        "--out",
        out.to_str().unwrap(),
        "--set",
        &cache,
        "--set",
        "sft.hidden_size=32",
        "--set",
        "sft.num_layers=1",
        "--set",
        "sft.num_heads=2",
        "--set",
        "sft.num_kv_heads=1",
        "--set",
        "sft.intermediate_size=64",
        "--set",
        "sft.steps=10",
        "--set",
        "sft.examples=64",
        "--set",
        "eval.limit=8",
    ];
    let first = trainer(&args, &[("RUST_LOG", "info")]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("accuracy"), "{}", stdout(&first));
    let models: Vec<_> = std::fs::read_dir(dir.path().join("cache/sft"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(models.len(), 1);
    assert!(models[0].join("model.safetensors").is_file());
    let losses: Vec<f64> =
        serde_json::from_str(&std::fs::read_to_string(models[0].join("sft_losses.json")).unwrap())
            .unwrap();
    assert_eq!(losses.len(), 10);
    // The finished run folder is not reused without --force; a new folder reuses the cache.
    let again = trainer(&args, &[]);
    crate::common::assert_user_error(&again, &["holds a finished run", "--force"]);
    let out2 = dir.path().join("run2");
    let mut args2 = args.to_vec();
    args2[2] = out2.to_str().unwrap();
    let second = trainer(&args2, &[("RUST_LOG", "info")]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("from the cache"),
        "{}",
        stderr(&second)
    );
}
