//! Validates the merged recipe and converts it into the typed specs of `spec.rs`. Every error names
//! the key and the layer its value came from.

use std::path::PathBuf;

use anyhow::Result;

use super::keyed::Ctx;
use super::load::Layered;
use super::schema::*;
use super::spec::*;
use super::train::train;
use crate::model::HubId;

/// Names a loss hook sees in its batch map; `[loss.params]` may not reuse them.
pub const LOSS_BATCH_FIELDS: &[&str] = &[
    "chosen_logps",
    "rejected_logps",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "chosen_tokens",
    "rejected_tokens",
    "weight",
    "chosen_wpo",
    "rejected_wpo",
    "beta",
    "gamma",
    "lambda",
    "label_smoothing",
    "alpha",
    "weight_placement",
];

/// Names a grade hook sees in its example map; `[grade.params]` may not reuse them.
const GRADE_EXAMPLE_FIELDS: &[&str] = &["id", "question", "gold", "solution", "level"];

/// Names a pair hook sees in its group map; `[pairs.params]` may not reuse them.
const PAIR_GROUP_FIELDS: &[&str] = &[
    "id",
    "seed",
    "question",
    "gold",
    "gold_response",
    "samples",
    "stats",
    "weight",
];

/// Names a weight hook sees in its stats map; `[weight.params]` may not reuse them.
pub const WEIGHT_STATS_FIELDS: &[&str] =
    &["n", "pc", "pe", "invalid", "answers", "alpha", "eps", "id"];

/// `a.rhai` (or any path with a separator) is a file; a bare word is a plugin name.
fn hook_source(value: &str) -> HookSource {
    if value.ends_with(".rhai") || value.contains('/') || value.contains('\\') {
        HookSource::File(PathBuf::from(value))
    } else {
        HookSource::Plugin(value.to_string())
    }
}

fn non_empty_hook(ctx: &Ctx, key: &str, value: &str) -> Result<HookSource> {
    if value.trim().is_empty() {
        return Err(ctx.bad(key, "must name a plugin or a .rhai file"));
    }
    Ok(hook_source(value))
}

/// `grade.grader`: "auto" is the training data's own grader (the built-in arithmetic world's
/// grader checks the worked lines too); anything else names a plugin or a file.
fn training_grader(ctx: &Ctx, value: &str, data: &DataSpec) -> Result<HookSource> {
    if value != "auto" {
        return non_empty_hook(ctx, "grade.grader", value);
    }
    let name = match &data.source {
        DataSource::Builtin(b) if b == "arith" => "arith_checked",
        _ => native_grader(data.format),
    };
    Ok(HookSource::Plugin(name.to_string()))
}

/// The grader plugin of a data format: what `eval.grader = "native"` and `grade.grader = "auto"`
/// use.
fn native_grader(format: DataFormat) -> &'static str {
    match format {
        DataFormat::Math => "math",
        DataFormat::Prompts => "exact",
        // Pairs data is evaluated on GSM8K-style questions (run/evals.rs).
        DataFormat::Gsm8k | DataFormat::Pairs => "gsm8k",
    }
}

fn data_source(value: &str) -> DataSource {
    match value.strip_prefix("builtin:") {
        Some(name) => DataSource::Builtin(name.to_string()),
        None => DataSource::File(PathBuf::from(value)),
    }
}

impl Layered {
    /// Validates every section and returns the typed recipe.
    pub fn resolve(&self) -> Result<Recipe> {
        let ctx = Ctx {
            figment: &self.figment,
        };
        let r = &self.raw;
        let model = model(&ctx, &r.model)?;
        // Sections in the order their errors are reported; eval needs the data format.
        let (run, script, sft) = (
            run(&ctx, &r.run)?,
            script_limits(&ctx, &r.script)?,
            sft(&ctx, &r.sft)?,
        );
        let data = data(&ctx, &r.data)?;
        let data_format = data.format;
        let grader = training_grader(&ctx, &r.grade.grader, &data)?;
        let sampling = sampling(&ctx, &r.sampling, &model.source)?;
        let pairs = pairs(&ctx, &r.pairs)?;
        let train = train(&ctx, &r.train)?;
        if train.rounds > 1 && matches!(sampling.backend, SamplingBackend::OpenAi(_)) {
            return Err(ctx.bad(
                "train.rounds",
                "more than one round needs sampling.backend = \"local\": a server keeps \
                 serving the weights it loaded, not the policy trained in the last round",
            ));
        }
        if train.rounds > 1
            && (data_format == DataFormat::Pairs || matches!(pairs.mode, PairMode::OffPolicy(_)))
        {
            return Err(ctx.bad(
                "train.rounds",
                "more than one round needs questions to sample (on-policy or hybrid pairs), but \
                 the pairs come from a file only",
            ));
        }
        Ok(Recipe {
            run,
            script,
            sft,
            data,
            sampling,
            model,
            grade: GradeSpec {
                grader,
                params: ctx.text_params("grade", &r.grade.params, GRADE_EXAMPLE_FIELDS)?,
            },
            weight: weight(&ctx, &r.weight)?,
            pairs,
            loss: loss(&ctx, &r.loss)?,
            train,
            eval: eval(&ctx, &r.eval, data_format)?,
        })
    }
}

