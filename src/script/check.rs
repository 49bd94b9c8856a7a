//! `trainer check`: compile a script, list its hooks, run its `test_*` functions, and compare a
//! loss hook's autograd gradient with central finite differences.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};

use super::hooks::{HookKind, HookRef};
use super::host::ScriptHost;
use super::loss_batch::{LossInputs, LossOutput};
use crate::recipe::{LossSpec, ScriptLimits, WeightPlacement};
use crate::rng::Rng;

/// Largest accepted `max |autograd − finite difference| / max |finite difference|`.
pub const GRAD_TOLERANCE: f64 = 1e-3;

/// Pairs in the random batch of the gradient check.
const GRAD_BATCH: usize = 6;

#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub name: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GradCheck {
    pub placement: WeightPlacement,
    pub loss: f64,
    /// `max |autograd − finite difference| / max |finite difference|` over both policy inputs.
    pub max_rel_error: f64,
    /// Where the largest difference is: (`chosen_logps` or `rejected_logps`, index, autograd,
    /// finite difference).
    pub worst: (&'static str, usize, f64, f64),
    /// A policy input the loss has no autograd gradient for at all although its value moves
    /// the loss: the input itself was detached.
    pub cut: Option<&'static str>,
}

impl GradCheck {
    pub fn passed(&self) -> bool {
        self.max_rel_error <= GRAD_TOLERANCE && self.cut.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct CheckReport {
    pub file: String,
    pub hooks: Vec<&'static str>,
    pub tests: Vec<TestOutcome>,
    pub grads: Vec<GradCheck>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.tests.iter().all(|t| t.error.is_none()) && self.grads.iter().all(GradCheck::passed)
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}: compiled", self.file);
        let hooks = if self.hooks.is_empty() {
            "none".to_string()
        } else {
            self.hooks.join(", ")
        };
        let _ = writeln!(out, "hooks: {hooks}");
        for t in &self.tests {
            match &t.error {
                None => {
                    let _ = writeln!(out, "test {} ... ok", t.name);
                }
                Some(e) => {
                    let _ = writeln!(out, "test {} ... FAILED: {e}", t.name);
                }
            }
        }
        for g in &self.grads {
            let verdict = if g.passed() { "ok" } else { "FAILED" };
            let _ = writeln!(
                out,
                "gradient check loss(batch) [weight_placement = {}]: loss {:.6}, max relative error {:.2e} (limit {:.0e}) ... {verdict}",
                g.placement.as_str(),
                g.loss,
                g.max_rel_error,
                GRAD_TOLERANCE
            );
            if let Some(input) = g.cut {
                let _ = writeln!(
                    out,
                    "  batch.{input} gets no gradient at all although the loss depends on it: \
                     the policy's log-probs are detached"
                );
            } else if !g.passed() {
                let (input, i, auto, finite) = g.worst;
                let _ = writeln!(
                    out,
                    "  worst at batch.{input}[{i}]: autograd {auto:.6e}, finite difference {finite:.6e} \
                     (a term that should not carry gradient must go through detach(); one that \
                     should, must not)"
                );
            }
        }
        let failed = self.tests.iter().filter(|t| t.error.is_some()).count()
            + self.grads.iter().filter(|g| !g.passed()).count();
        let total = self.tests.len() + self.grads.len();
        let _ = write!(out, "{} of {total} checks passed", total - failed);
        out
    }
}

/// Compiles `path` and runs every check on it.
pub fn run_check(
    path: &Path,
    limits: &ScriptLimits,
    loss: &LossSpec,
    seed: u64,
) -> Result<CheckReport> {
    let mut host = ScriptHost::new(limits, Some(path));
    let unit = host.load_file(path)?;
    let mut hooks = Vec::new();
    let mut loss_hook = None;
    for kind in HookKind::ALL {
        if let Some(hook) = host.find_hook(unit, kind)? {
            hooks.push(kind.signature());
            if kind == HookKind::Loss {
                loss_hook = Some(hook);
            }
        }
    }
    let mut tests = unit_tests(&host, unit, "");
    // The modules the script imports run their tests too, named `module::test_name`.
    let main = host.file(unit).to_string();
    for (name, text) in host.sources() {
        if name == main {
            continue;
        }
        match host.load_imported(&name, &text) {
            Ok(imported) => tests.extend(unit_tests(&host, imported, &format!("{name}::"))),
            Err(e) => tests.push(TestOutcome {
                name: format!("{name} (imported)"),
                error: Some(format!("{e:#}")),
            }),
        }
    }
    let mut grads = Vec::new();
    if let Some(hook) = loss_hook {
        for placement in [WeightPlacement::Inside, WeightPlacement::Outside] {
            let spec = LossSpec {
                placement,
                ..loss.clone()
            };
            let check = gradient_check(&host, hook, &spec, seed);
            super::tensor::detached::off();
            grads.push(check?);
        }
    }
    Ok(CheckReport {
        file: host.file(unit).to_string(),
        hooks,
        tests,
        grads,
    })
}

