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

/// Every number in `text`, in order, with `$`, thousands commas and a trailing `.` removed;
/// `−` (U+2212) is a minus sign, `a/b` a fraction and `1e3` a power of ten.
fn numbers_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.replace('\u{2212}', "-").chars().collect();
    let digit_at = |i: usize| chars.get(i).is_some_and(|c| c.is_ascii_digit());
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = digit_at(i)
            || (chars[i] == '-'
                && digit_at(i + 1)
                && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()));
        if !starts_number {
            i += 1;
            continue;
        }
        let (number, next) = read_number(&chars, i);
        i = next;
        // `a/b`: a fraction of two integers.
        if chars.get(i) == Some(&'/') && digit_at(i + 1) && !number.contains('.') {
            let (den, next) = read_number(&chars, i + 1);
            if !den.contains('.') {
                i = next;
                if let (Ok(n), Ok(d)) = (number.parse::<f64>(), den.parse::<f64>())
                    && d != 0.0
                {
                    out.push(format!("{}", n / d));
                    continue;
                }
            }
        }
        // `1e3`, `2.5E-4`
        let sign = matches!(chars.get(i + 1), Some('-' | '+'));
        if matches!(chars.get(i), Some('e' | 'E')) && digit_at(i + 1 + usize::from(sign)) {
            let mut exp: String = chars[i + 1..i + 1 + usize::from(sign)].iter().collect();
            let mut j = i + 1 + usize::from(sign);
            while digit_at(j) {
                exp.push(chars[j]);
                j += 1;
            }
            if let Ok(v) = format!("{number}e{exp}").parse::<f64>()
                && v.is_finite()
            {
                i = j;
                out.push(clean_number(&format!("{v}")));
                continue;
            }
        }
        out.push(clean_number(&number));
    }
    out
}

/// The number starting at `i` (an optional `-`, digits with thousands commas, one decimal point)
/// and the index after it.
fn read_number(chars: &[char], mut i: usize) -> (String, usize) {
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
    (s, i)
}

/// `007` → `7`, `12.50` → `12.5`, `3.0` → `3`, `-0` → `0`; exact, whatever the number of digits.
fn clean_number(s: &str) -> String {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut out = String::new();
    if neg && (int != "0" || !frac.is_empty()) {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// True when `s` is an integer as [`clean_number`] writes it.
pub fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
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
    fn unicode_minus_fractions_powers_and_long_integers_are_read_whole() {
        assert_eq!(gsm8k_answer("#### \u{2212}5").as_deref(), Some("-5"));
        assert_eq!(gsm8k_answer("#### 1/2").as_deref(), Some("0.5"));
        assert_eq!(gsm8k_answer("#### 1e3").as_deref(), Some("1000"));
        assert_eq!(gsm8k_answer("#### 2.5E-2").as_deref(), Some("0.025"));
        assert_eq!(
            gsm8k_answer("#### 12345678901234567891").as_deref(),
            Some("12345678901234567891")
        );
        assert_eq!(gsm8k_answer("#### 007.50").as_deref(), Some("7.5"));
        assert_eq!(gsm8k_answer("3 eggs").as_deref(), Some("3"));
    }

    #[test]
    fn hyphen_inside_a_word_is_not_a_sign() {
        assert_eq!(gsm8k_answer("a 3-4 split gives 12").as_deref(), Some("12"));
        assert_eq!(numbers_in("x-3"), vec!["3"]);
    }
}