fn run(ctx: &Ctx, r: &RawRun) -> Result<RunSpec> {
    if r.name.trim().is_empty() || r.name.contains(['/', '\\']) {
        return Err(ctx.bad("run.name", "must be a non-empty name without slashes"));
    }
    Ok(RunSpec {
        name: r.name.clone(),
        seed: r.seed,
        script: if r.script.is_empty() {
            ScriptChoice::None
        } else {
            ScriptChoice::File(PathBuf::from(&r.script))
        },
        out: if r.out.is_empty() {
            OutDir::Timestamped
        } else {
            OutDir::Dir(PathBuf::from(&r.out))
        },
        cache: if r.cache.trim().is_empty() {
            return Err(ctx.bad("run.cache", "must name a folder"));
        } else {
            PathBuf::from(&r.cache)
        },
    })
}

fn script_limits(ctx: &Ctx, r: &RawScript) -> Result<ScriptLimits> {
    if r.max_operations == 0 {
        return Err(ctx.bad("script.max_operations", "must be at least 1"));
    }
    Ok(ScriptLimits {
        max_operations: r.max_operations,
        max_call_depth: ctx.at_least_one("script.max_call_depth", r.max_call_depth)?,
        max_expr_depth: ctx.at_least_one("script.max_expr_depth", r.max_expr_depth)?,
        max_string_size: ctx.at_least_one("script.max_string_size", r.max_string_size)?,
        max_array_size: ctx.at_least_one("script.max_array_size", r.max_array_size)?,
        max_map_size: ctx.at_least_one("script.max_map_size", r.max_map_size)?,
    })
}

fn model(ctx: &Ctx, r: &RawModel) -> Result<ModelSpec> {
    if r.path.trim().is_empty() {
        return Err(ctx.bad(
            "model.path",
            "must name a model folder, a .gguf file or builtin:NAME",
        ));
    }
    let source = match r.path.strip_prefix("builtin:") {
        Some(name) => ModelSource::Builtin(name.to_string()),
        None => match HubId::unless_local(&r.path) {
            Some(id) => ModelSource::Hub(id),
            None => ModelSource::Path(PathBuf::from(&r.path)),
        },
    };
    let dtype = match r.dtype.as_str() {
        "f32" | "float32" => DTypeChoice::F32,
        "bf16" | "bfloat16" | "f16" | "float16" => {
            return Err(ctx.bad(
                "model.dtype",
                "only \"f32\" is supported: weights, activations and optimizer state are f32 on \
                 every device (a GGUF's quantized blocks are dequantized to f32)",
            ));
        }
        _ => return Err(ctx.bad("model.dtype", "must be \"f32\"")),
    };
    let template = TemplateChoice::parse(&r.template).ok_or_else(|| {
        ctx.bad(
            "model.template",
            "must be \"auto\" (the model's own chat template), \"chatml\", \"plain\", or a \
             template string containing {prompt}",
        )
    })?;
    let device = DeviceChoice::parse(&r.device)
        .ok_or_else(|| ctx.bad("model.device", "must be \"cpu\", \"cuda\" or \"cuda:N\""))?;
    Ok(ModelSpec {
        source,
        tokenizer: if r.tokenizer.is_empty() {
            TokenizerChoice::FromModel
        } else {
            TokenizerChoice::File(PathBuf::from(&r.tokenizer))
        },
        dtype,
        device,
        template,
        system: r.system.clone(),
    })
}

