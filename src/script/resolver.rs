//! Resolves `import` statements, only inside `plugins/` and the folders of the scripts being run;
//! serves the plugins compiled into the binary when no `plugins/` folder is on disk.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rhai::{Dynamic, Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

type SharedModule = Shared<Module>;

use super::embedded;
use super::errors::ImportFailure;

/// Where plugins come from: a folder on disk, or the copies compiled into the binary.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginDir {
    Disk(PathBuf),
    Embedded,
}

impl PluginDir {
    /// The first `plugins/` folder found walking up from `start`, else `./plugins`, else the
    /// embedded copies.
    pub fn locate(start: Option<&Path>) -> PluginDir {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(start) = start.and_then(|s| s.canonicalize().ok()) {
            candidates.extend(start.ancestors().map(|a| a.join("plugins")));
        }
        candidates.push(PathBuf::from("plugins"));
        candidates
            .into_iter()
            .find(|c| c.is_dir())
            .and_then(|c| c.canonicalize().ok())
            .map(PluginDir::Disk)
            .unwrap_or(PluginDir::Embedded)
    }
}

/// The source text of a module, the name errors should use for it, and what identifies it
/// (its canonical path, or `plugins/<key>` for an embedded plugin).
pub struct ModuleSource {
    pub name: String,
    pub text: String,
    pub identity: String,
}

/// The modules being loaded right now, outermost first, as (identity, name): an import of one of
/// them is a circle (Rhai would recurse until the stack overflows).
#[derive(Default)]
pub struct Loading(Mutex<Vec<(String, String)>>);

impl Loading {
    /// Marks `identity` as being loaded, or says which circle importing it would close.
    pub fn enter(&self, identity: &str, name: &str) -> Result<(), String> {
        let mut stack = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = stack.iter().position(|(id, _)| id == identity) {
            let mut chain: Vec<&str> = stack[i..].iter().map(|(_, n)| n.as_str()).collect();
            chain.push(name);
            return Err(format!("circular import: {}", chain.join(" imports ")));
        }
        stack.push((identity.to_string(), name.to_string()));
        Ok(())
    }

    pub fn leave(&self, identity: &str) {
        let mut stack = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = stack.iter().rposition(|(id, _)| id == identity) {
            stack.remove(i);
        }
    }
}

