//! PNG plots with no system dependency: a raster canvas, a built-in bitmap font, and line, bar and
//! histogram charts.

mod canvas;
mod chart;
mod font;

pub use canvas::Canvas;
pub use chart::{Bar, Series, bar_chart, histogram, line_chart};
