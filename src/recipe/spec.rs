//! The resolved recipe: one typed, validated struct per stage, no `Option`s. Each stage receives
//! only its own section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::model::{ChatTemplate, HubId, JinjaTemplate, own_template};
pub use crate::model::{DeviceChoice, LoraConfig, Target};

/// The whole resolved recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub run: RunSpec,
    pub script: ScriptLimits,
    pub model: ModelSpec,
    pub sft: SftSpec,
    pub data: DataSpec,
    pub sampling: SampleSpec,
    pub grade: GradeSpec,
    pub weight: WeightSpec,
    pub pairs: PairSpec,
    pub loss: LossSpec,
    pub train: TrainSpec,
    pub eval: EvalSpec,
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub name: String,
    pub seed: u64,
    pub script: ScriptChoice,
    pub out: OutDir,
    /// Folder of the content-keyed caches.
    pub cache: PathBuf,
}

/// The experiment script passed with `--script` (or `run.script`).
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptChoice {
    None,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutDir {
    /// `runs/<name>-<time>`.
    Timestamped,
    Dir(PathBuf),
}

/// Limits applied to every Rhai hook call.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub max_call_depth: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Builtin(String),
    Path(PathBuf),
    /// `org/name[@revision][/FILE.gguf]` on the Hugging Face hub (not an existing local path).
    Hub(HubId),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DTypeChoice {
    F32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplateChoice {
    /// The model's own chat template; the plain template for a model without one.
    Auto,
    ChatMl,
    Plain,
    /// A template string with `{prompt}` (and optionally `{system}`).
    Custom(String),
}

impl TemplateChoice {
    /// `auto`, `chatml`, `plain`, or a template string containing `{prompt}`.
    pub fn parse(text: &str) -> Option<TemplateChoice> {
        match text {
            "auto" => Some(TemplateChoice::Auto),
            "chatml" => Some(TemplateChoice::ChatMl),
            "plain" => Some(TemplateChoice::Plain),
            t if t.contains("{prompt}") => Some(TemplateChoice::Custom(t.to_string())),
            _ => None,
        }
    }

    /// The chat template for the model at `model` (`None`: the built-in model, whose own
    /// template is the plain one); `auto` reads the model's own and falls back to the plain
    /// template, with a warning, for a model without one.
    pub fn for_model(&self, system: &str, model: Option<&Path>) -> Result<ChatTemplate> {
        let own = match (self, model) {
            (TemplateChoice::Auto, Some(path)) => {
                let own = own_template(path)?;
                if own.is_none() {
                    tracing::warn!(
                        "model {} has no chat template of its own: model.template = \"auto\" \
                         uses the plain template (the question and a newline)",
                        path.display()
                    );
                }
                own
            }
            _ => None,
        };
        Ok(self.template(system, own))
    }

    /// The chat template this choice names, with `system` as its system turn; `own` is the
    /// model's own template (`auto` falls back to plain without one).
    fn template(&self, system: &str, own: Option<JinjaTemplate>) -> ChatTemplate {
        match self {
            TemplateChoice::Auto => match own {
                Some(template) => ChatTemplate::Jinja {
                    template,
                    system: system.to_string(),
                },
                None => ChatTemplate::Plain,
            },
            TemplateChoice::ChatMl => ChatTemplate::ChatMl {
                system: system.to_string(),
            },
            TemplateChoice::Plain => ChatTemplate::Plain,
            TemplateChoice::Custom(t) => ChatTemplate::Custom {
                template: t.clone(),
                system: system.to_string(),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub source: ModelSource,
    pub tokenizer: TokenizerChoice,
    pub dtype: DTypeChoice,
    pub device: DeviceChoice,
    pub template: TemplateChoice,
    pub system: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerChoice {
    FromModel,
    File(PathBuf),
}

/// The built-in tiny model and its supervised warm start.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SftSpec {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub intermediate_size: usize,
    pub init_seed: u64,
    pub examples: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub data_seed: u64,
    /// The share of each level (1–5) in the generated SFT set.
    pub level_mix: [f64; 5],
}

#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    Builtin(String),
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataFormat {
    Gsm8k,
    Math,
    Prompts,
    Pairs,
}

/// Which half of a questions file to use, by a hash of each question: `Train` and `Eval` are
/// disjoint and together make `All` (for a file with no split of its own, such as MATH-500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashSplit {
    All,
    Train,
    Eval,
}

/// The grader of the held-out eval: by default the data's own (native) one, so that a custom
/// training grader cannot change the metric.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalGrader {
    /// The run's grade hook (`grade.grader`, or the script's `fn grade`).
    SameAsTraining,
    Hook(HookSource),
}

/// How many items to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    All,
    First(usize),
}

impl Limit {
    pub fn from_count(n: usize) -> Self {
        if n == 0 { Limit::All } else { Limit::First(n) }
    }
}

#[derive(Debug, Clone)]
pub struct DataSpec {
    pub source: DataSource,
    pub format: DataFormat,
    pub prompt_field: String,
    pub gold_field: String,
    pub instruction: String,
    pub limit: Limit,
    /// 0 keeps file order.
    pub shuffle_seed: u64,
    pub split: HashSplit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SamplingBackend {
    Local,
    OpenAi(OpenAiSpec),
}

/// Which endpoint of an OpenAI-compatible server samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenAiApi {
    /// `/completions` with the prompt rendered by the recipe's template.
    Completions,
    /// `/chat/completions` with system and user messages; the server applies its own template.
    Chat,
}

/// The model name sent to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServedModel {
    /// The first model the server lists at `/models`.
    First,
    Named(String),
}

/// Where the API key comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiKey {
    None,
    /// The name of an environment variable (the key itself is never stored).
    Env(String),
}

