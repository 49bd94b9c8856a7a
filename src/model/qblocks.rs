//! Matrix products with GGUF `Q4_1` and `Q8_0` weight blocks on the CPU: the blocks' scales read
//! into f32 once, the activations kept in f32, and the inner product vectorized with AVX2 + FMA
//! when the CPU has them (checked at run time), a plain loop otherwise. candle's own quantized
//! product rounds the activations to 8-bit blocks and gets SIMD only in a `target-cpu=native`
//! build; this one needs neither.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, Tensor, bail};
use rayon::prelude::*;

/// Names this product in the sample cache's keys: samples drawn through an earlier quantized
/// product (candle's, which also rounded the activations) are not reused.
pub const QUANTIZED_PRODUCT: &str = "qblocks-f32-activations-1";

/// Weights per block, both kinds.
const BLOCK: usize = 32;

/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// The block encodings handled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `w = d · q + m`, `q` in 0..16, two per byte: byte `i` holds element `i` in its low nibble
    /// and element `i + 16` in its high one.
    Q4_1,
    /// `w = d · q`, `q` a signed byte.
    Q8_0,
}

/// A `[rows, cols]` weight of quantized blocks, row by row.
#[derive(Debug, Clone)]
pub struct QBlocks {
    kind: Kind,
    rows: usize,
    cols: usize,
    /// Per block: the scale `d`.
    d: Vec<f32>,
    /// Per block: the offset `m` (`Q4_1`; empty for `Q8_0`).
    m: Vec<f32>,
    /// Per block: 16 bytes of nibbles (`Q4_1`) or 32 signed bytes (`Q8_0`).
    qs: Vec<u8>,
}

impl QBlocks {
    /// The blocks of `q` when they are `Q4_1` or `Q8_0`; `None` for other encodings.
    ///
    /// # Shapes
    /// `q`: `[rows, cols]`, `cols` a multiple of 32.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Self>> {
        let (kind, qbytes, header) = match q.dtype() {
            GgmlDType::Q4_1 => (Kind::Q4_1, BLOCK / 2, 4),
            GgmlDType::Q8_0 => (Kind::Q8_0, BLOCK, 2),
            _ => return Ok(None),
        };
        let (rows, cols) = q.shape().dims2()?;
        if cols % BLOCK != 0 {
            bail!("{rows}x{cols} quantized weight: rows are not whole blocks");
        }
        let data = q.data()?;
        let blocks = rows * cols / BLOCK;
        let stride = header + qbytes;
        if data.len() != blocks * stride {
            bail!("{} bytes for {blocks} blocks of {stride}", data.len());
        }
        let half = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let mut out = QBlocks {
            kind,
            rows,
            cols,
            d: Vec::with_capacity(blocks),
            m: Vec::new(),
            qs: Vec::with_capacity(blocks * qbytes),
        };
        for b in data.chunks_exact(stride) {
            out.d.push(half(&b[0..2]));
            if kind == Kind::Q4_1 {
                out.m.push(half(&b[2..4]));
            }
            out.qs.extend_from_slice(&b[header..]);
        }
        Ok(Some(out))
    }

    /// The weight the blocks encode, `w = d · q (+ m)` in f32.
    ///
    /// # Shapes
    /// → `[rows, cols]`.
    pub fn dequantize(&self) -> Result<Tensor> {
        let mut w = Vec::with_capacity(self.rows * self.cols);
        for b in 0..self.d.len() {
            for i in 0..BLOCK {
                let scaled = self.d[b] * quant(self, b, i);
                w.push(match self.kind {
                    Kind::Q4_1 => scaled + self.m[b],
                    Kind::Q8_0 => scaled,
                });
            }
        }
        Tensor::from_vec(w, (self.rows, self.cols), &candle_core::Device::Cpu)
    }

    /// `x · Wᵀ` with the dequantized weight `W`.
    ///
    /// # Shapes
    /// `x`: `[.., cols]` f32 on the CPU → `[.., rows]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.cols) {
            bail!(
                "quantized product: input {dims:?}, weight [{}, {}]",
                self.rows,
                self.cols
            );
        }
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let n = xs.len() / self.cols;
        let sums = block_sums(&xs);
        // Each task writes its rows' outputs for every input row, `[rows, n]`, transposed after.
        let mut yt = vec![0f32; self.rows * n];
        yt.par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .for_each(|(task, out)| {
                let row0 = task * ROWS_PER_TASK;
                for (i, y) in out.chunks_mut(n).enumerate() {
                    self.row_products(row0 + i, (&xs, &sums), y);
                }
            });
        let mut y = vec![0f32; n * self.rows];
        for (r, col) in yt.chunks(n).enumerate() {
            for (j, v) in col.iter().enumerate() {
                y[j * self.rows + r] = *v;
            }
        }
        let mut shape = dims;
        if let Some(last) = shape.last_mut() {
            *last = self.rows;
        }
        Tensor::from_vec(y, shape, x.device())
    }

    /// Row `r` of `W` against every input row: `y[j] = Σ_k W[r, k] · x[j, k]`.
    fn row_products(&self, r: usize, (xs, sums): (&[f32], &[f32]), y: &mut [f32]) {
        let nb = self.cols / BLOCK;
        let blocks = r * nb..(r + 1) * nb;
        if simd::available() {
            simd::dots(self, blocks.clone(), xs, y);
        } else {
            for (j, y) in y.iter_mut().enumerate() {
                *y = scalar_dot(
                    self,
                    blocks.clone(),
                    &xs[j * self.cols..(j + 1) * self.cols],
                );
            }
        }
        if self.kind == Kind::Q4_1 {
            // Q4_1's offsets: Σ_b m_b · Σ_{k in b} x_k.
            for (j, y) in y.iter_mut().enumerate() {
                let s = &sums[j * nb..(j + 1) * nb];
                let offset: f32 = self.m[blocks.clone()]
                    .iter()
                    .zip(s)
                    .map(|(m, s)| m * s)
                    .sum();
                *y += offset;
            }
        }
    }
}

