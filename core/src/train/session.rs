//! One training run's loop, shared by the CLI and the browser: which sequences form a step, the
//! learning rate, the step bookkeeping, evaluation, the best loss and early stopping.
//!
//! The caller owns the data source, the clock and the outputs. Per pass over the data it runs a
//! [`DataPipeline`](super::data::DataPipeline) built from [`data_config`] and offers every
//! sequence to [`Session::offer`]; when that returns `true` it calls
//! [`Session::train_step`](super::run). The first pass (before any step) only counts the
//! training sequences and collects the validation set
//! ([`FirstPass`](super::run::FirstPass)), which [`Plan::new`] turns into the number of
//! steps. Because both front ends go through this one loop (and [`super::run`]'s driver), the
//! same model, data and seed give the same per-step losses everywhere.

use super::checkpoint::TrainerState;
use super::data::{DataConfig, DataError, DataStats, PackMode, RecordFormat, Sequence};
use super::memory::{MemoryPlan, MemorySavings};
use super::{GpuLora, MicroBatch, Result, StepStats, TrainConfig, TrainError, Trainer};
use crate::gpu::Gpu;
use crate::lora::{LoraConfig, Module};

/// Steps in a row with a non-finite gradient before the run stops.
pub const MAX_SKIPPED_IN_A_ROW: usize = 5;

/// The data pipeline options of a run (`val_ratio` 0 for a separate evaluation file).
pub fn data_config(config: &TrainConfig, val_ratio: f64) -> Result<DataConfig, DataError> {
    let format = RecordFormat::from_flags(
        config.format.as_deref(),
        config.prompt_field.as_deref(),
        config.completion_field.as_deref(),
    )?;
    Ok(DataConfig {
        format,
        train_on_prompt: config.train_on_prompt,
        strict: config.strict,
        seq_len: config.seq_len,
        pack: if config.pack {
            PackMode::Packed
        } else {
            PackMode::Padded
        },
        pad_id: 0,
        shuffle_buffer: config.shuffle_buffer,
        seed: config.seed,
        val_ratio,
        stratify_field: config.stratify_field.clone(),
        ..Default::default()
    })
}

/// The LoRA configuration of a run on a model of architecture `arch` (whose fused projections
/// take the place of their parts in the target list).
pub fn lora_config(
    config: &TrainConfig,
    arch: &crate::model::Architecture,
    base_model: String,
) -> Result<LoraConfig> {
    let names: Vec<&str> = config.target_modules.split(',').map(str::trim).collect();
    let modules = arch
        .lora_modules(&Module::parse_list(&names)?)
        .map_err(TrainError::Adapter)?;
    let mut lora = LoraConfig::new(config.lora_r, config.lora_alpha, &modules);
    lora.dropout = config.lora_dropout;
    lora.use_rslora = config.rslora;
    lora.base_model_name_or_path = Some(base_model);
    Ok(lora)
}

/// The state of a run that has not taken a step yet.
pub fn fresh_state(config: &TrainConfig) -> TrainerState {
    TrainerState {
        step: 0,
        epoch: 0,
        sequences_in_epoch: 0,
        best_eval_loss: None,
        best_step: None,
        evals_without_improvement: 0,
        tokens: 0,
        elapsed_s: 0.0,
        config: config.clone(),
    }
}

/// How long the run is, from the first pass over the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Training sequences per epoch.
    pub per_epoch: usize,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
}

impl Plan {
    /// The run's length from the first pass: `per_epoch` training sequences, `stats` its
    /// counters (which explain the error when the data does not fill one batch).
    pub fn new(config: &TrainConfig, per_epoch: usize, stats: &DataStats) -> Result<Plan> {
        let seqs_per_step = config.batch_size * config.grad_accum;
        if per_epoch < config.batch_size {
            return Err(TrainError::TooLittleData(too_little_data(
                config, per_epoch, stats,
            )));
        }
        let total_steps = if config.max_steps > 0 {
            config.max_steps
        } else {
            ((config.epochs * per_epoch as f64) / seqs_per_step as f64)
                .ceil()
                .max(1.0) as usize
        };
        Ok(Plan {
            per_epoch,
            steps_per_epoch: (per_epoch / seqs_per_step).max(1),
            total_steps,
        })
    }
}

