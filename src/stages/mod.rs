//! The pipeline stages, one file each, in the order a run calls them. Each is a function from its
//! own recipe section and its inputs to its outputs; none knows the run folder or the command
//! line (the caches they resume from are paths handed to them).

pub mod eval;
pub mod grade;
pub mod pair;
pub mod reference;
pub mod sample;
pub mod train;
pub mod warm_start;
pub mod weigh;
