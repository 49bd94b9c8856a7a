//! MATH answers: the last `\boxed{}`, normalised (fractions, roots, units, `\text{}`, spaces,
//! trailing `.0`), compared as strings, element-wise for tuples and intervals, and numerically.

use super::numbers_close;

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

/// True when two MATH answers are the same after normalisation, element-wise, or numerically.
pub fn math_equal(a: &str, b: &str) -> bool {
    let (na, nb) = (normalize_math(a), normalize_math(b));
    if na == nb {
        return true;
    }
    if let (Some(ta), Some(tb)) = (split_tuple(&na), split_tuple(&nb)) {
        return ta.0 == tb.0
            && ta.2 == tb.2
            && ta.1.len() == tb.1.len()
            && ta.1.iter().zip(&tb.1).all(|(x, y)| math_equal(x, y));
    }
    match (eval_latex(&na), eval_latex(&nb)) {
        (Some(x), Some(y)) => numbers_close(x, y),
        _ => false,
    }
}

/// Canonical text of an answer.
pub fn normalize_math(answer: &str) -> String {
    let mut s = answer.trim().replace('\n', "");
    for (from, to) in [
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
    if let Some((lhs, rhs)) = s.split_once('=')
        && lhs.trim().chars().count() <= 2
        && !rhs.contains('=')
    {
        s = rhs.to_string();
    }
    s.retain(|c| !c.is_whitespace());
    s = fix_sqrt(&s);
    s = fix_frac(&s);
    s = slash_to_frac(&s);
    s = tidy_number(&s);
    s
}

/// Drops a trailing unit in `\text{…}` and unwraps the other `\text{…}` / `\mbox{…}` blocks.
fn strip_text_blocks(s: &str) -> String {
    let mut s = s.trim().to_string();
    if let Some(i) = s.rfind("\\text{")
        && s.ends_with('}')
        && !s[..i].trim().is_empty()
        && s[i..].matches('{').count() == 1
    {
        s.truncate(i);
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

/// `1,000` → `1000`, `.5` → `0.5`, `5.00` → `5`.
fn tidy_number(s: &str) -> String {
    let no_commas: String = s.chars().filter(|c| *c != ',').collect();
    let is_number = !no_commas.is_empty()
        && no_commas.parse::<f64>().is_ok()
        && no_commas
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    if !is_number {
        return s.to_string();
    }
    let mut t = no_commas;
    if t.starts_with('.') {
        t.insert(0, '0');
    }
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    t
}

/// `(a,b)` / `[a,b)` / `\{a,b\}` → (open, parts, close) when there is a top-level comma.
fn split_tuple(s: &str) -> Option<(char, Vec<String>, char)> {
    let open = s.chars().next()?;
    let close = s.chars().last()?;
    if !matches!(open, '(' | '[') || !matches!(close, ')' | ']') || s.len() < 2 {
        return None;
    }
    let inner = &s[1..s.len() - 1];
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
    (parts.len() > 1).then_some((open, parts, close))
}

/// Evaluates simple LaTeX arithmetic: numbers, `+ - * /`, `^`, parentheses and braces,
/// `\frac`, `\sqrt`, `\sqrt[n]`, `\pi`, `\cdot`, `\times`, implicit products (`2\sqrt{3}`).
pub fn eval_latex(s: &str) -> Option<f64> {
    let mut p = Parser {
        s: s.as_bytes(),
        i: 0,
    };
    let v = p.expr()?;
    (p.i == p.s.len() && v.is_finite()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, text: &str) -> bool {
        if self.s[self.i..].starts_with(text.as_bytes()) {
            self.i += text.len();
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<f64> {
        let mut v = self.term()?;
        loop {
            if self.eat("+") {
                v += self.term()?;
            } else if self.eat("-") {
                v -= self.term()?;
            } else {
                return Some(v);
            }
        }
    }

    fn term(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        loop {
            if self.eat("*") || self.eat("\\cdot") || self.eat("\\times") {
                v *= self.unary()?;
            } else if self.eat("/") {
                v /= self.unary()?;
            } else if matches!(self.peek(), Some(b'(' | b'{' | b'\\' | b'0'..=b'9'))
                && !self.at_closer()
            {
                v *= self.power()?;
            } else {
                return Some(v);
            }
        }
    }

    fn at_closer(&self) -> bool {
        self.s[self.i..].starts_with(b"\\right") || self.s[self.i..].starts_with(b"\\}")
    }

    fn unary(&mut self) -> Option<f64> {
        if self.eat("-") {
            return Some(-self.unary()?);
        }
        if self.eat("+") {
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if self.eat("^") {
            let exp = self.atom_or_digit()?;
            return Some(base.powf(exp));
        }
        Some(base)
    }

    fn atom_or_digit(&mut self) -> Option<f64> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                self.i += 1;
                Some(f64::from(c - b'0'))
            }
            _ => self.atom(),
        }
    }

    fn group(&mut self) -> Option<f64> {
        if !self.eat("{") {
            return None;
        }
        let v = self.expr()?;
        self.eat("}").then_some(v)
    }

    fn atom(&mut self) -> Option<f64> {
        if self.eat("(") {
            let v = self.expr()?;
            return self.eat(")").then_some(v);
        }
        if self.peek() == Some(b'{') {
            return self.group();
        }
        if self.eat("\\frac") {
            let num = self.group()?;
            let den = self.group()?;
            return Some(num / den);
        }
        if self.eat("\\sqrt") {
            let mut root = 2.0;
            if self.eat("[") {
                root = self.expr()?;
                if !self.eat("]") {
                    return None;
                }
            }
            return Some(self.group()?.powf(1.0 / root));
        }
        if self.eat("\\pi") {
            return Some(std::f64::consts::PI);
        }
        self.number()
    }

    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.')) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }
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
