//! The trainable decoder (Llama, Qwen2) written from differentiable candle ops, its loading from HF
//! folders and GGUF files, the tokenizer, chat templates, scoring and generation.

mod char_tokenizer;
mod chat;
mod config;
mod decoder;
mod device;
mod frozen_linear;
mod fused;
mod generate;
mod hf_files;
mod hub;
mod init;
mod load;
mod lora;
mod ops;
mod pick;
mod policy;
mod proj;
mod qblocks;
mod quant;
mod score;
mod tokenizer;

pub use char_tokenizer::{CHAR_EOS, CONTROL_TOKENS, char_tokenizer};
pub use chat::{ChatTemplate, JinjaTemplate, Message, own_template};
pub use config::{Arch, Llama3Rope, ModelConfig};
pub use decoder::{KvCache, LayerWeights, Weights, causal_mask, forward, logits_all, logits_at};
pub use device::DeviceChoice;
pub use frozen_linear::{frozen_linear, linear_2d, matmul_t};
pub use generate::{Finish, GenRequest, Generation, generate};
pub use hub::{Fetched, HubId, fetch, local_model};
pub use init::{INIT_STD, random_policy};
pub use load::{LoadedModel, load_model, load_model_on, load_tokenizer, read_gguf};
pub use lora::{
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, LayerLora, LoraConfig, Target, merged_tensors, read_adapter,
};
pub use pick::{SamplingParams, pick_token};
pub use policy::{Policy, expected_tensors};
pub use proj::Proj;
pub use qblocks::{QBlocks, QUANTIZED_PRODUCT};
pub use quant::{check_quantizable, quantized_weights, unpermute_rows};
pub use score::{Packed, SeqScores, score_packed, score_sequences, token_logprobs};
pub use tokenizer::Tokenizer;
