//! The run context: the resolved recipe, the compiled hooks, the loaded model and the run folder,
//! opened once per command, plus the stage timings and the end of a run (summary, marker).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use super::RunRequest;
use super::folder;
use super::keys;
use super::summary::{RunSummary, render};
use crate::error::user_error;
use crate::model::{ChatTemplate, LoadedModel, check_quantizable, fetch, load_model_on};
use crate::recipe::{ModelSource, Recipe, TokenizerChoice, Weighting};
use crate::script::HookSet;
use crate::stages::warm_start::model_path;
use crate::store::{sha256_path, write_atomic, write_json_atomic};

/// The exported recipe every run folder holds.
pub const EXPORT_FILE: &str = "export.toml";

/// The state of a run in progress.
pub(super) struct Run {
    pub recipe: Recipe,
    pub hooks: HookSet,
    pub dir: PathBuf,
    /// Holds the run folder's lock while the run lives.
    _folder: folder::RunFolder,
    pub model: LoadedModel,
    pub template: ChatTemplate,
    pub model_sha: String,
    pub model_path: PathBuf,
    /// The hub commit the model files came from (`model.path = "org/name"`).
    pub model_revision: Option<String>,
    /// The last stage this command runs (`manifest.json`'s `until`).
    pub until: &'static str,
}

/// The run's model, loaded: what [`Run`] keeps of it.
struct RunModel {
    model: LoadedModel,
    template: ChatTemplate,
    sha: String,
    path: PathBuf,
    revision: Option<String>,
}

/// Fetches (a hub id), warm-starts (the built-in model) or opens the recipe's model, with its
/// chat template and the hash of its files.
fn load_run_model(recipe: &Recipe) -> Result<RunModel> {
    // A hub model is fetched first (its template is in its files); the built-in model is
    // warm-started only after the template is known (it is part of the warm start's key).
    let hub = match &recipe.model.source {
        ModelSource::Hub(id) => Some(fetch(id, "model.path")?),
        _ => None,
    };
    let own_path = match &recipe.model.source {
        ModelSource::Path(p) => Some(p.clone()),
        ModelSource::Hub(_) => hub.as_ref().map(|h| h.path.clone()),
        ModelSource::Builtin(_) => None,
    };
    let template = run_template(recipe, own_path.as_deref())?;
    let tokenizer = match &recipe.model.tokenizer {
        TokenizerChoice::File(p) => Some(p.clone()),
        TokenizerChoice::FromModel => None,
    };
    let device = recipe.model.device.open("model.device")?;
    let model_path = match &own_path {
        Some(p) => p.clone(),
        None => model_path(recipe, &template)?,
    };
    if recipe.sampling.quantized {
        check_quantizable(&model_path, &device, "sampling.quantized = true")?;
    }
    tracing::info!("loading {}", model_path.display());
    let mut model = load_model_on(&model_path, tokenizer.as_deref(), &device)?;
    check_sliding_window(&model, &model_path, recipe.train.max_length)?;
    model.chat_template = template.to_jinja();
    let model_sha = sha256_path(&model_path)?;
    Ok(RunModel {
        model,
        template,
        sha: model_sha,
        path: model_path,
        revision: hub.map(|h| h.commit),
    })
}

/// Seconds spent in each stage, in order.
#[derive(Debug, Default)]
pub(super) struct Timings(pub Vec<(String, f64)>);

impl Timings {
    /// Runs `f` as the stage `stage`: times it and names the stage in its error.
    pub fn time<T>(&mut self, stage: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let out = f().with_context(|| format!("stage `{stage}`"))?;
        self.0
            .push((stage.to_string(), started.elapsed().as_secs_f64()));
        Ok(out)
    }
}

