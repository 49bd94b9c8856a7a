//! Line charts, bar charts and histograms on a [`Canvas`].

use super::canvas::{BLACK, Canvas, DARK_GREY, GREY, PALETTE, Rgb};
use super::font;

const W: usize = 900;
const H: usize = 520;
const LEFT: i64 = 100;
const RIGHT: i64 = 30;
const TOP: i64 = 60;
const BOTTOM: i64 = 80;

/// A named line.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A bar with an optional error bar from `interval.0` to `interval.1`.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

impl Bar {
    fn top(&self) -> f64 {
        self.interval
            .map_or(self.value, |(_, hi)| hi.max(self.value))
    }

    fn bottom(&self) -> f64 {
        self.interval
            .map_or(self.value, |(lo, _)| lo.min(self.value))
    }
}

/// "Nice" tick positions covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect()
}

fn label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn px(&self, x: f64) -> i64 {
        LEFT + ((x - self.x0) / (self.x1 - self.x0).max(1e-12) * (W as i64 - LEFT - RIGHT) as f64)
            .round() as i64
    }

    fn py(&self, y: f64) -> i64 {
        H as i64
            - BOTTOM
            - ((y - self.y0) / (self.y1 - self.y0).max(1e-12) * (H as i64 - TOP - BOTTOM) as f64)
                .round() as i64
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if (hi - lo).abs() < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn axes(c: &mut Canvas, f: &Frame, title: &str, x_label: &str, y_label: &str, x_ticks: bool) {
    c.text_centered(W as i64 / 2, 18, title, 3, BLACK);
    for t in ticks(f.y0, f.y1) {
        let y = f.py(t);
        c.line((LEFT, y), (W as i64 - RIGHT, y), GREY, 1);
        let l = label(t);
        c.text(
            LEFT - 8 - (font::text_width(&l) * 2) as i64,
            y - 7,
            &l,
            2,
            DARK_GREY,
        );
    }
    if x_ticks {
        for t in ticks(f.x0, f.x1) {
            let x = f.px(t);
            c.line(
                (x, H as i64 - BOTTOM),
                (x, H as i64 - BOTTOM + 6),
                DARK_GREY,
                1,
            );
            c.text_centered(x, H as i64 - BOTTOM + 12, &label(t), 2, DARK_GREY);
        }
    }
    c.line((LEFT, TOP), (LEFT, H as i64 - BOTTOM), BLACK, 2);
    c.line(
        (LEFT, H as i64 - BOTTOM),
        (W as i64 - RIGHT, H as i64 - BOTTOM),
        BLACK,
        2,
    );
    c.text_centered(W as i64 / 2, H as i64 - 30, x_label, 2, BLACK);
    c.text_vertical(12, H as i64 / 2, y_label, 2, BLACK);
}

/// Lines over a shared x axis, with a legend when there is more than one.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Canvas {
    let mut c = Canvas::new(W, H);
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut xl, mut xh, mut yl, mut yh) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (xl, xh, yl, yh) = (xl.min(x), xh.max(x), yl.min(y), yh.max(y));
    }
    if xl > xh {
        (xl, xh, yl, yh) = (0.0, 1.0, 0.0, 1.0);
    }
    let (y0, y1) = padded(yl, yh);
    let f = Frame {
        x0: xl,
        x1: if xh > xl { xh } else { xl + 1.0 },
        y0,
        y1,
    };
    axes(&mut c, &f, title, x_label, y_label, true);
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(i64, i64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (f.px(x), f.py(y)))
            .collect();
        for w in pts.windows(2) {
            c.line(w[0], w[1], color, 3);
        }
        if pts.len() == 1 {
            c.fill_rect(
                pts[0].0 - 3,
                pts[0].1 - 3,
                pts[0].0 + 3,
                pts[0].1 + 3,
                color,
            );
        }
        if series.len() > 1 {
            legend(&mut c, i, &s.label, color);
        }
    }
    c
}

fn legend(c: &mut Canvas, i: usize, text: &str, color: Rgb) {
    let y = TOP + 8 + 22 * i as i64;
    let x = W as i64 - RIGHT - 20 - (font::text_width(text) * 2) as i64 - 30;
    c.fill_rect(x, y + 4, x + 20, y + 9, color);
    c.text(x + 28, y, text, 2, BLACK);
}