/// Why the data gives fewer sequences than one batch, and what would change that.
fn too_little_data(config: &TrainConfig, per_epoch: usize, stats: &DataStats) -> String {
    let batch = config.batch_size;
    let mut why = Vec::new();
    if stats.records == 0 && stats.bad_records == 0 {
        why.push("the data holds no records (is the file empty?)".to_string());
    } else if stats.records == 0 {
        let first = stats
            .first_bad
            .first()
            .map_or(String::new(), |b| format!(", the first at {b}"));
        why.push(format!(
            "all {} records are bad{first}: fix them",
            stats.bad_records
        ));
    }
    if stats.dropped > 0 {
        let keep = if stats.seq_len_to_keep > config.seq_len {
            format!(
                "; --seq-len {} keeps a trained token of each, {} keeps every record whole \
                 (now {})",
                stats.seq_len_to_keep, stats.lengths.max, config.seq_len
            )
        } else {
            String::new()
        };
        why.push(format!(
            "{} of {} records are longer than --seq-len {} before their first trained token, \
             so nothing of them is left to train on{keep}",
            stats.dropped,
            stats.records - stats.val_records,
            config.seq_len
        ));
    }
    if stats.val_records > 0 && config.val_ratio > 0.0 {
        why.push(format!(
            "{} records went to validation (--val-ratio {})",
            stats.val_records, config.val_ratio
        ));
    }
    if batch > 1 && per_epoch > 0 {
        why.push(format!("or lower --batch-size to {per_epoch}"));
    } else if why.is_empty() {
        why.push("add data".into());
    }
    format!(
        "the data gives {per_epoch} training sequences, fewer than one batch of {batch}: {}",
        why.join("; ")
    )
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Completed,
    NonFinite,
    EarlyStopping,
    Interrupted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Completed => "completed",
            StopReason::NonFinite => "non-finite gradients",
            StopReason::EarlyStopping => "early stopping",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// What one optimizer step did.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub stats: StepStats,
    /// Optimizer steps taken after this one.
    pub step: usize,
    /// Epochs done, fractional.
    pub epoch: f64,
    pub lr: f32,
    /// Tokens (positions) of this step's sequences.
    pub tokens: usize,
}

impl StepReport {
    /// The `metrics.jsonl` line of this step (the caller measures time).
    pub fn metrics(&self, tokens_per_s: f64, elapsed_s: f64) -> serde_json::Value {
        serde_json::json!({
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.stats.loss,
            "token_accuracy": self.stats.token_accuracy,
            "entropy": self.stats.entropy,
            "grad_norm": self.stats.grad_norm,
            "lr": self.lr,
            "tokens_per_s": tokens_per_s,
            "elapsed_s": elapsed_s,
        })
    }
}

/// Add an evaluation's figures to a metrics line.
pub fn add_eval_metrics(line: &mut serde_json::Value, eval: &StepStats) {
    line["eval_loss"] = serde_json::json!(eval.loss);
    line["eval_ppl"] = serde_json::json!(eval.loss.exp());
    line["eval_token_accuracy"] = serde_json::json!(eval.token_accuracy);
}

/// A training run in progress.
#[derive(Debug)]
pub struct Session<'m> {
    pub config: TrainConfig,
    pub trainer: Trainer<'m>,
    pub state: TrainerState,
    pub plan: Plan,
    /// The validation sequences (already cut to `eval_limit`).
    pub val: Vec<Sequence>,
    pending: Vec<Sequence>,
    /// Training sequences offered in the current pass.
    seen: usize,
    skipped_in_a_row: usize,
}

/// How a run's LoRA parameters start.
#[derive(Debug)]
pub enum LoraStart {
    /// Fresh: A random (seeded by the configuration), B zero.
    Fresh,
    /// An existing adapter (`--init-adapter`); its rank, alpha and targets are the run's.
    Adapter(crate::lora::LoraAdapter),
}

