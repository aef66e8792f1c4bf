//! `afinador train`: QLoRA fine-tuning of a GGUF model on a data file, with metrics,
//! evaluation, checkpoints, the best adapter, early stopping, Ctrl+C safety and exact resume.

mod args;
pub(crate) mod data;
pub(crate) mod files;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use afinador_core::gpu::Gpu;
use afinador_core::model::Model;
use afinador_core::train::checkpoint::{self, TrainerState};
use afinador_core::train::session::{self, MAX_SKIPPED_IN_A_ROW};
use afinador_core::train::{
    Evaluation, FirstPass, LoraStart, ModelTextEncoder, Session, StopReason, Trainer,
};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

pub use args::Args;
use files::{AdapterFiles, JsonLines};

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
    check_inputs(&config)?;
    let model_args = crate::common::ModelArgs {
        model: PathBuf::from(&config.model),
        tokenizer: None,
    };
    let file = model_args.read()?;
    let mut config = config;
    let init_adapter = match (config.init_adapter.clone(), &resumed) {
        (Some(path), None) => Some(init_adapter(&mut config, &file, Path::new(&path))?),
        _ => None,
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

    let tokenizer = model_args.tokenizer(&file)?;
    let template = file.gguf.metadata().get_str("tokenizer.chat_template").ok();
    let encoder = ModelTextEncoder::new(&tokenizer, template)?;
    let gpu = args.gpu.open()?;
    let model = file.load(&gpu)?;

    if resumed.is_none() {
        let _ = std::fs::remove_file(out.join("metrics.jsonl"));
    }

    // One pass to count the sequences (for the schedule) and collect the validation set.
    let first_pass = session::data_config(&config, config.val_ratio)?;
    let mut first = FirstPass::default();
    let stats = data::stream(
        Path::new(&config.data),
        &first_pass,
        0,
        &encoder,
        |s, is_val| {
            first.take(s, is_val);
            Ok(true)
        },
    )?;
    if !args.json {
        eprintln!("data: {stats}");
    }
    if let Some(eval_path) = &config.eval_data {
        first.val.clear();
        let eval_config = session::data_config(&config, 0.0)?;
        let eval_stats = data::stream(Path::new(eval_path), &eval_config, 0, &encoder, |s, _| {
            first.val.push(s);
            Ok(true)
        })?;
        if !args.json {
            eprintln!("eval data: {eval_stats}");
        }
    }
    let plan = first.plan(&config, &stats)?;
    let total_steps = plan.total_steps;
    let lora = match init_adapter {
        Some(adapter) => LoraStart::Adapter(adapter),
        None => LoraStart::Fresh,
    };
    let base = base_model_name(&file.gguf, &config.model);
    let mut session = Session::start(&gpu, &model, config, plan, first.val, lora, base)?;
    if let (Some(files), Some(dir)) = (&resumed, &resume_dir) {
        session.resume(&gpu, files)?;
        eprintln!(
            "resuming from {} at step {}",
            dir.display(),
            session.state.step
        );
    }

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
    bar.set_position(session.state.step as u64);

    let ctx = RunCtx {
        gpu: &gpu,
        out: &out,
        model: &model,
        quiet: args.json,
        started: Instant::now(),
        first_step: session.state.step,
    };
    let interrupted_now = || interrupted.load(Ordering::SeqCst);
    let data_path = PathBuf::from(&session.config.data);
    let pass = session::data_config(&session.config, session.config.val_ratio)?;
    let stopped = loop {
        if let Some(reason) = session.stop_reason() {
            break reason;
        }
        session.begin_pass();
        let mut error: Option<anyhow::Error> = None;
        data::stream(
            &data_path,
            &pass,
            session.state.epoch as u64,
            &encoder,
            |s, is_val| {
                if !session.offer(s, is_val) {
                    return Ok(true);
                }
                if let Err(e) = train_one(&ctx, &mut session, &mut metrics, &bar) {
                    error = Some(e);
                    return Ok(false);
                }
                Ok(session.stop_reason().is_none() && !interrupted_now())
            },
        )?;
        if let Some(e) = error {
            return Err(e);
        }
        if interrupted_now() {
            break StopReason::Interrupted;
        }
        let end = pollster::block_on(session.end_pass(&gpu, &ctx.clock()))?;
        if let Some(eval) = &end.eval {
            record_eval(&ctx, &session, &mut metrics, eval, &bar)?;
        }
        if let Some(reason) = end.stop {
            break reason;
        }
    };
    bar.finish_and_clear();

    // Final evaluation, checkpoint and adapter.
    let was_interrupted = stopped == StopReason::Interrupted;
    let finish = pollster::block_on(session.finish(&gpu, &ctx.clock(), was_interrupted))?;
    if let Some(eval) = &finish.eval {
        record_eval(&ctx, &session, &mut metrics, eval, &ProgressBar::hidden())?;
    }
    let (trainer, state) = (&session.trainer, &session.state);
    let adapter = save_checkpoint(&ctx, trainer, state)?;
    AdapterFiles::new(&adapter, &model.config)?.write_dir(&out.join("adapter"))?;
    let mut summary = finish.summary;
    // Every storage buffer the run held at its peak: weights, LoRA state, activations.
    summary["gpu_memory_bytes"] = gpu.memory.peak().into();
    summary["adapter"] = json!(out.join("adapter"));
    summary["device"] = gpu.adapter.name.clone().into();
    let stop_reason = finish.reason.as_str();
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

/// The model and data files can be opened: checked before anything is printed or written, so a
/// mistyped path costs one line, not a configuration dump and a model load.
pub(crate) fn check_inputs(config: &afinador_core::train::TrainConfig) -> Result<()> {
    crate::common::locate_model(Path::new(&config.model))?;
    let files = [
        ("--data", Some(&config.data)),
        ("--eval-data", config.eval_data.as_ref()),
    ];
    for (flag, path) in files {
        if let Some(path) = path {
            std::fs::File::open(path).with_context(|| format!("{flag} {path} cannot be read"))?;
        }
    }
    Ok(())
}

/// Reads `--init-adapter` and makes the run's LoRA settings its own (saying what changed).
fn init_adapter(
    config: &mut afinador_core::train::TrainConfig,
    file: &crate::common::ModelFile,
    path: &Path,
) -> Result<afinador_core::lora::LoraAdapter> {
    let adapter = crate::common::read_adapter(path, &file.gguf)
        .with_context(|| format!("--init-adapter {}", path.display()))?;
    let c = &adapter.config;
    let targets: Vec<&str> = adapter.modules().iter().map(|m| m.hf_name()).collect();
    let targets = targets.join(",");
    let changes = [
        ("--lora-r", config.lora_r.to_string(), c.r.to_string()),
        (
            "--lora-alpha",
            config.lora_alpha.to_string(),
            c.alpha.to_string(),
        ),
        (
            "--target-modules",
            config.target_modules.clone(),
            targets.clone(),
        ),
        (
            "--rslora",
            config.rslora.to_string(),
            c.use_rslora.to_string(),
        ),
    ];
    for (flag, was, now) in changes.iter().filter(|(_, was, now)| was != now) {
        eprintln!("--init-adapter sets {flag} {now} (was {was})");
    }
    config.lora_r = c.r;
    config.lora_alpha = c.alpha;
    config.target_modules = targets;
    config.rslora = c.use_rslora;
    Ok(adapter)
}

/// What every step needs to see of the run.
struct RunCtx<'a> {
    gpu: &'a Gpu,
    out: &'a Path,
    model: &'a Model,
    /// `--json`: nothing but the summary on stdout, no step lines on stderr.
    quiet: bool,
    started: Instant,
    /// The step this process started from (0, or where a resumed run continues).
    first_step: usize,
}

