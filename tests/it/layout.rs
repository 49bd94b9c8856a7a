//! The architecture as a test: every top-level module of `src/` has a rank, and a module may only
//! use modules of a lower rank. Data flows one way (commands → run → stages → train → script,
//! data → recipe → model → store), so there is no import circle between modules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::root;

/// The modules from the bottom up; each may use only the ones before it.
const ORDER: &[&str] = &[
    "interrupt",
    "progress",
    "rng",
    "threads",
    "error",
    "store",
    "grade",
    "model",
    "recipe",
    "data",
    "plot",
    "script",
    "train",
    "stages",
    "export",
    "run",
    "cli",
    "commands",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file's code names through `crate::`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

/// The top-level module a file under `src/` belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

#[test]
fn no_module_uses_a_module_above_it() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rank = |name: &str| ORDER.iter().position(|m| *m == name);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(mine) = rank(&module) else {
            wrong.push(format!(
                "{}: module `{module}` has no rank in ORDER",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        for used in uses(&code(&text)) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(theirs) if theirs < mine => {}
                Some(_) => wrong.push(format!(
                    "{}: `{module}` uses `{used}`, which sits above it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                None => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that go up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layout_check_sees_an_import_that_goes_up() {
    let code = code("use crate::run::Run;\nuse crate::{model, stages::sample};\n// crate::cli\n");
    let found = uses(&code);
    assert_eq!(
        found,
        ["model", "run", "stages"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn every_top_level_module_has_a_rank() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    for line in lib.lines() {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert!(
                ORDER.contains(&name),
                "src/lib.rs declares `{name}`, which ORDER lacks"
            );
        }
    }
}
