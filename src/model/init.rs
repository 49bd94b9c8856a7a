//! Random initialisation of a decoder (normal(0, 0.02) matrices, unit norms, zero biases), seeded.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::config::ModelConfig;
use super::policy::{Policy, expected_tensors};
use crate::rng::{self, Rng};

/// Standard deviation of initial weight matrices (HF's `initializer_range`).
pub const INIT_STD: f64 = 0.02;

/// A policy with freshly initialised weights; every tensor's values depend only on (seed, name).
pub fn random_policy(config: &ModelConfig, seed: u64) -> Result<Policy> {
    let mut tensors = HashMap::new();
    for (name, shape) in expected_tensors(config) {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let mut g = Rng::derived(seed, &[rng::hash_str(&name)]);
            (0..n).map(|_| (g.normal() * INIT_STD) as f32).collect()
        };
        tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Policy::from_tensors(config.clone(), tensors, "random init")
}
