//! Every hook a run will call, called once on synthetic inputs built from the recipe's own values
//! before any model work, so that a script error shows in seconds instead of after sampling.

use anyhow::Result;

use crate::data::Example;
use crate::error::user_error;
use crate::recipe::Recipe;
use crate::script::{HookRef, HookSet, random_batch};
use crate::stages::weigh::{QuestionStats, weight_params};

/// Calls the grade, weight and loss hooks once each (the weight hook on a question the model
/// always, sometimes and never gets right); an error names the hook, says it was this check, and
/// when a value was missing (`()` in Rhai), lists the keys the hook was given.
pub(super) fn preflight(recipe: &Recipe, hooks: &HookSet) -> Result<()> {
    let host = &hooks.host;
    if let (true, Some(pair)) = (recipe.pairs.anchor_all_correct, hooks.pair) {
        return Err(user_error(format!(
            "pairs.all_correct = \"anchor\" applies to the built-in pair rule, but fn pair(group) in \
             {} picks the pairs: return the same sample as chosen and rejected there to make an \
             anchor, and leave pairs.all_correct at \"skip\"",
            host.file(pair.unit)
        )));
    }
    let example = Example {
        id: "preflight:1".into(),
        question: "What is 2 + 2?".into(),
        gold: "4".into(),
        solution: Some("2 + 2 = 4\n#### 4".into()),
        level: Some("1".into()),
    };
    for hook in [hooks.grade, hooks.eval_grade] {
        host.call_grade(hook, "2 + 2 = 4\n#### 4", &example)
            .map_err(|e| explain(e, host.file(hook.unit), hook, GRADE_KEYS, ""))?;
    }
    preflight_weight(recipe, hooks, &example.id)?;
    preflight_loss(recipe, hooks)
}

/// Calls the weight hook on a question none, half and all of whose samples are correct.
fn preflight_weight(recipe: &Recipe, hooks: &HookSet, id: &str) -> Result<()> {
    let host = &hooks.host;
    let n = recipe.sampling.n;
    let params = weight_params(&recipe.weight);
    let keys: Vec<String> = params.iter().map(|(k, _)| k.clone()).collect();
    for pc in [0, n / 2, n] {
        let stats = QuestionStats {
            id: id.to_string(),
            n,
            pc,
            pe: n - pc,
            invalid: 0,
            answers: (0..n)
                .map(|i| if i < pc { "4" } else { "5" }.to_string())
                .collect(),
        };
        host.call_weight(hooks.weight, &stats, &params)
            .map_err(|e| {
                let given = format!("{STATS_KEYS}, {}", keys.join(", "));
                explain(
                    e,
                    host.file(hooks.weight.unit),
                    hooks.weight,
                    &given,
                    "weight.params",
                )
            })?;
    }
    Ok(())
}

/// Calls the loss hook on a random batch of one pair.
fn preflight_loss(recipe: &Recipe, hooks: &HookSet) -> Result<()> {
    let host = &hooks.host;
    let (_, batch) = random_batch(1)?;
    let params = recipe.loss.hook_params();
    let keys: Vec<&str> = batch
        .fields()
        .iter()
        .map(|(k, _)| *k)
        .chain(params.iter().map(|(k, _)| k.as_str()))
        .collect();
    host.call_loss(hooks.loss, &batch, &params).map_err(|e| {
        explain(
            e,
            host.file(hooks.loss.unit),
            hooks.loss,
            &keys.join(", "),
            "loss.params",
        )
    })?;
    Ok(())
}

const GRADE_KEYS: &str = "the response, and example.id, question, gold, solution, level";
const STATS_KEYS: &str = "stats.id, n, pc, pe, invalid, answers";

/// The hook's error, said to come from this check, with the keys the hook was given when the
/// error looks like a missing one.
fn explain(
    err: anyhow::Error,
    file: &str,
    hook: HookRef,
    given: &str,
    params_key: &str,
) -> anyhow::Error {
    let text = format!("{err:#}");
    let missing = text.contains("()") && text.contains("Function not found");
    let hint = if missing {
        let set = if params_key.is_empty() {
            String::new()
        } else {
            format!(
                "; a parameter of your own comes from [{params_key}] (--set {params_key}.NAME=VALUE)"
            )
        };
        format!(
            " (a `()` in this message is usually a key the map does not have: the hook is given \
             {given}{set})"
        )
    } else {
        String::new()
    };
    crate::error::user_error(format!(
        "{file}: fn {} failed on synthetic inputs, checked before any model work: {text}{hint}",
        hook.kind.signature()
    ))
}