impl RunCtx<'_> {
    /// The session's clock: seconds since this process started training.
    fn clock(&self) -> impl Fn() -> f64 + '_ {
        || self.started.elapsed().as_secs_f64()
    }
}

/// One optimizer step with the sequences the session holds: metrics, progress, evaluation,
/// checkpoint.
fn train_one(
    ctx: &RunCtx<'_>,
    session: &mut Session<'_>,
    metrics: &mut JsonLines,
    bar: &ProgressBar,
) -> Result<()> {
    let done = pollster::block_on(session.train_step(ctx.gpu, &ctx.clock()))?;
    let report = &done.report;
    let Some(line) = &done.line else {
        bar.println(format!(
            "step {}: gradient norm is {}, step skipped",
            report.step + 1,
            report.stats.grad_norm
        ));
        return Ok(());
    };
    bar.set_position(report.step as u64);
    let message = format!(
        "loss {:.4} acc {:.3} {:.0} tok/s",
        report.stats.loss,
        report.stats.token_accuracy,
        report.tokens as f64 / done.seconds.max(1e-9)
    );
    if bar.is_hidden() && !ctx.quiet {
        // No terminal (a log or CI): one line per step instead of the bar, with its times.
        let total = session.plan.total_steps;
        let done_here = (report.step - ctx.first_step).max(1);
        let this_run = ctx.started.elapsed().as_secs_f64();
        let eta = this_run / done_here as f64 * total.saturating_sub(report.step) as f64;
        eprintln!(
            "step {}/{total}: {message}, {} elapsed, eta {}",
            report.step,
            clock(session.state.elapsed_s),
            clock(eta)
        );
    }
    bar.set_message(message);
    if let Some(eval) = &done.eval {
        keep_best(ctx, session, eval, bar)?;
    }
    metrics.write(line)?;
    let save_every = session.config.save_every;
    if save_every > 0 && report.step.is_multiple_of(save_every) {
        save_checkpoint(ctx, &session.trainer, &session.state)?;
    }
    Ok(())
}