/// How `config` saves memory training on `model` (gradient checkpointing, the bf16 stream):
/// `on`/`off` as said; `auto` as the memory plans against `memory_budget_gib` decide
/// ([`super::memory::MemoryPlan::for_run`]).
pub fn savings_for(
    gpu: &Gpu,
    model: &crate::model::Model,
    config: &TrainConfig,
    lora: &crate::lora::LoraConfig,
) -> Result<MemorySavings> {
    let weights = model.weights.device_bytes();
    let max_binding = gpu.limits.max_storage_buffer_binding_size;
    let run = MemoryPlan::for_run(&model.config, weights, lora, config, max_binding)?;
    Ok(run.shape.savings)
}

impl<'m> Session<'m> {
    /// A run on `model`: its LoRA parameters on the GPU (as `lora` says), the trainer seeded by
    /// the configuration, a fresh state; `base_model` names the base in the adapter files.
    /// [`resume`](Self::resume) continues a checkpoint instead of the fresh state.
    pub fn start(
        gpu: &Gpu,
        model: &'m crate::model::Model,
        config: TrainConfig,
        plan: Plan,
        val: Vec<Sequence>,
        lora: LoraStart,
        base_model: String,
    ) -> Result<Session<'m>> {
        let lora_config = lora_config(&config, &model.config.arch, base_model)?;
        let savings = savings_for(gpu, model, &config, &lora_config)?;
        let lora = match lora {
            LoraStart::Fresh => GpuLora::init(gpu, &model.config, &lora_config, config.seed)?,
            LoraStart::Adapter(mut adapter) => {
                adapter.config.dropout = lora_config.dropout;
                adapter.config.base_model_name_or_path = lora_config.base_model_name_or_path;
                GpuLora::from_adapter(gpu, &model.config, &adapter)?
            }
        };
        let mut trainer = Trainer::new(model, lora);
        trainer.seed = config.seed;
        trainer.set_memory_savings(savings);
        let state = fresh_state(&config);
        Ok(Session::new(config, trainer, state, plan, val))
    }

    /// Continue from a checkpoint (before the first step): its LoRA parameters, optimizer
    /// moments and trainer state.
    pub fn resume(&mut self, gpu: &Gpu, files: &super::checkpoint::CheckpointFiles) -> Result<()> {
        let state = super::checkpoint::load(gpu, &self.trainer.lora, files)?;
        self.trainer.step = state.step as u32;
        self.state = state;
        Ok(())
    }

    pub fn new(
        config: TrainConfig,
        trainer: Trainer<'m>,
        state: TrainerState,
        plan: Plan,
        mut val: Vec<Sequence>,
    ) -> Session<'m> {
        if config.eval_limit > 0 {
            val.truncate(config.eval_limit);
        }
        Session {
            pending: Vec::with_capacity(config.batch_size * config.grad_accum),
            config,
            trainer,
            state,
            plan,
            val,
            seen: 0,
            skipped_in_a_row: 0,
        }
    }

    /// The metrics line of an evaluation outside a step (at an epoch's end, or the final one):
    /// `step`, `epoch` and the eval keys.
    pub(super) fn eval_line(&self, eval: &StepStats) -> serde_json::Value {
        let mut line = serde_json::json!({ "step": self.state.step, "epoch": self.state.epoch });
        add_eval_metrics(&mut line, eval);
        line
    }

    /// Why the run ends once the front end stops calling [`train_step`](Self::train_step): non-finite
    /// gradients win, then the user's interruption, then the session's own reason, else
    /// completion.
    pub(super) fn end_reason(&self, interrupted: bool) -> StopReason {
        match self.stop_reason() {
            Some(StopReason::NonFinite) => StopReason::NonFinite,
            _ if interrupted => StopReason::Interrupted,
            reason => reason.unwrap_or(StopReason::Completed),
        }
    }

    /// The run's summary (`training_summary.json`): the stop reason, steps, epochs, tokens,
    /// time and throughput over the seconds spent in steps and evaluations, the best
    /// evaluation and the LoRA parameter count; the front ends add what only they know (files,
    /// device, memory).
    pub(super) fn summary(&self, reason: StopReason) -> serde_json::Value {
        let s = &self.state;
        let elapsed_s = s.elapsed_s;
        serde_json::json!({
            "stop_reason": reason.as_str(),
            "steps": s.step,
            "epochs": s.step as f64 / self.plan.steps_per_epoch as f64,
            "tokens": s.tokens,
            "time_s": elapsed_s,
            "tokens_per_s": s.tokens as f64 / elapsed_s.max(1e-9),
            "best_step": s.best_step,
            "best_eval_loss": s.best_eval_loss,
            "lora_parameters": self.trainer.lora.n,
        })
    }

    /// Start a pass over the data for epoch `self.state.epoch`.
    pub fn begin_pass(&mut self) {
        self.seen = 0;
        self.pending.clear();
    }

    /// Offer the pass's next sequence; `true` when a step's worth is ready for
    /// [`train_step`](Self::train_step).
    /// Validation sequences are ignored (they were collected by the first pass), and so are the
    /// training sequences a resumed run already trained on in this epoch.
    pub fn offer(&mut self, seq: Sequence, is_val: bool) -> bool {
        if is_val {
            return false;
        }
        self.seen += 1;
        if self.seen <= self.state.sequences_in_epoch {
            return false;
        }
        self.pending.push(seq);
        self.pending.len() >= self.config.batch_size * self.config.grad_accum
    }

    /// One optimizer step over the sequences offered since the last one.
    pub(super) async fn step(&mut self, gpu: &Gpu) -> Result<StepReport> {
        let c = &self.config;
        let seqs = std::mem::take(&mut self.pending);
        let lr = c.lr_at(self.state.step, self.plan.total_steps);
        let options = c.step_options(lr);
        let micro: Vec<(Vec<u32>, Vec<u32>)> = seqs.chunks(c.batch_size).map(concat).collect();
        let batches: Vec<MicroBatch> = micro
            .iter()
            .map(|(i, t)| MicroBatch { ids: i, targets: t })
            .collect();
        let stats = self
            .trainer
            .train_step(gpu, &batches, c.batch_size, options)
            .await?;
        let tokens = seqs.len() * c.seq_len;
        self.state.tokens += tokens;
        let epoch = self.state.epoch as f64
            + (self.state.sequences_in_epoch + seqs.len()) as f64
                / self.plan.per_epoch.max(1) as f64;
        self.state.sequences_in_epoch += seqs.len();
        if stats.skipped {
            self.skipped_in_a_row += 1;
        } else {
            self.skipped_in_a_row = 0;
            self.state.step = self.trainer.step as usize;
        }
        Ok(StepReport {
            stats,
            step: self.state.step,
            epoch,
            lr,
            tokens,
        })
    }

    /// Why the run should stop now, if it should (interruptions are the caller's).
    pub fn stop_reason(&self) -> Option<StopReason> {
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW {
            Some(StopReason::NonFinite)
        } else if self.config.early_stopping_patience > 0
            && self.state.evals_without_improvement >= self.config.early_stopping_patience
        {
            Some(StopReason::EarlyStopping)
        } else if self.state.step >= self.plan.total_steps {
            Some(StopReason::Completed)
        } else {
            None
        }
    }

    /// Whether the step just taken (not skipped) is followed by an evaluation (`eval_every`).
    pub(super) fn eval_due(&self, report: &StepReport) -> bool {
        let every = self.config.eval_every;
        !report.stats.skipped
            && every > 0
            && report.step.is_multiple_of(every)
            && !self.val.is_empty()
    }

    /// Whether a pass that ended without a stop is followed by an end-of-epoch evaluation (no
    /// `eval_every`). Call before [`next_epoch`](Self::next_epoch).
    pub(super) fn epoch_eval_due(&self) -> bool {
        self.state.step < self.plan.total_steps
            && self.config.eval_every == 0
            && !self.val.is_empty()
    }

    /// Whether the next epoch starts (the run is not over): advances the epoch counters.
    pub(super) fn next_epoch(&mut self) -> bool {
        if self.state.step >= self.plan.total_steps {
            return false;
        }
        self.state.epoch += 1;
        self.state.sequences_in_epoch = 0;
        self.pending.clear();
        true
    }

    /// Whether a run that ended with `reason` gets a last evaluation.
    pub(super) fn final_eval_due(&self, reason: StopReason) -> bool {
        reason == StopReason::Completed
            && !self.val.is_empty()
            && (self.config.eval_every == 0
                || !self.state.step.is_multiple_of(self.config.eval_every))
    }

    /// Mean loss and accuracy over every validation sequence (weighted by trained tokens; a
    /// last batch smaller than the batch size is filled with sequences that have no targets,
    /// so nothing is left out and the step's buffers keep their shape).
    pub(super) async fn evaluate(&mut self, gpu: &Gpu) -> Result<StepStats> {
        let b = self.config.batch_size;
        let (mut loss, mut acc, mut tokens) = (0.0, 0.0, 0usize);
        for chunk in self.val.chunks(b) {
            let len = chunk[0].len();
            let filler = Sequence {
                ids: vec![0; len],
                targets: vec![crate::train::data::IGNORE; len],
                doc_start: vec![0; len],
            };
            let full: Vec<Sequence> = chunk
                .iter()
                .cloned()
                .chain(std::iter::repeat_n(filler, b - chunk.len()))
                .collect();
            let (ids, targets) = concat(&full);
            let batch = MicroBatch {
                ids: &ids,
                targets: &targets,
            };
            let s = self.trainer.evaluate(gpu, batch, b).await?;
            loss += s.loss * s.trained_tokens as f64;
            acc += s.token_accuracy * s.trained_tokens as f64;
            tokens += s.trained_tokens;
        }
        let t = tokens.max(1) as f64;
        Ok(StepStats {
            loss: loss / t,
            token_accuracy: acc / t,
            trained_tokens: tokens,
            ..Default::default()
        })
    }

    /// Track the best evaluation loss (early stopping); `true` when `loss` is a new best (the
    /// caller then keeps the adapter).
    pub(super) fn record_eval(&mut self, loss: f64) -> bool {
        let improved = self
            .state
            .best_eval_loss
            .is_none_or(|best| loss < best - self.config.early_stopping_min_delta);
        if improved {
            self.state.best_eval_loss = Some(loss);
            self.state.best_step = Some(self.state.step);
            self.state.evals_without_improvement = 0;
        } else {
            self.state.evals_without_improvement += 1;
        }
        improved
    }
}

