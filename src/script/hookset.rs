//! Chooses, for a run, where each hook comes from: the experiment script when it defines the hook,
//! else the plugin or file the recipe names. Everything is compiled and checked before any model
//! work starts.

use std::path::Path;

use anyhow::Result;

use crate::error::user_error;
use crate::recipe::{EvalGrader, HookSource, PairRule, Recipe, ScriptChoice};
use crate::script::{HookKind, HookRef, ScriptHost, UnitId};

/// The hooks of one run, compiled into one host.
pub struct HookSet {
    pub host: ScriptHost,
    pub grade: HookRef,
    pub weight: HookRef,
    /// `None`: the built-in most-frequent-wrong rule.
    pub pair: Option<HookRef>,
    pub loss: HookRef,
    /// The grader of the held-out eval (`eval.grader`; the data's native one by default).
    pub eval_grade: HookRef,
    /// The experiment script's unit, when the run has one.
    script: Option<UnitId>,
}

impl HookSet {
    /// Compiles the recipe's script and the plugins it needs; fails on any missing hook or any
    /// hook with the wrong arity.
    pub fn load(recipe: &Recipe) -> Result<HookSet> {
        Self::load_near(recipe, None)
    }

    /// Like [`HookSet::load`]; without an experiment script, plugins are looked up from
    /// `plugins_near` (a path whose folder, or an ancestor's, holds `plugins/`).
    pub fn load_near(recipe: &Recipe, plugins_near: Option<&Path>) -> Result<HookSet> {
        let script_path = match &recipe.run.script {
            ScriptChoice::File(p) => Some(p.as_path()),
            ScriptChoice::None => None,
        };
        let mut host = ScriptHost::new(&recipe.script, script_path.or(plugins_near));
        host.set_params(&recipe.grade.params, &recipe.pairs.params);
        let script = script_path.map(|p| host.load_file(p)).transpose()?;
        let grade = pick(&mut host, script, HookKind::Grade, &recipe.grade.grader)?;
        let weight = pick(&mut host, script, HookKind::Weight, &recipe.weight.scheme)?;
        let loss = pick(&mut host, script, HookKind::Loss, &recipe.loss.hook)?;
        let pair = match script
            .map(|u| host.find_hook(u, HookKind::Pair))
            .transpose()?
            .flatten()
        {
            Some(hook) => Some(hook),
            None => match &recipe.pairs.rule {
                PairRule::MostFrequentWrong => None,
                PairRule::Hook(source) => Some(from_source(&mut host, HookKind::Pair, source)?),
            },
        };
        let grade_from_recipe = script.is_none_or(|s| grade.unit != s);
        let eval_grade = match &recipe.eval.grader {
            EvalGrader::SameAsTraining => grade,
            // The same plugin or file as the training grader: compiled once.
            EvalGrader::Hook(source) if grade_from_recipe && *source == recipe.grade.grader => {
                grade
            }
            EvalGrader::Hook(source) => from_source(&mut host, HookKind::Grade, source)
                .map_err(|e| user_error(format!("recipe key `eval.grader`: {e:#}")))?,
        };
        Ok(HookSet {
            host,
            eval_grade,
            grade,
            weight,
            pair,
            loss,
            script,
        })
    }

    /// Whether the experiment script defines the hook of `kind` (so the recipe key that would
    /// choose it, [`HookKind::recipe_key`], has no effect).
    pub fn from_script(&self, kind: HookKind) -> bool {
        let hook = match kind {
            HookKind::Grade => Some(self.grade),
            HookKind::Weight => Some(self.weight),
            HookKind::Pair => self.pair,
            HookKind::Loss => Some(self.loss),
        };
        matches!((hook, self.script), (Some(h), Some(s)) if h.unit == s)
    }

    /// Where each hook comes from, for logs and the run summary.
    pub fn describe(&self) -> Vec<(HookKind, String)> {
        let mut out = vec![
            (HookKind::Grade, self.host.file(self.grade.unit).to_string()),
            (
                HookKind::Weight,
                self.host.file(self.weight.unit).to_string(),
            ),
        ];
        out.push((
            HookKind::Pair,
            match self.pair {
                Some(h) => self.host.file(h.unit).to_string(),
                None => "built-in most_frequent_wrong".to_string(),
            },
        ));
        out.push((HookKind::Loss, self.host.file(self.loss.unit).to_string()));
        out
    }
}

/// The script's hook of `kind` if it has one, else the recipe's choice.
fn pick(
    host: &mut ScriptHost,
    script: Option<UnitId>,
    kind: HookKind,
    source: &HookSource,
) -> Result<HookRef> {
    if let Some(unit) = script
        && let Some(hook) = host.find_hook(unit, kind)?
    {
        return Ok(hook);
    }
    match source {
        HookSource::Plugin(name) => from_source(host, kind, source).map_err(|e| {
            user_error(format!(
                "recipe key `{}` = \"{name}\": {e:#}",
                kind.recipe_key()
            ))
        }),
        HookSource::File(_) => from_source(host, kind, source),
    }
}

/// Compiles a plugin by name or a `.rhai` file and returns its hook of `kind`.
pub fn from_source(host: &mut ScriptHost, kind: HookKind, source: &HookSource) -> Result<HookRef> {
    let unit = match source {
        HookSource::Plugin(name) => host.load_plugin(kind.plugin_dir(), name)?,
        HookSource::File(path) => load_file(host, path)?,
    };
    host.require_hook(unit, kind)
}

fn load_file(host: &mut ScriptHost, path: &Path) -> Result<UnitId> {
    host.load_file(path)
}
