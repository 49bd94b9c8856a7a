//! The script API as one Rhai package, built once per process and shared by every engine: the
//! `Tensor` type with its operators and functions, assertions for `test_*` functions, seeded
//! helpers and the native graders. Every function belongs to a documented group whose example runs
//! as a test; `trainer check --api` prints the groups.

mod checks;
mod graders;
mod tensors;

use std::fmt::Write;
use std::sync::OnceLock;

use rhai::{Dynamic, Engine, EvalAltResult, Module, Position, Shared};

use super::tensor::ScriptTensor;

type Res<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(
        msg.into().into(),
        Position::NONE,
    )))
}

/// A Rhai number (INT or FLOAT) as f64.
fn number(d: &Dynamic, what: &str) -> Res<f64> {
    if let Ok(f) = d.as_float() {
        return Ok(f);
    }
    if let Ok(i) = d.as_int() {
        return Ok(i as f64);
    }
    fail(format!("{what}: expected a number, got {}", d.type_name()))
}

/// A documented group of script functions.
#[derive(Debug)]
pub struct Group {
    pub title: &'static str,
    pub about: &'static str,
    /// Rhai code that uses every function of the group; it runs as a test.
    pub example: &'static str,
    /// The names registered in this group, in registration order, without repeats.
    pub functions: Vec<String>,
}

/// The package and its documentation.
pub struct Api {
    module: Shared<Module>,
    pub groups: Vec<Group>,
}

/// Collects functions into the package, each under the group opened last.
struct Builder {
    module: Module,
    groups: Vec<Group>,
}

impl Builder {
    fn group(&mut self, title: &'static str, about: &'static str, example: &'static str) {
        self.groups.push(Group {
            title,
            about,
            example,
            functions: Vec::new(),
        });
    }

    /// Records `name` under the group opened last (see [`func!`]).
    fn note(&mut self, name: &str) {
        if let Some(group) = self.groups.last_mut()
            && !group.functions.iter().any(|f| f == name)
        {
            group.functions.push(name.to_string());
        }
    }
}

/// `func!(builder, "name", closure)`: registers a native function into the package under the
/// builder's current group.
macro_rules! func {
    ($b:expr, $name:expr, $f:expr) => {{
        let name: &str = $name;
        $b.note(name);
        rhai::FuncRegistration::new(name).set_into_module(&mut $b.module, $f);
    }};
}
use func;

/// The API, built on first use.
pub fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let mut b = Builder {
            module: Module::new(),
            groups: Vec::new(),
        };
        tensors::register(&mut b);
        checks::register(&mut b);
        graders::register(&mut b);
        let mut module = b.module;
        module.set_custom_type::<ScriptTensor>("Tensor");
        module.build_index();
        Api {
            module: module.into(),
            groups: b.groups,
        }
    })
}

/// Makes the API available to every script `engine` runs.
pub fn install(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptTensor>("Tensor");
    engine.register_global_module(api().module.clone());
}

/// The API reference `trainer check --api` prints: each group's functions, text and example.
pub fn reference() -> String {
    let mut out = String::new();
    for group in &api().groups {
        let _ = writeln!(out, "## {}\n", group.title);
        let _ = writeln!(out, "{}\n", group.functions.join(", "));
        let _ = writeln!(out, "{}\n", group.about);
        for line in group.example.trim_matches('\n').lines() {
            let _ = writeln!(out, "    {line}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_example_runs_and_uses_each_function_of_its_group() {
        let mut engine = Engine::new();
        install(&mut engine);
        for group in &api().groups {
            assert!(!group.functions.is_empty(), "{}: no functions", group.title);
            for f in &group.functions {
                let used = group.example.contains(&format!("{f}("))
                    || (!f.chars().any(char::is_alphanumeric)
                        && group.example.contains(f.as_str()));
                assert!(used, "{}: the example does not use `{f}`", group.title);
            }
            // `fn test_*` definitions are compiled and then called, like `trainer check` does.
            let ast = engine
                .compile(group.example)
                .unwrap_or_else(|e| panic!("{}: {e}", group.title));
            engine
                .run_ast(&ast)
                .unwrap_or_else(|e| panic!("{}: {e}", group.title));
            for f in ast.iter_functions().filter(|f| f.name.starts_with("test_")) {
                let _ = engine
                    .call_fn::<Dynamic>(&mut rhai::Scope::new(), &ast, f.name, ())
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", group.title, f.name));
            }
        }
    }

    #[test]
    fn the_reference_lists_every_group() {
        let text = reference();
        for group in &api().groups {
            assert!(text.contains(&format!("## {}", group.title)));
        }
        assert!(text.contains("log_sigmoid"));
    }
}
