//! The command line (clap only): `trainer --script S` runs the whole pipeline, subcommands run one stage.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::DeviceChoice;

/// Weighted preference optimization of language models, with Rhai hooks for grading, weighting,
/// pairing and losses.
#[derive(Debug, Parser)]
#[command(name = "trainer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the recipe comes from: built-in defaults < `--config` < `TRAINER_*` env < `--set`.
#[derive(Debug, Clone, Default, Args)]
pub struct RecipeArgs {
    /// A TOML recipe layered over the built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one recipe key, e.g. `--set train.lr=1e-6` (repeatable; the value is TOML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Arguments of the whole pipeline (and of the stage subcommands that share it).
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// The experiment script: a Rhai file whose hooks (grade, weight, pair, loss) override the recipe's plugins.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The run folder (default `runs/<name>-<time>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The model: an HF folder, a `.gguf` file, or a hub id `org/name[@revision]`; the same as
    /// `--set model.path="…"`.
    #[arg(long, value_name = "PATH|ID")]
    pub model: Option<String>,
    /// Where the model runs: `cpu` or `cuda:N`; the same as `--set model.device="…"`.
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceChoice>,
    /// Run an exported recipe (`--config F.toml`) even when its model or data hashes differ.
    #[arg(long)]
    pub allow_different_inputs: bool,
    /// Use `--out` even when it is not new, empty, or an unfinished run of this recipe: a finished
    /// or different run in it is replaced; other files are kept, those of the same names replaced.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile a script, list its hooks, run its `test_*` functions and check a loss hook's gradient
    /// (`--api`: print every function scripts can call).
    Check(CheckArgs),
    /// Print the resolved recipe as TOML, each value annotated with where it came from.
    Recipe(RecipeCmdArgs),
    /// Warm-start the built-in tiny model (supervised, on generated problems) and report its accuracy.
    Sft(RunArgs),
    /// Sample N completions per question.
    Sample(RunArgs),
    /// Grade responses: `--grader gsm8k|math|exact|FILE.rhai --input F.jsonl`.
    Grade(GradeArgs),
    /// Build preference pairs from graded samples.
    Pairs(RunArgs),
    /// Train on preference pairs (the pipeline's, or a TRL-style file with --pairs).
    Train(TrainArgs),
    /// Evaluate accuracy on the held-out split.
    Eval(RunArgs),
    /// Score TRL-style pairs: per-pair log-probs, WPO means and loss, plus the gradient norm.
    Score(ScoreArgs),
    /// Generate a continuation of a prompt.
    Generate(GenerateArgs),
    /// Show the text and token ids a model sees: a prompt or conversations rendered through its
    /// chat template (as transformers' `apply_chat_template`).
    Template(TemplateArgs),
    /// Re-run a run folder's recipe and compare every artifact.
    Reproduce(ReproduceArgs),
    /// Measure training and sampling speed and memory.
    Bench(BenchArgs),
    /// Compare finished runs grouped by their recipe: accuracy with intervals over seeds, paired differences to a baseline run.
    Compare(CompareArgs),
    /// Run a grid of recipe values × seeds and summarise it with intervals and paired differences.
    Sweep(SweepArgs),
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// One axis of the grid, `KEY=V1,V2,...` (repeatable; values are TOML, bare words are strings).
    /// Without it, the grid is the `[sweep.grid]` table of `--config`.
    #[arg(long, value_name = "KEY=V1,V2")]
    pub grid: Vec<String>,
    /// The seeds of every cell (`run.seed` and `sampling.seed`): `A..B` or `1,2,3`; default
    /// `sweep.seeds` of the recipe (1..3).
    #[arg(long)]
    pub seeds: Option<String>,
    /// The cell value the others are compared with, seed by seed, e.g. `weight.scheme=uniform`;
    /// default `sweep.baseline` of the recipe.
    #[arg(long, value_name = "KEY=VALUE")]
    pub baseline: Option<String>,
    /// The experiment script of every run.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The sweep folder: one run folder per cell and seed, and the summary files.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run folders (each with a summary.json), or sweep folders (every run they list).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Group by these recipe keys only (`loss.name,weight.scheme`); runs of one group must agree
    /// on every other key. Default: group by the whole recipe less the seeds.
    #[arg(long, value_name = "KEY,...")]
    pub by: Vec<String>,
    /// A run every group is compared with question by question (bootstrap interval, McNemar p).
    #[arg(long, value_name = "RUN")]
    pub baseline: Option<PathBuf>,
    /// Where to write the bar chart.
    #[arg(long, default_value = "compare.png")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Train directly on these TRL-style pairs (`prompt`, `chosen`, `rejected`, optional
    /// `ref_*_logps` and `weight`); reference log-probs are computed once when absent.
    #[arg(long, value_name = "FILE")]
    pub pairs: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Rhai script or plugin to check.
    #[arg(long, value_name = "FILE", required_unless_present = "api")]
    pub script: Option<PathBuf>,
    /// Print the script API instead: every function, grouped, with a runnable example.
    #[arg(long, conflicts_with = "script")]
    pub api: bool,
    /// Seed of the random inputs of the gradient check.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The recipe whose `[loss]` parameters and `[script]` limits the check uses.
    #[command(flatten)]
    pub recipe: RecipeArgs,
}

#[derive(Debug, Args)]
pub struct RecipeCmdArgs {
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Write the recipe as one self-contained file: the resolved recipe, the text of every script
    /// it uses and the sha256 of its model and data (run it with `--config FILE`).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
}

