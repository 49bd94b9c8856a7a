//! The script host: one sandboxed Rhai engine per run. Scripts are compiled once into modules and
//! their functions are called many times, directly on the kept AST of each module.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use rhai::{AST, Dynamic, Engine, EvalAltResult, FnPtr, Module, Scope};

use super::errors;
use super::resolver::{
    ImportRoots, Loading, PluginDir, ScopedResolver, display_path, file_identity,
};
use super::{api, embedded};
use crate::error::user_error;
use crate::recipe::{HookParam, ScriptLimits};

/// A compiled script or plugin, known by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnitId(usize);

/// A script function: name and parameter names.
#[derive(Debug, Clone, PartialEq)]
pub struct FnInfo {
    pub name: String,
    pub params: Vec<String>,
}

struct Unit {
    file: String,
    text: String,
    functions: Vec<FnInfo>,
    /// The evaluated module as an AST of functions only: its functions keep the imports of the
    /// script's top level, which ran once.
    ast: AST,
}

/// The sandboxed engine and every script compiled into it.
pub struct ScriptHost {
    engine: Engine,
    limits: ScriptLimits,
    roots: Arc<ImportRoots>,
    plugins: PluginDir,
    units: Vec<Unit>,
    imported: Arc<Mutex<Vec<(String, String)>>>,
    loading: Arc<Loading>,
    /// `[grade.params]`, added to the example map of every grade hook call.
    pub(super) grade_params: Vec<(String, HookParam)>,
    /// `[pairs.params]`, added to the group map of every pair hook call.
    pub(super) pair_params: Vec<(String, HookParam)>,
}

impl ScriptHost {
    /// Sets the `[grade.params]` and `[pairs.params]` every grade and pair hook call receives.
    pub fn set_params(&mut self, grade: &[(String, HookParam)], pair: &[(String, HookParam)]) {
        self.grade_params = grade.to_vec();
        self.pair_params = pair.to_vec();
    }

