//! File formats: the GGUF reader ([`Gguf`]) and writer ([`GgufWriter`]), ggml tensor types
//! ([`GgmlType`]) and the quantized block encodings ([`quant`]).
//!
//! Everything works on in-memory bytes (no `std::fs`), so the same code runs natively and in
//! WebAssembly; bad input is an error, never a panic.

mod error;
mod ggml_type;
pub mod gguf;
pub mod gguf_writer;
pub mod kquant;
mod metadata;
pub mod quant;

#[cfg(test)]
mod tests;

pub use error::GgufError;
pub use ggml_type::GgmlType;
pub use gguf::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, Gguf, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_TENSOR_NAME, TensorInfo,
    TensorSource, WholeFile,
};
pub use gguf_writer::{GGUF_WRITE_VERSION, GgufWriter};
pub use metadata::{KEY_ALIGNMENT, KEY_ARCHITECTURE, MetaArray, MetaValue, Metadata};
