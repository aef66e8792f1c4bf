//! The GPU context: adapter selection, device, limits and features, buffers, the pipeline cache,
//! batched command recording and async readback. Passed in everywhere, never global.

mod buffer;
mod context;
mod pipeline;
mod recorder;

pub use buffer::{GpuBuffer, MemoryCounter, read_buffer_f32, read_buffer_u32};
pub use context::{AdapterSummary, Backend, Gpu, GpuOptions, list_adapters};
pub use pipeline::{Binding, KernelLayout, PipelineKey};
pub use recorder::{Arg, Recorder, grid_1d};

/// Errors from the GPU layer, each naming what to change.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found for backend {backend}: {hint}")]
    NoAdapter { backend: String, hint: String },
    #[error("GPU adapter index {index} does not exist: there are {count} (see `afinador devices`)")]
    BadAdapterIndex { index: usize, count: usize },
    #[error("could not open the GPU device on {adapter}: {message}")]
    RequestDevice { adapter: String, message: String },
    #[error(
        "buffer '{label}' needs {size} bytes but this device binds at most {limit} bytes per \
         storage buffer ({limit_name}); use a smaller model, batch or sequence length"
    )]
    TooLarge {
        label: String,
        size: u64,
        limit: u64,
        limit_name: &'static str,
    },
    #[error("GPU validation error in {context}: {message}")]
    Validation { context: String, message: String },
    #[error("GPU out of memory in {context}: {message}")]
    OutOfMemory { context: String, message: String },
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    #[error("{what} needs the GPU feature {feature}, which {adapter} does not offer")]
    Unsupported {
        what: &'static str,
        feature: &'static str,
        adapter: String,
    },
    #[error("shader preprocessing failed: {0}")]
    Preprocess(#[from] afinador_shaders::PreprocessError),
}

/// Result alias for the GPU layer.
pub type Result<T, E = GpuError> = std::result::Result<T, E>;