fn sft(ctx: &Ctx, r: &RawSft) -> Result<SftSpec> {
    let heads = ctx.at_least_one("sft.num_heads", r.num_heads)?;
    let kv = ctx.at_least_one("sft.num_kv_heads", r.num_kv_heads)?;
    let hidden = ctx.at_least_one("sft.hidden_size", r.hidden_size)?;
    if !heads.is_multiple_of(kv) {
        return Err(ctx.bad(
            "sft.num_kv_heads",
            format!("must divide sft.num_heads = {heads}"),
        ));
    }
    if !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
        return Err(ctx.bad(
            "sft.hidden_size",
            format!("must be a multiple of 2 x sft.num_heads = {}", 2 * heads),
        ));
    }
    Ok(SftSpec {
        hidden_size: hidden,
        num_layers: ctx.at_least_one("sft.num_layers", r.num_layers)?,
        num_heads: heads,
        num_kv_heads: kv,
        intermediate_size: ctx.at_least_one("sft.intermediate_size", r.intermediate_size)?,
        init_seed: r.init_seed,
        examples: ctx.at_least_one("sft.examples", r.examples)?,
        steps: r.steps,
        batch_size: ctx.at_least_one("sft.batch_size", r.batch_size)?,
        lr: ctx.positive("sft.lr", r.lr)?,
        warmup_ratio: ctx.in_range("sft.warmup_ratio", r.warmup_ratio, 0.0, 1.0)?,
        data_seed: r.data_seed,
        level_mix: level_mix(ctx, &r.level_mix)?,
    })
}

fn level_mix(ctx: &Ctx, mix: &[f64]) -> Result<[f64; 5]> {
    let key = "sft.level_mix";
    let shares: [f64; 5] = mix.try_into().map_err(|_| {
        ctx.bad(
            key,
            format!("must list 5 shares, one per level, not {}", mix.len()),
        )
    })?;
    if shares.iter().any(|w| !w.is_finite() || *w < 0.0) || shares.iter().sum::<f64>() <= 0.0 {
        return Err(ctx.bad(key, "shares must be finite, at least 0, and not all 0"));
    }
    Ok(shares)
}

fn data_format(ctx: &Ctx, key: &str, v: &str) -> Result<DataFormat> {
    ctx.choice(
        key,
        v,
        &[
            ("gsm8k", DataFormat::Gsm8k),
            ("math", DataFormat::Math),
            ("prompts", DataFormat::Prompts),
            ("pairs", DataFormat::Pairs),
        ],
    )
}

fn data(ctx: &Ctx, r: &RawData) -> Result<DataSpec> {
    if r.train.trim().is_empty() {
        return Err(ctx.bad("data.train", "must name a JSONL file or builtin:NAME"));
    }
    Ok(DataSpec {
        source: data_source(&r.train),
        format: data_format(ctx, "data.format", &r.format)?,
        prompt_field: r.prompt_field.clone(),
        gold_field: r.gold_field.clone(),
        instruction: r.instruction.clone(),
        limit: Limit::from_count(r.limit),
        shuffle_seed: r.shuffle_seed,
        split: hash_split(ctx, "data.split", &r.split)?,
    })
}

fn hash_split(ctx: &Ctx, key: &str, v: &str) -> Result<HashSplit> {
    ctx.choice(
        key,
        v,
        &[
            ("all", HashSplit::All),
            ("train", HashSplit::Train),
            ("eval", HashSplit::Eval),
        ],
    )
}

fn sampling(ctx: &Ctx, r: &RawSampling, model: &ModelSource) -> Result<SampleSpec> {
    let backend = super::openai::sampling_backend(ctx, r)?;
    if let (true, ModelSource::Builtin(name)) = (r.quantized, model) {
        return Err(ctx.bad(
            "sampling.quantized",
            format!(
                "needs a GGUF model file; model.path = \"builtin:{name}\" has no quantized \
                 weights (set it to false)"
            ),
        ));
    }
    if r.quantized && !matches!(backend, SamplingBackend::Local) {
        return Err(ctx.bad(
            "sampling.quantized",
            "applies to local sampling only (the server samples its own weights); set it to false",
        ));
    }
    if r.top_p <= 0.0 || r.top_p > 1.0 || !r.top_p.is_finite() {
        return Err(ctx.bad(
            "sampling.top_p",
            format!("must be in (0, 1], got {}", r.top_p),
        ));
    }
    if r.stop.iter().any(String::is_empty) {
        return Err(ctx.bad(
            "sampling.stop",
            "an empty stop string would end every sample before its first token",
        ));
    }
    Ok(SampleSpec {
        backend,
        n: ctx.at_least_one("sampling.n", r.n)?,
        temperature: ctx.non_negative("sampling.temperature", r.temperature)?,
        top_p: r.top_p,
        top_k: r.top_k,
        max_new_tokens: ctx.at_least_one("sampling.max_new_tokens", r.max_new_tokens)?,
        batch_size: ctx.at_least_one("sampling.batch_size", r.batch_size)?,
        seed: r.seed,
        stop: r.stop.clone(),
        quantized: r.quantized,
    })
}

