//! Training: the loop, the optimizer, gradient clipping, the schedule, checkpoints and the resume
//! state.

mod adamw_device;
mod checkpoint;
mod clip;
mod optim;
mod schedule;
mod state;
mod step;
mod trainer;

pub use checkpoint::{save_checkpoint, save_checkpoint_with};
pub use clip::{clip_scale, grad_norm};
pub use optim::{AdamW, AdamWConfig, Moments};
pub use schedule::LrSchedule;
pub use state::{OPTIMIZER_FILE, STATE_FILE, TrainState};
pub use step::{StepBatch, StepOutput, forward_backward};
pub use trainer::{StepMetrics, TrainOutputs, TrainPair, Trainer, plan_steps};
