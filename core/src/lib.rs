//! afinador-core: everything that is neither file system nor UI — GGUF and safetensors formats,
//! the tokenizer, the WGSL kernels and their dispatchers, the models (one description per
//! architecture) on wgpu.
//!
//! The core never touches the file system, the clock or the terminal: callers hand it bytes and
//! drive its async API (pollster natively, wasm-bindgen-futures in the browser).

pub mod bench;
pub mod eval;
pub mod formats;
pub mod gpu;
pub mod kernels;
pub mod lora;
pub mod model;
pub mod tokenizer;
pub mod train;
pub mod util;
