//! `trainer grade` on the real datasets: every GSM8K gold answer given as a response is correct;
//! every MATH-500 gold answer is correct against itself in `\boxed{}` and a perturbed one is not.

use std::io::Write;

use crate::common::{shared, stdout, trainer};

fn grade_lines(grader: &str, lines: &[serde_json::Value]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    let out = trainer(
        &[
            "grade",
            "--grader",
            grader,
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), lines.len() + 1);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn gsm8k_grader_accepts_every_test_solution() {
    let Some(dir) = shared() else { return };
    let rows = records(&dir.join("data/gsm8k/test.jsonl"));
    let lines: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let answer = r["answer"].as_str().unwrap();
            let gold = answer.rsplit("####").next().unwrap().trim();
            serde_json::json!({"response": answer, "gold": gold})
        })
        .collect();
    let summary = grade_lines("gsm8k", &lines);
    assert_eq!(summary["correct"], 1319, "{summary}");
}

#[test]
fn math_grader_accepts_gold_answers_and_rejects_perturbed_ones() {
    let Some(dir) = shared() else { return };
    let rows = records(&dir.join("data/math500/test.jsonl"));
    let boxed = |r: &serde_json::Value, suffix: &str| {
        let a = r["answer"].as_str().unwrap();
        serde_json::json!({"response": format!("The answer is $\\boxed{{{a}{suffix}}}$."), "gold": a})
    };
    let same: Vec<_> = rows.iter().map(|r| boxed(r, "")).collect();
    assert_eq!(grade_lines("math", &same)["correct"], 500);
    let perturbed: Vec<_> = rows.iter().map(|r| boxed(r, "+1")).collect();
    let summary = grade_lines("math", &perturbed);
    assert_eq!(summary["correct"], 0, "{summary}");
    assert_eq!(summary["wrong"], 500, "{summary}");
    let solutions: Vec<_> = rows
        .iter()
        .map(|r| serde_json::json!({"response": r["solution"], "gold": r["answer"]}))
        .collect();
    assert_eq!(grade_lines("math", &solutions)["correct"], 500);
}