fn weight(ctx: &Ctx, r: &RawWeight) -> Result<WeightSpec> {
    Ok(WeightSpec {
        scheme: non_empty_hook(ctx, "weight.scheme", &r.scheme)?,
        alpha: ctx.non_negative("weight.alpha", r.alpha)?,
        eps: ctx.non_negative("weight.eps", r.eps)?,
        params: ctx.params("weight", &r.params, WEIGHT_STATS_FIELDS)?,
    })
}

fn pairs(ctx: &Ctx, r: &RawPairs) -> Result<PairSpec> {
    let rule = match r.rule.as_str() {
        "most_frequent_wrong" => PairRule::MostFrequentWrong,
        other => PairRule::Hook(non_empty_hook(ctx, "pairs.rule", other)?),
    };
    let file = || -> Result<PathBuf> {
        if r.off_policy.trim().is_empty() {
            Err(ctx.bad(
                "pairs.off_policy",
                format!("pairs.mode = \"{}\" needs a pairs JSONL file here", r.mode),
            ))
        } else {
            Ok(PathBuf::from(&r.off_policy))
        }
    };
    let mode = match r.mode.as_str() {
        "on_policy" => PairMode::OnPolicy,
        "off_policy" => PairMode::OffPolicy(file()?),
        "hybrid" => PairMode::Hybrid(file()?),
        other => {
            return Err(ctx.bad(
                "pairs.mode",
                format!("`{other}` is not one of: on_policy, off_policy, hybrid"),
            ));
        }
    };
    let anchor_all_correct = ctx.choice(
        "pairs.all_correct",
        &r.all_correct,
        &[("skip", false), ("anchor", true)],
    )?;
    Ok(PairSpec {
        rule,
        gold_fallback: r.gold_fallback,
        anchor_all_correct,
        mode,
        params: ctx.text_params("pairs", &r.params, PAIR_GROUP_FIELDS)?,
    })
}

fn loss(ctx: &Ctx, r: &RawLoss) -> Result<LossSpec> {
    let placement = ctx.choice(
        "loss.weight_placement",
        &r.weight_placement,
        &[
            ("inside", WeightPlacement::Inside),
            ("outside", WeightPlacement::Outside),
        ],
    )?;
    let weighting = match r.weighting.as_str() {
        "none" => Weighting::None,
        "wpo" => Weighting::Wpo { clamp: r.wpo_clamp },
        other => {
            return Err(ctx.bad(
                "loss.weighting",
                format!("`{other}` is not one of: none, wpo"),
            ));
        }
    };
    for (key, v) in [
        ("loss.gamma", r.gamma),
        ("loss.lambda", r.lambda),
        ("loss.alpha", r.alpha),
    ] {
        if !v.is_finite() {
            return Err(ctx.bad(key, format!("must be finite, got {v}")));
        }
    }
    Ok(LossSpec {
        hook: non_empty_hook(ctx, "loss.name", &r.name)?,
        beta: ctx.positive("loss.beta", r.beta)?,
        gamma: r.gamma,
        lambda: r.lambda,
        label_smoothing: ctx.in_range("loss.label_smoothing", r.label_smoothing, 0.0, 0.499)?,
        alpha: r.alpha,
        placement,
        weighting,
        params: ctx.params("loss", &r.params, LOSS_BATCH_FIELDS)?,
    })
}

fn eval(ctx: &Ctx, r: &RawEval, data_format: DataFormat) -> Result<EvalSpec> {
    let grader = match r.grader.as_str() {
        "native" => EvalGrader::Hook(HookSource::Plugin(native_grader(data_format).to_string())),
        "same" => EvalGrader::SameAsTraining,
        other => EvalGrader::Hook(non_empty_hook(ctx, "eval.grader", other)?),
    };
    Ok(EvalSpec {
        grader,
        data: if r.data.trim().is_empty() {
            EvalData::Disabled
        } else {
            EvalData::Source(data_source(&r.data))
        },
        limit: Limit::from_count(r.limit),
        split: hash_split(ctx, "eval.split", &r.split)?,
        allow_overlap: r.allow_overlap,
        max_new_tokens: ctx.at_least_one("eval.max_new_tokens", r.max_new_tokens)?,
        batch_size: ctx.at_least_one("eval.batch_size", r.batch_size)?,
        before: r.before,
        after: r.after,
    })
}
