//! `trainer bench`: DPO-step throughput (reference forward + policy forward/backward + AdamW),
//! sampling throughput and peak memory, next to the PyTorch baselines when they are available.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::model::{
    GenRequest, LoadedModel, LoraConfig, SamplingParams, Target, Weights, generate, load_model_on,
    local_model, quantized_weights,
};
use crate::recipe::HookSource;
use crate::rng::Rng;
use crate::script::from_source;
use crate::script::{HookKind, ScriptHost};
use crate::train::{AdamW, AdamWConfig, LossFn, StepBatch, forward_backward, values};
use crate::train::{TokenPair, forward_pairs};

/// Tokens per sequence in the step benchmark: a 64-token prompt and a 64-token response.
const SEQ: usize = 128;

#[derive(Debug, Serialize)]
pub struct StepResult {
    pub pairs: usize,
    /// Policy tokens per step: pairs × 2 sequences × 128.
    pub policy_tokens: usize,
    pub seconds: f64,
    pub reference_seconds: f64,
    pub forward_backward_seconds: f64,
    pub optimizer_seconds: f64,
    pub policy_tokens_per_s: f64,
    pub gflops_per_s: f64,
    pub matmul_peak_fraction: f64,
    /// Peak RSS while this row ran (`None` where the kernel cannot reset the peak counter).
    pub peak_rss_gib: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct SampleResult {
    pub batch: usize,
    pub new_tokens: usize,
    pub seconds: f64,
    pub new_tokens_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub params: usize,
    /// Parameters the optimizer updates (all of them, or the LoRA adapters).
    pub trainable_params: usize,
    /// LoRA rank of the step benchmark; 0 = full fine-tuning.
    pub lora_rank: usize,
    pub threads: usize,
    pub matmul_peak_gflops: f64,
    pub steps: Vec<StepResult>,
    pub sampling: Vec<SampleResult>,
    /// Whether the sampling rows ran on the GGUF's quantized weights (`--quantized`).
    pub quantized_sampling: bool,
    pub peak_rss_gib: f64,
    pub pytorch_baseline: Option<serde_json::Value>,
}

/// Peak resident memory of this process (VmHWM), in GiB.
pub fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0))
}

/// Returns freed heap memory to the kernel and restarts the peak-RSS counter (VmHWM) from the
/// current RSS, so that the next [`peak_rss_gib`] is the peak of what runs in between; false
/// where the kernel refuses (then the counter keeps the process-wide peak).
fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the allocator's discretion.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// GFLOP/s of a bare f32 matmul on `device` (1024³ on the CPU, 4096³ on a GPU): the ceiling a
/// training step can approach.
pub fn matmul_peak(device: &Device) -> Result<f64> {
    let (n, reps) = if device.is_cpu() {
        (1024, 5)
    } else {
        (4096, 20)
    };
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?;
    a.matmul(&b)?;
    device.synchronize()?;
    let start = Instant::now();
    for _ in 0..reps {
        a.matmul(&b)?;
    }
    device.synchronize()?;
    Ok(2.0 * (n * n * n) as f64 * reps as f64 / start.elapsed().as_secs_f64() / 1e9)
}

/// Random pairs of token ids below `vocab`, away from the first and last 100 ids (control and
/// special tokens) when the vocabulary is large enough to leave any.
fn synthetic_pairs(n: usize, vocab: usize, seed: u64) -> Vec<TokenPair> {
    let mut rng = Rng::new(seed);
    let (low, span) = if vocab > 300 {
        (100, vocab as u64 - 200)
    } else {
        (0, vocab.max(1) as u64)
    };
    let mut ids = |len: usize| {
        (0..len)
            .map(|_| (low + rng.below(span)) as u32)
            .collect::<Vec<u32>>()
    };
    (0..n)
        .map(|_| TokenPair {
            prompt: ids(SEQ / 2),
            chosen: ids(SEQ / 2),
            rejected: ids(SEQ / 2),
        })
        .collect()
}

