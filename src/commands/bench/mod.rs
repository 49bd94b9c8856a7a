//! `trainer bench`: DPO-step throughput (reference forward + policy forward/backward + AdamW),
//! sampling throughput and peak memory; with `--pytorch PYTHON`, the PyTorch reference measured
//! in the same run, row by row in turn with ours.

mod measure;
mod pytorch;
mod render;

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use self::measure::{StepBench, matmul_peak, peak_rss_gib, reset_peak_rss, sample_once};
use self::pytorch::Reference;
use crate::cli::BenchArgs;
use crate::model::{
    LoadedModel, LoraConfig, Target, Weights, load_model_on, local_model, quantized_weights,
};

/// Seconds of one DPO step's parts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepTimes {
    pub reference: f64,
    pub forward_backward: f64,
    pub optimizer: f64,
}

impl StepTimes {
    fn total(&self) -> f64 {
        self.reference + self.forward_backward + self.optimizer
    }
}

/// What PyTorch measured for a row, in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct PytorchRow {
    pub seconds: f64,
    /// Policy tokens/s (step rows) or new tokens/s (sampling rows).
    pub tokens_per_s: f64,
    /// Peak RSS of the PyTorch process while the row ran.
    pub peak_rss_gib: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StepResult {
    pub pairs: usize,
    /// Tokens per sequence (half prompt, half response).
    pub seq: usize,
    /// Policy tokens per step: pairs × 2 sequences × seq.
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
    pub pytorch: Option<PytorchRow>,
}

#[derive(Debug, Serialize)]
pub struct SampleResult {
    pub batch: usize,
    pub new_tokens: usize,
    pub seconds: f64,
    pub new_tokens_per_s: f64,
    pub pytorch: Option<PytorchRow>,
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
    /// The CPU features the matmul kernels could use (`avx512f`, `avx2`, ...).
    pub cpu_features: Vec<&'static str>,
    pub matmul_peak_gflops: f64,
    /// Timed repetitions per row (each side), the best kept.
    pub reps: u64,
    pub steps: Vec<StepResult>,
    pub sampling: Vec<SampleResult>,
    /// Whether the sampling rows ran on the GGUF's quantized weights (`--quantized`).
    pub quantized_sampling: bool,
    pub peak_rss_gib: f64,
    /// The PyTorch reference's versions, when `--pytorch` ran it; `None`: not run.
    pub pytorch: Option<serde_json::Value>,
}

/// The x86 SIMD levels this CPU offers, widest first.
fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = Vec::new();
        if std::is_x86_feature_detected!("avx512f") {
            f.push("avx512f");
        }
        if std::is_x86_feature_detected!("avx2") {
            f.push("avx2");
        }
        if std::is_x86_feature_detected!("fma") {
            f.push("fma");
        }
        f
    }
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// The `trainer bench` command.
pub fn bench(args: &BenchArgs) -> Result<()> {
    crate::threads::size_elementwise_pool(args.quantized);
    let path = local_model(&args.model, "--model")?;
    let model = bench_model(&path, args)?;
    let mut reference = start_reference(args, &path)?;
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
        cpu_features: cpu_features(),
        matmul_peak_gflops: peak,
        reps: args.reps,
        steps: Vec::new(),
        sampling: Vec::new(),
        quantized_sampling: args.quantized,
        peak_rss_gib: 0.0,
        pytorch: reference.as_ref().map(|r| r.versions.clone()),
    };
    let sampling = if args.quantized {
        quantized_weights(&model, "--quantized")?
    } else {
        model.policy.frozen()
    };
    for &b in &args.batches.0 {
        tracing::info!("sampling at batch {b}");
        let row = sampling_row(&model, &sampling, b, args, reference.as_mut())?;
        tracing::info!(
            "sampling at batch {b}: {:.1} new tokens/s{}",
            row.new_tokens_per_s,
            render::versus(row.new_tokens_per_s, row.pytorch.as_ref())
        );
        report.sampling.push(row);
    }
    let overall = step_rows(&model, args, &mut report, reference.as_mut())?;
    report.peak_rss_gib = overall.max(peak_rss_gib());
    if let Some(r) = reference {
        r.finish()?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render::render(&report));
    }
    Ok(())
}

/// The PyTorch reference process of `--pytorch`, started on the model file; refused with the
/// options it does not measure.
fn start_reference(args: &BenchArgs, path: &Path) -> Result<Option<Reference>> {
    Ok(match &args.pytorch {
        Some(python) => {
            if args.lora > 0 || args.quantized || args.device != crate::model::DeviceChoice::Cpu {
                return Err(crate::error::user_error(
                    "--pytorch measures full fine-tuning and f32 sampling on the CPU: leave out \
                 --lora, --quantized and --device",
                ));
            }
            Some(Reference::start(python, path)?)
        }
        None => None,
    })
}

