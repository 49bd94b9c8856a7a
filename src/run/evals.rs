//! The eval stage as a run calls it: the held-out questions named by `eval.data`, the cache of
//! greedy answers keyed by the evaluated weights' hash, and `eval_<label>.jsonl`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::context::Run;
use super::{keys, write_jsonl};
use crate::data::{Example, ExampleFormat, local_path, read_examples};
use crate::grade::Verdict;
use crate::recipe::{DataFormat, EvalData, HashSplit};
use crate::stages::eval::{EvalRecord, EvalResult, EvalSetup, evaluate};
use crate::stats::PairedChange;
use crate::store::sha256_path;

/// The eval questions and the file they came from, or `None` when the recipe names no eval data.
pub(super) fn eval_examples(run: &Run) -> Result<Option<(PathBuf, Vec<Example>)>> {
    let EvalData::Source(source) = &run.recipe.eval.data else {
        return Ok(None);
    };
    let path = local_path(source, "eval.data", &run.recipe)?;
    let d = &run.recipe.data;
    let format = if d.format == DataFormat::Pairs {
        DataFormat::Gsm8k
    } else {
        d.format
    };
    let fmt = ExampleFormat {
        format,
        prompt_field: &d.prompt_field,
        gold_field: &d.gold_field,
        split: run.recipe.eval.split,
    };
    let examples = read_examples(&path, &fmt, run.recipe.eval.limit, 0)?;
    Ok(Some((path, examples)))
}

/// Evaluates the model in memory, whose weights hash to `model_sha`, on the questions read from
/// `data` (the generations are cached under both hashes); writes `dir/eval_<label>.jsonl`.
pub(super) fn eval_model(
    run: &Run,
    (data, examples): (&PathBuf, &[Example]),
    (dir, label): (&Path, &str),
    model_sha: &str,
) -> Result<EvalResult> {
    let e = &run.recipe.eval;
    let setup = EvalSetup {
        template: &run.template,
        instruction: &run.recipe.data.instruction,
        max_new_tokens: e.max_new_tokens,
        batch_size: e.batch_size,
        stop: &run.recipe.sampling.stop,
    };
    // The split joins the selection only when it is not "all", so older eval caches stay valid.
    let selection = match e.split {
        HashSplit::All => format!("{:?}", e.limit),
        split => format!("{:?}|{split:?}", e.limit),
    };
    let key = keys::eval_key(model_sha, &sha256_path(data)?, &selection, &setup);
    let cache = run
        .recipe
        .run
        .cache
        .join("eval")
        .join(format!("{key}.jsonl"));
    let (result, records) = evaluate(
        &run.model,
        &setup,
        examples,
        (&run.hooks.host, run.hooks.eval_grade),
        Some(&cache),
        &format!("eval {label}"),
    )?;
    write_jsonl(&dir.join(format!("eval_{label}.jsonl")), &records)?;
    tracing::info!(
        "accuracy {label} training: {:.1}% [{:.1}, {:.1}] ({}/{})",
        100.0 * result.accuracy,
        100.0 * result.ci95[0],
        100.0 * result.ci95[1],
        result.correct,
        result.total
    );
    Ok(result)
}

/// The change from `eval_before.jsonl` to `eval_after.jsonl` in `dir`, paired by question id.
pub(super) fn paired_change(dir: &Path) -> Result<PairedChange> {
    let read = |name: &str| -> Result<Vec<(String, bool)>> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .map(|l| {
                let r: EvalRecord = serde_json::from_str(l)
                    .with_context(|| format!("a line of {}", path.display()))?;
                Ok((r.id, r.verdict == Verdict::Correct))
            })
            .collect()
    };
    let before = read("eval_before.jsonl")?;
    let after: std::collections::HashMap<String, bool> =
        read("eval_after.jsonl")?.into_iter().collect();
    let (b, a): (Vec<bool>, Vec<bool>) = before
        .iter()
        .filter_map(|(id, ok)| after.get(id).map(|after| (*ok, *after)))
        .unzip();
    Ok(PairedChange::new(&b, &a))
}
