//! The tokenizer: from `tokenizer.json`, or rebuilt from a GGUF's `tokenizer.ggml.*` metadata with
//! the pre-tokenizer its `tokenizer.ggml.pre` names (SmolLM2's `smollm`: digits one by one, then
//! byte-level without a prefix space; control tokens special).

use std::path::Path;

use anyhow::{Result, anyhow};
use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::user_error;

/// Llama 3's pre-tokenizer regex (llama.cpp's `llama-bpe`): Qwen2's, with numbers in runs of up
/// to three digits.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's pre-tokenizer regex (as llama.cpp's `qwen2` pre-type).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer with the ids the trainer needs (end of sequence, padding).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_ids: Vec<u32>,
    pad_id: u32,
}

impl Tokenizer {
    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path, eos: Option<u32>) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| user_error(format!("{}: cannot load tokenizer: {e}", path.display())))?;
        Ok(Self::with_ids(inner, eos))
    }

    /// Rebuilds the tokenizer stored in a GGUF's metadata.
    pub fn from_gguf(
        content: &gguf_file::Content,
        origin: &str,
        eos: Option<u32>,
    ) -> Result<Tokenizer> {
        let md = &content.metadata;
        let bad = |what: &str| gguf_error(origin, what);
        let model = md
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| bad("no tokenizer.ggml.model"))?;
        if model != "gpt2" {
            return Err(bad(&format!(
                "model `{model}` is not supported (only byte-level BPE, `gpt2`); pass model.tokenizer = \"tokenizer.json\""
            )));
        }
        let tokens = gguf_strings(md, "tokenizer.ggml.tokens", origin)?;
        let merges = gguf_strings(md, "tokenizer.ggml.merges", origin)?;
        let types: Vec<i32> = match md
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
        {
            Some(values) => values.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let bpe = gguf_bpe(&tokens, &merges, origin)?;
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "default".into());
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(&pre).map_err(|e| bad(&e.to_string()))?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == 3 || **t == 4)
            .map(|(tok, t)| AddedToken::from(tok.clone(), *t == 3))
            .collect();
        inner
            .add_special_tokens(special)
            .map_err(|e| bad(&format!("cannot add special tokens: {e}")))?;
        Ok(Self::with_ids(inner, eos))
    }

    fn with_ids(inner: tokenizers::Tokenizer, eos: Option<u32>) -> Tokenizer {
        let mut eos_ids: Vec<u32> = eos.into_iter().collect();
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"] {
            if let Some(id) = inner.token_to_id(name)
                && !eos_ids.contains(&id)
            {
                eos_ids.push(id);
            }
        }
        let pad_id = eos_ids.first().copied().unwrap_or(0);
        Tokenizer {
            inner,
            eos_ids,
            pad_id,
        }
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are recognised,
    /// nothing is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow!("decoding failed: {e}"))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Ids that end a generated response.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The text of the first end-of-sequence token ("" when there is none).
    pub fn eos_text(&self) -> Result<String> {
        self.decode(&self.eos_ids[..self.eos_ids.len().min(1)])
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Wraps an already built tokenizer.
    pub fn from_inner(inner: tokenizers::Tokenizer, eos: Option<u32>) -> Tokenizer {
        Self::with_ids(inner, eos)
    }
}

/// The user error for a GGUF file whose tokenizer metadata cannot be used.
fn gguf_error(origin: &str, what: &str) -> anyhow::Error {
    user_error(format!("{origin}: GGUF tokenizer: {what}"))
}

/// A string array of GGUF metadata.
fn gguf_strings(
    md: &std::collections::HashMap<String, gguf_file::Value>,
    key: &str,
    origin: &str,
) -> Result<Vec<String>> {
    let bad = |what: String| gguf_error(origin, &what);
    let values = md
        .get(key)
        .and_then(|v| v.to_vec().ok())
        .ok_or_else(|| bad(format!("no {key}")))?;
    values
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| bad(format!("{key} holds a non-string")))
        })
        .collect()
}

/// The byte-level BPE model of a GGUF vocabulary (token `i` has id `i`) and its merges
/// (`"a b"` each).
fn gguf_bpe(tokens: &[String], merges: &[String], origin: &str) -> Result<BPE> {
    let bad = |what: String| gguf_error(origin, &what);
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("bad merge `{m}`")))
        })
        .collect::<Result<_>>()?;
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| bad(format!("cannot build BPE: {e}")))
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, regex));
    Ok(match pre {
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        "qwen2" | "llama-bpe" => {
            let regex = if pre == "qwen2" {
                QWEN2_REGEX
            } else {
                LLAMA3_REGEX
            };
            let split = Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| anyhow!("{pre} pre-tokenizer: {e}"))?;
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Split(split),
                byte_level(false),
            ]))
        }
        "default" | "gpt-2" | "gpt2" => byte_level(true),
        other => {
            return Err(anyhow!(
                "pre-tokenizer `{other}` is not supported (smollm, qwen2, llama-bpe, gpt-2)"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    use super::*;

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let mut s = PreTokenizedString::from(text);
        pre_tokenizer(pre).unwrap().pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, _, _)| piece.to_string())
            .collect()
    }

    #[test]
    fn llama_bpe_splits_numbers_in_threes_where_qwen2_splits_every_digit() {
        // Byte-level pieces: "Ġ" stands for the space.
        assert_eq!(
            pieces("llama-bpe", "12345 apples"),
            ["123", "45", "Ġapples"]
        );
        assert_eq!(pieces("qwen2", "123 x"), ["1", "2", "3", "Ġx"]);
    }
}
