//! LoRA adapters: the in-memory adapter ([`LoraAdapter`]) and its files — Hugging Face PEFT
//! ([`peft`]: `adapter_config.json` + `adapter_model.safetensors`) and GGUF LoRA for llama.cpp's
//! `--lora` ([`gguf_lora`]).
//!
//! afinador keeps an adapter in GGUF row order, like the base weights it adapts: for llama the
//! rows of q_proj and k_proj (so of their lora_B) are permuted relative to Hugging Face
//! ([`permute`]; other architectures keep Hugging Face's order, [`QkOrder`]). PEFT export and
//! import convert; GGUF LoRA files keep GGUF order.
//!
//! Everything works on in-memory bytes (no `std::fs`), natively and in WebAssembly.

mod adapter;
mod error;
pub mod gguf_lora;
pub mod merge;
pub mod peft;
mod peft_config;
pub mod permute;

#[cfg(test)]
mod tests;

pub use adapter::{LoraAdapter, LoraConfig, LoraPair, Module};
pub use error::LoraError;
pub use gguf_lora::{GgufLora, from_gguf_lora, to_gguf_lora};
pub use peft::{HfModel, PeftFiles, from_peft, to_peft};
pub use peft_config::PEFT_VERSION;
pub use permute::QkOrder;
