//! A character-level tokenizer for tiny models: one token per printable ASCII character and
//! newline, plus ChatML control tokens.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::tokenizer::Tokenizer;

/// Control tokens, ids 0.. in this order.
pub const CONTROL_TOKENS: [&str; 4] = ["<|pad|>", "<|im_start|>", "<|im_end|>", "<|unk|>"];

/// Id of `<|im_end|>`, the end of a turn and of generation.
pub const CHAR_EOS: u32 = 2;

/// The character tokenizer (vocabulary: 4 control tokens, `\n`, ASCII 32–126).
pub fn char_tokenizer() -> Result<Tokenizer> {
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for (i, t) in CONTROL_TOKENS.iter().enumerate() {
        vocab.insert(t.to_string(), i as u32);
    }
    let chars = std::iter::once('\n').chain((32u8..=126).map(char::from));
    for c in chars {
        let id = vocab.len() as u32;
        vocab.insert(c.to_string(), id);
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<|unk|>".into())
        .build()
        .map_err(|e| anyhow!("building the character vocabulary: {e}"))?;
    let mut inner = tokenizers::Tokenizer::new(model);
    // Any one character, newlines included; `[\s\S]` rather than `(?s).`, which the Python
    // tokenizers' regex engine (Oniguruma) rejects, so transformers can load the saved tokenizer.
    let split = Split::new(
        SplitPattern::Regex(r"[\s\S]".into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| anyhow!("character splitter: {e}"))?;
    inner.with_pre_tokenizer(Some(split));
    inner.with_decoder(Some(Fuse::new()));
    inner
        .add_special_tokens(
            CONTROL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| anyhow!("adding control tokens: {e}"))?;
    Ok(Tokenizer::from_inner(inner, Some(CHAR_EOS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_round_trip_and_control_tokens_are_single_ids() {
        let t = char_tokenizer().unwrap();
        let ids = t.encode("<|im_start|>user\n12 + 3 = 15<|im_end|>").unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(*ids.last().unwrap(), CHAR_EOS);
        assert_eq!(ids.len(), 1 + 5 + 11 + 1);
        assert_eq!(
            t.decode(&ids).unwrap(),
            "<|im_start|>user\n12 + 3 = 15<|im_end|>"
        );
        assert_eq!(t.vocab_size(), 4 + 1 + 95);
    }
}
