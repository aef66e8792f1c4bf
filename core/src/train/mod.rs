//! Training: the streaming data pipeline (records → token ids + loss mask → packed sequences),
//! LoRA weights on the GPU, and the training step (forward, fused cross-entropy, explicit
//! backward, gradient norm, AdamW).

pub mod checkpoint;
pub mod config;
pub mod data;
mod encoder;
pub mod lora_gpu;
pub mod memory;
pub mod run;
pub mod session;
pub mod step;

pub use config::{AutoSwitch, LrSchedule, TrainConfig};
pub use encoder::ModelTextEncoder;
pub use lora_gpu::GpuLora;
pub use memory::{MemoryPlan, MemorySavings, RunShape};
pub use run::{Clock, Evaluation, Finish, FirstPass, PassEnd, StepOutcome};
pub use session::{LoraStart, Plan, Session, StepReport, StopReason};
pub use step::{MicroBatch, StepOptions, StepStats, Trainer};

/// Errors of the training layer.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error(transparent)]
    Lora(#[from] crate::lora::LoraError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("bad batch: {0}")]
    Batch(String),
    /// The data does not give one batch: why, and what to change.
    #[error("{0}")]
    TooLittleData(String),
    #[error("adapter does not fit the model: {0}")]
    Adapter(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// Result alias for the training layer.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
