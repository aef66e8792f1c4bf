//! One training step on the GPU: forward over B sequences with every activation the backward
//! needs saved, the fused chunked cross-entropy, the explicit backward layer by layer (base
//! weights frozen, LoRA gradients accumulated), the global gradient norm and AdamW. Per step
//! the host reads back only the per-token statistics and the gradient norm.
//!
//! The step is split by concern: [`arena`] (every buffer a step uses), [`linear`] (a frozen
//! projection with its LoRA term, forward and backward), [`block`] (the transformer block
//! forward and backward, the loss head).

mod arena;
mod block;
pub(crate) mod linear;

use self::arena::Arena;
use self::block::{backward, forward, loss_and_head_backward};
use self::linear::Drop;
use super::lora_gpu::GpuLora;
use super::{Result, TrainError};
use crate::gpu::{Gpu, Recorder, read_buffer_f32};
use crate::kernels::logits::{NO_TARGET, RowStats};
use crate::kernels::optim::{AdamW, adamw_step, grad_norm};
use crate::model::Model;
use crate::train::memory::MemorySavings;

/// What one step measured.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StepStats {
    /// Mean NLL over the trained tokens (before the update).
    pub loss: f64,
    /// Fraction of trained tokens whose most likely prediction was the target.
    pub token_accuracy: f64,
    /// Mean predictive entropy over the trained tokens.
    pub entropy: f64,
    /// Global LoRA gradient norm before clipping.
    pub grad_norm: f64,
    pub trained_tokens: usize,
    /// The update was skipped because the gradient was not finite.
    pub skipped: bool,
}

/// Options of the optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOptions {
    pub adamw: AdamW,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f32,
}

/// Trains LoRA adapters on a frozen (quantized) model, one batch at a time.
#[derive(Debug)]
pub struct Trainer<'m> {
    pub model: &'m Model,
    pub lora: GpuLora,
    arena: Option<Arena>,
    /// Optimizer steps taken.
    pub step: u32,
    /// Seeds the LoRA dropout masks (with the step and the micro-batch).
    pub seed: u64,
    /// Gradient checkpointing and the bf16 stream.
    savings: MemorySavings,
}