/// Measures the DPO step rows of `--pairs` into `report`; returns the peak RSS seen before each.
fn step_rows(
    model: &crate::model::LoadedModel,
    args: &BenchArgs,
    report: &mut BenchReport,
    mut reference: Option<&mut Reference>,
) -> Result<f64> {
    let mut overall = peak_rss_gib();
    for &(p, seq) in &args.pairs.0 {
        tracing::info!("DPO step at {p} pairs x {seq} tokens");
        overall = overall.max(peak_rss_gib());
        let row = step_row(
            model,
            (p, seq),
            report.matmul_peak_gflops,
            args.reps,
            reference.as_deref_mut(),
        )?;
        tracing::info!(
            "DPO step at {p} x {seq}: {:.1} policy tokens/s, peak RSS {}{}",
            row.policy_tokens_per_s,
            render::gib(row.peak_rss_gib),
            render::versus(row.policy_tokens_per_s, row.pytorch.as_ref())
        );
        report.steps.push(row);
    }
    Ok(overall)
}

/// The model to measure, with LoRA adapters of `--lora` rank (alpha = 2·rank) on the attention
/// projections when asked.
fn bench_model(path: &std::path::Path, args: &BenchArgs) -> Result<crate::model::LoadedModel> {
    let mut model = load_model_on(path, None, &args.device.open("--device")?)?;
    if args.lora > 0 {
        let config = LoraConfig {
            rank: args.lora,
            alpha: 2.0 * args.lora as f64,
            targets: vec![Target::Q, Target::K, Target::V, Target::O],
        };
        let base = args.model.display().to_string();
        model.policy.attach_lora(&config, 0, &base)?;
    }
    Ok(model)
}

/// One step row: a warm-up, then `reps` timed steps of ours, each followed by one of PyTorch's
/// when it runs; the fastest of each side counts.
fn step_row(
    model: &LoadedModel,
    (pairs, seq): (usize, usize),
    peak: f64,
    reps: u64,
    reference: Option<&mut Reference>,
) -> Result<StepResult> {
    let fresh = reset_peak_rss();
    let mut bench = StepBench::new(model, pairs, seq)?;
    bench.once()?; // warm-up
    let tokens = pairs * 2 * seq;
    let theirs = reference.map(|r| move || r.step(pairs, seq, tokens));
    let (t, theirs) = best_of(reps, || bench.once(), |t| -t.total(), theirs)?;
    let ours_rss = fresh.then(peak_rss_gib);
    let seconds = t.total();
    let params = model.policy.config.param_count() as f64;
    // Per token: 2·params for the reference forward, 2 for the policy forward, 2 for the input
    // gradients, and 2 more for the weight gradients that LoRA's frozen weights skip (the
    // adapters' own FLOPs are left out).
    let per_token = if model.policy.lora().is_some() {
        6.0
    } else {
        8.0
    };
    let gflops = per_token * params * tokens as f64 / seconds / 1e9;
    Ok(StepResult {
        pairs,
        seq,
        policy_tokens: tokens,
        seconds,
        reference_seconds: t.reference,
        forward_backward_seconds: t.forward_backward,
        optimizer_seconds: t.optimizer,
        policy_tokens_per_s: tokens as f64 / seconds,
        gflops_per_s: gflops,
        matmul_peak_fraction: gflops / peak,
        peak_rss_gib: ours_rss,
        pytorch: theirs,
    })
}

/// One sampling row: a warm-up, then `reps` timed batches of ours and PyTorch's in turn.
fn sampling_row(
    model: &LoadedModel,
    weights: &Weights,
    batch: usize,
    args: &BenchArgs,
    reference: Option<&mut Reference>,
) -> Result<SampleResult> {
    sample_once(model, weights, batch, args.new_tokens)?; // warm-up
    let theirs = reference.map(|r| move || r.sample(batch, args.new_tokens));
    let (mut row, theirs) = best_of(
        args.reps,
        || sample_once(model, weights, batch, args.new_tokens),
        |r| r.new_tokens_per_s,
        theirs,
    )?;
    row.pytorch = theirs;
    Ok(row)
}

/// `reps` rounds of one timed run of ours followed, when PyTorch runs, by one of its; the best of
/// each side counts (ours by `score`, higher is better; PyTorch's by tokens/s).
fn best_of<T>(
    reps: u64,
    mut ours: impl FnMut() -> Result<T>,
    score: impl Fn(&T) -> f64,
    mut theirs: Option<impl FnMut() -> Result<PytorchRow>>,
) -> Result<(T, Option<PytorchRow>)> {
    let mut best: Option<T> = None;
    let mut best_theirs: Option<PytorchRow> = None;
    for _ in 0..reps {
        let row = ours()?;
        if best.as_ref().is_none_or(|b| score(&row) > score(b)) {
            best = Some(row);
        }
        if let Some(run) = theirs.as_mut() {
            let row = run()?;
            if best_theirs
                .as_ref()
                .is_none_or(|b| row.tokens_per_s > b.tokens_per_s)
            {
                best_theirs = Some(row);
            }
        }
    }
    let best = best.ok_or_else(|| anyhow::anyhow!("no timed repetition"))?;
    Ok((best, best_theirs))
}
