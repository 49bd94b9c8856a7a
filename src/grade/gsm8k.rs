//! GSM8K answers: the number after the last `####`, else the last number in the text.

/// The gold number of a GSM8K solution (`... #### 1,234` → `1234`); a bare answer is cleaned the same way.
pub fn gsm8k_gold(gold: &str) -> String {
    let tail = match gold.rfind("####") {
        Some(i) => &gold[i + 4..],
        None => gold,
    };
    numbers_in(tail)
        .into_iter()
        .next()
        .unwrap_or_else(|| tail.trim().to_string())
}

/// The answer a response gives: the first number after the last `####`, else its last number.
pub fn gsm8k_answer(response: &str) -> Option<String> {
    if let Some(i) = response.rfind("####")
        && let Some(first) = numbers_in(&response[i + 4..]).into_iter().next()
    {
        return Some(first);
    }
    numbers_in(response).pop()
}

/// Every number in `text`, in order, with `$`, thousands commas and a trailing `.` removed.
fn numbers_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '-'
                && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())
                && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()));
        if !starts_number {
            i += 1;
            continue;
        }
        let mut s = String::new();
        if chars[i] == '-' {
            s.push('-');
            i += 1;
        }
        while i < chars.len() {
            let c = chars[i];
            let next_digit = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
            if c.is_ascii_digit() {
                s.push(c);
            } else if c == ',' && next_digit && !s.contains('.') {
                // thousands separator
            } else if c == '.' && next_digit && !s.contains('.') {
                s.push(c);
            } else {
                break;
            }
            i += 1;
        }
        out.push(clean_number(&s));
    }
    out
}

/// `007` → `7`, `12.50` → `12.5`, `3.0` → `3`.
fn clean_number(s: &str) -> String {
    match parse_number(s) {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => format!("{v}"),
        None => s.to_string(),
    }
}

/// Parses a number written with optional `$`, commas, `%` and surrounding spaces.
pub fn parse_number(s: &str) -> Option<f64> {
    let cleaned: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, '$' | ',' | ' '))
        .collect();
    let cleaned = cleaned.trim_end_matches(['.', '%']);
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_marker_wins_over_later_numbers() {
        assert_eq!(
            gsm8k_answer("so 3+4=7\n#### 7\nthanks 2").as_deref(),
            Some("7")
        );
    }

    #[test]
    fn last_number_is_used_without_marker() {
        assert_eq!(
            gsm8k_answer("The total is $1,234.00.").as_deref(),
            Some("1234")
        );
        assert_eq!(
            gsm8k_answer("It drops to -5 degrees").as_deref(),
            Some("-5")
        );
        assert_eq!(gsm8k_answer("no digits here"), None);
    }

    #[test]
    fn gold_is_read_after_the_marker() {
        assert_eq!(gsm8k_gold("Natalia sold 48/2 = 24 clips.\n#### 72"), "72");
        assert_eq!(gsm8k_gold("#### 1,000"), "1000");
    }

    #[test]
    fn hyphen_inside_a_word_is_not_a_sign() {
        assert_eq!(gsm8k_answer("a 3-4 split gives 12").as_deref(), Some("12"));
        assert_eq!(numbers_in("x-3"), vec!["3"]);
    }
}