/// `1:05` (minutes:seconds) or `2:03:10`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// An evaluation outside a step (an epoch's end, the final one): its own metrics line, then
/// [`keep_best`].
fn record_eval(
    ctx: &RunCtx<'_>,
    session: &Session<'_>,
    metrics: &mut JsonLines,
    eval: &Evaluation,
    bar: &ProgressBar,
) -> Result<()> {
    metrics.write(&eval.line)?;
    keep_best(ctx, session, eval, bar)
}

/// After an evaluation: write the adapter to `best/` when it is the best so far, and say so
/// on stderr (above the bar when there is one).
fn keep_best(
    ctx: &RunCtx<'_>,
    session: &Session<'_>,
    eval: &Evaluation,
    bar: &ProgressBar,
) -> Result<()> {
    if eval.best {
        let adapter = pollster::block_on(session.trainer.lora.download(ctx.gpu))?;
        AdapterFiles::new(&adapter, &ctx.model.config)?.write_dir(&ctx.out.join("best"))?;
    }
    if ctx.quiet {
        return Ok(());
    }
    let e = &eval.stats;
    let line = format!(
        "eval at step {}: loss {:.4} (ppl {:.2}), token accuracy {:.3}{}",
        eval.step,
        e.loss,
        e.loss.exp(),
        e.token_accuracy,
        if eval.best {
            ", the best so far: saved to best/"
        } else {
            ""
        }
    );
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
    Ok(())
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

/// Write `checkpoints/step-N` atomically and keep only the newest `keep_checkpoints`.
/// Returns the adapter it saved.
fn save_checkpoint(
    ctx: &RunCtx<'_>,
    trainer: &Trainer<'_>,
    state: &TrainerState,
) -> Result<afinador_core::lora::LoraAdapter> {
    let (ckpt, adapter) = pollster::block_on(checkpoint::save(ctx.gpu, &trainer.lora, state))?;
    let files = AdapterFiles::new(&adapter, &ctx.model.config)?;
    let dir = ctx.out.join("checkpoints");
    files::write_checkpoint(&dir.join(format!("step-{}", state.step)), &files, &ckpt)?;
    let all = files::checkpoints(&dir)?;
    let keep = state.config.keep_checkpoints.max(1);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(adapter)
}
