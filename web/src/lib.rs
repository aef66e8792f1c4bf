//! afinador in the browser: a wasm-bindgen API over afinador-core on WebGPU.
//!
//! [`Afinador`] is one GPU device, one model and at most one training run. A page drives it from
//! a dedicated Web Worker (see `web/www/worker.js`): load the model's bytes, configure, stream the
//! data set through it in chunks pass after pass, call `step()` until it says the pass needs more
//! data, then export the adapter. The training loop is the core's [`Session`], the one the CLI
//! runs, so the same model, data and seed give the CLI's per-step losses.
//!
//! Structured results cross the boundary as plain JS objects (built from JSON); errors are
//! `Error`s carrying the core's message.
//!
//! [`Session`]: afinador_core::train::Session

mod bench;
mod blob;
mod checkpoint;
mod download;
mod engine;
mod training;
mod zip;

use afinador_core::formats::Gguf;
use wasm_bindgen::prelude::*;

pub use checkpoint::Checkpoint;
pub use download::ModelDownload;
pub use engine::Afinador;
pub use training::AdapterFiles;

/// The afinador version this module was built from.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Parse a GGUF file's bytes and describe it as JSON (architecture, tensor count, metadata keys).
#[wasm_bindgen(js_name = inspectGguf)]
pub fn inspect_gguf(bytes: &[u8]) -> Result<String, JsError> {
    let gguf = Gguf::parse(bytes).map_err(err)?;
    let keys: Vec<&str> = gguf.metadata().iter().map(|(k, _)| k).collect();
    let info = serde_json::json!({
        "architecture": gguf.architecture().ok(),
        "version": gguf.version(),
        "tensors": gguf.tensors().len(),
        "metadata_keys": keys,
    });
    Ok(info.to_string())
}

/// The CLI's training defaults (`afinador train`), as an object with the config's snake_case keys.
#[wasm_bindgen(js_name = defaultConfig)]
pub fn default_config() -> Result<JsValue, JsError> {
    to_js(&serde_json::to_value(afinador_core::train::TrainConfig::default()).map_err(err)?)
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// A panic (a bug) prints its message to the console instead of only "unreachable executed".
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            console_error(&format!("afinador panicked: {info}"));
        }));
    });
}

/// A core error as a JS `Error`.
fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A JSON value as a plain JS object.
fn to_js(value: &serde_json::Value) -> Result<JsValue, JsError> {
    js_sys::JSON::parse(&value.to_string()).map_err(|_| JsError::new("internal: bad JSON"))
}

/// The current time in milliseconds (the core has no clock).
fn now_ms() -> f64 {
    js_sys::Date::now()
}