/// The sum of every 32-element block of `xs`, in order.
fn block_sums(xs: &[f32]) -> Vec<f32> {
    xs.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect()
}

/// The quantized value `i` (0..32) of block `b`.
fn quant(w: &QBlocks, b: usize, i: usize) -> f32 {
    match w.kind {
        Kind::Q4_1 => {
            let byte = w.qs[b * 16 + i % 16];
            f32::from(if i < 16 { byte & 0xF } else { byte >> 4 })
        }
        Kind::Q8_0 => f32::from(w.qs[b * 32 + i] as i8),
    }
}

/// `Σ_b d_b · Σ_i q_{b,i} · x_{b,i}` over `blocks` without SIMD.
fn scalar_dot(w: &QBlocks, blocks: std::ops::Range<usize>, x: &[f32]) -> f32 {
    let mut total = 0f32;
    for (k, b) in blocks.enumerate() {
        let xb = &x[k * BLOCK..(k + 1) * BLOCK];
        let s: f32 = xb.iter().enumerate().map(|(i, v)| quant(w, b, i) * v).sum();
        total += w.d[b] * s;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{BLOCK, Kind, QBlocks};

    /// Whether this CPU has AVX2 and FMA, which every kernel below needs.
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// Input rows per call of [`tile_dots`]: each block's decoded lanes serve this many rows.
    const TILE: usize = 4;

    /// `y[j] = Σ_b d_b · Σ_i q_{b,i} · x_{j,b,i}` over `blocks` for every input row `j` of `xs`
    /// (rows of `32 · blocks.len()` values, `y.len()` of them). Every row goes through the same
    /// operations in the same order whether it comes alone or in a tile, so its result does not
    /// depend on the batch.
    ///
    /// # Panics
    /// On a CPU without AVX2 and FMA ([`available`]), or with `blocks` or `xs` out of bounds.
    pub(super) fn dots(w: &QBlocks, blocks: std::ops::Range<usize>, xs: &[f32], y: &mut [f32]) {
        assert!(available(), "the AVX2 kernels need AVX2 and FMA");
        let cols = blocks.len() * BLOCK;
        assert!(blocks.end <= w.d.len() && xs.len() >= y.len() * cols);
        let row = |j: usize| xs[j * cols..].as_ptr();
        let mut j0 = 0;
        while j0 < y.len() {
            // SAFETY: the CPU has AVX2 and FMA; every pointer starts a row of `cols` floats
            // inside `xs`, and `blocks` are blocks of `w` (all checked above).
            unsafe {
                if y.len() - j0 >= TILE {
                    let x = [row(j0), row(j0 + 1), row(j0 + 2), row(j0 + 3)];
                    y[j0..j0 + TILE].copy_from_slice(&tile_dots(w, blocks.clone(), x));
                    j0 += TILE;
                } else {
                    y[j0] = tile_dots(w, blocks.clone(), [row(j0)])[0];
                    j0 += 1;
                }
            }
        }
    }

    /// Eight bytes from `bytes` as eight f32 lanes (unsigned or signed).
    #[target_feature(enable = "avx2,fma")]
    fn lanes(bytes: __m128i, signed: bool) -> __m256 {
        let ints = if signed {
            _mm256_cvtepi8_epi32(bytes)
        } else {
            _mm256_cvtepu8_epi32(bytes)
        };
        _mm256_cvtepi32_ps(ints)
    }

    /// Block `b`'s 32 quantized values as four vectors of eight f32 lanes, in element order.
    ///
    /// # Safety
    /// `b` is a block of `w`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_lanes(w: &QBlocks, b: usize) -> [__m256; 4] {
        match w.kind {
            Kind::Q4_1 => {
                // SAFETY: block b has 16 bytes at qs[16b..].
                let bytes = unsafe { _mm_loadu_si128(w.qs.as_ptr().add(b * 16).cast()) };
                let nibble = _mm_set1_epi8(0x0F);
                let lo = _mm_and_si128(bytes, nibble);
                let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble);
                [
                    lanes(lo, false),
                    lanes(_mm_srli_si128(lo, 8), false),
                    lanes(hi, false),
                    lanes(_mm_srli_si128(hi, 8), false),
                ]
            }
            Kind::Q8_0 => {
                // SAFETY: block b has 32 bytes at qs[32b..].
                let qp = unsafe { w.qs.as_ptr().add(b * BLOCK) };
                let part = |i: usize| unsafe { lanes(_mm_loadl_epi64(qp.add(8 * i).cast()), true) };
                [part(0), part(1), part(2), part(3)]
            }
        }
    }

    /// [`dots`] for `J` input rows at once: each block decoded once, used `J` times.
    ///
    /// # Safety
    /// `blocks` are blocks of `w`; each pointer starts `32 · blocks.len()` readable floats.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_dots<const J: usize>(
        w: &QBlocks,
        blocks: std::ops::Range<usize>,
        x: [*const f32; J],
    ) -> [f32; J] {
        let mut total = [_mm256_setzero_ps(); J];
        for (k, b) in blocks.enumerate() {
            // SAFETY: b is one of `blocks`.
            let q = unsafe { block_lanes(w, b) };
            let mut s = [_mm256_setzero_ps(); J];
            for (part, qv) in q.iter().enumerate() {
                for j in 0..J {
                    // SAFETY: `32k + 8·part + 8` floats are within row j's `32 · blocks.len()`.
                    let xv = unsafe { _mm256_loadu_ps(x[j].add(k * BLOCK + 8 * part)) };
                    s[j] = _mm256_fmadd_ps(*qv, xv, s[j]);
                }
            }
            let dv = _mm256_set1_ps(w.d[b]);
            for j in 0..J {
                total[j] = _mm256_fmadd_ps(dv, s[j], total[j]);
            }
        }
        total.map(|t| hsum(t))
    }

    /// The sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let quad = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)))
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::QBlocks;

    /// No SIMD kernel on this architecture: the plain loop runs.
    pub(super) fn available() -> bool {
        false
    }

    /// Never called: [`available`] is false.
    pub(super) fn dots(_: &QBlocks, _: std::ops::Range<usize>, _: &[f32], _: &mut [f32]) {
        unreachable!("no SIMD kernel on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::{QBlocks, scalar_dot, simd};

    fn weights(dtype: GgmlDType) -> (Tensor, QTensor) {
        let w = Tensor::randn(0f32, 1.0, (37, 96), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        (q.dequantize(&Device::Cpu).unwrap(), q)
    }

    /// Against candle's dequantized weight in an f32 product, 3 input rows in a `[1, 3, 96]`
    /// batch: the blocks decode to the same weights, so the products agree to f32 rounding.
    #[test]
    fn quantized_products_equal_the_dequantized_weight_product() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (dense, q) = weights(dtype);
            let blocks = QBlocks::from_qtensor(&q).unwrap().unwrap();
            let x = Tensor::randn(0f32, 1.0, (1, 3, 96), &Device::Cpu).unwrap();
            let got = blocks.forward(&x).unwrap();
            assert_eq!(got.dims(), &[1, 3, 37]);
            let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
            let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
            let scale = want.abs().unwrap().max_all().unwrap();
            let rel = diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap();
            assert!(rel < 1e-5, "{dtype:?}: relative difference {rel}");
        }
    }

    /// The SIMD kernel (where the CPU has one) and the plain loop give the same dot products to
    /// f32 rounding, the plain loop being what a CPU without AVX2 runs.
    #[test]
    fn the_simd_and_plain_dot_products_agree() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (_, q) = weights(dtype);
            let blocks = QBlocks::from_qtensor(&q).unwrap().unwrap();
            let x: Vec<f32> = (0..96).map(|i| (i as f32 * 0.37).sin()).collect();
            for r in 0..37 {
                let range = r * 3..(r + 1) * 3;
                let plain = scalar_dot(&blocks, range.clone(), &x);
                if simd::available() {
                    let mut fast = [0f32];
                    simd::dots(&blocks, range, &x, &mut fast);
                    let fast = fast[0];
                    assert!(
                        (fast - plain).abs() <= 1e-4 * plain.abs().max(1.0),
                        "row {r}: {fast} vs {plain}"
                    );
                }
            }
        }
    }

    /// Sampling draws the same tokens whatever the batch: a row's outputs alone and inside batches
    /// of 2, 4, 5 and 9 rows (tiles of 4 and single rows) are the same bits.
    #[test]
    fn a_rows_product_does_not_depend_on_its_batch() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (_, q) = weights(dtype);
            let blocks = QBlocks::from_qtensor(&q).unwrap().unwrap();
            let x = Tensor::randn(0f32, 1.0, (9, 96), &Device::Cpu).unwrap();
            let alone: Vec<Vec<f32>> = (0..9)
                .map(|j| {
                    blocks
                        .forward(&x.narrow(0, j, 1).unwrap())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                })
                .collect();
            for n in [2, 4, 5, 9] {
                let batch = blocks
                    .forward(&x.narrow(0, 0, n).unwrap())
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                for (j, row) in batch.iter().enumerate() {
                    let same = row
                        .iter()
                        .zip(&alone[j])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{dtype:?}: row {j} in a batch of {n} differs from the row alone"
                    );
                }
            }
        }
    }

    #[test]
    fn other_block_types_are_left_to_candle() {
        let (_, q) = weights(GgmlDType::Q4_0);
        assert!(QBlocks::from_qtensor(&q).unwrap().is_none());
    }
}
