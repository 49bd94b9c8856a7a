//! The one error type that decides the exit code: a user mistake (exit 2) versus everything else
//! (exit 1); an interrupted run exits 130.

use std::fmt;

/// A mistake in something the user gave us (recipe, script, data, model path, arguments).
///
/// It is wrapped in `anyhow::Error` like every other error; `main` looks for it anywhere in the
/// chain to choose exit code 2. The message names the file and line, the recipe key, or the script
/// function at fault.
#[derive(Debug)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Builds an `anyhow::Error` that carries a [`UserError`].
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(message.into()))
}

/// A number as messages show it: `1e300` rather than 301 digits.
pub fn show_number(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e9 || v.abs() < 1e-6) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Why `path` cannot be read as a file: "is a folder, not a file" or "no such file".
pub fn not_a_file(path: &std::path::Path) -> &'static str {
    if path.is_dir() {
        "is a folder, not a file"
    } else {
        "no such file"
    }
}

/// True when the error is a write to a closed pipe (`trainer grade … | head`): the reader has
/// all it wanted, so the command ends quietly with exit 0.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Exit code for an error: 130 when a signal stopped the run
/// ([`Interrupted`](crate::interrupt::Interrupted)), 2 when a [`UserError`] is anywhere in its
/// chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if crate::interrupt::find(err).is_some() {
        130
    } else if err.chain().any(|cause| cause.is::<UserError>()) {
        2
    } else {
        1
    }
}