/// Bars with error bars; values start from 0. A label may hold a second line after `\n`; bars
/// with the same second line share a colour (one series), otherwise each bar has its own.
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar]) -> Canvas {
    let mut c = Canvas::new(W, H);
    let hi = bars.iter().map(|b| b.top()).fold(0.0f64, f64::max);
    let lo = bars.iter().map(|b| b.bottom()).fold(0.0f64, f64::min);
    let f = Frame {
        x0: 0.0,
        x1: bars.len().max(1) as f64,
        y0: lo,
        y1: if hi > lo { hi * 1.1 } else { 1.0 },
    };
    axes(&mut c, &f, title, "", y_label, false);
    let zero = f.py(0.0);
    let mut series: Vec<&str> = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        let (first, second) = b.label.split_once('\n').unwrap_or((&b.label, ""));
        let slot = if second.is_empty() {
            i
        } else {
            series.iter().position(|s| *s == second).unwrap_or_else(|| {
                series.push(second);
                series.len() - 1
            })
        };
        let color = PALETTE[slot % PALETTE.len()];
        let (xa, xb) = (f.px(i as f64 + 0.15), f.px(i as f64 + 0.85));
        c.fill_rect(xa, f.py(b.value), xb, zero, color);
        if let Some((low, high)) = b.interval {
            let xm = (xa + xb) / 2;
            let (ya, yb) = (f.py(low), f.py(high));
            c.line((xm, ya), (xm, yb), BLACK, 2);
            c.line((xm - 6, ya), (xm + 6, ya), BLACK, 2);
            c.line((xm - 6, yb), (xm + 6, yb), BLACK, 2);
        }
        let slot_width = f.px(i as f64 + 1.0) - f.px(i as f64);
        let max_chars = (slot_width / 12).max(3) as usize;
        for (line, text) in [first, second].into_iter().enumerate() {
            let text: String = text.chars().take(max_chars).collect();
            let y = H as i64 - BOTTOM + 10 + 22 * line as i64;
            c.text_centered((xa + xb) / 2, y, &text, 2, BLACK);
        }
        let value = format!("{:.1}", b.value);
        c.text_centered((xa + xb) / 2, f.py(b.top()) - 18, &value, 2, DARK_GREY);
    }
    c
}

/// A histogram of `values` in `bins` equal-width bins.
pub fn histogram(title: &str, x_label: &str, values: &[f64], bins: usize) -> Canvas {
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if values.is_empty() {
        (0.0, 1.0)
    } else if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let mut c = Canvas::new(W, H);
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let f = Frame {
        x0: lo,
        x1: hi,
        y0: 0.0,
        y1: max * 1.1,
    };
    axes(&mut c, &f, title, x_label, "questions", true);
    for (i, &n) in counts.iter().enumerate() {
        let (xa, xb) = (
            f.px(lo + i as f64 * width) + 1,
            f.px(lo + (i + 1) as f64 * width) - 1,
        );
        if n > 0 {
            c.fill_rect(xa, f.py(n as f64), xb, f.py(0.0), PALETTE[0]);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_to_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = Series {
            label: "loss".into(),
            points: (0..20)
                .map(|i| (i as f64, (-(i as f64) / 8.0).exp()))
                .collect(),
        };
        let t = Series {
            label: "margin".into(),
            points: (0..20).map(|i| (i as f64, i as f64 * 0.03)).collect(),
        };
        let charts = [
            line_chart("DPO loss per step", "step", "loss", &[s, t]),
            bar_chart(
                "accuracy",
                "accuracy (%)",
                &[
                    Bar {
                        label: "before".into(),
                        value: 12.5,
                        interval: None,
                    },
                    Bar {
                        label: "after".into(),
                        value: 25.0,
                        interval: Some((19.2, 31.4)),
                    },
                ],
            ),
            histogram(
                "question weights",
                "weight",
                &[1.0, 1.25, 1.5, 2.0, 2.0, 1.0],
                10,
            ),
        ];
        for (i, chart) in charts.iter().enumerate() {
            let path = dir.path().join(format!("{i}.png"));
            chart.save_png(&path).unwrap();
            let decoder =
                png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
            let reader = decoder.read_info().unwrap();
            assert_eq!(
                (reader.info().width, reader.info().height),
                (W as u32, H as u32)
            );
        }
        if let Ok(keep) = std::env::var("TRAINER_KEEP_PLOTS") {
            for i in 0..3 {
                std::fs::copy(
                    dir.path().join(format!("{i}.png")),
                    format!("{keep}/{i}.png"),
                )
                .unwrap();
            }
        }
    }
}
