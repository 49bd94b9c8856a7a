//! Native answer extraction and equivalence (GSM8K, MATH, exact) and the verdicts they give,
//! shared by the grade plugins (through the script API), the grade and eval stages and
//! `trainer grade`.

mod gsm8k;
mod latex;
mod math;

pub use gsm8k::{gsm8k_answer, gsm8k_gold, is_integer_text, parse_number};
pub use math::{last_boxed, math_answer, math_equal, normalize_math};

use serde::{Deserialize, Serialize};

/// The verdict on one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Correct,
    /// An answer was extracted and it is not the gold one.
    Wrong,
    /// No answer could be extracted; counts as wrong for Pc/Pe, reported separately.
    Invalid,
}

/// A graded response: the verdict and the extracted answer (empty when none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub verdict: Verdict,
    pub answer: String,
}

impl Grade {
    pub fn is_correct(&self) -> bool {
        self.verdict == Verdict::Correct
    }
}

/// Counts of verdicts.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct GradeSummary {
    pub total: usize,
    pub correct: usize,
    pub wrong: usize,
    pub invalid: usize,
    pub accuracy: f64,
}

impl GradeSummary {
    pub fn add(&mut self, v: Verdict) {
        self.total += 1;
        match v {
            Verdict::Correct => self.correct += 1,
            Verdict::Wrong => self.wrong += 1,
            Verdict::Invalid => self.invalid += 1,
        }
        self.accuracy = self.correct as f64 / self.total as f64;
    }
}

/// Grades a GSM8K-style response against a gold number (or a gold solution ending `#### N`).
pub fn grade_gsm8k(response: &str, gold: &str) -> Grade {
    let gold = gsm8k_gold(gold);
    match gsm8k_answer(response) {
        None => Grade {
            verdict: Verdict::Invalid,
            answer: String::new(),
        },
        Some(answer) => {
            // Integers must be the same integer (1234567 is not 1234568); other numbers are
            // compared within numbers_close.
            let correct = if is_integer_text(&answer) && is_integer_text(&gold) {
                answer == gold
            } else {
                match (parse_number(&answer), parse_number(&gold)) {
                    (Some(a), Some(g)) => numbers_close(a, g),
                    _ => answer == gold,
                }
            };
            Grade {
                verdict: if correct {
                    Verdict::Correct
                } else {
                    Verdict::Wrong
                },
                answer,
            }
        }
    }
}

/// Grades a MATH-style response: the last `\boxed{}` against the gold answer.
pub fn grade_math(response: &str, gold: &str) -> Grade {
    match math_answer(response) {
        None => Grade {
            verdict: Verdict::Invalid,
            answer: String::new(),
        },
        Some(answer) => {
            let gold = last_boxed(gold).unwrap_or_else(|| gold.to_string());
            let correct = math_equal(&answer, &gold);
            Grade {
                verdict: if correct {
                    Verdict::Correct
                } else {
                    Verdict::Wrong
                },
                answer,
            }
        }
    }
}

/// Grades by exact match after trimming whitespace.
pub fn grade_exact(response: &str, gold: &str) -> Grade {
    let answer = response.trim().to_string();
    if answer.is_empty() {
        return Grade {
            verdict: Verdict::Invalid,
            answer,
        };
    }
    let correct = answer == gold.trim();
    Grade {
        verdict: if correct {
            Verdict::Correct
        } else {
            Verdict::Wrong
        },
        answer,
    }
}

/// Equal within 1e-6 relative (1e-6 absolute near zero).
pub fn numbers_close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}
