//! The recipe: layered TOML (defaults < `--config` < `TRAINER_*` env < `--set`) read once, resolved
//! once into typed per-stage specs.

mod keyed;
mod load;
mod openai;
mod resolve;
mod schema;
mod show;
mod spec;
mod train;

pub use load::{
    DEFAULT_TOML, EXPORT_TABLE, Layered, Override, RecipeInput, defaults, describe_source, load,
    toml_error,
};
pub use resolve::{LOSS_BATCH_FIELDS, WEIGHT_STATS_FIELDS};
pub use schema::RawRecipe;
pub use spec::{
    ApiKey, DTypeChoice, DataFormat, DataSource, DataSpec, EvalData, EvalGrader, EvalSpec,
    GradeSpec, HashSplit, HookParam, HookSource, Limit, LoraSpec, LossSpec, ModelSource, ModelSpec,
    OpenAiApi, OpenAiSpec, OutDir, PairMode, PairRule, PairSpec, Recipe, RunSpec, SampleSpec,
    SamplingBackend, Schedule, ScriptChoice, ScriptLimits, ServedModel, SftSpec, TemplateChoice,
    TokenizerChoice, TrainSpec, WeightPlacement, WeightSpec, Weighting,
};
