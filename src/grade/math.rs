//! MATH answers: the last `\boxed{}`, normalised (fractions, roots, units, `\text{}`, spaces,
//! trailing `.0`), compared as strings, element-wise for tuples and intervals, and numerically
//! (through [`eval_latex`]).

use super::latex::eval_latex;
use super::{is_integer_text, numbers_close};

/// The contents of the last `\boxed{…}` (or `\fbox{…}`, or `\boxed 5`), braces matched.
pub fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|tag| text.rfind(tag).map(|i| i + tag.len()))
        .max()?;
    let rest = &text[start..];
    let trimmed = rest.trim_start();
    if let Some(body) = trimmed.strip_prefix('{') {
        let mut depth = 1usize;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(body[..i].trim().to_string());
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    if rest.starts_with(' ') {
        let word: String = trimmed
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '$')
            .collect();
        return (!word.is_empty()).then_some(word);
    }
    None
}

/// The answer a MATH response gives: its last `\boxed{}`.
pub fn math_answer(response: &str) -> Option<String> {
    last_boxed(response).filter(|a| !a.is_empty())
}

/// True when two MATH answers are the same after normalisation, element-wise (tuples and
/// intervals in order, bare lists and `\{…\}` sets in any order), or numerically; two integers
/// only when they are the same integer.
pub fn math_equal(a: &str, b: &str) -> bool {
    let (na, nb) = (normalize_math(a), normalize_math(b));
    if na == nb {
        return true;
    }
    if is_integer_text(&na) && is_integer_text(&nb) {
        return false;
    }
    if let (Some(ta), Some(tb)) = (split_tuple(&na), split_tuple(&nb)) {
        return ta.0 == tb.0
            && ta.2 == tb.2
            && ta.1.len() == tb.1.len()
            && ta.1.iter().zip(&tb.1).all(|(x, y)| math_equal(x, y));
    }
    if let (Some(la), Some(lb)) = (split_list(&na), split_list(&nb)) {
        return same_elements(&la, &lb);
    }
    match (eval_latex(&na), eval_latex(&nb)) {
        (Some(x), Some(y)) => numbers_close(x, y),
        _ => false,
    }
}

/// Each element of `a` equals a different element of `b` (a list of solutions in any order).
fn same_elements(a: &[String], b: &[String]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let found = (0..b.len()).find(|&j| !used[j] && math_equal(x, &b[j]));
        found.map(|j| used[j] = true).is_some()
    })
}

/// The elements of a bare list (`3,5,7`) or a set (`\{1,-2\}`), split at top-level commas.
fn split_list(s: &str) -> Option<Vec<String>> {
    let inner = s
        .strip_prefix("\\{")
        .and_then(|t| t.strip_suffix("\\}"))
        .unwrap_or(s);
    if inner.len() == s.len() && matches!(s.chars().next(), Some('(' | '[')) {
        return None; // a tuple or an interval: ordered, see split_tuple
    }
    let parts = top_level_split(inner);
    (parts.len() > 1).then_some(parts)
}