/// Runs every `test_*` function of `unit` that takes no parameters, in name order.
fn unit_tests(host: &ScriptHost, unit: super::host::UnitId, prefix: &str) -> Vec<TestOutcome> {
    let mut names: Vec<&str> = host
        .functions(unit)
        .iter()
        .filter(|f| f.name.starts_with("test_") && f.params.is_empty())
        .map(|f| f.name.as_str())
        .collect();
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| TestOutcome {
            name: format!("{prefix}{name}"),
            error: host
                .call(unit, name, vec![])
                .err()
                .map(|e| format!("{e:#}")),
        })
        .collect()
}

/// A random f64 batch; every value is away from the kinks of the usual losses.
pub fn random_batch(seed: u64) -> Result<(Vec<Vec<f64>>, LossInputs)> {
    const STAGE: u64 = 0x6772_6164; // "grad"
    let mut rng = Rng::derived(seed, &[STAGE]);
    let b = GRAD_BATCH;
    let chosen_tokens: Vec<f64> = (0..b).map(|_| 4.0 + rng.below(60) as f64).collect();
    let rejected_tokens: Vec<f64> = (0..b).map(|_| 4.0 + rng.below(60) as f64).collect();
    let chosen: Vec<f64> = chosen_tokens
        .iter()
        .map(|t| -t * (0.2 + 1.8 * rng.next_f64()))
        .collect();
    let rejected: Vec<f64> = rejected_tokens
        .iter()
        .map(|t| -t * (0.2 + 1.8 * rng.next_f64()))
        .collect();
    let ref_chosen: Vec<f64> = chosen.iter().map(|c| c + 3.0 * rng.normal()).collect();
    let ref_rejected: Vec<f64> = rejected.iter().map(|c| c + 3.0 * rng.normal()).collect();
    let weight: Vec<f64> = (0..b).map(|_| 0.5 + 2.0 * rng.next_f64()).collect();
    let chosen_wpo: Vec<f64> = (0..b).map(|_| -0.1 - 1.9 * rng.next_f64()).collect();
    let rejected_wpo: Vec<f64> = (0..b).map(|_| -0.1 - 1.9 * rng.next_f64()).collect();
    let t = |v: &[f64]| Tensor::new(v, &Device::Cpu);
    let inputs = LossInputs {
        chosen_logps: t(&chosen)?,
        rejected_logps: t(&rejected)?,
        ref_chosen_logps: t(&ref_chosen)?,
        ref_rejected_logps: t(&ref_rejected)?,
        chosen_tokens: t(&chosen_tokens)?,
        rejected_tokens: t(&rejected_tokens)?,
        weight: t(&weight)?,
        chosen_wpo: t(&chosen_wpo)?,
        rejected_wpo: t(&rejected_wpo)?,
    };
    Ok((vec![chosen, rejected], inputs))
}

fn scalar_loss(
    host: &ScriptHost,
    hook: HookRef,
    inputs: &LossInputs,
    spec: &LossSpec,
) -> Result<Tensor> {
    let out = host.call_loss(hook, inputs, &spec.hook_params())?;
    Ok(match out {
        LossOutput::PerPair(t) => t.mean_all()?,
        LossOutput::Scalar(t) => t,
    })
}

