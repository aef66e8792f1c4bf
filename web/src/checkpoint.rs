//! Checkpoints as bytes, for the page to keep (IndexedDB) so a reloaded page can resume the run
//! exactly: the same two files as the CLI's checkpoint directories.

use afinador_core::train::checkpoint::{self, CheckpointFiles, TrainerState};
use wasm_bindgen::prelude::*;

use crate::engine::Afinador;
use crate::err;

/// A run's checkpoint: the CLI's `optimizer.safetensors` (LoRA parameters and AdamW moments)
/// and `trainer_state.json` (step, epoch, position in the epoch, best loss, configuration).
#[wasm_bindgen]
pub struct Checkpoint {
    tensors: Vec<u8>,
    state_json: String,
}

#[wasm_bindgen]
impl Checkpoint {
    /// `optimizer.safetensors`.
    #[wasm_bindgen(getter)]
    pub fn tensors(&self) -> Vec<u8> {
        self.tensors.clone()
    }

    /// `trainer_state.json`.
    #[wasm_bindgen(getter, js_name = stateJson)]
    pub fn state_json(&self) -> String {
        self.state_json.clone()
    }
}

#[wasm_bindgen]
impl Afinador {
    /// The run's checkpoint, read back from the GPU (between steps).
    #[wasm_bindgen(js_name = saveCheckpoint)]
    pub async fn save_checkpoint(&mut self) -> Result<Checkpoint, JsError> {
        let Afinador { gpu, run, .. } = self;
        let run = run.as_mut().ok_or_else(crate::training::no_run)?;
        let session = run.session.as_mut().ok_or_else(crate::training::no_run)?;
        let (files, _) = checkpoint::save(gpu, &session.trainer.lora, &session.state)
            .await
            .map_err(err)?;
        Ok(Checkpoint {
            tensors: files.tensors,
            state_json: files.state_json,
        })
    }

    /// Continue a run from a checkpoint: call after the first pass's `endPass` and before any
    /// step, having configured the checkpoint's own configuration
    /// (`configure(JSON.parse(stateJson).config)`) and streaming the same data. `metrics_jsonl`
    /// holds the metrics lines written before the checkpoint. Returns the step it resumes at.
    #[wasm_bindgen(js_name = resumeFrom)]
    pub fn resume_from(
        &mut self,
        tensors: Vec<u8>,
        state_json: String,
        metrics_jsonl: &str,
    ) -> Result<usize, JsError> {
        let Afinador { gpu, run, .. } = self;
        let run = run.as_mut().ok_or_else(crate::training::no_run)?;
        let session = run
            .session
            .as_mut()
            .ok_or_else(|| JsError::new("resumeFrom comes after the first pass's endPass"))?;
        if session.state.step > 0 {
            return Err(JsError::new("resumeFrom comes before the first step"));
        }
        let files = CheckpointFiles {
            tensors,
            state_json,
        };
        let state: TrainerState = serde_json::from_str(&files.state_json).map_err(err)?;
        if state.config != session.config {
            return Err(JsError::new(
                "the checkpoint was made with another configuration: configure its own first",
            ));
        }
        session.resume(gpu, &files).map_err(err)?;
        run.metrics = metrics_jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("metrics: {e}")))?;
        Ok(session.state.step)
    }
}
