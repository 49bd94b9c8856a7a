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
    "stats",
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

/// The module path of a file under `src/` (`stages/sample/local.rs` → `[stages, sample, local]`;
/// a `mod.rs` names its folder) and whether it is a `mod.rs`.
fn module_path(src: &Path, file: &Path) -> (Vec<String>, bool) {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    let is_mod = parts.last().is_some_and(|p| p == "mod");
    if is_mod {
        parts.pop();
    }
    (parts, is_mod)
}

/// The paths a file's code names through `crate::` and `super::` (one level of `{…}` expanded),
/// as absolute module paths; `own` is the file's module path.
fn named_paths(code: &str, own: &[String]) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        let path: String = s
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        path.split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut out = Vec::new();
    for (start, base) in [("crate::", Vec::new()), ("super::", Vec::from(own))] {
        for (i, _) in code.match_indices(start) {
            if start == "super::" && i >= 7 && &code.as_bytes()[i - 7..i] == b"super::" {
                continue; // counted with the first `super::`
            }
            let mut base = base.clone();
            let mut rest = &code[i..];
            if start == "super::" {
                rest = &rest["super::".len()..];
                while let Some(r) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = r;
                }
                base.pop();
            } else {
                rest = &rest["crate::".len()..];
            }
            let head = ident(rest);
            let after = &rest[rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len())..];
            let mut prefix = base.clone();
            prefix.extend(head);
            match after.strip_prefix('{') {
                Some(group) => {
                    let inner = &group[..group.find('}').unwrap_or(group.len())];
                    for item in inner.split(',') {
                        let mut p = prefix.clone();
                        p.extend(ident(item.trim()));
                        out.push(p);
                    }
                }
                None => out.push(prefix),
            }
        }
    }
    out
}

#[test]
fn no_two_files_import_each_other_even_through_others() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    // Nodes: every file but `mod.rs`, `lib.rs` and `main.rs` (a folder's mod.rs is its interface).
    let mut nodes: Vec<Vec<String>> = Vec::new();
    let mut edges: Vec<BTreeSet<usize>> = Vec::new();
    let mut texts = Vec::new();
    for file in &files {
        let (path, is_mod) = module_path(&src, file);
        if !is_mod && module_of(&src, file).is_some() {
            nodes.push(path.clone());
        }
        texts.push((
            path,
            is_mod,
            std::fs::read_to_string(file).expect("a source file"),
        ));
    }
    let node_of = |path: &[String]| -> Option<usize> {
        (1..=path.len())
            .rev()
            .find_map(|n| nodes.iter().position(|node| node.as_slice() == &path[..n]))
    };
    for (path, is_mod, text) in &texts {
        if *is_mod || path.len() <= 1 && ["lib", "main"].contains(&path[0].as_str()) {
            continue;
        }
        let Some(me) = node_of(path) else { continue };
        let mut out = BTreeSet::new();
        for named in named_paths(&code(text), path) {
            if let Some(n) = node_of(&named)
                && n != me
            {
                out.insert(n);
            }
        }
        while edges.len() <= me {
            edges.push(BTreeSet::new());
        }
        edges[me] = out;
    }
    edges.resize(nodes.len(), BTreeSet::new());
    // Depth-first search for a back edge.
    let mut state = vec![0u8; nodes.len()]; // 0 new, 1 on the stack, 2 done
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        n: usize,
        edges: &[BTreeSet<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        stack.push(n);
        for &m in &edges[n] {
            if state[m] == 1 {
                let from = stack.iter().position(|&s| s == m).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(m);
                return Some(cycle);
            }
            if state[m] == 0
                && let Some(c) = visit(m, edges, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[n] = 2;
        None
    }
    for n in 0..nodes.len() {
        if state[n] == 0
            && let Some(cycle) = visit(n, &edges, &mut state, &mut stack)
        {
            let names: Vec<String> = cycle.iter().map(|&i| nodes[i].join("/")).collect();
            panic!("an import circle between files: {}", names.join(" -> "));
        }
    }
    assert!(nodes.len() > 100, "only {} files seen", nodes.len());
}

#[test]
fn the_file_check_resolves_super_and_crate_paths() {
    let own: Vec<String> = ["stages", "sample", "local"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let found = named_paths(
        "use super::server::client::Client;\nuse crate::store::{batches::Resumable, hash};\nuse super::super::pair::X;",
        &own,
    );
    let joined: Vec<String> = found.iter().map(|p| p.join("/")).collect();
    assert_eq!(
        joined,
        [
            "store/batches/Resumable",
            "store/hash",
            "stages/sample/server/client/Client",
            "stages/pair/X",
        ]
    );
}
