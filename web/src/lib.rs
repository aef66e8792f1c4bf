//! afinador in the browser: a wasm-bindgen API over afinador-core on WebGPU.
//!
//! For now it exposes what the core can do without a GPU (inspecting a GGUF file and
//! tokenizing); the training page and worker come with the browser issue.

use afinador_core::formats::Gguf;
use wasm_bindgen::prelude::*;

/// The afinador version this module was built from.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Parse a GGUF file's bytes and describe it as JSON (architecture, tensor count, metadata keys).
#[wasm_bindgen(js_name = inspectGguf)]
pub fn inspect_gguf(bytes: &[u8]) -> Result<String, JsError> {
    let gguf = Gguf::parse(bytes).map_err(|e| JsError::new(&e.to_string()))?;
    let keys: Vec<&str> = gguf.metadata().iter().map(|(k, _)| k).collect();
    let info = serde_json::json!({
        "architecture": gguf.architecture().ok(),
        "version": gguf.version(),
        "tensors": gguf.tensors().len(),
        "metadata_keys": keys,
    });
    Ok(info.to_string())
}