impl<'m> Trainer<'m> {
    pub fn new(model: &'m Model, lora: GpuLora) -> Trainer<'m> {
        Trainer {
            model,
            lora,
            arena: None,
            step: 0,
            seed: 0,
            savings: MemorySavings::default(),
        }
    }

    /// How the step saves memory.
    ///
    /// Gradient checkpointing keeps only each layer's input through the forward pass and runs
    /// the layer again inside the backward pass (the same gradients, bit for bit: the same
    /// kernels and dropout masks run on the same inputs), so saved activations shrink from L
    /// layers' worth to one at the cost of a second forward pass.
    ///
    /// The bf16 stream keeps each layer's input as bf16 (half the bytes), rounding it in the
    /// forward pass too, so the backward pass starts from what the forward pass used: a
    /// slightly different model, not an inconsistent gradient.
    pub fn set_memory_savings(&mut self, savings: MemorySavings) {
        if savings != self.savings {
            self.savings = savings;
            self.arena = None;
        }
    }

    pub fn memory_savings(&self) -> MemorySavings {
        self.savings
    }

    /// Allocate every buffer a step of `micro` micro-batches of `b`×`t` tokens uses (a step
    /// does it on first use; calling this first makes a too-large run fail before any work).
    pub fn prepare(&mut self, gpu: &Gpu, b: usize, t: usize, micro: usize) -> Result<()> {
        self.arena(gpu, b, t, micro)
    }

    fn arena(&mut self, gpu: &Gpu, b: usize, t: usize, micro: usize) -> Result<()> {
        if self
            .arena
            .as_ref()
            .is_none_or(|a| a.b != b || a.t != t || a.ids.len() < micro)
        {
            self.arena = None;
            self.arena = Some(Arena::new(
                gpu,
                &self.model.config,
                &self.lora,
                (b, t, micro),
                self.savings,
            )?);
        }
        Ok(())
    }

    /// Loss statistics of a batch without updating anything (evaluation).
    pub async fn evaluate(
        &mut self,
        gpu: &Gpu,
        batch: MicroBatch<'_>,
        b: usize,
    ) -> Result<StepStats> {
        self.run(gpu, &[batch], b, None).await
    }

    /// One optimizer step over gradient-accumulation micro-batches of `b` sequences each (the
    /// loss is the mean over every trained token of all of them).
    pub async fn train_step(
        &mut self,
        gpu: &Gpu,
        batches: &[MicroBatch<'_>],
        b: usize,
        options: StepOptions,
    ) -> Result<StepStats> {
        self.run(gpu, batches, b, Some(options)).await
    }

    async fn run(
        &mut self,
        gpu: &Gpu,
        batches: &[MicroBatch<'_>],
        b: usize,
        update: Option<StepOptions>,
    ) -> Result<StepStats> {
        let n = batches.first().map_or(0, |m| m.ids.len());
        let vocab = self.model.config.vocab_size;
        for m in batches {
            if b == 0 || n == 0 || !n.is_multiple_of(b) || m.ids.len() != n || m.targets.len() != n
            {
                return Err(TrainError::Batch(format!(
                    "micro-batches must hold {b} sequences of one length: got {} ids and {} targets",
                    m.ids.len(),
                    m.targets.len()
                )));
            }
            if let Some(&id) = m.ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(TrainError::Batch(format!(
                    "token id {id} is outside the vocabulary of {vocab}"
                )));
            }
        }
        let t = n / b;
        let trained: usize = batches
            .iter()
            .map(|m| m.targets.iter().filter(|&&x| x != NO_TARGET).count())
            .sum();
        self.arena(gpu, b, t, batches.len())?;
        let arena = self.arena.as_ref().expect("allocated");
        let model = self.model;
        let lora = &self.lora;
        let grad_scale = if trained > 0 {
            1.0 / trained as f32
        } else {
            0.0
        };
        let mut rec = Recorder::new(gpu);
        if update.is_some() {
            rec.clear_first(&lora.grads);
        }
        for (g, m) in batches.iter().enumerate() {
            arena.ids[g].write(gpu, 0, m.ids);
            arena.targets[g].write(gpu, 0, m.targets);
            let p_drop = lora.config.dropout;
            let drop = (update.is_some() && p_drop > 0.0).then(|| Drop {
                p: p_drop,
                seed: crate::util::hash32(&[
                    self.seed as u32,
                    (self.seed >> 32) as u32,
                    self.step,
                    g as u32,
                ]),
            });
            forward(&mut rec, model, lora, arena, g, drop).await?;
            loss_and_head_backward(&mut rec, model, arena, g, update.map(|_| grad_scale)).await?;
            if update.is_some() {
                backward(&mut rec, model, lora, arena, drop).await?;
            }
        }
        if let Some(options) = update {
            let n_params = lora.n as u32;
            grad_norm(
                &mut rec,
                &lora.grads,
                n_params,
                &arena.norm_partials,
                &arena.norm,
                options.max_grad_norm,
            )
            .await?;
            let t_step = self.step + 1;
            adamw_step(
                &mut rec,
                options.adamw,
                t_step,
                &lora.params,
                &lora.grads,
                &lora.m,
                &lora.v,
                &arena.norm,
                n_params,
            )
            .await?;
        }
        rec.submit().await?;
        let mut stats = Vec::with_capacity(n * batches.len());
        let mut targets = Vec::with_capacity(n * batches.len());
        for (g, m) in batches.iter().enumerate() {
            stats.extend(RowStats::decode(
                &read_buffer_f32(gpu, &arena.stats[g], 0, n * 4).await?,
            ));
            targets.extend_from_slice(m.targets);
        }
        let mut out = summarize(&stats, &targets);
        if update.is_some() {
            let norm = read_buffer_f32(gpu, &arena.norm, 0, 3).await?;
            out.grad_norm = norm[0] as f64;
            out.skipped = norm[2] == 0.0;
            if !out.skipped {
                self.step += 1;
            }
        }
        Ok(out)
    }
}

/// One micro-batch: B sequences of T token ids and their targets (`u32::MAX`: not trained).
#[derive(Clone, Copy, Debug)]
pub struct MicroBatch<'a> {
    pub ids: &'a [u32],
    pub targets: &'a [u32],
}

/// Loss, accuracy and entropy over the trained positions.
fn summarize(stats: &[RowStats], targets: &[u32]) -> StepStats {
    let (mut loss, mut correct, mut entropy, mut count) = (0.0f64, 0usize, 0.0f64, 0usize);
    for (s, &t) in stats.iter().zip(targets) {
        if t != NO_TARGET {
            loss -= s.target_logprob as f64;
            entropy += s.entropy as f64;
            correct += (s.argmax == t) as usize;
            count += 1;
        }
    }
    let c = count.max(1) as f64;
    StepStats {
        loss: loss / c,
        token_accuracy: correct as f64 / c,
        entropy: entropy / c,
        grad_norm: 0.0,
        trained_tokens: count,
        skipped: false,
    }
}
