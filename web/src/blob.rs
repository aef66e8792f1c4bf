//! A browser `File` (any `Blob`) read one tensor at a time with `FileReaderSync`, which dedicated
//! workers have: a model is uploaded without ever being in the module's memory whole (a 491 MB
//! Qwen2.5-0.5B would otherwise sit in wasm memory next to its GPU copy).

use std::borrow::Cow;
use std::ops::Range;

use afinador_core::formats::{Gguf, GgufError, TensorInfo, TensorSource};
use js_sys::{Array, Function, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

/// The first read of a file's header; doubled until the tensor table fits (Gemma's 262144-token
/// vocabulary makes a header of ~10 MB).
const FIRST_HEAD_BYTES: u64 = 8 << 20;

pub(crate) struct BlobFile {
    blob: JsValue,
    reader: JsValue,
    pub(crate) len: u64,
}

/// A JS exception's message.
fn message(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

fn method(object: &JsValue, name: &str) -> Result<Function, String> {
    Reflect::get(object, &JsValue::from_str(name))
        .map_err(message)?
        .dyn_into()
        .map_err(|_| format!("{name} is not a function here"))
}

impl BlobFile {
    pub(crate) fn new(blob: JsValue) -> Result<BlobFile, String> {
        let global = js_sys::global();
        let ctor: Function = Reflect::get(&global, &JsValue::from_str("FileReaderSync"))
            .ok()
            .and_then(|c| c.dyn_into().ok())
            .ok_or("a model File can only be read in a Web Worker (FileReaderSync)")?;
        let reader = Reflect::construct(&ctor, &Array::new()).map_err(message)?;
        let len = Reflect::get(&blob, &JsValue::from_str("size"))
            .ok()
            .and_then(|s| s.as_f64())
            .ok_or("not a File or Blob (it has no size)")? as u64;
        Ok(BlobFile { blob, reader, len })
    }

    /// Bytes `range` of the file.
    pub(crate) fn read(&self, range: Range<u64>) -> Result<Vec<u8>, String> {
        let (start, end) = (range.start as f64, range.end as f64);
        let part = method(&self.blob, "slice")?
            .call2(&self.blob, &start.into(), &end.into())
            .map_err(message)?;
        let buffer = method(&self.reader, "readAsArrayBuffer")?
            .call1(&self.reader, &part)
            .map_err(message)?;
        Ok(Uint8Array::new(&buffer).to_vec())
    }

    /// The file's metadata and tensor table, from as much of its head as they need.
    pub(crate) fn header(&self) -> Result<Gguf, String> {
        let mut n = FIRST_HEAD_BYTES.min(self.len);
        loop {
            let head = self.read(0..n)?;
            match Gguf::parse_header(&head, self.len) {
                Ok(gguf) => return Ok(gguf),
                Err(GgufError::Truncated { .. }) if n < self.len => n = (2 * n).min(self.len),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl TensorSource for BlobFile {
    fn tensor(&self, gguf: &Gguf, info: &TensorInfo) -> Result<Cow<'_, [u8]>, GgufError> {
        let range = gguf.tensor_range(info).expect("checked by parse_header");
        self.read(range)
            .map(Cow::Owned)
            .map_err(|reason| GgufError::TensorRead {
                tensor: info.name.clone(),
                reason,
            })
    }
}
