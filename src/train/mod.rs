//! Training: pairs as model inputs, the loop, the optimizer, gradient clipping, the schedule,
//! checkpoints and the resume state.

mod adamw_device;
mod batch;
mod checkpoint;
mod clip;
mod loss;
mod metrics;
mod optim;
mod report;
mod schedule;
mod state;
mod step;
mod trainer;

pub use batch::{PairForward, TokenPair, forward_pairs, loss_inputs, pack_pairs, tokenize_pair};
pub use checkpoint::{save_checkpoint, save_checkpoint_with};
pub use clip::{clip_scale, grad_norm};
pub use loss::{reduce, weighted_per_pair, wpo_weight};
pub use metrics::{StepMetrics, loss_spikes, tail_mean};
pub use optim::{AdamW, AdamWConfig, Moments};
pub use schedule::LrSchedule;
pub use state::{OPTIMIZER_FILE, STATE_FILE, TrainState};
pub use step::{
    LossFn, StepBatch, StepLoss, StepOutput, add_grads, backward, forward_backward, step_loss,
    values,
};
pub use trainer::{TrainOutputs, TrainPair, Trainer, plan_steps};