#[derive(Debug, Args)]
pub struct GradeArgs {
    /// `gsm8k`, `math`, `exact`, or a Rhai file with a `grade` hook.
    #[arg(long)]
    pub grader: String,
    /// JSONL with `{"response", "gold"}` per line.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// An HF folder or a `.gguf` file.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// TRL-style pairs JSONL (`prompt`, `chosen`, `rejected`, optional `ref_*_logps`, `weight`).
    #[arg(long, value_name = "FILE")]
    pub pairs: PathBuf,
    /// A script whose `loss` hook is used.
    #[arg(long, value_name = "FILE", conflicts_with = "loss")]
    pub script: Option<PathBuf>,
    /// A loss plugin by name (`dpo`, `ipo`, `simpo`, ...).
    #[arg(long)]
    pub loss: Option<String>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Also compute the L2 norm of d(mean loss)/d(parameters).
    #[arg(long)]
    pub grad_norm: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt in the model's own chat template as a user turn (ChatML for a model without one).
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `cpu` or `cuda:N` (needs a binary built with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Generate from the GGUF file's quantized weights (the projections and head as quantized
    /// matmuls; CPU only), like `sampling.quantized = true`.
    #[arg(long)]
    pub quantized: bool,
}

#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// An HF folder or a `.gguf` file.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// `auto` (the model's own), `chatml`, `plain`, or a string with `{prompt}`, as model.template.
    #[arg(long, default_value = "auto")]
    pub template: String,
    /// A system message, as model.system.
    #[arg(long, default_value = "")]
    pub system: String,
    /// One user turn, rendered as the run renders its questions.
    #[arg(
        long,
        conflicts_with = "conversations",
        required_unless_present = "conversations"
    )]
    pub prompt: Option<String>,
    /// A JSONL file of conversations: `{"messages": [{"role", "content"}, ...],
    /// "add_generation_prompt": true}` per line; prints one JSON line per conversation.
    #[arg(long, value_name = "FILE")]
    pub conversations: Option<PathBuf>,
    /// Print `{"text", "input_ids"}` as JSON (always so with --conversations).
    #[arg(long)]
    pub ids: bool,
}

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// The run folder to reproduce.
    pub run_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print one machine-readable JSON object.
    #[arg(long)]
    pub json: bool,
    /// The model to measure.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )]
    pub model: PathBuf,
    /// DPO steps to measure: pairs per step, each `P` (sequences of 128 tokens) or `PxT`
    /// (sequences of T tokens), half prompt and half response: `1,4,8,4x512,1x2048`; `''`
    /// measures no step.
    #[arg(long, default_value = "1,4,8", value_parser = parse_shapes)]
    pub pairs: Shapes,
    /// Sampling batch sizes to measure; `''` measures no sampling.
    #[arg(long, default_value = "1,8,32", value_parser = parse_counts)]
    pub batches: Counts,
    /// `cpu` or `cuda:N` (needs a binary built with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// New tokens per sampled sequence.
    #[arg(long, default_value_t = 32)]
    pub new_tokens: usize,
    /// Sample from the GGUF file's quantized weights (as `sampling.quantized = true`); the DPO
    /// step rows stay f32.
    #[arg(long)]
    pub quantized: bool,
    /// Measure LoRA instead of full fine-tuning: adapters of this rank (alpha = 2·rank) on
    /// q_proj, k_proj, v_proj and o_proj; 0 = full fine-tuning.
    #[arg(long, value_name = "RANK", default_value_t = 0)]
    pub lora: usize,
    /// Run the PyTorch reference side by side with this Python (one with torch, transformers,
    /// gguf and accelerate: `bench/install_pytorch.sh` installs them): every row is measured
    /// in turn by us and by PyTorch on the same model file and shapes, best of `--reps` each.
    #[arg(long, value_name = "PYTHON")]
    pub pytorch: Option<PathBuf>,
    /// Timed repetitions of each row (after one warm-up); the best counts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub reps: u64,
}

/// A comma-separated list of counts, possibly empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts(pub Vec<usize>);

/// DPO step shapes: (pairs, tokens per sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shapes(pub Vec<(usize, usize)>);

/// Parses `1,4,4x512` (or `''`, no shape) for `--pairs`; a bare count means 128 tokens.
fn parse_shapes(text: &str) -> Result<Shapes, String> {
    let bad = |t: &str| format!("`{t}`: expected pairs per step, P or PxT (T tokens, even, >= 4)");
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (p, len) = t.split_once('x').unwrap_or((t, "128"));
            match (p.parse::<usize>(), len.parse::<usize>()) {
                (Ok(p), Ok(len)) if p > 0 && len >= 4 && len % 2 == 0 => Ok((p, len)),
                _ => Err(bad(t)),
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Shapes)
}

/// Parses `1,8,32` (or `''`, no count) for `--batches`; every count is at least 1.
fn parse_counts(text: &str) -> Result<Counts, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "`{t}`: expected a comma-separated list of counts of at least 1"
            )),
        })
        .collect::<Result<Vec<usize>, String>>()
        .map(Counts)
}

/// Parses `--device`.
fn parse_device(text: &str) -> Result<DeviceChoice, String> {
    DeviceChoice::parse(text).ok_or_else(|| format!("`{text}`: expected cpu, cuda or cuda:N"))
}
