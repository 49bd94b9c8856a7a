//! PNG charts drawn with `plotters` (DejaVu Sans embedded, so no system font is needed): line
//! charts, bar charts with intervals, and histograms.

mod chart;
mod image;

pub use chart::{Bar, Series, bar_chart, histogram, line_chart};
pub use image::Image;