/// The token ids and targets of `seqs`, one after the other (a micro-batch's input).
pub fn concat(seqs: &[Sequence]) -> (Vec<u32>, Vec<u32>) {
    let ids = seqs.iter().flat_map(|s| s.ids.iter().copied()).collect();
    let targets = seqs
        .iter()
        .flat_map(|s| s.targets.iter().copied())
        .collect();
    (ids, targets)
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn config(batch: usize) -> TrainConfig {
        TrainConfig {
            data: "d.jsonl".into(),
            batch_size: batch,
            seq_len: 64,
            ..Default::default()
        }
    }

    #[test]
    fn too_little_data_names_the_cause_and_the_fix() {
        let empty = DataStats::default();
        let e = Plan::new(&config(1), 0, &empty).unwrap_err().to_string();
        assert!(e.contains("no records"), "{e}");
        assert!(!e.contains("batch-size"), "{e}");

        let long = DataStats {
            records: 20,
            dropped: 20,
            truncated: 20,
            seq_len_to_keep: 213,
            lengths: crate::train::data::LengthHistogram {
                max: 257,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = Plan::new(&config(1), 0, &long).unwrap_err().to_string();
        assert!(
            e.contains("20 of 20 records are longer than --seq-len 64"),
            "{e}"
        );
        assert!(e.contains("--seq-len 213") && e.contains("257"), "{e}");
        assert!(!e.contains("batch-size"), "{e}");

        // Some sequences, fewer than a batch: lowering the batch is the fix.
        let some = DataStats {
            records: 3,
            ..Default::default()
        };
        let e = Plan::new(&config(8), 3, &some).unwrap_err().to_string();
        assert!(e.contains("lower --batch-size to 3"), "{e}");
        assert!(Plan::new(&config(2), 3, &some).is_ok());
    }
}
