//! `afinador train` flags, and their merge with a `--config` file (flags win).

use std::path::PathBuf;

use afinador_core::train::TrainConfig;
use anyhow::{Context, Result, bail};

use crate::common::GpuArgs;

/// Every flag is optional so that a config file can provide it; the defaults are
/// [`TrainConfig`]'s.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// A TOML or YAML file whose keys are these flags' names (with underscores).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue a run from a checkpoint directory (or a run directory: its newest checkpoint).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Print the summary as JSON at the end.
    #[arg(long)]
    pub json: bool,
    /// The base model (GGUF) [default: models/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long)]
    pub model: Option<String>,
    /// Training data: JSONL, a JSON array, or plain text.
    #[arg(long)]
    pub data: Option<String>,
    /// A separate evaluation data file.
    #[arg(long)]
    pub eval_data: Option<String>,
    /// Hold out this fraction of the training records for evaluation (0 ≤ X < 1).
    #[arg(long, allow_hyphen_values = true)]
    pub val_ratio: Option<f64>,
    /// Stratify the held-out split by this record field.
    #[arg(long)]
    pub stratify_field: Option<String>,
    /// Output directory (metrics, checkpoints, adapters).
    #[arg(long)]
    pub output: Option<String>,
    /// Record format: text, prompt-completion, messages, instruction (default: detected).
    #[arg(long)]
    pub format: Option<String>,
    /// The prompt's field name for prompt-completion records [default: prompt].
    #[arg(long)]
    pub prompt_field: Option<String>,
    /// The completion's field name for prompt-completion records [default: completion].
    #[arg(long)]
    pub completion_field: Option<String>,
    /// Train on prompt tokens too (default: completions only).
    #[arg(long)]
    pub train_on_prompt: bool,
    /// Stop at the first bad record instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Optimizer steps to run; when given (and not 0) it overrides --epochs. 0, the default,
    /// means "run --epochs epochs".
    #[arg(long, allow_hyphen_values = true)]
    pub max_steps: Option<usize>,
    /// Passes over the training data, fractions allowed (e.g. 0.5) [default: 1]; used when
    /// --max-steps is not given.
    #[arg(long, allow_hyphen_values = true)]
    pub epochs: Option<f64>,
    /// Sequences per micro-batch [default: 4].
    #[arg(long, allow_hyphen_values = true)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step (gradient accumulation) [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub grad_accum: Option<usize>,
    /// Tokens per sequence; longer records are cut to it [default: 512].
    #[arg(long, allow_hyphen_values = true)]
    pub seq_len: Option<usize>,
    /// One example per sequence, padded, instead of packing several.
    #[arg(long)]
    pub no_pack: bool,
    /// Peak learning rate, > 0 [default: 2e-4].
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f32>,
    /// cosine, linear or constant.
    #[arg(long)]
    pub lr_schedule: Option<String>,
    /// Fraction of the steps spent warming the learning rate up from 0 (0–1) [default: 0.03].
    #[arg(long, allow_hyphen_values = true)]
    pub warmup_ratio: Option<f32>,
    /// AdamW's decoupled weight decay, ≥ 0 [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    pub weight_decay: Option<f32>,
    /// Clip the global gradient norm to this (0: no clipping) [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub max_grad_norm: Option<f32>,
    /// LoRA rank, ≥ 1 [default: 16].
    #[arg(long, allow_hyphen_values = true)]
    pub lora_r: Option<usize>,
    /// LoRA alpha, > 0; the update is scaled by alpha/r [default: 32].
    #[arg(long, allow_hyphen_values = true)]
    pub lora_alpha: Option<f32>,
    /// Dropout on the LoRA input, 0 ≤ P < 1 [default: 0.05].
    #[arg(long, allow_hyphen_values = true)]
    pub lora_dropout: Option<f32>,
    /// Comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj, or all-linear.
    #[arg(long)]
    pub target_modules: Option<String>,
    /// Scale LoRA by alpha/√r instead of alpha/r.
    #[arg(long)]
    pub rslora: bool,
    /// Recompute each layer's forward pass inside the backward pass instead of saving its
    /// activations (the same gradients; one layer's activations instead of all of them, for a
    /// second forward pass): auto, on or off. auto turns it on when the run would not fit
    /// --memory-budget otherwise [default: auto].
    #[arg(long)]
    pub gradient_checkpointing: Option<String>,
    /// Keep the residual stream between the forward and backward passes as bf16 (half the
    /// bytes of each layer's input; the forward pass rounds it too, so the gradients are those
    /// of what it computed): auto, on or off. auto turns it on when the run would not fit
    /// --memory-budget with gradient checkpointing alone [default: auto].
    #[arg(long)]
    pub bf16_stream: Option<String>,
    /// Device memory to plan against, in GiB (wgpu cannot read it): used by auto gradient
    /// checkpointing and by `preflight` (whose default on a CPU adapter is the free system
    /// memory).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_budget: Option<f64>,
    /// Start from an existing adapter instead of a fresh one: a PEFT directory (afinador's, or
    /// one from PEFT/Unsloth for this base model) or a GGUF LoRA. Its rank, alpha, target
    /// modules and rsLoRA setting are used; the optimizer starts fresh (--resume continues a
    /// run exactly instead).
    #[arg(long)]
    pub init_adapter: Option<String>,
    /// Seed of the LoRA initialization, data order and dropout [default: 42].
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Checkpoint every N optimizer steps (0: only at the end).
    #[arg(long, allow_hyphen_values = true)]
    pub save_every: Option<usize>,
    /// Checkpoints to keep [default: 3].
    #[arg(long, allow_hyphen_values = true)]
    pub keep_checkpoints: Option<usize>,
    /// Evaluate every N optimizer steps (default: at the end of each epoch).
    #[arg(long, allow_hyphen_values = true)]
    pub eval_every: Option<usize>,
    /// Use at most this many validation sequences per evaluation (0: all).
    #[arg(long, allow_hyphen_values = true)]
    pub eval_limit: Option<usize>,
    /// Stop after this many evaluations without improvement (0: never).
    #[arg(long, allow_hyphen_values = true)]
    pub early_stopping_patience: Option<usize>,
    /// An evaluation improves when its loss is lower than the best by more than this, ≥ 0.
    #[arg(long, allow_hyphen_values = true)]
    pub early_stopping_min_delta: Option<f64>,
}

