//! Line charts, bar charts with error bars, and histograms, drawn by `plotters` into an
//! [`Image`].

use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use super::image::Image;

const W: usize = 900;
const H: usize = 520;
const FONT: &str = "sans-serif";

/// Series colours (colour-blind friendly: Okabe and Ito).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

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

/// The embedded font, registered once for the whole process.
fn font(size: u32) -> TextStyle<'static> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font shipped in the `dejavu` crate.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
    (FONT, size).into_font().color(&BLACK)
}

fn draw_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// Draws on a white `W` × `H` picture.
fn picture(draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>) -> Result<Image> {
    let mut image = Image::new(W, H);
    {
        let root =
            BitMapBackend::with_buffer(&mut image.pixels, (W as u32, H as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(image)
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The titled frame every chart draws in: axes over `x` × `y`, the y axis described by
/// `y_desc`, the x axis by `x_desc` (without one, no x ticks: the bars carry their labels).
fn frame<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    x_desc: Option<&str>,
    y_desc: &str,
) -> Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, font(24))
        .margin(18)
        .x_label_area_size(if x_desc.is_some() { 48 } else { 56 })
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(draw_err)?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(y_desc)
        .label_style(font(15))
        .axis_desc_style(font(17));
    match x_desc {
        Some(desc) => mesh.x_desc(desc),
        None => mesh.disable_x_mesh().x_labels(0),
    };
    mesh.draw().map_err(draw_err)?;
    Ok(chart)
}

/// `(lo, hi)` widened by 5 % (or by 0.5 when flat).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if (hi - lo).abs() < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Lines over a shared x axis, with a legend when there is more than one.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<Image> {
    let finite: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let all = finite.iter().flatten();
    let (mut xl, mut xh, mut yl, mut yh) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (xl, xh, yl, yh) = (xl.min(x), xh.max(x), yl.min(y), yh.max(y));
    }
    if xl > xh {
        (xl, xh, yl, yh) = (0.0, 1.0, 0.0, 1.0);
    }
    let xh = if xh > xl { xh } else { xl + 1.0 };
    let (y0, y1) = padded(yl, yh);
    picture(|root| {
        let mut chart = frame(root, title, (xl..xh, y0..y1), Some(x_label), y_label)?;
        for (i, (s, points)) in series.iter().zip(&finite).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let drawn = chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(draw_err)?;
            drawn.label(s.label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
            if points.len() == 1 {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(draw_err)?;
            }
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font(font(15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(draw_err)?;
        }
        Ok(())
    })
}

/// Bars with error bars; values start from 0. A label may hold a second line after `\n`; bars
/// with the same second line share a colour (one series), otherwise each bar has its own.
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar]) -> Result<Image> {
    let hi = bars.iter().map(Bar::top).fold(0.0f64, f64::max);
    let lo = bars.iter().map(Bar::bottom).fold(0.0f64, f64::min);
    let top = if hi > lo { hi * 1.12 } else { 1.0 };
    let n = bars.len().max(1) as f64;
    picture(|root| {
        let mut chart = frame(root, title, (0.0..n, lo..top), None, y_label)?;
        let mut groups: Vec<&str> = Vec::new();
        for (i, b) in bars.iter().enumerate() {
            let (first, second) = b.label.split_once('\n').unwrap_or((&b.label, ""));
            let slot = if second.is_empty() {
                i
            } else {
                groups.iter().position(|g| *g == second).unwrap_or_else(|| {
                    groups.push(second);
                    groups.len() - 1
                })
            };
            let color = PALETTE[slot % PALETTE.len()];
            let x = i as f64;
            chart
                .draw_series([Rectangle::new(
                    [(x + 0.15, 0.0), (x + 0.85, b.value)],
                    color.filled(),
                )])
                .map_err(draw_err)?;
            if let Some((low, high)) = b.interval {
                chart
                    .draw_series([ErrorBar::new_vertical(
                        x + 0.5,
                        low,
                        b.value,
                        high,
                        BLACK.stroke_width(2),
                        12,
                    )])
                    .map_err(draw_err)?;
            }
            let value = format!("{:.1}", b.value);
            let centre = Pos::new(HPos::Center, VPos::Bottom);
            chart
                .draw_series([Text::new(value, (x + 0.5, b.top()), font(14).pos(centre))])
                .map_err(draw_err)?;
            // The labels go under the axis, outside the plotting area: drawn on the root at
            // the pixel under the bar's centre.
            let (px, py) = chart.backend_coord(&(x + 0.5, lo));
            let width = chart.backend_coord(&(x + 1.0, lo)).0 - chart.backend_coord(&(x, lo)).0;
            let max_chars = (width / 8).max(3) as usize;
            for (line, text) in [first, second].into_iter().enumerate() {
                let text: String = text.chars().take(max_chars).collect();
                let at = (px, py + 8 + 20 * line as i32);
                root.draw(&Text::new(
                    text,
                    at,
                    font(15).pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(draw_err)?;
            }
        }
        Ok(())
    })
}

/// A histogram of `values` in `bins` equal-width bins.
pub fn histogram(title: &str, x_label: &str, values: &[f64], bins: usize) -> Result<Image> {
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
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    picture(|root| {
        let mut chart = frame(
            root,
            title,
            (lo..hi, 0.0..max * 1.1),
            Some(x_label),
            "questions",
        )?;
        let boxes = counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, n as f64)], PALETTE[0].filled())
            });
        chart.draw_series(boxes).map_err(draw_err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels darker than light grey in rows `rows` of the picture.
    fn dark_pixels(image: &Image, rows: std::ops::Range<usize>) -> usize {
        rows.flat_map(|y| (0..image.width).map(move |x| (y * image.width + x) * 3))
            .filter(|&i| image.pixels[i..i + 3].iter().all(|&c| c < 120))
            .count()
    }

    #[test]
    fn charts_render_to_png_of_the_expected_size_with_their_text() {
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
        let bars = [
            Bar {
                label: "before".into(),
                value: 12.5,
                interval: None,
            },
            Bar {
                label: "after\nseed 1".into(),
                value: 25.0,
                interval: Some((19.2, 31.4)),
            },
        ];
        let charts = [
            line_chart("DPO loss per step", "step", "loss", &[s, t]).unwrap(),
            bar_chart("accuracy", "accuracy (%)", &bars).unwrap(),
            histogram(
                "question weights",
                "weight",
                &[1.0, 1.25, 1.5, 2.0, 2.0, 1.0],
                10,
            )
            .unwrap(),
        ];
        for (i, chart) in charts.iter().enumerate() {
            // The title is drawn in the embedded font: dark pixels in the top band.
            assert!(
                dark_pixels(chart, 0..45) > 100,
                "chart {i} has no title text"
            );
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

    #[test]
    fn empty_and_flat_inputs_still_draw() {
        assert!(line_chart("t", "x", "y", &[]).is_ok());
        assert!(histogram("t", "x", &[], 5).is_ok());
        assert!(histogram("t", "x", &[2.0, 2.0], 5).is_ok());
        assert!(bar_chart("t", "y", &[]).is_ok());
    }
}
