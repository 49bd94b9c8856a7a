//! LoRA: low-rank adapters on chosen projections, `y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ` with `W` frozen,
//! `A: [r, in]` and `B: [out, r]` trained; the adapter types and their forward.

mod attach;
mod peft;

pub use attach::{LoraAttached, attach, merged_tensors};
pub use peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter, write_adapter};

use candle_core::{Result, Tensor};

use super::decoder::LayerWeights;
use super::proj::Proj;

/// A projection an adapter can sit on, named as in HF / PEFT (`q_proj`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    /// Every projection, in layer order.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The HF module name (`q_proj`, `gate_proj`, …), as PEFT's `target_modules` lists it.
    pub fn hf_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The target named `name` (an HF module name), if any.
    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.hf_name() == name)
    }

    /// The HF name of this projection's weight in layer `layer`, without `.weight`.
    pub fn module_path(self, layer: usize) -> String {
        let block = match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            Target::Gate | Target::Up | Target::Down => "mlp",
        };
        format!("model.layers.{layer}.{block}.{}", self.hf_name())
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What `[train.lora]` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// `r`, at least 1.
    pub rank: usize,
    /// `lora_alpha` (> 0); the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Distinct, in [`Target::ALL`] order.
    pub targets: Vec<Target>,
}

impl LoraConfig {
    /// The factor on `B·A`: `alpha / rank` (PEFT's default, not rsLoRA).
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One adapter's tensors.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

impl Adapter {
    /// `y + scale · (x·Aᵀ)·Bᵀ`; the scale is applied on the narrow `[rows, r]` product.
    ///
    /// # Shapes
    /// `x`: `[.., in]`, `y`: `[.., out]` → `[.., out]`.
    pub fn add_to(&self, y: &Tensor, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let inner = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / inner.max(1);
        let low = x.reshape((rows, inner))?.matmul(&self.a.t()?)?;
        let delta = low.affine(self.scale, 0.0)?.matmul(&self.b.t()?)?;
        y + delta.reshape(y.shape())?
    }

    fn detached(&self) -> Adapter {
        Adapter {
            a: self.a.detach(),
            b: self.b.detach(),
            scale: self.scale,
        }
    }
}

/// The adapters of one layer (none when LoRA is off).
#[derive(Debug, Clone, Default)]
pub struct LayerLora {
    slots: [Option<Adapter>; 7],
}

impl LayerLora {
    pub fn get(&self, t: Target) -> Option<&Adapter> {
        self.slots[t.index()].as_ref()
    }

    pub fn set(&mut self, t: Target, adapter: Adapter) {
        self.slots[t.index()] = Some(adapter);
    }

    /// The same adapters without gradient tracking.
    pub fn detached(&self) -> LayerLora {
        LayerLora {
            slots: self.slots.clone().map(|s| s.map(|a| a.detached())),
        }
    }
}

impl LayerWeights {
    /// The base weight of projection `t` and its bias, if it has one.
    ///
    /// # Shapes
    /// → (`[out, in]`, `[out]`).
    pub fn projection(&self, t: Target) -> (&Proj, Option<&Tensor>) {
        match t {
            Target::Q => (&self.q, self.q_bias.as_ref()),
            Target::K => (&self.k, self.k_bias.as_ref()),
            Target::V => (&self.v, self.v_bias.as_ref()),
            Target::O => (&self.o, None),
            Target::Gate => (&self.gate, None),
            Target::Up => (&self.up, None),
            Target::Down => (&self.down, None),
        }
    }

    /// Projection `t` of `x`: `x·Wᵀ (+ b)`, plus its adapter's update when it has one.
    ///
    /// # Shapes
    /// `x`: `[.., in]` → `[.., out]`.
    pub fn project(&self, t: Target, x: &Tensor) -> Result<Tensor> {
        let (w, b) = self.projection(t);
        let y = w.forward(x, b)?;
        match self.lora.get(t) {
            Some(adapter) => adapter.add_to(&y, x),
            None => Ok(y),
        }
    }
}