/// `[sampling.openai]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSpec {
    /// Without a trailing slash, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub model: ServedModel,
    pub api_key: ApiKey,
    pub api: OpenAiApi,
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_retries: usize,
    /// Extra numeric fields of every request body (`min_p`, `repeat_penalty`, …).
    pub params: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
pub struct SampleSpec {
    pub backend: SamplingBackend,
    pub n: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 means no top-k cut.
    pub top_k: usize,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub stop: Vec<String>,
    pub quantized: bool,
}

/// A hook implementation chosen in the recipe: a plugin by name or a `.rhai` file.
#[derive(Debug, Clone, PartialEq)]
pub enum HookSource {
    /// `plugins/<kind>/<name>.rhai`.
    Plugin(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct GradeSpec {
    pub grader: HookSource,
    /// `[grade.params]`: added to the `example` map of every grade hook call.
    pub params: Vec<(String, HookParam)>,
}

#[derive(Debug, Clone)]
pub struct WeightSpec {
    pub scheme: HookSource,
    pub alpha: f64,
    pub eps: f64,
    pub params: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PairRule {
    MostFrequentWrong,
    Hook(HookSource),
}

/// Which pairs train.
#[derive(Debug, Clone, PartialEq)]
pub enum PairMode {
    /// Pairs built from the policy's own samples.
    OnPolicy,
    /// Only the given pairs file.
    OffPolicy(PathBuf),
    /// Both: on-policy pairs, then the given file's pairs.
    Hybrid(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PairSpec {
    pub rule: PairRule,
    pub gold_fallback: bool,
    /// `pairs.all_correct = "anchor"`: a question whose samples are all correct gives an anchor
    /// row (chosen = rejected = one of its samples) instead of no pair (built-in rule only).
    pub anchor_all_correct: bool,
    pub mode: PairMode,
    /// `[pairs.params]`: added to the `group` map of every pair hook call.
    pub params: Vec<(String, HookParam)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightPlacement {
    Inside,
    Outside,
}

impl WeightPlacement {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightPlacement::Inside => "inside",
            WeightPlacement::Outside => "outside",
        }
    }
}

/// Extra per-pair weighting applied by the trainer to the loss hook's per-pair output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weighting {
    None,
    /// `exp(chosen_wpo + rejected_wpo)`, clamped at 1 when `clamp`.
    Wpo {
        clamp: bool,
    },
}

/// A named parameter handed to a hook.
#[derive(Debug, Clone, PartialEq)]
pub enum HookParam {
    Float(f64),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct LossSpec {
    pub hook: HookSource,
    pub beta: f64,
    pub gamma: f64,
    pub lambda: f64,
    pub label_smoothing: f64,
    pub alpha: f64,
    pub placement: WeightPlacement,
    pub weighting: Weighting,
    pub params: BTreeMap<String, f64>,
}

impl LossSpec {
    /// Every `[loss]` parameter a loss hook sees in its batch map, by name.
    pub fn hook_params(&self) -> Vec<(String, HookParam)> {
        let mut out = vec![
            ("beta".to_string(), HookParam::Float(self.beta)),
            ("gamma".to_string(), HookParam::Float(self.gamma)),
            ("lambda".to_string(), HookParam::Float(self.lambda)),
            (
                "label_smoothing".to_string(),
                HookParam::Float(self.label_smoothing),
            ),
            ("alpha".to_string(), HookParam::Float(self.alpha)),
            (
                "weight_placement".to_string(),
                HookParam::Text(self.placement.as_str().to_string()),
            ),
        ];
        out.extend(
            self.params
                .iter()
                .map(|(k, v)| (k.clone(), HookParam::Float(*v))),
        );
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone)]
pub struct TrainSpec {
    pub lr: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub schedule: Schedule,
    pub warmup_ratio: f64,
    /// 0 disables clipping.
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub adam_eps: f64,
    pub max_steps: Limit,
    pub max_length: usize,
    /// 0 saves only at the end.
    pub checkpoint_every: usize,
    /// Refresh `checkpoints/latest` (the resume state) every k steps; 0 disables.
    pub resume_every: usize,
    /// On-policy rounds: after round k, sample again from the trained policy, which is also the
    /// reference of round k + 1.
    pub rounds: usize,
    /// Also write TensorBoard event files (`train.report_to` lists "tensorboard").
    pub tensorboard: bool,
    /// A log line every k steps when stderr is not a terminal.
    pub logging_steps: usize,
    pub lora: LoraSpec,
}

/// `[train.lora]`, resolved: full fine-tuning, or adapters on the listed projections.
#[derive(Debug, Clone, PartialEq)]
pub enum LoraSpec {
    Off,
    On(LoraConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub enum EvalData {
    Disabled,
    Source(DataSource),
}

#[derive(Debug, Clone)]
pub struct EvalSpec {
    pub data: EvalData,
    pub limit: Limit,
    pub split: HashSplit,
    /// Allow eval questions that are also training questions (a warning instead of an error).
    pub allow_overlap: bool,
    /// What grades the held-out answers.
    pub grader: EvalGrader,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub before: bool,
    pub after: bool,
}
