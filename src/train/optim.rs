//! AdamW that updates every parameter in place, multi-threaded, following PyTorch's `torch.optim.AdamW`
//! arithmetic step by step (so one step matches it to float rounding).

use std::borrow::Cow;
use std::sync::Mutex;

use anyhow::{Result, bail};
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;

use super::adamw_device::{StepScalars, update as device_update};

/// AdamW hyper-parameters (the learning rate is given per step, by the schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// First and second moments of one parameter.
#[derive(Debug, Clone)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// The optimizer and its state.
pub struct AdamW {
    pub config: AdamWConfig,
    vars: Vec<Var>,
    /// Moments of parameters on the CPU (empty vectors for parameters on a GPU).
    moments: Vec<Moments>,
    /// `(m, v)` of parameters on a GPU, on that GPU (empty when the parameters are on the CPU).
    device_moments: Vec<(Tensor, Tensor)>,
    /// Number of steps taken.
    pub step: u64,
}

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 15;

struct Update<'a> {
    moments: Mutex<&'a mut Moments>,
    s: StepScalars,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(param), CpuStorage::F32(grad)) = (s1, s2) else {
            candle_core::bail!("adamw: parameters and gradients must be f32");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("adamw: parameters and gradients must be contiguous");
        };
        let param = &mut param[p0..p1];
        let grad = &grad[g0..g1];
        let mut guard = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("adamw state poisoned".into()))?;
        let Moments { m, v } = &mut **guard;
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| self.update(p, g, m, v));
        Ok(())
    }
}

impl Update<'_> {
    /// PyTorch's single-tensor AdamW, element by element.
    fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let s = &self.s;
        let (lr, step_size, bc2_sqrt) = (s.lr as f32, s.step_size as f32, s.bc2_sqrt as f32);
        let (beta1, beta2, eps) = (s.beta1 as f32, s.beta2 as f32, s.eps as f32);
        let (decay, grad_scale) = (1.0 - lr * s.decay as f32, s.grad_scale as f32);
        for i in 0..p.len() {
            let g = g[i] * grad_scale;
            p[i] *= decay;
            m[i] += (g - m[i]) * (1.0 - beta1);
            v[i] = v[i] * beta2 + (1.0 - beta2) * g * g;
            let denom = v[i].sqrt() / bc2_sqrt + eps;
            p[i] += -step_size * (m[i] / denom);
        }
    }
}

impl AdamW {
    pub fn new(vars: Vec<Var>, config: AdamWConfig) -> Result<Self> {
        for v in &vars {
            if v.dtype() != DType::F32 || !v.is_contiguous() {
                bail!("AdamW needs contiguous f32 parameters");
            }
        }
        let on_cpu = vars.iter().all(|v| v.device().is_cpu());
        let size = |v: &Var| if on_cpu { v.elem_count() } else { 0 };
        let moments = vars
            .iter()
            .map(|v| Moments {
                m: vec![0.0; size(v)],
                v: vec![0.0; size(v)],
            })
            .collect();
        let device_moments = if on_cpu {
            Vec::new()
        } else {
            let zeros = |v: &Var| v.as_tensor().zeros_like();
            vars.iter()
                .map(|v| Ok((zeros(v)?, zeros(v)?)))
                .collect::<Result<_>>()?
        };
        Ok(Self {
            config,
            vars,
            moments,
            device_moments,
            step: 0,
        })
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The moments of every parameter, on the host (copied back when the parameters live on a
    /// GPU).
    pub fn moments(&self) -> Result<Cow<'_, [Moments]>> {
        if self.device_moments.is_empty() {
            return Ok(Cow::Borrowed(&self.moments));
        }
        let host = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        let copies = self
            .device_moments
            .iter()
            .map(|(m, v)| {
                Ok(Moments {
                    m: host(m)?,
                    v: host(v)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cow::Owned(copies))
    }

    /// Restores the state saved by a checkpoint.
    pub fn restore(&mut self, step: u64, moments: Vec<Moments>) -> Result<()> {
        if moments.len() != self.vars.len()
            || moments
                .iter()
                .zip(&self.vars)
                .any(|(mo, v)| mo.m.len() != v.elem_count() || mo.v.len() != v.elem_count())
        {
            bail!("optimizer state does not match the model's parameters");
        }
        self.step = step;
        if self.device_moments.is_empty() {
            self.moments = moments;
            return Ok(());
        }
        for ((var, mo), slot) in self.vars.iter().zip(moments).zip(&mut self.device_moments) {
            let upload = |x: Vec<f32>| Tensor::from_vec(x, var.shape(), var.device());
            *slot = (upload(mo.m)?, upload(mo.v)?);
        }
        Ok(())
    }

    /// One step with learning rate `lr`; `grads[i]` belongs to `vars()[i]` (`None`: no gradient,
    /// the parameter is left alone as PyTorch does); every gradient is multiplied by `grad_scale`
    /// (gradient clipping).
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64, grad_scale: f64) -> Result<()> {
        if grads.len() != self.vars.len() {
            bail!(
                "{} gradients for {} parameters",
                grads.len(),
                self.vars.len()
            );
        }
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - (c.beta1 as f32).powi(t);
        let bc2 = 1.0 - (c.beta2 as f32).powi(t);
        // Bias corrections in f32, as PyTorch computes them for f32 parameters; both paths use
        // these values (f32 -> f64 -> f32 is exact).
        let scalars = StepScalars {
            lr,
            step_size: (lr as f32 / bc1) as f64,
            bc2_sqrt: bc2.sqrt() as f64,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            decay: c.weight_decay,
            grad_scale,
        };
        if !self.device_moments.is_empty() {
            return self.step_on_device(grads, &scalars);
        }
        for ((var, grad), moments) in self.vars.iter().zip(grads).zip(self.moments.iter_mut()) {
            let Some(grad) = grad else { continue };
            let grad = grad.contiguous()?;
            let op = Update {
                moments: Mutex::new(moments),
                s: scalars,
            };
            var.as_tensor().inplace_op2(&grad, &op)?;
        }
        Ok(())
    }

    /// The step for parameters on a GPU: the same arithmetic with tensor ops, on the device.
    fn step_on_device(&mut self, grads: &[Option<Tensor>], scalars: &StepScalars) -> Result<()> {
        for ((var, grad), (m, v)) in self.vars.iter().zip(grads).zip(&mut self.device_moments) {
            if let Some(grad) = grad {
                device_update(var, grad, m, v, scalars)?;
            }
        }
        Ok(())
    }
}
