//! An RGB raster with lines, rectangles and bitmap text, saved as PNG.

use std::path::Path;

use anyhow::{Context, Result};

use super::font::{self, GLYPH_H, GLYPH_W};

pub type Rgb = [u8; 3];

pub const BLACK: Rgb = [20, 20, 20];
pub const GREY: Rgb = [200, 200, 200];
pub const DARK_GREY: Rgb = [110, 110, 110];
/// Series colours (colour-blind friendly).
pub const PALETTE: [Rgb; 6] = [
    [0, 114, 178],
    [213, 94, 0],
    [0, 158, 115],
    [204, 121, 167],
    [230, 159, 0],
    [86, 180, 233],
];

/// A picture.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, c);
            }
        }
    }

    /// A line `thickness` pixels wide (Bresenham with a square brush).
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb, thickness: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let r = thickness / 2;
        loop {
            self.fill_rect(
                x - r,
                y - r,
                x - r + thickness - 1,
                y - r + thickness - 1,
                c,
            );
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale`×`scale`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, c: Rgb) {
        let s = scale as i64;
        for (i, ch) in text.chars().enumerate() {
            let rows = font::glyph(ch);
            let ox = x + (i * font::ADVANCE) as i64 * s;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        let px = ox + col as i64 * s;
                        let py = y + row as i64 * s;
                        self.fill_rect(px, py, px + s - 1, py + s - 1, c);
                    }
                }
            }
        }
    }

    /// Text centred horizontally on `cx`.
    pub fn text_centered(&mut self, cx: i64, y: i64, text: &str, scale: usize, c: Rgb) {
        let w = (font::text_width(text) * scale) as i64;
        self.text(cx - w / 2, y, text, scale, c);
    }

    /// Text rotated a quarter turn counter-clockwise, centred vertically on `cy` (y-axis labels).
    pub fn text_vertical(&mut self, x: i64, cy: i64, text: &str, scale: usize, c: Rgb) {
        let s = scale as i64;
        let len = (font::text_width(text) * scale) as i64;
        for (i, ch) in text.chars().enumerate() {
            let rows = font::glyph(ch);
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        let along = (i * font::ADVANCE + col) as i64 * s;
                        let px = x + row as i64 * s;
                        let py = cy + len / 2 - along;
                        self.fill_rect(px, py - s + 1, px + s - 1, py, c);
                    }
                }
            }
        }
        let _ = GLYPH_H;
    }

    /// Writes a PNG atomically (temporary file, then rename).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().context("encoding PNG")?;
            writer
                .write_image_data(&self.pixels)
                .context("encoding PNG")?;
        }
        crate::store::write_atomic(path, &bytes)
    }
}