fn bench_step(model: &LoadedModel, pairs: usize, peak: f64) -> Result<StepResult> {
    let defaults = crate::recipe::defaults()?;
    let mut host = ScriptHost::new(&defaults.script, None);
    let hook = from_source(&mut host, HookKind::Loss, &HookSource::Plugin("dpo".into()))?;
    let policy = &model.policy;
    let batch = synthetic_pairs(pairs, policy.config.vocab_size, 1);
    let vars: Vec<_> = policy.vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(vars, AdamWConfig::default())?;
    let spec = defaults.loss;
    let mut run = || -> Result<(f64, f64, f64)> {
        let t0 = Instant::now();
        let reference = forward_pairs(
            &policy.config,
            &policy.base(),
            &batch,
            model.tokenizer.pad_id(),
        )?;
        let ref_c: Vec<Option<f64>> = values(&reference.chosen_logps)?
            .into_iter()
            .map(Some)
            .collect();
        let ref_r: Vec<Option<f64>> = values(&reference.rejected_logps)?
            .into_iter()
            .map(Some)
            .collect();
        let t1 = Instant::now();
        let weights = vec![1.0; pairs];
        let step = StepBatch {
            pairs: &batch,
            ref_chosen: &ref_c,
            ref_rejected: &ref_r,
            weights: &weights,
        };
        let loss = LossFn {
            host: &host,
            hook,
            spec: &spec,
        };
        let out = forward_backward(policy, model.tokenizer.pad_id(), loss, &step, 1.0)?;
        policy.device().synchronize()?;
        let t2 = Instant::now();
        opt.step(&out.grads, 1e-7, 1.0)?;
        policy.device().synchronize()?;
        let t3 = Instant::now();
        Ok((
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ))
    };
    run()?; // warm-up
    let reps = 2;
    let mut sums = (0.0, 0.0, 0.0);
    for _ in 0..reps {
        let (a, b, c) = run()?;
        sums = (sums.0 + a, sums.1 + b, sums.2 + c);
    }
    let (r, fb, o) = (
        sums.0 / reps as f64,
        sums.1 / reps as f64,
        sums.2 / reps as f64,
    );
    let seconds = r + fb + o;
    let tokens = pairs * 2 * SEQ;
    let params = policy.config.param_count() as f64;
    // Per token: 2·params for the reference forward, 2 for the policy forward, 2 for the input
    // gradients, and 2 more for the weight gradients that LoRA's frozen weights skip (the
    // adapters' own FLOPs are left out).
    let per_token = if policy.lora().is_some() { 6.0 } else { 8.0 };
    let gflops = per_token * params * tokens as f64 / seconds / 1e9;
    Ok(StepResult {
        pairs,
        policy_tokens: tokens,
        seconds,
        reference_seconds: r,
        forward_backward_seconds: fb,
        optimizer_seconds: o,
        policy_tokens_per_s: tokens as f64 / seconds,
        gflops_per_s: gflops,
        matmul_peak_fraction: gflops / peak,
        peak_rss_gib: None,
    })
}

fn bench_sampling(
    model: &LoadedModel,
    weights: &Weights,
    batch: usize,
    new_tokens: usize,
) -> Result<SampleResult> {
    let prompts: Vec<GenRequest> = (0..batch)
        .map(|i| GenRequest {
            prompt_ids: model
                .tokenizer
                .encode(&format!("<|im_start|>user\nWrite a long story about the number {i}.<|im_end|>\n<|im_start|>assistant\n"))
                .unwrap_or_default(),
            seed: i as u64,
        })
        .collect();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens: new_tokens,
        stop: Vec::new(),
    };
    let start = Instant::now();
    let out = generate(
        &model.policy.config,
        weights,
        &model.tokenizer,
        &prompts,
        &params,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let tokens: usize = out.iter().map(|g| g.token_ids.len()).sum();
    Ok(SampleResult {
        batch,
        new_tokens: tokens,
        seconds,
        new_tokens_per_s: tokens as f64 / seconds,
    })
}

