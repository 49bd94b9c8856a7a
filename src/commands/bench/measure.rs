//! Our side of `trainer bench`: one timed DPO step (reference forward + policy forward/backward +
//! AdamW) on synthetic pairs, one timed sampling batch, the bare matmul, and peak memory.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::{SampleResult, StepTimes};
use crate::model::{GenRequest, LoadedModel, SamplingParams, Weights, generate};
use crate::recipe::{HookSource, LossSpec};
use crate::rng::Rng;
use crate::script::{HookKind, HookRef, ScriptHost, from_source};
use crate::train::{AdamW, AdamWConfig, LossFn, StepBatch, forward_backward, values};
use crate::train::{TokenPair, forward_pairs};

/// Peak resident memory of this process (VmHWM), in GiB.
pub(super) fn peak_rss_gib() -> f64 {
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
pub(super) fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the allocator's discretion.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// GFLOP/s of a bare f32 matmul on `device` (1024³ on the CPU, 4096³ on a GPU): the ceiling a
/// training step can approach.
pub(super) fn matmul_peak(device: &Device) -> Result<f64> {
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
fn synthetic_pairs(n: usize, seq: usize, vocab: usize, seed: u64) -> Vec<TokenPair> {
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
            prompt: ids(seq / 2),
            chosen: ids(seq - seq / 2),
            rejected: ids(seq - seq / 2),
        })
        .collect()
}

/// One DPO step shape, ready to time again and again on the same pairs and optimizer.
pub(super) struct StepBench<'a> {
    model: &'a LoadedModel,
    host: ScriptHost,
    hook: HookRef,
    spec: LossSpec,
    batch: Vec<TokenPair>,
    opt: AdamW,
}

impl<'a> StepBench<'a> {
    /// `pairs` synthetic pairs of `seq` tokens each (half prompt, half response), DPO loss.
    pub fn new(model: &'a LoadedModel, pairs: usize, seq: usize) -> Result<Self> {
        let defaults = crate::recipe::defaults()?;
        let mut host = ScriptHost::new(&defaults.script, None);
        let hook = from_source(&mut host, HookKind::Loss, &HookSource::Plugin("dpo".into()))?;
        let policy = &model.policy;
        let vars: Vec<_> = policy.vars().into_iter().map(|(_, v)| v).collect();
        Ok(Self {
            model,
            host,
            hook,
            spec: defaults.loss,
            batch: synthetic_pairs(pairs, seq, policy.config.vocab_size, 1),
            opt: AdamW::new(vars, AdamWConfig::default())?,
        })
    }

    /// Times one step: seconds of the reference pass, the forward/backward and AdamW.
    pub fn once(&mut self) -> Result<StepTimes> {
        let policy = &self.model.policy;
        let pad = self.model.tokenizer.pad_id();
        let t0 = Instant::now();
        let reference = forward_pairs(&policy.config, &policy.base(), &self.batch, pad)?;
        let some = |t: &Tensor| -> Result<Vec<Option<f64>>> {
            Ok(values(t)?.into_iter().map(Some).collect())
        };
        let (ref_c, ref_r) = (
            some(&reference.chosen_logps)?,
            some(&reference.rejected_logps)?,
        );
        let t1 = Instant::now();
        let weights = vec![1.0; self.batch.len()];
        let step = StepBatch {
            pairs: &self.batch,
            ref_chosen: &ref_c,
            ref_rejected: &ref_r,
            weights: &weights,
        };
        let loss = LossFn {
            host: &self.host,
            hook: self.hook,
            spec: &self.spec,
        };
        let out = forward_backward(policy, pad, loss, &step, 1.0)?;
        policy.device().synchronize()?;
        let t2 = Instant::now();
        self.opt.step(&out.grads, 1e-7, 1.0)?;
        policy.device().synchronize()?;
        let t3 = Instant::now();
        Ok(StepTimes {
            reference: (t1 - t0).as_secs_f64(),
            forward_backward: (t2 - t1).as_secs_f64(),
            optimizer: (t3 - t2).as_secs_f64(),
        })
    }
}

/// The chat-formatted story prompts of the sampling rows, one per sequence of the batch.
fn story_prompt(i: usize) -> String {
    format!(
        "<|im_start|>user\nWrite a long story about the number {i}.<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// Times one sampling batch of `batch` sequences, `new_tokens` each at most.
pub(super) fn sample_once(
    model: &LoadedModel,
    weights: &Weights,
    batch: usize,
    new_tokens: usize,
) -> Result<SampleResult> {
    let prompts: Vec<GenRequest> = (0..batch)
        .map(|i| {
            Ok(GenRequest {
                prompt_ids: model.tokenizer.encode(&story_prompt(i))?,
                seed: i as u64,
            })
        })
        .collect::<Result<_>>()?;
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
        pytorch: None,
    })
}

#[cfg(test)]
mod tests {
    use super::synthetic_pairs;

    #[test]
    fn synthetic_pairs_stay_inside_a_small_or_large_vocabulary() {
        for vocab in [100, 49_152] {
            for p in synthetic_pairs(3, 128, vocab, 7) {
                let all = p.prompt.iter().chain(&p.chosen).chain(&p.rejected);
                assert!(
                    all.into_iter().all(|&t| (t as usize) < vocab),
                    "vocab {vocab}"
                );
            }
        }
    }
}