/// What identifies a script file: its canonical path (the path itself when it cannot be resolved).
pub fn file_identity(path: &Path) -> String {
    path.canonicalize()
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// State shared between the host and the engine's resolver.
#[derive(Default)]
pub struct ImportRoots {
    /// Canonical folders a script may import from (the folders of the scripts compiled so far).
    folders: RwLock<Vec<PathBuf>>,
}

impl ImportRoots {
    pub fn allow(&self, folder: &Path) {
        if let Ok(canon) = folder.canonicalize() {
            let mut folders = self.folders.write().unwrap_or_else(|e| e.into_inner());
            if !folders.contains(&canon) {
                folders.push(canon);
            }
        }
    }

    fn contains(&self, path: &Path) -> bool {
        let folders = self.folders.read().unwrap_or_else(|e| e.into_inner());
        folders.iter().any(|f| path.starts_with(f))
    }
}

/// The engine's module resolver.
pub struct ScopedResolver {
    pub plugins: PluginDir,
    pub roots: Arc<ImportRoots>,
    cache: Mutex<HashMap<String, SharedModule>>,
    /// Every module imported so far: (name, source text), shared with the host.
    pub imported: Arc<Mutex<Vec<(String, String)>>>,
    /// The modules being loaded, shared with the host.
    pub loading: Arc<Loading>,
}

impl ScopedResolver {
    pub fn new(
        plugins: PluginDir,
        roots: Arc<ImportRoots>,
        imported: Arc<Mutex<Vec<(String, String)>>>,
        loading: Arc<Loading>,
    ) -> Self {
        Self {
            plugins,
            roots,
            cache: Mutex::new(HashMap::new()),
            imported,
            loading,
        }
    }

    /// Finds the text of `import "<path>"` seen from the script `from` (a file path, if known).
    pub fn find(&self, from: Option<&str>, path: &str) -> Result<ModuleSource, String> {
        let rel = Path::new(path);
        if rel.is_absolute() {
            return Err(format!("import \"{path}\": absolute paths are not allowed"));
        }
        let file_name = with_rhai_extension(rel);
        let mut tried = Vec::new();
        if let Some(dir) = from.and_then(|f| Path::new(f).parent()) {
            let candidate = dir.join(&file_name);
            if candidate.is_file() {
                return self.checked_disk(path, &candidate);
            }
            tried.push(candidate);
        }
        match &self.plugins {
            PluginDir::Disk(root) => {
                let candidate = root.join(&file_name);
                if candidate.is_file() {
                    return self.checked_disk(path, &candidate);
                }
            }
            PluginDir::Embedded => {
                let key = normalize(&file_name);
                if let Some(text) = embedded::plugin_text(&key) {
                    return Ok(ModuleSource {
                        name: format!("plugins/{key}"),
                        identity: format!("plugins/{key}"),
                        text: text.to_string(),
                    });
                }
            }
        }
        if escapes(rel) {
            return Err(outside(path));
        }
        Err(format!(
            "import \"{path}\": no such module (looked beside the script and in plugins/)"
        ))
    }

    fn checked_disk(&self, path: &str, candidate: &Path) -> Result<ModuleSource, String> {
        let canon = candidate
            .canonicalize()
            .map_err(|e| format!("import \"{path}\": {e}"))?;
        let in_plugins = matches!(&self.plugins, PluginDir::Disk(root) if canon.starts_with(root));
        if !in_plugins && !self.roots.contains(&canon) {
            return Err(outside(path));
        }
        let text = std::fs::read_to_string(&canon)
            .map_err(|e| format!("import \"{path}\": cannot read {}: {e}", canon.display()))?;
        Ok(ModuleSource {
            name: display_path(&canon),
            identity: canon.to_string_lossy().into_owned(),
            text,
        })
    }
}

fn outside(path: &str) -> String {
    format!(
        "import \"{path}\": outside plugins/ and the script's folder; imports are limited to those"
    )
}

fn with_rhai_extension(rel: &Path) -> PathBuf {
    let mut p = rel.to_path_buf();
    if p.extension().is_none_or(|e| e != "rhai") {
        let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".rhai");
        p.set_file_name(name);
    }
    p
}

/// `./loss/dpo.rhai` → `loss/dpo.rhai`.
fn normalize(p: &Path) -> String {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn escapes(p: &Path) -> bool {
    p.components().any(|c| matches!(c, Component::ParentDir))
}

impl ModuleResolver for ScopedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let found = self.find(source, path).map_err(|msg| {
            Box::new(EvalAltResult::ErrorRuntime(
                Dynamic::from(ImportFailure(msg)),
                pos,
            ))
        })?;
        let cache_key = found.name.clone();
        if let Some(module) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            return Ok(module.clone());
        }
        let in_module = |err: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(found.name.clone(), err, pos))
        };
        let mut ast = engine
            .compile(&found.text)
            .map_err(|e| in_module(e.into()))?;
        ast.set_source(found.name.as_str());
        self.loading
            .enter(&found.identity, &found.name)
            .map_err(|msg| {
                Box::new(EvalAltResult::ErrorRuntime(
                    Dynamic::from(ImportFailure(format!("import \"{path}\": {msg}"))),
                    pos,
                ))
            })?;
        let evaluated = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        self.loading.leave(&found.identity);
        let module: SharedModule = evaluated.map_err(in_module)?.into();
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, module.clone());
        self.imported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((found.name.clone(), found.text.clone()));
        Ok(module)
    }
}

/// `path` relative to the working folder when it lies below it.
pub(crate) fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path)
        .display()
        .to_string()
}
