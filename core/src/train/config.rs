//! The training configuration: every `afinador train` flag, also readable from a TOML or YAML
//! file (flags override the file); serialized into each run's output and checkpoints.

use serde::{Deserialize, Serialize};

/// How the learning rate moves over the optimizer steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Cosine,
    Linear,
    Constant,
}

impl std::str::FromStr for LrSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cosine" => Ok(LrSchedule::Cosine),
            "linear" => Ok(LrSchedule::Linear),
            "constant" => Ok(LrSchedule::Constant),
            other => Err(format!(
                "unknown learning-rate schedule '{other}': use cosine, linear or constant"
            )),
        }
    }
}

/// A way to save memory (gradient checkpointing, the bf16 residual stream:
/// [`crate::train::memory::MemorySavings`]): on, off, or on only when the run needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoSwitch {
    /// On when `memory_budget_gib` is set and the run does not fit it otherwise.
    #[default]
    Auto,
    On,
    Off,
}

impl std::str::FromStr for AutoSwitch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AutoSwitch::Auto),
            "on" => Ok(AutoSwitch::On),
            "off" => Ok(AutoSwitch::Off),
            other => Err(format!("unknown value '{other}': use auto, on or off")),
        }
    }
}

impl AutoSwitch {
    /// On or off for a run whose memory plan is `without` (off) and `with` (on), against
    /// `budget` bytes when known: auto turns it on only when the run does not fit without it
    /// and it saves memory.
    pub fn resolve(self, without: u64, with: u64, budget: Option<u64>) -> bool {
        match self {
            AutoSwitch::On => true,
            AutoSwitch::Off => false,
            AutoSwitch::Auto => budget.is_some_and(|b| without > b && with < without),
        }
    }
}

/// Everything a training run is configured with. Defaults follow common LoRA recipes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub model: String,
    pub data: String,
    pub eval_data: Option<String>,
    pub val_ratio: f64,
    pub stratify_field: Option<String>,
    pub output: String,
    pub format: Option<String>,
    pub prompt_field: Option<String>,
    pub completion_field: Option<String>,
    pub train_on_prompt: bool,
    pub strict: bool,
    /// Optimizer steps to run (0: run `epochs` epochs).
    pub max_steps: usize,
    pub epochs: f64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub seq_len: usize,
    pub pack: bool,
    pub lr: f32,
    pub lr_schedule: LrSchedule,
    pub warmup_ratio: f32,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    pub lora_r: usize,
    pub lora_alpha: f32,
    pub lora_dropout: f32,
    pub target_modules: String,
    pub rslora: bool,
    /// Start from this adapter (a PEFT directory or a GGUF LoRA) instead of a fresh one; its
    /// rank, alpha, target modules and rsLoRA setting replace the configured ones.
    pub init_adapter: Option<String>,
    pub seed: u64,
    /// Save a checkpoint every N optimizer steps (0: only at the end).
    pub save_every: usize,
    pub keep_checkpoints: usize,
    /// Evaluate every N optimizer steps (0: at the end of each epoch).
    pub eval_every: usize,
    /// Sequences of the validation set used per evaluation (0: all).
    pub eval_limit: usize,
    /// Stop after this many evaluations without improvement (0: never).
    pub early_stopping_patience: usize,
    pub early_stopping_min_delta: f64,
    pub shuffle_buffer: usize,
    /// Recompute each layer's forward pass in the backward pass instead of saving it.
    pub gradient_checkpointing: AutoSwitch,
    /// Keep the residual stream between the forward and backward passes as bf16 (the forward
    /// pass rounds it at each layer boundary, so the backward pass sees what it saw); `auto`
    /// turns it on after gradient checkpointing, when that is not enough.
    pub bf16_stream: AutoSwitch,
    /// Device memory to plan against, in GiB (wgpu cannot read it): the `auto` savings and
    /// `preflight` compare the memory plan with it.
    pub memory_budget_gib: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "models/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            data: String::new(),
            eval_data: None,
            val_ratio: 0.0,
            stratify_field: None,
            output: "runs/afinador".into(),
            format: None,
            prompt_field: None,
            completion_field: None,
            train_on_prompt: false,
            strict: false,
            max_steps: 0,
            epochs: 1.0,
            batch_size: 4,
            grad_accum: 1,
            seq_len: 512,
            pack: true,
            lr: 2e-4,
            lr_schedule: LrSchedule::Cosine,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            lora_r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            target_modules: "q_proj,k_proj,v_proj,o_proj".into(),
            rslora: false,
            init_adapter: None,
            seed: 42,
            save_every: 0,
            keep_checkpoints: 3,
            eval_every: 0,
            eval_limit: 0,
            early_stopping_patience: 0,
            early_stopping_min_delta: 0.0,
            shuffle_buffer: 10_000,
            gradient_checkpointing: AutoSwitch::Auto,
            bf16_stream: AutoSwitch::Auto,
            memory_budget_gib: None,
        }
    }
}

