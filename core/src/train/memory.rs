//! How much device memory a training run will hold, by category, before any of it is allocated
//! (`afinador preflight`), and the largest batch that fits a budget.
//!
//! The plan counts what [`Trainer`](super::Trainer) allocates: the frozen weights (their GGUF
//! bytes: the upload repacks blocks without growing them), LoRA parameters with their gradients
//! and two AdamW moments, the activations the forward pass saves for the backward pass, the
//! backward pass's scratch, and one chunk of logits rows. `tests/train.rs` checks it against the
//! bytes the trainer really holds ([`crate::gpu::MemoryCounter`]).

use serde::Serialize;

use crate::lora::{LoraConfig, LoraError};
use crate::model::ModelConfig;

/// Logits rows computed at once (the trainer's chunk, capped further by the binding limit).
pub const LOGIT_ROWS: usize = 512;

/// Device bytes of one training configuration, by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryPlan {
    pub weights: u64,
    pub lora_parameters: u64,
    pub lora_gradients: u64,
    pub optimizer_state: u64,
    /// Saved by the forward pass for the backward pass (every layer).
    pub activations: u64,
    /// Gradients of activations, dropout scratch, token ids and targets.
    pub scratch: u64,
    /// One chunk of logits rows.
    pub logits: u64,
    /// The largest single buffer (it must fit the storage-binding limit).
    pub largest_buffer: u64,
}

/// What a run trades compute or precision for memory with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemorySavings {
    /// Gradient checkpointing: one layer's activations are saved instead of every layer's.
    pub checkpointing: bool,
    /// The residual stream entering each layer is kept as bf16 ([`crate::kernels::bf16`]), with
    /// two f32 buffers to run a layer from.
    pub bf16_stream: bool,
}

/// The shape of a run the plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    pub batch: usize,
    pub seq_len: usize,
    pub grad_accum: usize,
    pub savings: MemorySavings,
}

/// A run's memory plan with its savings decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPlan {
    /// The plan of the run as it will go.
    pub plan: MemoryPlan,
    /// Its shape, the `auto` savings resolved against the budget.
    pub shape: RunShape,
    /// The plan with gradient checkpointing the other way (the rest as decided).
    pub checkpointing_toggled: MemoryPlan,
}