impl Args {
    /// Defaults, then the config file, then the flags given.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let yaml = matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                );
                if yaml {
                    serde_yaml::from_str(&text)
                        .with_context(|| format!("{} is not a valid config", path.display()))?
                } else {
                    toml::from_str(&text)
                        .with_context(|| format!("{} is not a valid config", path.display()))?
                }
            }
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => {$( if let Some(v) = &self.$f { c.$f = v.clone().into(); } )*};
        }
        set!(
            model,
            data,
            output,
            max_steps,
            epochs,
            batch_size,
            grad_accum,
            seq_len,
            lr,
            warmup_ratio
        );
        set!(
            weight_decay,
            max_grad_norm,
            lora_r,
            lora_alpha,
            lora_dropout,
            target_modules,
            seed,
            save_every
        );
        set!(
            keep_checkpoints,
            eval_every,
            eval_limit,
            early_stopping_patience,
            early_stopping_min_delta,
            val_ratio
        );
        if self.init_adapter.is_some() {
            c.init_adapter = self.init_adapter.clone();
        }
        if self.eval_data.is_some() {
            c.eval_data = self.eval_data.clone();
        }
        if self.stratify_field.is_some() {
            c.stratify_field = self.stratify_field.clone();
        }
        if self.format.is_some() {
            c.format = self.format.clone();
        }
        if self.prompt_field.is_some() {
            c.prompt_field = self.prompt_field.clone();
        }
        if self.completion_field.is_some() {
            c.completion_field = self.completion_field.clone();
        }
        if let Some(s) = &self.lr_schedule {
            c.lr_schedule = s.parse().map_err(anyhow::Error::msg)?;
        }
        if let Some(s) = &self.gradient_checkpointing {
            c.gradient_checkpointing = s
                .parse()
                .map_err(|e| anyhow::anyhow!("--gradient-checkpointing: {e}"))?;
        }
        if let Some(s) = &self.bf16_stream {
            c.bf16_stream = s
                .parse()
                .map_err(|e| anyhow::anyhow!("--bf16-stream: {e}"))?;
        }
        if self.memory_budget.is_some() {
            c.memory_budget_gib = self.memory_budget;
        }
        c.train_on_prompt |= self.train_on_prompt;
        c.strict |= self.strict;
        c.rslora |= self.rslora;
        if self.no_pack {
            c.pack = false;
        }
        if let Err(e) = c.validate() {
            bail!(e);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use afinador_core::train::TrainConfig;

    #[test]
    fn the_enem_example_config_parses() {
        let text = include_str!("../../../../examples/enem/config.toml");
        let config: TrainConfig =
            toml::from_str(text).expect("examples/enem/config.toml is a valid config");
        assert_eq!(config.seq_len, 384);
        assert_eq!(
            config.eval_data.as_deref(),
            Some("examples/enem/validation.jsonl")
        );
        config.validate().unwrap();
        let yaml = "data: d.jsonl\nlora_r: 8\nlr_schedule: linear\n";
        let config: TrainConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(config.lora_r, 8);
        assert!(
            toml::from_str::<TrainConfig>("lora_rank = 8").is_err(),
            "unknown keys are refused"
        );
    }
}
