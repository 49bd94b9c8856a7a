//! Parity with PyTorch + transformers on the real SmolLM2-135M-Instruct (reference numbers in
//! ../shared/fixtures/smollm2_reference.json, float32, weights dequantized from the GGUF).

use std::sync::OnceLock;

use candle_core::Tensor;
use trainer::model::{
    GenRequest, LoadedModel, SamplingParams, causal_mask, forward, generate, load_model,
    load_model_on, logits_all,
};

use crate::common::{smollm2_fixture, test_device};

/// The model is loaded once for all tests of this module.
fn model() -> Option<(&'static LoadedModel, &'static serde_json::Value)> {
    static CELL: OnceLock<Option<(LoadedModel, serde_json::Value)>> = OnceLock::new();
    let loaded = CELL.get_or_init(|| {
        let (path, fixture) = smollm2_fixture("smollm2_reference.json")?;
        Some((
            load_model_on(&path, None, &test_device()).expect("SmolLM2 loads"),
            fixture,
        ))
    });
    loaded.as_ref().map(|(m, f)| (m, f))
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizer_matches_the_fixture_on_five_strings() {
    let Some((m, fx)) = model() else { return };
    for (text, expected) in fx["tokenize"].as_object().unwrap() {
        assert_eq!(m.tokenizer.encode(text).unwrap(), ids(expected), "{text:?}");
    }
    let prompt = fx["prompt"].as_str().unwrap();
    assert_eq!(m.tokenizer.encode(prompt).unwrap(), ids(&fx["prompt_ids"]));
}

#[test]
fn logits_match_pytorch_within_1e_3() {
    let Some((m, fx)) = model() else { return };
    let prompt = ids(&fx["prompt_ids"]);
    let t = prompt.len();
    let w = m.policy.frozen();
    let cfg = &m.policy.config;
    let dev = m.policy.device();
    let input = Tensor::new(prompt, dev).unwrap().unsqueeze(0).unwrap();
    let pos = Tensor::arange(0u32, t as u32, dev)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let hidden = forward(
        cfg,
        &w,
        &input,
        &pos,
        &causal_mask(t, 0, dev).unwrap(),
        None,
    )
    .unwrap();
    let logits = logits_all(&w, &hidden).unwrap().squeeze(0).unwrap();
    let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
    let last = &rows[t - 1];
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    for (rank, pair) in fx["last_logits_top10"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let (id, value) = (
            pair[0].as_u64().unwrap() as usize,
            pair[1].as_f64().unwrap(),
        );
        assert_eq!(order[rank], id, "rank {rank}");
        assert!(
            (last[id] as f64 - value).abs() < 1e-3,
            "id {id}: {} vs {value}",
            last[id]
        );
    }
    for (i, v) in fx["logits_first5_last_position"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert!(
            (last[i] as f64 - v.as_f64().unwrap()).abs() < 1e-3,
            "logit {i}: {} vs {v}",
            last[i]
        );
    }
    for (p, expected) in fx["logits_sum_per_position"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let sum: f64 = rows[p].iter().map(|&x| x as f64).sum();
        let expected = expected.as_f64().unwrap();
        // A sum of 49,152 logits (up to 9.4e5): the fixture summed in f32, so allow 4e-5 per logit
        // (measured: at most 1.58 here, while single logits agree to 2e-5).
        assert!(
            (sum - expected).abs() < 4e-5 * 49152.0,
            "position {p}: {sum} vs {expected}"
        );
    }
}

#[test]
fn greedy_continuation_matches_pytorch() {
    let Some((m, fx)) = model() else { return };
    let expected = ids(&fx["greedy_new_ids"]);
    let req = GenRequest {
        prompt_ids: ids(&fx["prompt_ids"]),
        seed: 0,
    };
    let mut params = SamplingParams::greedy(expected.len());
    params.stop.clear();
    let out = generate(
        &m.policy.config,
        &m.policy.frozen(),
        &m.tokenizer,
        &[req],
        &params,
    )
    .unwrap();
    assert_eq!(out[0].token_ids, expected);
    assert_eq!(out[0].text, fx["greedy_text"].as_str().unwrap());
}

#[test]
fn saved_hf_folder_loads_back_with_the_same_tokenizer_and_logits() {
    let Some((m, fx)) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    m.policy.save_hf(dir.path(), &m.tokenizer).unwrap();
    let back = load_model(dir.path(), None).unwrap();
    assert_eq!(back.policy.config, m.policy.config);
    for text in fx["tokenize"].as_object().unwrap().keys() {
        assert_eq!(
            back.tokenizer.encode(text).unwrap(),
            m.tokenizer.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let prompt = ids(&fx["prompt_ids"]);
    let run = |lm: &LoadedModel| {
        let req = GenRequest {
            prompt_ids: prompt.clone(),
            seed: 0,
        };
        generate(
            &lm.policy.config,
            &lm.policy.frozen(),
            &lm.tokenizer,
            &[req],
            &SamplingParams::greedy(8),
        )
        .unwrap()
    };
    assert_eq!(run(&back)[0].token_ids, run(m)[0].token_ids);
}

#[test]
fn batching_prompts_of_unequal_length_changes_no_greedy_token() {
    let Some((m, _)) = model() else { return };
    let prompts = [
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nName three colours of the rainbow, please, in order.<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    ];
    let reqs: Vec<GenRequest> = prompts
        .iter()
        .map(|p| GenRequest {
            prompt_ids: m.tokenizer.encode(p).unwrap(),
            seed: 0,
        })
        .collect();
    let params = SamplingParams::greedy(12);
    let (cfg, w) = (&m.policy.config, m.policy.frozen());
    let batched = generate(cfg, &w, &m.tokenizer, &reqs, &params).unwrap();
    for (i, req) in reqs.iter().enumerate() {
        let alone = generate(cfg, &w, &m.tokenizer, std::slice::from_ref(req), &params).unwrap();
        assert_eq!(batched[i].token_ids, alone[0].token_ids, "prompt {i}");
    }
}

#[test]
fn seeded_sampling_does_not_depend_on_the_batch() {
    let Some((m, _)) = model() else { return };
    let p = m
        .tokenizer
        .encode("<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    let q = m.tokenizer.encode("<|im_start|>user\nTell me about cats and why they purr.<|im_end|>\n<|im_start|>assistant\n").unwrap();
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 50,
        max_new_tokens: 10,
        stop: vec![],
    };
    let (cfg, w) = (&m.policy.config, m.policy.frozen());
    let a = GenRequest {
        prompt_ids: p,
        seed: 17,
    };
    let b = GenRequest {
        prompt_ids: q,
        seed: 99,
    };
    let together = generate(cfg, &w, &m.tokenizer, &[b, a.clone()], &params).unwrap();
    let alone = generate(cfg, &w, &m.tokenizer, std::slice::from_ref(&a), &params).unwrap();
    assert_eq!(together[1].token_ids, alone[0].token_ids);
    let again = generate(cfg, &w, &m.tokenizer, &[a], &params).unwrap();
    assert_eq!(again[0].token_ids, alone[0].token_ids);
}