impl TrainConfig {
    /// Check values a run cannot start with, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |flag: &str, why: &str| Err(format!("--{flag}: {why}"));
        if self.data.is_empty() {
            return bad("data", "a training data file is required");
        }
        if self.batch_size == 0 {
            return bad("batch-size", "must be at least 1");
        }
        if self.grad_accum == 0 {
            return bad("grad-accum", "must be at least 1");
        }
        if self.seq_len < 2 {
            return bad("seq-len", "must be at least 2");
        }
        if self
            .memory_budget_gib
            .is_some_and(|g| !(g > 0.0 && g.is_finite()))
        {
            return bad("memory-budget", "must be a positive number of GiB");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be a positive number");
        }
        if self.lora_r == 0 {
            return bad("lora-r", "must be at least 1");
        }
        if !(self.lora_alpha > 0.0 && self.lora_alpha.is_finite()) {
            return bad(
                "lora-alpha",
                "must be a positive number (the update is scaled by alpha/r)",
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight-decay", "must be 0 or a positive number");
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return bad(
                "max-grad-norm",
                "must be 0 (no clipping) or a positive number",
            );
        }
        if !(self.early_stopping_min_delta >= 0.0 && self.early_stopping_min_delta.is_finite()) {
            return bad("early-stopping-min-delta", "must be 0 or a positive number");
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad("lora-dropout", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.val_ratio) {
            return bad("val-ratio", "must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("warmup-ratio", "must be in [0, 1]");
        }
        if !(self.epochs >= 0.0 && self.epochs.is_finite()) {
            return bad("epochs", "must be a positive number");
        }
        if self.max_steps == 0 && self.epochs == 0.0 {
            return bad("epochs", "give --max-steps or a positive --epochs");
        }
        Ok(())
    }

    /// The optimizer settings of a step at learning rate `lr`.
    pub fn step_options(&self, lr: f32) -> super::StepOptions {
        super::StepOptions {
            adamw: crate::kernels::optim::AdamW {
                lr,
                weight_decay: self.weight_decay,
                ..Default::default()
            },
            max_grad_norm: self.max_grad_norm,
        }
    }

    /// The learning rate at optimizer step `step` (0-based) of `total`: linear warm-up over
    /// `warmup_ratio·total` steps, then the schedule down to 0 at `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f32 {
        let total = total.max(1);
        let warmup = (self.warmup_ratio * total as f32).ceil() as usize;
        if step < warmup {
            return self.lr * (step + 1) as f32 / warmup as f32;
        }
        let progress = (step - warmup) as f32 / (total - warmup).max(1) as f32;
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Linear => self.lr * (1.0 - progress).max(0.0),
            LrSchedule::Cosine => {
                self.lr * 0.5 * (1.0 + (std::f32::consts::PI * progress.min(1.0)).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_then_decay() {
        let c = TrainConfig {
            lr: 1.0,
            warmup_ratio: 0.1,
            ..Default::default()
        };
        assert!((c.lr_at(0, 100) - 0.1).abs() < 1e-6);
        assert!((c.lr_at(9, 100) - 1.0).abs() < 1e-6);
        assert!((c.lr_at(10, 100) - 1.0).abs() < 1e-6);
        assert!(c.lr_at(55, 100) < 0.6 && c.lr_at(55, 100) > 0.4);
        assert!(c.lr_at(99, 100) < 0.01);
        let lin = TrainConfig {
            lr_schedule: LrSchedule::Linear,
            ..c.clone()
        };
        assert!((lin.lr_at(55, 100) - 0.5).abs() < 1e-6);
        let constant = TrainConfig {
            lr_schedule: LrSchedule::Constant,
            ..c
        };
        assert_eq!(constant.lr_at(99, 100), 1.0);
    }

    #[test]
    fn validation_names_the_flag() {
        let c = TrainConfig {
            data: "x.jsonl".into(),
            batch_size: 0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("--batch-size"));
        assert!(
            TrainConfig::default()
                .validate()
                .unwrap_err()
                .contains("--data")
        );
    }
}
