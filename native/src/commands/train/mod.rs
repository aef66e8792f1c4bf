//! `afinador train`: QLoRA fine-tuning of a GGUF model on a data file, with metrics,
//! evaluation, checkpoints, the best adapter, early stopping, Ctrl+C safety and exact resume.

mod args;
pub(crate) mod data;
mod files;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use afinador_core::gpu::Gpu;
use afinador_core::kernels::optim::AdamW;
use afinador_core::lora::{LoraConfig, Module};
use afinador_core::model::Model;
use afinador_core::train::checkpoint::{self, TrainerState};
use afinador_core::train::data::{DataConfig, PackMode, RecordFormat, Sequence};
use afinador_core::train::{
    GpuLora, MicroBatch, ModelTextEncoder, StepOptions, StepStats, TrainConfig, Trainer,
};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

pub use args::Args;
use files::JsonLines;

/// Steps in a row with a non-finite gradient before the run stops.
const MAX_SKIPPED_IN_A_ROW: usize = 5;

pub fn run(args: Args) -> Result<()> {
    let resume_dir = args
        .resume
        .as_ref()
        .map(|d| files::resolve_resume(d))
        .transpose()?;
    let resumed = match &resume_dir {
        Some(dir) => Some(files::read_checkpoint(dir)?),
        None => None,
    };
    // A resumed run keeps its configuration; flags given now may extend it (e.g. --max-steps).
    let config = match &resumed {
        Some(files) => {
            let state: TrainerState =
                serde_json::from_str(&files.state_json).context("trainer_state.json")?;
            let mut c = state.config;
            if let Some(m) = args.max_steps {
                c.max_steps = m;
            }
            c
        }
        None => args.resolve()?,
    };
    let out = PathBuf::from(&config.output);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let resolved = serde_json::to_string_pretty(&config)?;
    std::fs::write(out.join("config.json"), &resolved)?;
    if !args.json {
        eprintln!(
            "afinador train: resolved configuration (saved to {}):\n{resolved}",
            out.join("config.json").display()
        );
    }

    let model_args = crate::common::ModelArgs {
        model: PathBuf::from(&config.model),
        tokenizer: None,
    };
    let file = model_args.read()?;
    let tokenizer = model_args.tokenizer(&file)?;
    let template = file.gguf.metadata().get_str("tokenizer.chat_template").ok();
    let encoder = ModelTextEncoder::new(&tokenizer, template)?;
    let gpu = args.gpu.open()?;
    let model = file.load(&gpu)?;

    let lora_config = lora_config(&config, &file.gguf)?;
    let lora = GpuLora::init(&gpu, &model.config, &lora_config, config.seed)?;
    let mut trainer = Trainer::new(&model, lora);
    trainer.seed = config.seed;
    let mut state = match (&resumed, &resume_dir) {
        (Some(files), Some(dir)) => {
            let state = checkpoint::load(&gpu, &trainer.lora, files)?;
            trainer.step = state.step as u32;
            eprintln!("resuming from {} at step {}", dir.display(), state.step);
            state
        }
        _ => TrainerState {
            step: 0,
            epoch: 0,
            sequences_in_epoch: 0,
            best_eval_loss: None,
            best_step: None,
            evals_without_improvement: 0,
            tokens: 0,
            elapsed_s: 0.0,
            config: config.clone(),
        },
    };
    if resumed.is_none() {
        let _ = std::fs::remove_file(out.join("metrics.jsonl"));
    }

    // One pass to count the sequences (for the schedule) and collect the validation set.
    let first_pass = data_config(&config, config.val_ratio)?;
    let mut val: Vec<Sequence> = Vec::new();
    let mut per_epoch = 0usize;
    let stats = data::stream(
        Path::new(&config.data),
        &first_pass,
        0,
        &encoder,
        |s, is_val| {
            if is_val {
                val.push(s)
            } else {
                per_epoch += 1
            }
            Ok(true)
        },
    )?;
    if !args.json {
        eprintln!("data: {stats}");
    }
    if let Some(eval_path) = &config.eval_data {
        val.clear();
        let eval_config = data_config(&config, 0.0)?;
        let eval_stats = data::stream(Path::new(eval_path), &eval_config, 0, &encoder, |s, _| {
            val.push(s);
            Ok(true)
        })?;
        if !args.json {
            eprintln!("eval data: {eval_stats}");
        }
    }
    if config.eval_limit > 0 {
        val.truncate(config.eval_limit);
    }
    let seqs_per_step = config.batch_size * config.grad_accum;
    if per_epoch < config.batch_size {
        bail!(
            "the data gives {per_epoch} training sequences, fewer than one batch of {}: add data or lower --batch-size",
            config.batch_size
        );
    }
    let steps_per_epoch = (per_epoch / seqs_per_step).max(1);
    let total_steps = if config.max_steps > 0 {
        config.max_steps
    } else {
        ((config.epochs * per_epoch as f64) / seqs_per_step as f64)
            .ceil()
            .max(1.0) as usize
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let mut metrics = JsonLines::append(&out.join("metrics.jsonl"))?;
    let bar = ProgressBar::new(total_steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_position(state.step as u64);

    let ctx = RunCtx {
        gpu: &gpu,
        config: &config,
        out: &out,
        model: &model,
        val: &val,
        total_steps,
        per_epoch,
        quiet: args.json,
    };
    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut skipped_in_a_row = 0usize;
    let mut stop_reason = "completed";
    let mut pending: Vec<Sequence> = Vec::with_capacity(seqs_per_step);
    'epochs: while state.step < total_steps {
        let epoch = state.epoch;
        let skip = state.sequences_in_epoch;
        let mut seen = 0usize;
        let mut error: Option<anyhow::Error> = None;
        let pass = data_config(&config, config.val_ratio)?;
        data::stream(
            Path::new(&config.data),
            &pass,
            epoch as u64,
            &encoder,
            |s, is_val| {
                if is_val {
                    return Ok(true);
                }
                seen += 1;
                if seen <= skip {
                    return Ok(true);
                }
                pending.push(s);
                if pending.len() < seqs_per_step {
                    return Ok(true);
                }
                let step_seqs = std::mem::take(&mut pending);
                match train_one(
                    &ctx,
                    &mut trainer,
                    &mut state,
                    &step_seqs,
                    started,
                    elapsed_before,
                    &mut metrics,
                    &bar,
                ) {
                    Ok(stats) => {
                        state.sequences_in_epoch += step_seqs.len();
                        skipped_in_a_row = if stats.skipped {
                            skipped_in_a_row + 1
                        } else {
                            0
                        };
                    }
                    Err(e) => {
                        error = Some(e);
                        return Ok(false);
                    }
                }
                let stop = state.step >= total_steps
                    || skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW
                    || interrupted.load(Ordering::SeqCst)
                    || early_stop(&config, &state);
                Ok(!stop)
            },
        )?;
        if let Some(e) = error {
            return Err(e);
        }
        if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW {
            stop_reason = "non-finite gradients";
            break 'epochs;
        }
        if interrupted.load(Ordering::SeqCst) {
            stop_reason = "interrupted";
            break 'epochs;
        }
        if early_stop(&config, &state) {
            stop_reason = "early stopping";
            break 'epochs;
        }
        if state.step < total_steps {
            // End of an epoch: evaluate when no step interval is set, then start the next one.
            if config.eval_every == 0 && !val.is_empty() {
                evaluate_and_keep_best(&ctx, &mut trainer, &mut state, &mut metrics)?;
            }
            state.epoch += 1;
            state.sequences_in_epoch = 0;
            pending.clear();
        }
    }
    bar.finish_and_clear();
    state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();

    // Final evaluation, checkpoint and adapter.
    if stop_reason == "completed"
        && !val.is_empty()
        && (config.eval_every == 0 || state.step % config.eval_every != 0)
    {
        evaluate_and_keep_best(&ctx, &mut trainer, &mut state, &mut metrics)?;
    }
    let adapter = save_checkpoint(&ctx, &trainer, &state)?;
    let peft = files::peft_files(&adapter, model.config.n_head, model.config.n_head_kv)?;
    files::write_dir_atomic(
        &out.join("adapter"),
        &[
            ("adapter_config.json", peft.0.as_bytes()),
            ("adapter_model.safetensors", &peft.1),
        ],
    )?;
    // Every storage buffer the run held at its peak: weights, LoRA state, activations.
    let gpu_bytes = gpu.memory.peak();
    let summary = json!({
        "stop_reason": stop_reason,
        "steps": state.step,
        "epochs": state.step as f64 / steps_per_epoch as f64,
        "tokens": state.tokens,
        "time_s": state.elapsed_s,
        "tokens_per_s": state.tokens as f64 / state.elapsed_s.max(1e-9),
        "best_step": state.best_step,
        "best_eval_loss": state.best_eval_loss,
        "gpu_memory_bytes": gpu_bytes,
        "lora_parameters": trainer.lora.n,
        "adapter": out.join("adapter"),
        "device": gpu.adapter.name,
    });
    std::fs::write(
        out.join("training_summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    // The report is a view of the files just written: a failure to draw it loses nothing.
    match crate::commands::report::write(&out, &out.join("report")) {
        Ok(written) if !args.json => eprintln!("report: {}", written.html.display()),
        Ok(_) => {}
        Err(e) => eprintln!("warning: the report could not be written: {e:#}"),
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "{stop_reason}: {} steps, {} tokens in {:.1} s ({:.0} tok/s); adapter in {}",
            state.step,
            state.tokens,
            state.elapsed_s,
            state.tokens as f64 / state.elapsed_s.max(1e-9),
            out.join("adapter").display()
        );
    }
    match stop_reason {
        "interrupted" => {
            eprintln!(
                "interrupted: checkpoint saved; continue with --resume {}",
                out.display()
            );
            std::process::exit(130);
        }
        "non-finite gradients" => {
            bail!("{MAX_SKIPPED_IN_A_ROW} steps in a row had NaN or infinite gradients: lower --lr")
        }
        _ => Ok(()),
    }
}

/// What every step needs to see of the run.
struct RunCtx<'a> {
    gpu: &'a Gpu,
    config: &'a TrainConfig,
    out: &'a Path,
    model: &'a Model,
    val: &'a [Sequence],
    total_steps: usize,
    /// Training sequences per epoch.
    per_epoch: usize,
    /// `--json`: nothing but the summary on stdout, no step lines on stderr.
    quiet: bool,
}

/// The LoRA settings of a run.
pub(crate) fn lora_config(
    config: &TrainConfig,
    gguf: &afinador_core::formats::Gguf,
) -> Result<LoraConfig> {
    let names: Vec<&str> = config.target_modules.split(',').map(str::trim).collect();
    let modules = Module::parse_list(&names)?;
    let mut lora = LoraConfig::new(config.lora_r, config.lora_alpha, &modules);
    lora.dropout = config.lora_dropout;
    lora.use_rslora = config.rslora;
    lora.base_model_name_or_path = Some(base_model_name(gguf, &config.model));
    Ok(lora)
}

pub(crate) fn data_config(config: &TrainConfig, val_ratio: f64) -> Result<DataConfig> {
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

fn base_model_name(gguf: &afinador_core::formats::Gguf, path: &str) -> String {
    gguf.metadata()
        .get_str("general.name")
        .map(str::to_string)
        .unwrap_or_else(|_| {
            Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        })
}

pub(crate) fn concat(seqs: &[Sequence]) -> (Vec<u32>, Vec<u32>) {
    let ids = seqs.iter().flat_map(|s| s.ids.iter().copied()).collect();
    let targets = seqs
        .iter()
        .flat_map(|s| s.targets.iter().copied())
        .collect();
    (ids, targets)
}

#[allow(clippy::too_many_arguments)]
fn train_one(
    ctx: &RunCtx<'_>,
    trainer: &mut Trainer<'_>,
    state: &mut TrainerState,
    seqs: &[Sequence],
    started: Instant,
    elapsed_before: f64,
    metrics: &mut JsonLines,
    bar: &ProgressBar,
) -> Result<StepStats> {
    let c = ctx.config;
    let lr = c.lr_at(state.step, ctx.total_steps);
    let options = StepOptions {
        adamw: AdamW {
            lr,
            weight_decay: c.weight_decay,
            ..AdamW::default()
        },
        max_grad_norm: c.max_grad_norm,
    };
    let micro: Vec<(Vec<u32>, Vec<u32>)> = seqs.chunks(c.batch_size).map(concat).collect();
    let batches: Vec<MicroBatch> = micro
        .iter()
        .map(|(i, t)| MicroBatch { ids: i, targets: t })
        .collect();
    let step_start = Instant::now();
    let stats = pollster::block_on(trainer.train_step(ctx.gpu, &batches, c.batch_size, options))?;
    let step_s = step_start.elapsed().as_secs_f64();
    let tokens = seqs.len() * c.seq_len;
    state.tokens += tokens;
    if stats.skipped {
        bar.println(format!(
            "step {}: gradient norm is {}, step skipped",
            state.step + 1,
            stats.grad_norm
        ));
        return Ok(stats);
    }
    state.step = trainer.step as usize;
    let elapsed = elapsed_before + started.elapsed().as_secs_f64();
    let mut line = json!({
        "step": state.step,
        "epoch": state.epoch as f64 + (state.sequences_in_epoch + seqs.len()) as f64 / ctx.per_epoch.max(1) as f64,
        "loss": stats.loss,
        "token_accuracy": stats.token_accuracy,
        "entropy": stats.entropy,
        "grad_norm": stats.grad_norm,
        "lr": lr,
        "tokens_per_s": tokens as f64 / step_s.max(1e-9),
        "elapsed_s": elapsed,
    });
    bar.set_position(state.step as u64);
    let message = format!(
        "loss {:.4} acc {:.3} {:.0} tok/s",
        stats.loss,
        stats.token_accuracy,
        tokens as f64 / step_s.max(1e-9)
    );
    if bar.is_hidden() && !ctx.quiet {
        // No terminal (a log or CI): one line per step instead of the bar.
        eprintln!("step {}/{}: {message}", state.step, ctx.total_steps);
    }
    bar.set_message(message);
    if c.eval_every > 0 && state.step.is_multiple_of(c.eval_every) && !ctx.val.is_empty() {
        let eval = evaluate(ctx, trainer)?;
        line["eval_loss"] = json!(eval.loss);
        line["eval_ppl"] = json!(eval.loss.exp());
        line["eval_token_accuracy"] = json!(eval.token_accuracy);
        keep_best(ctx, trainer, state, eval.loss)?;
    }
    metrics.write(&line)?;
    if c.save_every > 0 && state.step.is_multiple_of(c.save_every) {
        state.elapsed_s = elapsed;
        save_checkpoint(ctx, trainer, state)?;
    }
    Ok(stats)
}

/// Mean loss and accuracy over the validation sequences (weighted by trained tokens).
fn evaluate(ctx: &RunCtx<'_>, trainer: &mut Trainer<'_>) -> Result<StepStats> {
    let b = ctx.config.batch_size;
    let (mut loss, mut acc, mut tokens) = (0.0, 0.0, 0usize);
    for chunk in ctx.val.chunks(b) {
        if chunk.len() < b {
            continue; // batches are whole; a remainder smaller than one batch is left out
        }
        let (ids, targets) = concat(chunk);
        let s = pollster::block_on(trainer.evaluate(
            ctx.gpu,
            MicroBatch {
                ids: &ids,
                targets: &targets,
            },
            b,
        ))?;
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

fn evaluate_and_keep_best(
    ctx: &RunCtx<'_>,
    trainer: &mut Trainer<'_>,
    state: &mut TrainerState,
    metrics: &mut JsonLines,
) -> Result<()> {
    let eval = evaluate(ctx, trainer)?;
    metrics.write(&json!({
        "step": state.step,
        "epoch": state.epoch,
        "eval_loss": eval.loss,
        "eval_ppl": eval.loss.exp(),
        "eval_token_accuracy": eval.token_accuracy,
    }))?;
    keep_best(ctx, trainer, state, eval.loss)
}

/// Track the best evaluation loss; write the adapter to `best/` when it improves.
fn keep_best(
    ctx: &RunCtx<'_>,
    trainer: &Trainer<'_>,
    state: &mut TrainerState,
    loss: f64,
) -> Result<()> {
    let improved = state
        .best_eval_loss
        .is_none_or(|best| loss < best - ctx.config.early_stopping_min_delta);
    if improved {
        state.best_eval_loss = Some(loss);
        state.best_step = Some(state.step);
        state.evals_without_improvement = 0;
        let adapter = pollster::block_on(trainer.lora.download(ctx.gpu))?;
        let peft = files::peft_files(
            &adapter,
            ctx.model.config.n_head,
            ctx.model.config.n_head_kv,
        )?;
        files::write_dir_atomic(
            &ctx.out.join("best"),
            &[
                ("adapter_config.json", peft.0.as_bytes()),
                ("adapter_model.safetensors", &peft.1),
            ],
        )?;
    } else {
        state.evals_without_improvement += 1;
    }
    Ok(())
}

fn early_stop(config: &TrainConfig, state: &TrainerState) -> bool {
    config.early_stopping_patience > 0
        && state.evals_without_improvement >= config.early_stopping_patience
}

/// Write `checkpoints/step-N` atomically and keep only the newest `keep_checkpoints`.
/// Returns the adapter it saved.
fn save_checkpoint(
    ctx: &RunCtx<'_>,
    trainer: &Trainer<'_>,
    state: &TrainerState,
) -> Result<afinador_core::lora::LoraAdapter> {
    let (ckpt, adapter) = pollster::block_on(checkpoint::save(ctx.gpu, &trainer.lora, state))?;
    let peft = files::peft_files(
        &adapter,
        ctx.model.config.n_head,
        ctx.model.config.n_head_kv,
    )?;
    let dir = ctx.out.join("checkpoints");
    files::write_checkpoint(&dir.join(format!("step-{}", state.step)), &peft, &ckpt)?;
    let all = files::checkpoints(&dir)?;
    let keep = ctx.config.keep_checkpoints.max(1);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(adapter)
}
