//! Turns Rhai's compile and runtime errors into one user message: `file:line:col: what (in fn f)`.

use rhai::{EvalAltResult, ParseError};

use crate::error::user_error;
use crate::recipe::ScriptLimits;

/// A syntax error, located.
pub fn parse_error(err: &ParseError, file: &str) -> anyhow::Error {
    let pos = err.position();
    let place = match (pos.line(), pos.position()) {
        (Some(line), Some(col)) => format!("{file}:{line}:{col}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file.to_string(),
    };
    user_error(format!("{place}: syntax error: {}", err.err_type()))
}

/// A runtime error raised while running `file` (or a module it imports), located at its innermost
/// cause and naming the script function it happened in.
///
/// `called` is the function the host called from Rust, if any; it is named when the error
/// happened in its own body.
pub fn eval_error(
    err: &EvalAltResult,
    file: &str,
    limits: &ScriptLimits,
    called: Option<&str>,
) -> anyhow::Error {
    tracing::debug!("script error: {err:?}");
    user_error(describe(err, file, limits, called))
}

/// An error raised by the import resolver; it is located at the `import` statement, in the file
/// that holds it.
#[derive(Debug, Clone)]
pub struct ImportFailure(pub String);

fn describe(
    err: &EvalAltResult,
    file: &str,
    limits: &ScriptLimits,
    called: Option<&str>,
) -> String {
    let mut file = file.to_string();
    let mut functions: Vec<String> = Vec::new();
    let mut cur = err;
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(name, source, inner, _) => {
                if !source.is_empty() {
                    functions.push(name.clone());
                    file = source.clone();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, _) => {
                file = path.clone();
                cur = inner;
            }
            _ => break,
        }
    }
    // `call_fn` strips the frame of the function the host called: an error in its own body
    // comes without one, located in `file`.
    if let (Some(name), true) = (called, functions.is_empty()) {
        functions.push(name.to_string());
    }
    let pos = cur.position();
    let place = match (pos.line(), pos.position()) {
        (Some(line), Some(col)) => format!("{file}:{line}:{col}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file,
    };
    let what = explain(cur, limits);
    match functions.last() {
        Some(f) => format!("{place}: {what} (in fn {f})"),
        None => format!("{place}: {what}"),
    }
}

fn explain(err: &EvalAltResult, limits: &ScriptLimits) -> String {
    match err {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the script ran more than script.max_operations = {} operations (an endless loop?)",
            limits.max_operations
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "function calls nested deeper than script.max_call_depth = {} (runaway recursion?)",
            limits.max_call_depth
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => format!(
            "{what} is over the script limits (script.max_string_size = {}, max_array_size = {}, max_map_size = {})",
            limits.max_string_size, limits.max_array_size, limits.max_map_size
        ),
        EvalAltResult::ErrorRuntime(value, _) => {
            if let Some(ImportFailure(msg)) = value.clone().try_cast::<ImportFailure>() {
                msg
            } else if value.is_string() {
                value.to_string()
            } else {
                format!("runtime error: {value}")
            }
        }
        other => strip_position(&other.to_string()),
    }
}

/// Rhai appends ` (line L, position P)` to its messages; the location is already in front.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" (line ") {
        Some(i) if msg.ends_with(')') => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}
