//! Training: the optimizer, gradient clipping, and (with the pipeline) the loop and checkpoints.

mod clip;
mod optim;
mod step;

pub use clip::{clip_scale, grad_norm};
pub use optim::{AdamW, AdamWConfig, Moments};
pub use step::{StepBatch, StepOutput, forward_backward};