/// `inner` split at commas outside every bracket.
fn top_level_split(inner: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(inner[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(inner[start..].to_string());
    parts
}

/// Canonical text of an answer.
pub fn normalize_math(answer: &str) -> String {
    let mut s = answer.trim().replace('\n', "");
    for (from, to) in [
        ("{,}", ","),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\displaystyle", ""),
    ] {
        s = s.replace(from, to);
    }
    s = strip_text_blocks(&s);
    for sep in ["=", "\\in"] {
        if let Some((lhs, rhs)) = s.split_once(sep)
            && lhs.trim().chars().count() <= 2
            && !rhs.contains(sep)
        {
            s = rhs.to_string();
        }
    }
    s.retain(|c| !c.is_whitespace());
    s = fix_sqrt(&s);
    s = fix_frac(&s);
    s = slash_to_frac(&s);
    s = mixed_number(&s);
    s = base_subscript(&s);
    s = choice_letter(&s);
    s = tidy_number(&s);
    s
}

/// Mixed numbers, `1\frac{4}{5}` → `\frac{9}{5}`, wherever a whole number that follows no digit,
/// letter, `}`, `^` or `_` stands right before a `\frac` of two integers (MATH writes mixed
/// numbers so; a product would be `1\cdot\frac{4}{5}`).
fn mixed_number(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\frac{") {
        let before = &rest[..i];
        let whole_start = before
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |j| j + 1);
        let whole = &before[whole_start..];
        let prev = before[..whole_start].chars().last();
        let free = !prev.is_some_and(|c| c.is_alphanumeric() || matches!(c, '}' | '^' | '_' | '.'));
        match (
            free && !whole.is_empty() && whole.len() <= 18,
            fraction_at(&rest[i + 6..]),
        ) {
            (true, Some((num, den, len))) => {
                let w: u128 = whole.parse().unwrap_or(0);
                out.push_str(&before[..whole_start]);
                out.push_str(&format!("\\frac{{{}}}{{{den}}}", w * den + num));
                rest = &rest[i + 6 + len..];
            }
            _ => {
                out.push_str(&rest[..i + 6]);
                rest = &rest[i + 6..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `4}{5}…` → (4, 5, bytes read): the integer numerator and denominator of a `\frac{` body.
fn fraction_at(body: &str) -> Option<(u128, u128, usize)> {
    let (num, rest) = body.split_once("}{")?;
    let (den, _) = rest.split_once('}')?;
    let digits = |t: &str| !t.is_empty() && t.len() <= 18 && t.chars().all(|c| c.is_ascii_digit());
    if !(digits(num) && digits(den)) {
        return None;
    }
    let (n, d): (u128, u128) = (num.parse().ok()?, den.parse().ok()?);
    (d > 0).then_some((n, d, num.len() + 2 + den.len() + 1))
}

/// `4210_{5}` → `4210_5`.
fn base_subscript(s: &str) -> String {
    match s.split_once("_{") {
        Some((digits, rest)) => match rest.strip_suffix('}') {
            Some(base) if base.chars().all(|c| c.is_ascii_digit()) => format!("{digits}_{base}"),
            _ => s.to_string(),
        },
        None => s.to_string(),
    }
}

/// A multiple-choice answer `(C)` → `C`.
fn choice_letter(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() == 3 && b[0] == b'(' && b[2] == b')' && b[1].is_ascii_uppercase() {
        return (b[1] as char).to_string();
    }
    s.to_string()
}

/// Drops a trailing unit in `\text{…}` and unwraps the other `\text{…}` / `\mbox{…}` blocks.
fn strip_text_blocks(s: &str) -> String {
    let mut s = s.trim().to_string();
    // A trailing unit, possibly squared or cubed: `5 \text{ cm}`, `864 \mbox{ inches}^2`.
    for tag in ["\\text{", "\\mbox{"] {
        let Some(i) = s.rfind(tag) else { continue };
        let Some(end) = matching_brace(&s, i + tag.len()) else {
            continue;
        };
        let after = s[end + 1..].trim();
        if !s[..i].trim().is_empty()
            && s[i..=end].matches('{').count() == 1
            && ["", "^2", "^3", "^{2}", "^{3}"].contains(&after)
        {
            s.truncate(i);
        }
    }
    for tag in ["\\textbf{", "\\text{", "\\mbox{", "\\mathrm{"] {
        while let Some(i) = s.find(tag) {
            let body_start = i + tag.len();
            let Some(end) = matching_brace(&s, body_start) else {
                break;
            };
            let inner = s[body_start..end].to_string();
            s.replace_range(i..=end, &inner);
        }
    }
    s.trim().to_string()
}

/// Index of the `}` closing a group whose body starts at `start` (just after its `{`).
fn matching_brace(s: &str, start: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c) in s[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `\sqrt3` → `\sqrt{3}`.
fn fix_sqrt(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\sqrt") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        if let Some(c) = rest.chars().next()
            && c != '{'
            && c != '['
        {
            out.push('{');
            out.push(c);
            out.push('}');
            rest = &rest[c.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// `\frac12` → `\frac{1}{2}`, `\frac1{2}` → `\frac{1}{2}`.
fn fix_frac(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\frac") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        for _ in 0..2 {
            match rest.chars().next() {
                Some('{') => {
                    let end = matching_brace(rest, 1).unwrap_or(rest.len() - 1);
                    out.push_str(&rest[..=end]);
                    rest = &rest[end + 1..];
                }
                Some(c) => {
                    out.push('{');
                    out.push(c);
                    out.push('}');
                    rest = &rest[c.len_utf8()..];
                }
                None => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// `3/4` (two integers) → `\frac{3}{4}`.
fn slash_to_frac(s: &str) -> String {
    if let Some((a, b)) = s.split_once('/') {
        let int = |t: &str| {
            !t.is_empty()
                && t.trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit())
        };
        if int(a) && int(b) {
            return format!("\\frac{{{a}}}{{{b}}}");
        }
    }
    s.to_string()
}

/// `1,000` → `1000` (only with groups of three digits: `3,5,7` is a list), `.5` → `0.5`,
/// `5.00` → `5`, `1.2e-3` → `0.0012`.
fn tidy_number(s: &str) -> String {
    let t = if thousands_grouped(s) {
        s.replace(',', "")
    } else {
        s.to_string()
    };
    if let Some(v) = scientific(&t) {
        return format!("{v}");
    }
    let is_number = !t.is_empty()
        && t.parse::<f64>().is_ok()
        && t.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    if !is_number {
        return s.to_string();
    }
    let mut t = t;
    if t.starts_with('.') {
        t.insert(0, '0');
    } else if t.starts_with("-.") {
        t.insert(1, '0');
    }
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    t
}

/// `12,345` or `-1,000.5`: digits in comma-separated groups of three after the first.
fn thousands_grouped(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let int = body.split_once('.').map_or(body, |(i, _)| i);
    let groups: Vec<&str> = int.split(',').collect();
    groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3)
        && body[int.len()..]
            .strip_prefix('.')
            .is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

/// `1.2e-3`, `3E5`: a decimal mantissa, `e`, an integer exponent.
fn scientific(s: &str) -> Option<f64> {
    let (mantissa, exp) = s.split_once(['e', 'E'])?;
    let m = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let e = exp.strip_prefix(['-', '+']).unwrap_or(exp);
    let ok = !m.is_empty()
        && m.chars().all(|c| c.is_ascii_digit() || c == '.')
        && m.chars().any(|c| c.is_ascii_digit())
        && !e.is_empty()
        && e.chars().all(|c| c.is_ascii_digit());
    if !ok {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `(a,b)` / `[a,b)` / `\{a,b\}` → (open, parts, close) when there is a top-level comma.
fn split_tuple(s: &str) -> Option<(char, Vec<String>, char)> {
    let open = s.chars().next()?;
    let close = s.chars().last()?;
    if !matches!(open, '(' | '[') || !matches!(close, ')' | ']') || s.len() < 2 {
        return None;
    }
    let parts = top_level_split(&s[1..s.len() - 1]);
    (parts.len() > 1).then_some((open, parts, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_contents_keep_nested_braces() {
        assert_eq!(
            last_boxed("so \\boxed{\\frac{1}{2}} and \\boxed{3}").as_deref(),
            Some("3")
        );
        assert_eq!(
            last_boxed("\\boxed{\\frac{1}{2}}").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(last_boxed("\\boxed 5$").as_deref(), Some("5"));
        assert_eq!(last_boxed("no box"), None);
    }

    #[test]
    fn equivalent_forms_are_equal() {
        for (a, b) in [
            ("\\dfrac{1}{2}", "0.5"),
            ("1/2", "\\frac12"),
            ("5.0", "5"),
            ("10\\%", "10"),
            ("x = 3", "3"),
            ("2\\sqrt{3}", "\\sqrt{12}"),
            ("(1, 2)", "(1,2)"),
            ("1,000", "1000"),
            ("90^\\circ", "90"),
            ("5 \\text{ cm}", "5"),
            ("\\text{(B)}", "(B)"),
            ("[0,\\infty)", "[0, \\infty)"),
        ] {
            assert!(math_equal(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn different_answers_are_not_equal() {
        for (a, b) in [
            ("\\frac{1}{3}", "0.33"),
            ("(1,2)", "[1,2]"),
            ("3", "4"),
            ("(1,2)", "(2,1)"),
        ] {
            assert!(!math_equal(a, b), "{a} vs {b}");
        }
    }
}
