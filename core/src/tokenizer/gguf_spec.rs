//! The tokenizer described by a GGUF file's `tokenizer.*` metadata.

use super::pre::adds_bos_by_default;
use super::{Result, Tokenizer, TokenizerError, TokenizerSpec};
use crate::formats::Gguf;

/// `general.name` parts for which llama.cpp drops the whitespace after special tokens (Phi-3).
const PHI3_NAMES: [&str; 2] = ["phi-3", "phi3"];

impl TokenizerSpec {
    /// Read the tokenizer description from GGUF metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<TokenizerSpec> {
        let meta = gguf.metadata();
        let bad =
            |key: &str, e: crate::formats::GgufError| TokenizerError::Build(format!("{key}: {e}"));
        let model = meta
            .get_str("tokenizer.ggml.model")
            .map_err(|e| bad("tokenizer.ggml.model", e))?
            .to_string();
        let tokens = meta
            .get_str_array("tokenizer.ggml.tokens")
            .map_err(|e| bad("tokenizer.ggml.tokens", e))?
            .to_vec();
        let optional_id = |key: &str| meta.get(key).and_then(|_| meta.get_u32(key).ok());
        let pre = meta.get_str("tokenizer.ggml.pre").ok().map(str::to_string);
        let default_bos = model == "llama" || pre.as_deref().is_some_and(adds_bos_by_default);
        Ok(TokenizerSpec {
            pre,
            tokens,
            token_types: meta
                .get_i32_array("tokenizer.ggml.token_type")
                .map(|a| a.to_vec())
                .unwrap_or_default(),
            merges: meta
                .get_str_array("tokenizer.ggml.merges")
                .map(|a| a.to_vec())
                .unwrap_or_default(),
            scores: meta
                .get_f32_array("tokenizer.ggml.scores")
                .map(|a| a.to_vec())
                .unwrap_or_default(),
            bos_id: optional_id("tokenizer.ggml.bos_token_id"),
            eos_id: optional_id("tokenizer.ggml.eos_token_id"),
            unk_id: optional_id("tokenizer.ggml.unknown_token_id"),
            pad_id: optional_id("tokenizer.ggml.padding_token_id"),
            add_bos: meta
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(default_bos),
            add_eos: meta
                .get_bool("tokenizer.ggml.add_eos_token")
                .unwrap_or(false),
            add_space_prefix: meta
                .get_bool("tokenizer.ggml.add_space_prefix")
                .unwrap_or(true),
            chat_template: meta
                .get_str("tokenizer.chat_template")
                .ok()
                .map(str::to_string),
            rstrip_special: meta
                .get_str("general.name")
                .is_ok_and(|n| PHI3_NAMES.iter().any(|p| n.to_lowercase().contains(p))),
            model,
        })
    }
}

impl Tokenizer {
    /// The tokenizer a GGUF file carries.
    pub fn from_gguf(gguf: &Gguf) -> Result<Tokenizer> {
        Tokenizer::from_spec(&TokenizerSpec::from_gguf(gguf)?)
    }
}
