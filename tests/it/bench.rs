//! `trainer bench` on SmolLM2: one small DPO step and one sampling row, every field of `--json`
//! consistent with the others; bad shape specs exit 2 before any model work.

use crate::common::{assert_user_error, shared, stdout, trainer};

#[test]
fn bench_json_reports_a_step_and_a_sampling_row_whose_fields_agree() {
    let Some(dir) = shared() else { return };
    let model = dir.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let model = model.to_str().expect("utf-8 path");
    let args = [
        "bench",
        "--model",
        model,
        "--pairs",
        "1x16",
        "--batches",
        "2",
        "--reps",
        "1",
        "--new-tokens",
        "3",
        "--json",
    ];
    let out = trainer(&args, &[]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(v["params"], 134_515_008, "SmolLM2-135M's parameter count");
    assert_eq!(v["trainable_params"], v["params"]);
    assert!(v["pytorch"].is_null(), "no baseline was asked for");
    let step = &v["steps"][0];
    assert_eq!(
        (step["pairs"].as_u64(), step["seq"].as_u64()),
        (Some(1), Some(16))
    );
    // One pair: the chosen and the rejected sequence, 16 tokens each.
    let tokens = step["policy_tokens"].as_f64().expect("policy_tokens");
    assert_eq!(tokens, 32.0);
    let seconds = step["seconds"].as_f64().expect("seconds");
    let parts = [
        "reference_seconds",
        "forward_backward_seconds",
        "optimizer_seconds",
    ]
    .map(|k| step[k].as_f64().expect(k));
    assert!(parts.iter().all(|&p| p > 0.0), "{parts:?}");
    assert!(
        parts.iter().sum::<f64>() <= seconds * 1.001,
        "{parts:?} vs {seconds}"
    );
    let rate = step["policy_tokens_per_s"].as_f64().expect("rate");
    assert!(
        (rate - tokens / seconds).abs() < 1e-6 * rate,
        "{rate} vs {tokens} / {seconds}"
    );
    assert!(
        step["peak_rss_gib"].as_f64().expect("rss") > 0.5,
        "f32 weights and AdamW state"
    );
    let sample = &v["sampling"][0];
    assert_eq!(sample["batch"], 2);
    let new = sample["new_tokens"].as_u64().expect("new_tokens");
    assert!(
        (1..=6).contains(&new),
        "2 rows of at most 3 new tokens: {new}"
    );
    let sample_rate = sample["new_tokens_per_s"].as_f64().expect("rate");
    let sample_seconds = sample["seconds"].as_f64().expect("seconds");
    assert!((sample_rate * sample_seconds - new as f64).abs() < 1e-6 * new as f64);
}

#[test]
fn bench_refuses_empty_and_malformed_shapes_before_loading_a_model() {
    for (flag, value, needle) in [
        ("--pairs", "0", "`0`: expected pairs per step"),
        ("--pairs", "4x7", "`4x7`: expected pairs per step"),
        (
            "--batches",
            "0",
            "`0`: expected a comma-separated list of counts of at least 1",
        ),
        ("--batches", "8,x", "`x`: expected"),
    ] {
        let out = trainer(&["bench", "--model", "/nonexistent.gguf", flag, value], &[]);
        assert_user_error(&out, &[flag, needle]);
    }
}
