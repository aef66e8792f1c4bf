//! Training: the streaming data pipeline (records → token ids + loss mask → packed sequences).
//! The optimizer, the step loop, metrics and checkpoints come with the training issue.

pub mod data;
mod encoder;

pub use encoder::ModelTextEncoder;
