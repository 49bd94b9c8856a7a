//! The text report of `trainer bench`: our rows, and PyTorch's beside them with the ratios when
//! it ran in the same run.

use std::fmt::Write;

use super::{BenchReport, PytorchRow};

/// `ours / theirs` as `1.23x`, or `-` when PyTorch did not run.
fn ratio(ours: f64, theirs: Option<&PytorchRow>) -> String {
    theirs.map_or("-".into(), |t| format!("{:.2}x", ours / t.tokens_per_s))
}

fn tok_s(theirs: Option<&PytorchRow>) -> String {
    theirs.map_or("-".into(), |t| format!("{:.1}", t.tokens_per_s))
}

pub(super) fn gib(v: Option<f64>) -> String {
    v.map_or("-".into(), |g| format!("{g:.2} GiB"))
}

/// `; PyTorch X (ratio), its peak RSS Y` for the progress log line of a row, or nothing.
pub(super) fn versus(ours: f64, theirs: Option<&PytorchRow>) -> String {
    theirs.map_or(String::new(), |t| {
        format!(
            "; PyTorch {} ({}), its peak RSS {}",
            tok_s(Some(t)),
            ratio(ours, Some(t)),
            gib(t.peak_rss_gib)
        )
    })
}

pub(super) fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {} ({:.1} M parameters) on {}, {} CPU threads [{}], bare matmul {:.1} GFLOP/s; best of {}",
        r.model,
        r.params as f64 / 1e6,
        r.device,
        r.threads,
        r.cpu_features.join(" "),
        r.matmul_peak_gflops,
        r.reps
    );
    match &r.pytorch {
        Some(v) => {
            let _ = writeln!(
                out,
                "PyTorch {} ({} threads) measured in this run, each row in turn with ours",
                v["torch"].as_str().unwrap_or("?"),
                v["threads"]
            );
        }
        None => {
            let _ = writeln!(
                out,
                "PyTorch baseline not run (--pytorch PYTHON runs it side by side; bench/install_pytorch.sh installs it)"
            );
        }
    }
    if !r.steps.is_empty() {
        render_steps(r, &mut out);
    }
    if !r.sampling.is_empty() {
        render_sampling(r, &mut out);
    }
    let _ = writeln!(out, "\npeak RSS of this process {:.2} GiB", r.peak_rss_gib);
    out
}

/// The DPO step rows.
fn render_steps(r: &BenchReport, out: &mut String) {
    let training = if r.lora_rank > 0 {
        format!("LoRA r={} on q/k/v/o_proj", r.lora_rank)
    } else {
        "full fine-tuning".to_string()
    };
    let _ = writeln!(
        out,
        "\nDPO step (reference forward + policy forward/backward + AdamW), {training}: {:.2} M trainable parameters",
        r.trainable_params as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "pairs x tokens  seconds  ref   fwd+bwd  adamw  policy tok/s  GFLOP/s  of peak  peak RSS   PyTorch tok/s  ratio  PyTorch RSS"
    );
    for s in &r.steps {
        let pt = s.pytorch.as_ref();
        let _ = writeln!(
            out,
            "{:>14}  {:>7.2}  {:>4.2}  {:>7.2}  {:>5.2}  {:>12.1}  {:>7.1}  {:>6.0}%  {:>9}  {:>13}  {:>5}  {:>11}",
            format!("{} x {}", s.pairs, s.seq),
            s.seconds,
            s.reference_seconds,
            s.forward_backward_seconds,
            s.optimizer_seconds,
            s.policy_tokens_per_s,
            s.gflops_per_s,
            100.0 * s.matmul_peak_fraction,
            gib(s.peak_rss_gib),
            tok_s(pt),
            ratio(s.policy_tokens_per_s, pt),
            gib(pt.and_then(|p| p.peak_rss_gib)),
        );
    }
}

/// The sampling rows.
fn render_sampling(r: &BenchReport, out: &mut String) {
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
        let pt = s.pytorch.as_ref();
        let _ = writeln!(
            out,
            "{:>5}  {:>10}  {:>7.2}  {:>5.1}  {:>13}  {:>5}",
            s.batch,
            s.new_tokens,
            s.seconds,
            s.new_tokens_per_s,
            tok_s(pt),
            ratio(s.new_tokens_per_s, pt),
        );
    }
}