impl MemoryPlan {
    /// The plan for training `lora` on a model of shape `model` whose weights take
    /// `weight_bytes`, on a device binding at most `max_binding` bytes per buffer.
    pub fn training(
        model: &ModelConfig,
        weight_bytes: u64,
        lora: &LoraConfig,
        shape: RunShape,
        max_binding: u64,
    ) -> Result<MemoryPlan, LoraError> {
        let f = 4u64; // every activation, gradient and LoRA value is an f32
        let n = (shape.batch * shape.seq_len) as u64;
        let (c, ff, q, kv) = (
            model.n_embd as u64,
            model.n_ff as u64,
            model.q_dim() as u64,
            model.kv_dim() as u64,
        );
        let (h, layers, r) = (model.n_head as u64, model.n_layer as u64, lora.r as u64);
        let modules = lora.modules()?;
        let per_layer_params: u64 = modules
            .iter()
            .map(|&m| {
                let (out, inp) = model.module_shape(m);
                r * (out + inp) as u64
            })
            .sum();
        let params = layers * per_layer_params * f;

        // Per token and layer: two norms' outputs and 1/rms, q, k, v, attention output and its
        // log-sum-exp per head, the residual after attention, gate, up and their product, and
        // x·Aᵀ of every adapted projection; with per-head q/k norms (qwen3) q and k before them
        // and their 1/rms.
        let head_norms = match model.arch.qk_norm {
            true => q + kv + h + model.n_head_kv as u64,
            false => 0,
        };
        // With post norms (gemma3) both block outputs before them and their 1/rms.
        let post_norms = if model.arch.post_norms { 2 * c + 2 } else { 0 };
        let saved_per_layer = 3 * c
            + 2
            + 2 * q
            + 2 * kv
            + h
            + 3 * ff
            + r * modules.len() as u64
            + head_norms
            + post_norms;
        // The residual stream entering each layer and leaving the last (bf16: 2 bytes a value,
        // and two f32 buffers to run a layer from), the final norm.
        let stream_bytes = match shape.savings.bf16_stream {
            false => (layers + 1) * c * f,
            true => (layers + 1) * c * 2 + 2 * c * f,
        };
        let saved_layers = if shape.savings.checkpointing {
            1
        } else {
            layers
        };
        let activations = n * ((saved_layers * saved_per_layer + c + 1) * f + stream_bytes);

        // Gradients flowing back through one layer at a time, and the dropped-out input of a
        // LoRA projection with its gradient.
        let widest = c.max(ff).max(q);
        let backward = 3 * c
            + 2 * q
            + 2 * kv
            + h
            + 3 * ff
            + r
            + 2 * widest
            + if model.arch.qk_norm { q + kv } else { 0 }
            + if model.arch.post_norms { c } else { 0 };
        // Token ids, targets and four statistics per position for each micro-batch.
        let io = shape.grad_accum.max(1) as u64 * 6;
        let scratch = n * (backward + io) * f;

        let vocab = model.vocab_size as u64;
        let rows = n
            .min((max_binding / (vocab * f)).max(1))
            .min(LOGIT_ROWS as u64);
        let logits = rows * vocab * f;

        let largest_buffer = [params, n * ff * f, n * widest * f, logits, n * q * f]
            .into_iter()
            .max()
            .unwrap_or(0);
        Ok(MemoryPlan {
            weights: weight_bytes,
            lora_parameters: params,
            lora_gradients: params,
            optimizer_state: 2 * params,
            activations,
            scratch,
            logits,
            largest_buffer,
        })
    }

    /// The plan of `config`'s run (its batch, sequence length and accumulation), its `auto`
    /// savings resolved against `config.memory_budget_gib`: gradient checkpointing first, then
    /// the bf16 stream if the run still does not fit.
    pub fn for_run(
        model: &ModelConfig,
        weight_bytes: u64,
        lora: &LoraConfig,
        config: &crate::train::TrainConfig,
        max_binding: u64,
    ) -> Result<RunPlan, LoraError> {
        let shape = |checkpointing, bf16_stream| RunShape {
            batch: config.batch_size,
            seq_len: config.seq_len,
            grad_accum: config.grad_accum,
            savings: MemorySavings {
                checkpointing,
                bf16_stream,
            },
        };
        let plan = |s| MemoryPlan::training(model, weight_bytes, lora, s, max_binding);
        let total = |s| plan(s).map(|p| p.total());
        let budget = config
            .memory_budget_gib
            .map(|gib| (gib * (1u64 << 30) as f64) as u64);
        let checkpointing = config.gradient_checkpointing.resolve(
            total(shape(false, false))?,
            total(shape(true, false))?,
            budget,
        );
        let bf16_stream = config.bf16_stream.resolve(
            total(shape(checkpointing, false))?,
            total(shape(checkpointing, true))?,
            budget,
        );
        let chosen = shape(checkpointing, bf16_stream);
        Ok(RunPlan {
            plan: plan(chosen)?,
            shape: chosen,
            checkpointing_toggled: plan(shape(!checkpointing, bf16_stream))?,
        })
    }

    pub fn total(&self) -> u64 {
        self.weights
            + self.lora_parameters
            + self.lora_gradients
            + self.optimizer_state
            + self.activations
            + self.scratch
            + self.logits
    }

    /// Whether the plan fits `budget` bytes in all (when known) and `max_binding` per buffer.
    pub fn fits(&self, budget: Option<u64>, max_binding: u64) -> bool {
        self.largest_buffer <= max_binding && budget.is_none_or(|b| self.total() <= b)
    }
}

