//! Checkpoints as bytes (the caller writes them to disk atomically): the LoRA parameters and
//! the AdamW moments in one safetensors file, and the trainer state as JSON — everything an
//! exact resume needs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{GpuLora, Result, TrainConfig, TrainError};
use crate::gpu::{Gpu, read_buffer_f32};
use crate::lora::LoraAdapter;

/// Where a run stands: enough to continue exactly where it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub step: usize,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Training sequences of this epoch already consumed.
    pub sequences_in_epoch: usize,
    /// Best evaluation loss so far and its step.
    pub best_eval_loss: Option<f64>,
    pub best_step: Option<usize>,
    /// Evaluations since the best one (early stopping).
    pub evals_without_improvement: usize,
    /// Tokens trained so far.
    pub tokens: usize,
    /// Wall-clock seconds of training so far.
    pub elapsed_s: f64,
    pub config: TrainConfig,
}

/// The two files of a checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointFiles {
    /// `optimizer.safetensors`: tensors `params`, `adam_m`, `adam_v` (flat f32).
    pub tensors: Vec<u8>,
    /// `trainer_state.json`.
    pub state_json: String,
}

/// Read the LoRA parameters and moments back and encode them with `state`; also returns the
/// adapter those parameters make (so callers need not read them back a second time).
pub async fn save(
    gpu: &Gpu,
    lora: &GpuLora,
    state: &TrainerState,
) -> Result<(CheckpointFiles, LoraAdapter)> {
    let read = |b| read_buffer_f32(gpu, b, 0, lora.n);
    let (p, m, v) = (
        read(&lora.params).await?,
        read(&lora.m).await?,
        read(&lora.v).await?,
    );
    let shape = vec![lora.n];
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> =
        [("params", &p), ("adam_m", &m), ("adam_v", &v)]
            .into_iter()
            .map(|(name, data)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytemuck::cast_slice(data),
                )
                .expect("shape matches data");
                (name, view)
            })
            .collect();
    let meta: HashMap<String, String> = [("format".to_string(), "afinador".to_string())].into();
    let tensors = safetensors::serialize(views, Some(meta))
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let state_json =
        serde_json::to_string_pretty(state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let adapter = lora.adapter_from(&p);
    Ok((
        CheckpointFiles {
            tensors,
            state_json,
        },
        adapter,
    ))
}

/// Decode a checkpoint and load it into `lora` (whose layout must match); returns the state.
pub fn load(gpu: &Gpu, lora: &GpuLora, files: &CheckpointFiles) -> Result<TrainerState> {
    let bad = |msg: String| TrainError::Checkpoint(msg);
    let state: TrainerState = serde_json::from_str(&files.state_json)
        .map_err(|e| bad(format!("trainer_state.json: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&files.tensors)
        .map_err(|e| bad(format!("optimizer.safetensors: {e}")))?;
    for (name, buf) in [
        ("params", &lora.params),
        ("adam_m", &lora.m),
        ("adam_v", &lora.v),
    ] {
        let t = st
            .tensor(name)
            .map_err(|e| bad(format!("optimizer.safetensors: {name}: {e}")))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape() != [lora.n] {
            return Err(bad(format!(
                "optimizer.safetensors: {name} is {:?} {:?}, this run needs F32 [{}] (was the checkpoint made with other LoRA settings?)",
                t.dtype(),
                t.shape(),
                lora.n
            )));
        }
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
        buf.write(gpu, 0, &values);
    }
    Ok(state)
}