impl Run {
    /// Resolves the recipe (checking an exported recipe's inputs), compiles the hooks, checks
    /// `--out`, loads the model, then opens and locks the run folder (an unfinished one of the
    /// same command `until` and recipe is taken up again).
    pub fn open(request: &RunRequest, until: &'static str) -> Result<Run> {
        let (layered, exported) = crate::export::load_recipe(&request.recipe)?;
        let recipe = layered.resolve()?;
        crate::threads::size_elementwise_pool(recipe.sampling.quantized);
        let near = exported.as_ref().map(|e| e.plugins_near());
        let hooks = HookSet::load_near(&recipe, near.as_deref())?;
        if let Some(e) = &exported {
            e.check_inputs(&recipe, request.allow_different_inputs)?;
        }
        super::preflight::preflight(&recipe, &hooks)?;
        log_hooks(&hooks, &layered, exported.is_some());
        // Whether `--out` may be used is settled before any work; the folder is made only once
        // the model has loaded, so a bad model or export leaves none.
        let recipe_text = layered.annotated_toml()?;
        let run_key = keys::run_key(until, &recipe_text, &hooks.host.sources());
        let planned = folder::plan_run_dir(&recipe.run, &run_key, request.force)?;
        let loaded = load_run_model(&recipe)?;
        let run_folder = folder::open_run_dir(planned, &recipe.run, &run_key)?;
        let dir = run_folder.dir.clone();
        write_atomic(&dir.join("recipe.toml"), recipe_text.as_bytes())?;
        // The self-contained recipe (scripts embedded, input hashes, absolute input paths) that
        // `trainer reproduce` runs, from any directory, whatever happened to the script files.
        crate::export::write_run_export(&request.recipe, &dir.join(EXPORT_FILE))?;
        folder::copy_scripts(&dir, &hooks.host.sources())?;
        Ok(Run {
            recipe,
            hooks,
            dir,
            _folder: run_folder,
            model: loaded.model,
            template: loaded.template,
            model_sha: loaded.sha,
            model_path: loaded.path,
            model_revision: loaded.revision,
            until,
        })
    }

    /// Writes `summary.json`, marks the run finished and prints the summary.
    pub fn finish(
        &self,
        mut summary: RunSummary,
        timings: Timings,
        started: Instant,
    ) -> Result<()> {
        summary.run_dir = self.dir.display().to_string();
        summary.hooks = self
            .hooks
            .describe()
            .into_iter()
            .map(|(k, v)| (k.name().to_string(), v))
            .collect();
        summary.hooks.insert(
            "eval_grade".into(),
            self.hooks.host.file(self.hooks.eval_grade.unit).to_string(),
        );
        summary.weighting = match self.recipe.loss.weighting {
            Weighting::None => "none".into(),
            Weighting::Wpo { .. } => "wpo".into(),
        };
        summary.seed = self.recipe.run.seed;
        summary.timings = timings.0;
        summary.total_seconds = started.elapsed().as_secs_f64();
        write_json_atomic(&self.dir.join("summary.json"), &summary)?;
        folder::mark_finished(&self.dir)?;
        print!("{}", render(&summary));
        Ok(())
    }
}

/// Logs each hook's source, and warns when a script hook takes the place of a recipe key that
/// was set (an exported recipe sets every key, so only a key set some other way is news).
fn log_hooks(hooks: &HookSet, layered: &crate::recipe::Layered, exported: bool) {
    for (kind, source) in hooks.describe() {
        tracing::info!("hook {}: {source}", kind.signature());
        let set_by = crate::recipe::describe_source(&layered.figment, kind.recipe_key());
        if hooks.from_script(kind) && set_by != "default" && !exported {
            tracing::warn!(
                "{} (set by {set_by}) has no effect: the script defines fn {}, which takes its \
                 place",
                kind.recipe_key(),
                kind.signature()
            );
        }
    }
}

/// The run's chat template, rendered once on a placeholder question and logged. Rendered here,
/// not inside the log macro: a template that cannot render stops the run before its folder
/// exists, whatever the log level.
fn run_template(recipe: &Recipe, own_path: Option<&Path>) -> Result<ChatTemplate> {
    let template = recipe
        .model
        .template
        .for_model(&recipe.model.system, own_path)?;
    let example = template.prompt("<question>")?;
    tracing::info!(
        "chat template: {}; a question renders as {example:?}",
        template.describe()
    );
    Ok(template)
}

/// Refuses a model whose sliding window is shorter than the sequences it would train on.
fn check_sliding_window(model: &LoadedModel, path: &Path, max_length: usize) -> Result<()> {
    if let Some(window) = model.policy.config.sliding_window
        && window < max_length
    {
        return Err(user_error(format!(
            "model {}: config.json sliding_window = {window} is shorter than train.max_length = \
             {max_length}: sliding-window attention is not implemented, so set train.max_length \
             to at most {window}",
            path.display()
        )));
    }
    Ok(())
}