#[test]
fn grade_reports_malformed_input_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = crate::common::write(
        dir.path(),
        "bad.jsonl",
        "{\"response\": \"4\", \"gold\": \"4\"}\n{\"response\": 4\n",
    );
    let out = trainer(
        &[
            "grade",
            "--grader",
            "gsm8k",
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    crate::common::assert_user_error(&out, &["bad.jsonl:2:", "malformed JSON"]);
    let input = crate::common::write(dir.path(), "missing.jsonl", "{\"response\": \"4\"}\n");
    let out = trainer(
        &[
            "grade",
            "--grader",
            "gsm8k",
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    crate::common::assert_user_error(&out, &["missing.jsonl:1:", "missing field `gold`"]);
}

/// Every distinct kind of gold answer in MATH-500 (each gold below is quoted from its test set),
/// with forms a model writes that must be accepted and near misses that must be rejected.
const MATH_FORMATS: &[(&str, &[&str], &[&str])] = &[
    // integers and decimals
    (
        "18",
        &["18", "18.0", "\\$18", "18 \\text{ dollars}"],
        &["17", "180", "1.8"],
    ),
    (
        ".0000672",
        &["0.0000672", "6.72e-5", "6.72\\times10^{-5}"],
        &["0.000672"],
    ),
    (
        "\\$18.90",
        &["18.9", "18.90", "\\$18.90"],
        &["18.09", "1890"],
    ),
    // thousands separators
    (
        "10,\\!080",
        &["10080", "10,080", "10{,}080"],
        &["1008", "10,08"],
    ),
    (
        "11,\\! 111,\\! 111,\\! 100",
        &["11111111100", "11,111,111,100"],
        &["11111111101"],
    ),
    ("\\$32,\\!348", &["32348", "32,348"], &["32,349", "3,2348"]),
    ("58,500", &["58500"], &["58,5", "585"]),
    // fractions and mixed numbers
    (
        "\\frac43",
        &["\\frac{4}{3}", "4/3", "\\dfrac{4}{3}"],
        &["\\frac{3}{4}", "1.33"],
    ),
    ("\\frac 59", &["\\frac{5}{9}", "5/9"], &["\\frac{9}{5}"]),
    (
        "\\frac9{19}",
        &["\\frac{9}{19}", "9/19"],
        &["\\frac{19}{9}"],
    ),
    (
        "1\\frac{4}{5}",
        &["1.8", "\\frac{9}{5}", "9/5", "1\\frac45"],
        &["0.8", "\\frac{4}{5}"],
    ),
    (
        "137 \\frac{1}{2}",
        &["137.5", "\\frac{275}{2}"],
        &["68.5", "137"],
    ),
    // lists of solutions (any order) and sets
    (
        "3, 5, 7",
        &["3,5,7", "7, 5, 3", "3, 7, 5"],
        &["357", "3, 5", "3, 5, 8"],
    ),
    ("1,-2", &["-2, 1", "1, -2"], &["-21", "1", "12"]),
    ("-2,1", &["1,-2", "-2, 1"], &["-21", "-1"]),
    (
        "\\{1\\pm\\sqrt{5},-2\\}",
        &["\\{-2,1\\pm\\sqrt{5}\\}"],
        &["\\{1\\pm\\sqrt{5}\\}"],
    ),
    // tuples and intervals (ordered)
    ("(-2,1)", &["(-2, 1)"], &["(1,-2)", "[-2,1]"]),
    ("(6,31,-1)", &["(6, 31, -1)"], &["(6,31,1)"]),
    (
        "\\left( \\frac{3}{2}, -13 \\right)",
        &["(1.5, -13)", "(3/2,-13)"],
        &["(-13, 1.5)"],
    ),
    ("(3,4]", &["(3, 4]"], &["(3,4)", "[3,4]"]),
    ("(-\\infty, 0]", &["(-\\infty,0]"], &["(-\\infty,0)"]),
    ("x \\in [-2,7]", &["[-2,7]", "[-2, 7]"], &["(-2,7)"]),
    ("(0,9) \\cup (9,36)", &["(0,9)\\cup(9,36)"], &["(0,36)"]),
    // multiple choice, words
    (
        "\\text{(C)}",
        &["C", "(C)", "\\text{C}", "\\text{(C)}"],
        &["B", "(B)"],
    ),
    ("\\text{Evelyn}", &["Evelyn", "\\text{Evelyn}"], &["Navin"]),
    // degrees, units, percentages
    (
        "90^\\circ",
        &["90", "90^{\\circ}", "90^\\circ"],
        &["9", "180"],
    ),
    (
        "\\frac{270}7\\text{ degrees}",
        &["\\frac{270}{7}", "270/7"],
        &["\\frac{7}{270}"],
    ),
    (
        "864 \\mbox{ inches}^2",
        &["864", "864 \\text{ inches}^2"],
        &["865"],
    ),
    ("5.4 \\text{ cents}", &["5.4"], &["54"]),
    ("15\\mbox{ cm}^2", &["15"], &["16"]),
    // roots, pi, complex numbers, bases, expressions, equations, matrices
    (
        "3\\sqrt{13}",
        &["\\sqrt{117}", "3 \\sqrt{13}", "3\\cdot\\sqrt{13}"],
        &["\\sqrt{39}"],
    ),
    (
        "\\frac{\\sqrt{3}}{3}",
        &["\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt3}{3}"],
        &["\\sqrt{3}"],
    ),
    ("288 \\pi", &["288\\pi"], &["288"]),
    ("6 - 5i", &["6-5i"], &["6+5i"]),
    ("4210_{5}", &["4210_5"], &["4210_6", "4210"]),
    ("x^3+3x-6", &["x^3 + 3x - 6"], &["x^3+3x+6"]),
    ("y = 2x + 3", &["2x+3", "y=2x+3"], &["2x-3"]),
    (
        "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}",
        &["\\begin{pmatrix}-2\\\\-14\\\\-7\\end{pmatrix}"],
        &["\\begin{pmatrix}-2\\\\-14\\\\7\\end{pmatrix}"],
    ),
    // forms not in MATH-500's gold set that the issue names
    ("1{,}000", &["1000", "1,000"], &["100"]),
    ("0.0012", &["1.2e-3", "1.2E-3"], &["1.2e-4"]),
    (
        "12345678901234567891",
        &["12345678901234567891"],
        &["12345678901234567890"],
    ),
];

#[test]
fn math_grader_reads_every_gold_format_of_math500_and_the_forms_models_write() {
    let mut wrong = Vec::new();
    for (gold, accepted, rejected) in MATH_FORMATS {
        for a in *accepted {
            if !trainer::grade::math_equal(a, gold) {
                wrong.push(format!("gold {gold:?}: {a:?} should be accepted"));
            }
        }
        for r in *rejected {
            if trainer::grade::math_equal(r, gold) {
                wrong.push(format!("gold {gold:?}: {r:?} should be rejected"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_math_format_table_quotes_math500_gold_answers() {
    let Some(dir) = shared() else { return };
    let golds: Vec<String> = records(&dir.join("data/math500/test.jsonl"))
        .iter()
        .map(|r| r["answer"].as_str().unwrap().to_string())
        .collect();
    let quoted = MATH_FORMATS
        .iter()
        .filter(|(g, _, _)| golds.iter().any(|x| x == g))
        .count();
    assert!(
        quoted >= 35,
        "only {quoted} golds of the table are in MATH-500"
    );
}

#[test]
fn gsm8k_grader_reads_signs_fractions_powers_and_long_integers() {
    use trainer::grade::{Verdict, grade_gsm8k};
    for (response, gold, verdict) in [
        ("#### \u{2212}5", "-5", Verdict::Correct),
        ("#### \u{2212}5", "5", Verdict::Wrong),
        ("#### 1/2", "0.5", Verdict::Correct),
        ("#### 1/2", "1", Verdict::Wrong),
        ("#### 1e3", "1000", Verdict::Correct),
        ("#### 1e3", "1", Verdict::Wrong),
        (
            "#### 12345678901234567891",
            "12345678901234567890",
            Verdict::Wrong,
        ),
        (
            "#### 12345678901234567891",
            "12345678901234567891",
            Verdict::Correct,
        ),
        ("#### 1234567", "1234568", Verdict::Wrong),
        ("#### 1,234,567", "1234567", Verdict::Correct),
    ] {
        assert_eq!(
            grade_gsm8k(response, gold).verdict,
            verdict,
            "{response} vs {gold}"
        );
    }
}

#[test]
fn grade_piped_into_head_ends_quietly_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let line = "{\"response\": \"#### 4\", \"gold\": \"4\"}\n";
    let input = crate::common::write(dir.path(), "in.jsonl", &line.repeat(20_000));
    let script = format!(
        "'{}' grade --grader gsm8k --input '{}' | head -1; echo \"rc=${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_trainer"),
        input.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let (text, err) = (stdout(&out), crate::common::stderr(&out));
    assert!(text.contains("rc=0"), "{text}{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
