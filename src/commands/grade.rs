//! `trainer grade --grader NAME|FILE.rhai --input F.jsonl`: grades `{"response", "gold"}` lines and
//! prints one verdict per line and a summary.

use std::path::PathBuf;

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::cli::GradeArgs;
use crate::data::read_jsonl;
use crate::grade::{GradeSummary, Verdict};
use crate::recipe::HookSource;
use crate::script::{HookKind, ScriptHost, from_source};

#[derive(Serialize)]
struct GradeLine {
    line: usize,
    verdict: Verdict,
    answer: String,
}

#[derive(Serialize)]
struct ExampleView<'a> {
    id: String,
    gold: &'a str,
}

/// The grader a name or path stands for.
pub fn grader_source(grader: &str) -> HookSource {
    if grader.ends_with(".rhai") || grader.contains('/') {
        HookSource::File(PathBuf::from(grader))
    } else {
        HookSource::Plugin(grader.to_string())
    }
}

/// The `trainer grade` command.
pub fn grade(args: &GradeArgs) -> Result<()> {
    let source = grader_source(&args.grader);
    let anchor = match &source {
        HookSource::File(p) => Some(p.as_path()),
        HookSource::Plugin(_) => None,
    };
    let mut host = ScriptHost::new(&crate::recipe::defaults()?.script, anchor);
    let hook = from_source(&mut host, HookKind::Grade, &source)?;
    let mut summary = GradeSummary::default();
    let mut out = std::io::stdout().lock();
    for l in read_jsonl(&args.input)? {
        let response = l.string(&args.input, "response")?;
        let gold = l.string(&args.input, "gold")?;
        let example = ExampleView {
            id: format!("line {}", l.line),
            gold: &gold,
        };
        let g = host.call_grade(hook, &response, &example)?;
        summary.add(g.verdict);
        let line = GradeLine {
            line: l.line,
            verdict: g.verdict,
            answer: g.answer,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    Ok(())
}
