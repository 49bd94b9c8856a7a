//! An RGB picture the charts are drawn into, saved as PNG.

use std::path::Path;

use anyhow::{Context, Result};

/// A `width` × `height` RGB raster, row-major, 3 bytes per pixel.
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Image {
    /// A white picture.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
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