    /// An engine with `limits`; plugins are looked up from `anchor` (usually the script's path).
    pub fn new(limits: &ScriptLimits, anchor: Option<&Path>) -> Self {
        let plugins = PluginDir::locate(anchor.and_then(Path::parent));
        let roots = Arc::new(ImportRoots::default());
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_depth)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_max_modules(256)
            .disable_symbol("eval");
        engine.on_print(|text| tracing::info!(target: "script", "{text}"));
        engine.on_debug(|text, source, pos| {
            tracing::debug!(target: "script", "{}:{pos}: {text}", source.unwrap_or("script"))
        });
        let imported = Arc::new(Mutex::new(Vec::new()));
        let loading = Arc::new(Loading::default());
        engine.set_module_resolver(ScopedResolver::new(
            plugins.clone(),
            roots.clone(),
            imported.clone(),
            loading.clone(),
        ));
        api::install(&mut engine);
        Self {
            engine,
            limits: limits.clone(),
            roots,
            plugins,
            units: Vec::new(),
            imported,
            loading,
            grade_params: Vec::new(),
            pair_params: Vec::new(),
        }
    }

    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    pub fn plugin_dir(&self) -> &PluginDir {
        &self.plugins
    }

    /// Compiles a script file; its folder becomes a place it may import from.
    pub fn load_file(&mut self, path: &Path) -> Result<UnitId> {
        let name = display_path(path);
        let bytes = std::fs::read(path)
            .map_err(|e| user_error(format!("script {name}: cannot read: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| user_error(format!("script {name}: not UTF-8 text: {e}")))?;
        if let Some(folder) = path.parent() {
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            self.roots.allow(folder);
        }
        self.load_text(name, &file_identity(path), &text)
    }

    /// Compiles the text of a module the scripts imported (as [`ScriptHost::sources`] lists it)
    /// as a unit of its own, so that `trainer check` can run its `test_*` functions.
    pub fn load_imported(&mut self, name: &str, text: &str) -> Result<UnitId> {
        self.load_text(name.to_string(), &format!("imported:{name}"), text)
    }

    /// Compiles `plugins/<dir>/<name>.rhai` (from disk, or the copy built into the binary).
    pub fn load_plugin(&mut self, dir: &str, name: &str) -> Result<UnitId> {
        match &self.plugins {
            PluginDir::Disk(root) => {
                let path = root.join(dir).join(format!("{name}.rhai"));
                if !path.is_file() {
                    return Err(unknown_plugin(dir, name, &list_disk(&root.join(dir))));
                }
                self.load_file(&path)
            }
            PluginDir::Embedded => {
                let key = format!("{dir}/{name}.rhai");
                match embedded::plugin_text(&key) {
                    Some(text) => {
                        let name = format!("plugins/{key}");
                        self.load_text(name.clone(), &name, text)
                    }
                    None => Err(unknown_plugin(dir, name, &embedded::plugin_names(dir))),
                }
            }
        }
    }

    fn load_text(&mut self, name: String, identity: &str, text: &str) -> Result<UnitId> {
        let mut ast = self
            .engine
            .compile(text)
            .map_err(|e| errors::parse_error(&e, &name))?;
        ast.set_source(name.as_str());
        let functions = ast
            .iter_functions()
            .map(|f| FnInfo {
                name: f.name.to_string(),
                params: f.params.iter().map(|p| p.to_string()).collect(),
            })
            .collect();
        self.loading.enter(identity, &name).map_err(user_error)?;
        let evaluated = Module::eval_ast_as_new(Scope::new(), &ast, &self.engine);
        self.loading.leave(identity);
        let module = evaluated.map_err(|e| errors::eval_error(&e, &name, &self.limits, None))?;
        let id = UnitId(self.units.len());
        let mut ast = AST::new_from_module(module);
        ast.set_source(name.as_str());
        self.units.push(Unit {
            file: name,
            text: text.to_string(),
            functions,
            ast,
        });
        Ok(id)
    }

    /// The file name a unit was compiled from, as used in messages.
    pub fn file(&self, unit: UnitId) -> &str {
        &self.units[unit.0].file
    }

    /// Every script this host compiled or imported: (name, source text), deduplicated by name.
    pub fn sources(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .units
            .iter()
            .map(|u| (u.file.clone(), u.text.clone()))
            .collect();
        out.extend(
            self.imported
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let mut seen = std::collections::HashSet::new();
        out.retain(|(name, _)| seen.insert(name.clone()));
        out
    }

    /// Where a script this host compiled or imported sits below `plugins/` (`loss/dpo.rhai`), or
    /// `None` when it is not a plugin. `name` is as [`ScriptHost::sources`] gives it.
    pub fn plugin_path(&self, name: &str) -> Option<String> {
        match &self.plugins {
            PluginDir::Disk(root) => {
                let canon = Path::new(name).canonicalize().ok()?;
                let rel = canon.strip_prefix(root).ok()?;
                Some(rel.to_string_lossy().replace('\\', "/"))
            }
            PluginDir::Embedded => {
                let key = name.strip_prefix("plugins/")?;
                embedded::plugin_text(key).map(|_| key.to_string())
            }
        }
    }

    /// The functions a unit defines, in source order.
    pub fn functions(&self, unit: UnitId) -> &[FnInfo] {
        &self.units[unit.0].functions
    }

    /// Calls `function` of `unit` with `args`; script errors become user errors naming the file,
    /// line and function.
    pub fn call(&self, unit: UnitId, function: &str, args: Vec<Dynamic>) -> Result<Dynamic> {
        let located = |e: &EvalAltResult| {
            errors::eval_error(e, self.file(unit), &self.limits, Some(function))
        };
        // A plain `call_fn` would drop the imports each function of the module keeps; a call
        // through a function pointer resolves the function with them.
        FnPtr::new(function)
            .and_then(|f| f.call::<Dynamic>(&self.engine, &self.units[unit.0].ast, args))
            .map_err(|e| located(&e))
    }
}

fn unknown_plugin(dir: &str, name: &str, available: &[String]) -> anyhow::Error {
    user_error(format!(
        "no plugin `{name}` in plugins/{dir}/ (available: {})",
        available.join(", ")
    ))
}

fn list_disk(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "rhai" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}
