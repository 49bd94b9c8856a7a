//! The built-in arithmetic world: seeded word problems with integer answers in five difficulty
//! levels, each with a worked step-by-step solution ending `#### N`. A problem's split (train or
//! eval) is decided by a hash of its question, so no eval question is ever a training question;
//! the arithmetic facts themselves (8 + 6) recur on both sides, as they do in GSM8K.

use std::collections::HashSet;

use serde::Serialize;

use crate::rng::{self, Rng};

const NAMES: [&str; 10] = [
    "Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jo",
];
const ITEMS: [&str; 8] = [
    "apples", "pens", "cards", "books", "eggs", "coins", "shells", "stamps",
];

/// The generator's version: part of every cache key built from generated problems, so that a
/// change to the levels never reuses data or a warm-started model made by the old generator.
pub const GENERATOR_VERSION: u32 = 2;

/// Which side of the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Eval,
}

/// One generated problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArithProblem {
    pub level: u8,
    pub question: String,
    /// The worked solution, ending `#### N`.
    pub answer: String,
    pub value: i64,
}

/// The split a question belongs to: one in seven goes to eval.
pub fn split_of(question: &str) -> Split {
    if rng::hash_str(question).is_multiple_of(7) {
        Split::Eval
    } else {
        Split::Train
    }
}

fn step(a: i64, op: char, b: i64) -> (i64, String) {
    let v = match op {
        '+' => a + b,
        '-' => a - b,
        _ => a * b,
    };
    (v, format!("{a} {op} {b} = {v}"))
}

fn finish(level: u8, question: String, steps: Vec<String>, value: i64) -> ArithProblem {
    let mut answer = steps.join("\n");
    answer.push_str(&format!("\n#### {value}"));
    ArithProblem {
        level,
        question,
        answer,
        value,
    }
}

/// One problem of `level` (1–5): single-digit addition; subtraction back to a single digit;
/// two-digit plus one-digit (carries); two steps of addition and subtraction; a product plus a
/// remainder (two steps with multiplication).
pub fn problem(level: u8, rng: &mut Rng) -> ArithProblem {
    let name = NAMES[rng.below(NAMES.len() as u64) as usize];
    let item = ITEMS[rng.below(ITEMS.len() as u64) as usize];
    let mut int = |lo: i64, hi: i64| lo + rng.below((hi - lo + 1) as u64) as i64;
    match level {
        1 => {
            let (a, b) = (int(1, 9), int(1, 9));
            let (v, s) = step(a, '+', b);
            let q = format!("{name} has {a} {item} and gets {b} more. How many {item} now?");
            finish(1, q, vec![s], v)
        }
        2 => {
            let (b, v) = (int(1, 9), int(1, 9));
            let (v, s) = step(b + v, '-', b);
            let q = format!(
                "{name} has {} {item} and gives away {b}. How many {item} are left?",
                v + b
            );
            finish(2, q, vec![s], v)
        }
        3 => {
            let (a, b) = (int(10, 89), int(1, 9));
            let (v, s) = step(a, '+', b);
            let q = format!(
                "A box holds {a} {item}. {name} puts in {b} more. How many {item} are in the box?"
            );
            finish(3, q, vec![s], v)
        }
        4 => {
            let (a, b) = (int(1, 9), int(1, 9));
            let c = int(1, a + b);
            let (p, s1) = step(a, '+', b);
            let (v, s2) = step(p, '-', c);
            let q = format!(
                "{name} has {a} {item}, gets {b} more, then loses {c}. How many {item} now?"
            );
            finish(4, q, vec![s1, s2], v)
        }
        _ => {
            let (a, b, c) = (int(2, 9), int(2, 9), int(1, 9));
            let (p, s1) = step(a, '*', b);
            let (v, s2) = step(p, '+', c);
            let q = format!(
                "{name} has {a} bags of {b} {item} and {c} loose {item}. How many {item} in total?"
            );
            finish(5, q, vec![s1, s2], v)
        }
    }
}

/// `n` distinct problems of `split`, levels cycling 1..=5, drawn from a generator seeded by
/// (`seed`, split).
pub fn generate(n: usize, split: Split, seed: u64) -> Vec<ArithProblem> {
    let tag = match split {
        Split::Train => "arith-train",
        Split::Eval => "arith-eval",
    };
    let mut rng = Rng::derived(seed, &[rng::hash_str(tag)]);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut level = 0u8;
    let mut attempts = 0usize;
    while out.len() < n && attempts < n * 1000 + 10_000 {
        attempts += 1;
        let p = problem(level % 5 + 1, &mut rng);
        if split_of(&p.question) != split || !seen.insert(p.question.clone()) {
            continue;
        }
        level = level.wrapping_add(1);
        out.push(p);
    }
    out
}