fn gradient_check(
    host: &ScriptHost,
    hook: HookRef,
    spec: &LossSpec,
    seed: u64,
) -> Result<GradCheck> {
    let (policy, base) = random_batch(seed)?;
    let (loss, autograd) = autograd_grads(host, hook, spec, &base)?;
    let (finite, plain) = finite_differences(host, hook, spec, &policy, &base)?;
    let names = ["chosen_logps", "rejected_logps"];
    let cut = (0..2)
        .find(|&w| {
            autograd[w].iter().all(|g| g.abs() < 1e-12) && plain[w].iter().any(|f| f.abs() > 1e-8)
        })
        .map(|w| names[w]);
    let scale = finite.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = ("chosen_logps", 0, 0.0, 0.0);
    let mut diff = -1.0f64;
    for (which, name) in names.into_iter().enumerate() {
        for i in 0..GRAD_BATCH {
            let d = (autograd[which][i] - finite[which][i]).abs();
            if d > diff {
                diff = d;
                worst = (name, i, autograd[which][i], finite[which][i]);
            }
        }
    }
    let max_rel_error = if scale < 1e-12 {
        if diff < 1e-12 { 0.0 } else { 1.0 }
    } else {
        diff / scale
    };
    Ok(GradCheck {
        worst,
        cut,
        placement: spec.placement,
        loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        max_rel_error,
    })
}

/// One value per policy log-probability: `[chosen_logps, rejected_logps]`, `GRAD_BATCH` each.
type PerInput = Vec<Vec<f64>>;

/// The loss at `base` and its autograd gradient with respect to the chosen and rejected
/// log-probabilities (zeros where the loss does not reach an input).
fn autograd_grads(
    host: &ScriptHost,
    hook: HookRef,
    spec: &LossSpec,
    base: &LossInputs,
) -> Result<(Tensor, PerInput)> {
    let chosen = Var::from_tensor(&base.chosen_logps)?;
    let rejected = Var::from_tensor(&base.rejected_logps)?;
    let inputs = LossInputs {
        chosen_logps: chosen.as_tensor().clone(),
        rejected_logps: rejected.as_tensor().clone(),
        ..base.clone()
    };
    // The unperturbed call records what every detach() returned; the perturbed calls of the
    // finite differences get those values back, so a detached term is a constant to both sides.
    let loss = super::tensor::detached::recording(|| scalar_loss(host, hook, &inputs, spec))?;
    let grads = loss.backward()?;
    let mut autograd = Vec::new();
    for var in [&chosen, &rejected] {
        autograd.push(match grads.get(var.as_tensor()) {
            Some(g) => g.to_dtype(DType::F64)?.to_vec1::<f64>()?,
            None => vec![0.0; GRAD_BATCH],
        });
    }
    Ok((loss, autograd))
}

/// Central differences of the loss in every chosen and rejected log-probability: holding what
/// each detach() returned at `base` (the gradient autograd should match), and without holding
/// it (only to tell a detached policy input apart).
fn finite_differences(
    host: &ScriptHost,
    hook: HookRef,
    spec: &LossSpec,
    policy: &[Vec<f64>],
    base: &LossInputs,
) -> Result<(PerInput, PerInput)> {
    let mut finite = vec![vec![0.0; GRAD_BATCH]; 2];
    let mut plain = vec![vec![0.0; GRAD_BATCH]; 2];
    for (which, values) in policy.iter().enumerate() {
        for i in 0..GRAD_BATCH {
            let h = 1e-6 * values[i].abs().max(1.0);
            let at = |delta: f64, hold: bool| -> Result<f64> {
                let mut v = values.clone();
                v[i] += delta;
                let moved = Tensor::new(v.as_slice(), &Device::Cpu)?;
                let mut probe = base.clone();
                if which == 0 {
                    probe.chosen_logps = moved
                } else {
                    probe.rejected_logps = moved
                }
                let eval = || -> Result<f64> {
                    Ok(scalar_loss(host, hook, &probe, spec)?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?)
                };
                if hold {
                    super::tensor::detached::replaying(eval)
                } else {
                    super::tensor::detached::bypassing(eval)
                }
            };
            finite[which][i] = (at(h, true)? - at(-h, true)?) / (2.0 * h);
            plain[which][i] = (at(h, false)? - at(-h, false)?) / (2.0 * h);
        }
    }
    Ok((finite, plain))
}