fn baseline(model: &Path) -> Option<serde_json::Value> {
    let path = model
        .parent()?
        .parent()?
        .join("fixtures/pytorch_baselines.json");
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The `trainer bench` command.
pub fn bench(args: &BenchArgs) -> Result<()> {
    let path = local_model(&args.model, "--model")?;
    let mut model = load_model_on(&path, None, &args.device.open("--device")?)?;
    if args.lora > 0 {
        let config = LoraConfig {
            rank: args.lora,
            alpha: 2.0 * args.lora as f64,
            targets: vec![Target::Q, Target::K, Target::V, Target::O],
        };
        let base = args.model.display().to_string();
        model.policy.attach_lora(&config, 0, &base)?;
    }
    let trainable_params = model
        .policy
        .vars()
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum();
    let peak = matmul_peak(model.policy.device())?;
    let mut report = BenchReport {
        model: args.model.display().to_string(),
        device: args.device.to_string(),
        params: model.policy.config.param_count(),
        trainable_params,
        lora_rank: args.lora,
        threads: rayon::current_num_threads(),
        matmul_peak_gflops: peak,
        steps: Vec::new(),
        sampling: Vec::new(),
        quantized_sampling: args.quantized,
        peak_rss_gib: 0.0,
        pytorch_baseline: baseline(&args.model),
    };
    let sampling = if args.quantized {
        quantized_weights(&model, "--quantized")?
    } else {
        model.policy.frozen()
    };
    for &b in &args.batches.0 {
        tracing::info!("sampling at batch {b}");
        report
            .sampling
            .push(bench_sampling(&model, &sampling, b, args.new_tokens)?);
    }
    let mut overall = peak_rss_gib();
    for &p in &args.pairs.0 {
        tracing::info!("DPO step at {p} pairs x {SEQ} tokens");
        overall = overall.max(peak_rss_gib());
        let fresh = reset_peak_rss();
        let mut row = bench_step(&model, p, peak)?;
        row.peak_rss_gib = fresh.then(peak_rss_gib);
        report.steps.push(row);
    }
    report.peak_rss_gib = overall.max(peak_rss_gib());
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The PyTorch baseline's figure `key`, when the baseline file has it.
fn pytorch(r: &BenchReport, key: &str) -> Option<f64> {
    r.pytorch_baseline.as_ref().and_then(|b| b[key].as_f64())
}

fn render(r: &BenchReport) -> String {
    use std::fmt::Write;
    let base = |key: &str| pytorch(r, key);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {} ({:.1} M parameters) on {}, {} CPU threads, bare matmul {:.1} GFLOP/s",
        r.model,
        r.params as f64 / 1e6,
        r.device,
        r.threads,
        r.matmul_peak_gflops
    );
    if !r.steps.is_empty() {
        render_steps(r, &mut out);
    }
    if !r.sampling.is_empty() {
        render_sampling(r, &mut out);
    }
    let pt = base("peak_rss_gib");
    let _ = writeln!(
        out,
        "\npeak RSS {:.2} GiB (PyTorch {})",
        r.peak_rss_gib,
        pt.map_or("-".into(), |v| format!("{v:.2} GiB"))
    );
    out
}

/// The DPO step rows.
fn render_steps(r: &BenchReport, out: &mut String) {
    use std::fmt::Write;
    let base = |key: &str| pytorch(r, key);
    let training = if r.lora_rank > 0 {
        format!("LoRA r={} on q/k/v/o_proj", r.lora_rank)
    } else {
        "full fine-tuning".to_string()
    };
    let _ = writeln!(
        out,
        "\nDPO step (reference forward + policy forward/backward + AdamW), sequences of {SEQ} tokens, \
         {training}: {:.2} M trainable parameters",
        r.trainable_params as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "pairs  seconds  ref   fwd+bwd  adamw  policy tok/s  GFLOP/s  of peak  peak RSS  PyTorch tok/s  ratio"
    );
    for s in &r.steps {
        let pt = base(&format!("dpo_step_pairs{}_T128_tokens_per_s", s.pairs));
        let _ = writeln!(
            out,
            "{:>5}  {:>7.2}  {:>4.2}  {:>7.2}  {:>5.2}  {:>12.1}  {:>7.1}  {:>6.0}%  {:>8}  {:>13}  {}",
            s.pairs,
            s.seconds,
            s.reference_seconds,
            s.forward_backward_seconds,
            s.optimizer_seconds,
            s.policy_tokens_per_s,
            s.gflops_per_s,
            100.0 * s.matmul_peak_fraction,
            s.peak_rss_gib.map_or("-".into(), |g| format!("{g:.2} GiB")),
            pt.map_or("-".into(), |v| format!("{v:.1}")),
            pt.map_or("-".into(), |v| format!("{:.2}x", s.policy_tokens_per_s / v)),
        );
    }
}

/// The sampling rows.
fn render_sampling(r: &BenchReport, out: &mut String) {
    use std::fmt::Write;
    let base = |key: &str| pytorch(r, key);
    let weights = if r.quantized_sampling {
        "quantized GGUF weights"
    } else {
        "f32 weights"
    };
    let _ = writeln!(out, "\nsampling (KV cache, temperature 1, {weights})");
    let _ = writeln!(
        out,
        "batch  new tokens  seconds  tok/s  PyTorch tok/s  ratio"
    );
    for s in &r.sampling {
        let pt = base(&format!("sample_batch{}_new_tokens_per_s", s.batch));
        let _ = writeln!(
            out,
            "{:>5}  {:>10}  {:>7.2}  {:>5.1}  {:>13}  {}",
            s.batch,
            s.new_tokens,
            s.seconds,
            s.new_tokens_per_s,
            pt.map_or("-".into(), |v| format!("{v:.1}")),
            pt.map_or("-".into(), |v| format!("{:.2}x", s.new_tokens_per_s / v)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::synthetic_pairs;

    #[test]
    fn synthetic_pairs_stay_inside_a_small_or_large_vocabulary() {
        for vocab in [100, 49_152] {
            for p in synthetic_pairs(3, vocab, 7) {
                let all = p.prompt.iter().chain(&p.chosen).chain(&p.rejected);
                assert!(
                    all.into_iter().all(|&t| (t as usize) < vocab),
                    "vocab {vocab}"
                );
            }
        }
    }
}
