//! Numeric values of simple LaTeX answers (`\frac{1}{2}`, `2\sqrt{3}`, `\pi/4`): a small
//! recursive-descent parser, so that the MATH grader can compare answers written in different
//! forms by value.

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
    fn latex_arithmetic_evaluates_to_its_value() {
        let close = |s: &str, v: f64| {
            let got = eval_latex(s).unwrap_or(f64::NAN);
            assert!((got - v).abs() < 1e-12, "{s}: {got} vs {v}");
        };
        close(r"\frac{1}{2}", 0.5);
        close(r"2\sqrt{3}", 2.0 * 3f64.sqrt());
        close(r"\sqrt[3]{8}", 2.0);
        close(r"(1+2)\cdot3^2", 27.0);
        close(r"\pi/4", std::f64::consts::FRAC_PI_4);
        assert_eq!(eval_latex("1/0"), None, "not finite");
        assert_eq!(eval_latex("2x"), None, "a variable is not arithmetic");
    }
}