/// The largest batch (a power of two up to 1024) whose plan at `shape.seq_len` fits, or `None`
/// when even a batch of one does not.
pub fn largest_batch(
    model: &ModelConfig,
    weight_bytes: u64,
    lora: &LoraConfig,
    shape: RunShape,
    budget: Option<u64>,
    max_binding: u64,
) -> Result<Option<usize>, LoraError> {
    let mut best = None;
    let mut batch = 1;
    while batch <= 1024 {
        let plan = MemoryPlan::training(
            model,
            weight_bytes,
            lora,
            RunShape { batch, ..shape },
            max_binding,
        )?;
        if !plan.fits(budget, max_binding) {
            break;
        }
        best = Some(batch);
        batch *= 2;
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::Module;

    fn smollm() -> ModelConfig {
        ModelConfig {
            arch: crate::model::arch::LLAMA,
            sliding_window: None,
            name: "SmolLM2-135M shape".into(),
            n_layer: 30,
            n_embd: 576,
            n_ff: 1536,
            n_head: 9,
            n_head_kv: 3,
            head_dim: 64,
            rope_dim: 64,
            vocab_size: 49152,
            context_length: 8192,
            rms_eps: 1e-5,
            rope_base: 100_000.0,
            tied_embeddings: true,
            rope_factors: None,
            rope_scale: 1.0,
            long_rope_after: None,
        }
    }

    #[test]
    fn lora_state_is_four_copies_of_the_parameters() {
        let lora = LoraConfig::new(16, 32.0, &[Module::QProj, Module::VProj]);
        let shape = RunShape {
            batch: 1,
            seq_len: 256,
            grad_accum: 1,
            savings: MemorySavings::default(),
        };
        let plan = MemoryPlan::training(&smollm(), 0, &lora, shape, 1 << 30).unwrap();
        // q_proj 16·(576+576), v_proj 16·(192+576), 30 layers, f32.
        let params = 30 * 16 * (576 + 576 + 192 + 576) * 4;
        assert_eq!(plan.lora_parameters, params);
        assert_eq!(plan.optimizer_state, 2 * params);
        assert_eq!(plan.logits, 256 * 49152 * 4);
        // Doubling the tokens doubles activations and scratch, but not the logits chunk (capped
        // at LOGIT_ROWS rows).
        let double =
            MemoryPlan::training(&smollm(), 0, &lora, RunShape { batch: 2, ..shape }, 1 << 30)
                .unwrap();
        assert_eq!(double.activations, 2 * plan.activations);
        assert_eq!(double.logits, 512 * 49152 * 4);
        let four =
            MemoryPlan::training(&smollm(), 0, &lora, RunShape { batch: 4, ..shape }, 1 << 30)
                .unwrap();
        assert_eq!(four.logits, double.logits);
    }

    #[test]
    fn the_largest_batch_stops_at_the_budget() {
        let lora = LoraConfig::new(16, 32.0, &[Module::QProj]);
        let shape = RunShape {
            batch: 1,
            seq_len: 512,
            grad_accum: 1,
            savings: MemorySavings::default(),
        };
        let m = smollm();
        let one = MemoryPlan::training(&m, 100 << 20, &lora, shape, 1 << 30).unwrap();
        let eight = MemoryPlan::training(
            &m,
            100 << 20,
            &lora,
            RunShape { batch: 8, ..shape },
            1 << 30,
        )
        .unwrap();
        let budget = Some(eight.total() + one.total());
        assert_eq!(
            largest_batch(&m, 100 << 20, &lora, shape, budget, 1 << 30).unwrap(),
            Some(8)
        );
        assert_eq!(
            largest_batch(&m, 100 << 20, &lora, shape, Some(1 << 20), 1 << 30).unwrap(),
            None,
            "the weights alone exceed a 1 MiB budget"
        );
    }
}
