//! Sampling weights from a GGUF file's quantized blocks: the seven projections of every layer and
//! the output head as [`QBlocks`] (`Q4_1`, `Q8_0`) or candle `QMatMul`s (other encodings), q/k
//! rows un-permuted by moving whole rows of blocks (exact), everything else (embedding, norms,
//! biases) shared with the f32 policy.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::quantized::{QMatMul, QStorage, QTensor, gguf_file};
use candle_core::{Device, Tensor};

use super::config::Arch;
use super::decoder::Weights;
use super::load::{LoadedModel, read_gguf};
use super::proj::Proj;
use super::qblocks::QBlocks;
use crate::error::user_error;

/// Refuses (exit 2, naming `key`, the recipe setting or flag that asked, e.g.
/// `sampling.quantized = true`) a model whose weights have no
/// quantized form here: one not loaded from a `.gguf` file at `path`, or one on a GPU.
pub fn check_quantizable(path: &Path, device: &Device, key: &str) -> Result<()> {
    if !path.is_file() {
        return Err(user_error(format!(
            "{key} needs a GGUF model file; {} is not one (an HF folder or a built-in \
             model has no quantized weights)",
            path.display()
        )));
    }
    if !device.is_cpu() {
        return Err(user_error(format!(
            "{key} samples on the CPU only (model.device = \"cpu\", or --device cpu)"
        )));
    }
    Ok(())
}

/// The model's f32 weights with every layer's projections (and the head) replaced by the
/// quantized blocks read again from its GGUF file. The embedding, norms and biases are the
/// policy's own tensors (shared storage, no gradient).
pub fn quantized_weights(model: &LoadedModel, key: &str) -> Result<Weights> {
    check_quantizable(&model.source, model.policy.device(), key)?;
    let cfg = &model.policy.config;
    let (content, mut file) = read_gguf(&model.source)?;
    let mut reader = Reader {
        content: &content,
        file: &mut file,
        origin: model.source.display().to_string(),
    };
    let mut w = model.policy.frozen();
    let llama = cfg.arch == Arch::Llama;
    for (l, layer) in w.layers.iter_mut().enumerate() {
        let name = |part: &str| format!("blk.{l}.{part}.weight");
        layer.q = reader.proj(&name("attn_q"), &layer.q, llama.then_some(cfg.num_heads))?;
        layer.k = reader.proj(&name("attn_k"), &layer.k, llama.then_some(cfg.num_kv_heads))?;
        layer.v = reader.proj(&name("attn_v"), &layer.v, None)?;
        layer.o = reader.proj(&name("attn_output"), &layer.o, None)?;
        layer.gate = reader.proj(&name("ffn_gate"), &layer.gate, None)?;
        layer.up = reader.proj(&name("ffn_up"), &layer.up, None)?;
        layer.down = reader.proj(&name("ffn_down"), &layer.down, None)?;
    }
    let head = if cfg.tie_embeddings {
        "token_embd.weight"
    } else {
        "output.weight"
    };
    let dense_head = Proj::Dense(w.head().clone());
    w.quant_head = Some(reader.proj(head, &dense_head, None)?);
    Ok(w)
}

/// Reads quantized tensors by GGUF name.
struct Reader<'a> {
    content: &'a gguf_file::Content,
    file: &'a mut BufReader<File>,
    origin: String,
}

impl Reader<'_> {
    /// The quantized form of `dense` stored under `name`, its rows un-permuted for `heads` heads.
    fn proj(&mut self, name: &str, dense: &Proj, heads: Option<usize>) -> Result<Proj> {
        let q = self
            .content
            .tensor(self.file, name, &Device::Cpu)
            .map_err(|e| user_error(format!("model {}: tensor {name}: {e}", self.origin)))?;
        let want = dense.dense().map(Tensor::dims);
        if want.is_some_and(|d| d != q.shape().dims()) {
            return Err(user_error(format!(
                "model {}: tensor {name} has shape {:?}, the f32 weights {want:?}",
                self.origin,
                q.shape().dims()
            )));
        }
        let q = match heads {
            Some(h) => unpermute_rows(&q, h).with_context(|| format!("un-permuting {name}"))?,
            None => q,
        };
        Ok(match QBlocks::from_qtensor(&q)? {
            Some(blocks) => Proj::Blocks(Arc::new(blocks)),
            None => Proj::Quant(QMatMul::from_qtensor(q)?),
        })
    }
}

/// Undoes llama.cpp's q/k row permutation on quantized blocks: GGUF quantizes each row of `in`
/// elements into whole blocks, so moving rows is moving their bytes, and the result dequantizes
/// exactly to the f32 un-permutation of the loader.
///
/// # Shapes
/// `[heads·hd, in]` → same.
pub fn unpermute_rows(q: &QTensor, heads: usize) -> Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let dtype = q.dtype();
    if rows % (2 * heads) != 0 || cols % dtype.block_size() != 0 {
        anyhow::bail!("{rows}x{cols} rows do not split into {heads} rotary heads of whole blocks");
    }
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = q.data()?;
    if data.len() != rows * row_bytes {
        anyhow::bail!("{} bytes for {rows} rows of {row_bytes}", data.len());
    }
    let mut out = Vec::with_capacity(data.len());
    for src in unpermuted_order(rows, heads) {
        out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
    }
    let storage = QStorage::from_data(Cow::Owned(out), &Device::Cpu, dtype)?;
    Ok(QTensor::new(storage, (rows, cols))?)
}

/// For each row of the HF layout, the GGUF row it comes from: GGUF stores a head's rows
/// `[hd/2, 2]`-interleaved where HF has `[2, hd/2]`.
fn unpermuted_order(rows: usize, heads: usize) -> Vec<usize> {
    let hd = rows / heads;
    let half = hd / 2;
    (0..rows)
        .map(|r| {
            let (head, i) = (r / hd, r % hd);
            let (pair, j) = (i / half, i % half);
            head * hd + 2 * j + pair
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermuted_order_matches_the_f32_reshape_transpose() {
        // 2 heads of head_dim 4: HF row (h, a, j) comes from GGUF row (h, j, a).
        assert_eq!(unpermuted_order(8, 2), vec![0, 2, 1, 3, 4, 6, 5, 7]);
    }

    #[test]
    fn unpermute_rows_moves_whole_q8_0_rows() {
        let rows: Vec<f32> = (0..8 * 32)
            .map(|i| (i / 32) as f32 + 0.01 * i as f32)
            .collect();
        let t = Tensor::from_vec(rows, (8, 32), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, candle_core::quantized::GgmlDType::Q8_0).unwrap();
        let before = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let after = unpermute_rows(&q, 2)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let expected: Vec<Vec<f32>> = [0, 2, 1, 3, 4, 6, 5, 7]
            .iter()
            .map(|&r| before[r].clone())
            .collect();
        assert_eq!(after.to_vec2::<f32>().unwrap(), expected);
    }
}