/// About `n` distinct problems of `split` with the levels in the proportions of `mix` (level 1
/// first; a level's count is its share of `n`, rounded), each level drawn from its own generator
/// seeded by (`seed`, split, level), interleaved level by level. Equal shares give exactly
/// [`generate`]'s problems, so the default warm start is the one it always was.
pub fn generate_mix(n: usize, mix: &[f64; 5], split: Split, seed: u64) -> Vec<ArithProblem> {
    if mix.iter().all(|w| *w == mix[0]) {
        return generate(n, split, seed);
    }
    let total: f64 = mix.iter().sum();
    let tag = rng::hash_str(match split {
        Split::Train => "arith-train-mix",
        Split::Eval => "arith-eval-mix",
    });
    let per_level: Vec<Vec<ArithProblem>> = (1..=5u8)
        .map(|level| {
            let want = (n as f64 * mix[level as usize - 1] / total).round() as usize;
            let mut rng = Rng::derived(seed, &[tag, u64::from(level)]);
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(want);
            for _ in 0..want * 1000 + 10_000 {
                if out.len() == want {
                    break;
                }
                let p = problem(level, &mut rng);
                if split_of(&p.question) == split && seen.insert(p.question.clone()) {
                    out.push(p);
                }
            }
            out
        })
        .collect();
    let longest = per_level.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| per_level.iter().filter_map(move |l| l.get(i).cloned()))
        .collect()
}

/// The problems as GSM8K-format JSONL (`question`, `answer`).
pub fn to_jsonl(problems: &[ArithProblem]) -> String {
    let mut out = String::new();
    for p in problems {
        out.push_str(
            &serde_json::json!({"question": p.question, "answer": p.answer, "level": p.level})
                .to_string(),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::{grade_gsm8k, gsm8k_gold};

    #[test]
    fn every_answer_is_the_value_of_its_steps() {
        for p in generate(500, Split::Train, 3) {
            let gold = gsm8k_gold(&p.answer);
            assert_eq!(gold, p.value.to_string(), "{}", p.answer);
            assert!(grade_gsm8k(&p.answer, &gold).is_correct());
            for line in p.answer.lines().filter(|l| l.contains('=')) {
                let (lhs, rhs) = line.split_once(" = ").unwrap();
                let parts: Vec<&str> = lhs.split(' ').collect();
                let (a, b): (i64, i64) = (parts[0].parse().unwrap(), parts[2].parse().unwrap());
                let expect = match parts[1] {
                    "+" => a + b,
                    "-" => a - b,
                    _ => a * b,
                };
                assert_eq!(rhs.parse::<i64>().unwrap(), expect, "{line}");
            }
            assert!(p.value >= 0);
        }
    }

    #[test]
    fn splits_are_disjoint_and_generation_is_seeded() {
        let train = generate(800, Split::Train, 1);
        let eval = generate(200, Split::Eval, 1);
        let train_questions: HashSet<&str> = train.iter().map(|p| p.question.as_str()).collect();
        assert!(
            eval.iter()
                .all(|p| !train_questions.contains(p.question.as_str()))
        );
        assert!(eval.iter().all(|p| split_of(&p.question) == Split::Eval));
        assert_eq!(generate(50, Split::Train, 1), train[..50].to_vec());
        assert_ne!(generate(50, Split::Train, 2), train[..50].to_vec());
        assert_eq!(eval.len(), 200);
    }

    #[test]
    fn a_level_mix_sets_the_share_of_each_level() {
        let mix = [4.0, 3.0, 2.0, 1.0, 0.0];
        let problems = generate_mix(1000, &mix, Split::Train, 5);
        let count = |l: u8| problems.iter().filter(|p| p.level == l).count();
        assert_eq!(
            [count(1), count(2), count(3), count(4), count(5)],
            [400, 300, 200, 100, 0]
        );
        assert!(
            problems
                .iter()
                .all(|p| split_of(&p.question) == Split::Train)
        );
        let distinct: HashSet<&str> = problems.iter().map(|p| p.question.as_str()).collect();
        assert_eq!(distinct.len(), problems.len());
        assert_eq!(problems, generate_mix(1000, &mix, Split::Train, 5));
        assert_eq!(
            generate_mix(100, &[2.0; 5], Split::Train, 5),
            generate(100, Split::Train, 5),
            "equal shares are the plain generator"
        );
    }

    #[test]
    fn all_five_levels_appear() {
        let levels: HashSet<u8> = generate(20, Split::Train, 9)
            .iter()
            .map(|p| p.level)
            .collect();
        assert_eq!(levels.len(), 5);
    }
}
