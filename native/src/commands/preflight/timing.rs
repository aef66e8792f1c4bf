//! Timing a few training steps for `preflight`, with progress on stderr while they run.
//!
//! On a GPU a step takes well under a second, so full steps are timed. On a CPU adapter
//! (lavapipe) one step of the real shape can take many minutes, so by default one micro-batch of
//! a single sequence is timed and the step's time extrapolated from it (sequences × that time;
//! on a CPU adapter the work grows linearly with the sequences of a step), and the report says
//! so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use afinador_core::gpu::Gpu;
use afinador_core::lora::LoraConfig;
use afinador_core::train::data::Sequence;
use afinador_core::train::session;
use afinador_core::train::{GpuLora, MicroBatch, StepOptions, TrainConfig, Trainer};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// Only allocate a step's buffers.
    None,
    /// This many full steps (the first, which compiles the kernels, reported apart).
    Steps(usize),
    /// One sequence, extrapolated to a whole step (the default on CPU adapters).
    OneSequence,
}

impl Timing {
    /// `--time-steps N` when given, else the adapter's default.
    pub fn choose(time_steps: Option<usize>, gpu: &Gpu) -> Timing {
        match time_steps {
            Some(0) => Timing::None,
            Some(n) => Timing::Steps(n),
            None if gpu.is_cpu() => Timing::OneSequence,
            None => Timing::Steps(3),
        }
    }
}

pub struct Measured {
    /// Peak storage-buffer bytes with a step's buffers allocated: weights, LoRA state,
    /// activations.
    pub measured_bytes: u64,
    /// `None` when nothing was timed.
    pub time: Option<StepTime>,
}

pub struct StepTime {
    /// The first full step, with kernel compilation (`None` when extrapolated).
    pub first_step_s: Option<f64>,
    /// Seconds per optimizer step: the mean of the steps after the first (the first alone
    /// when only one was timed), or the extrapolation.
    pub step_s: f64,
    /// How `step_s` was obtained, in words.
    pub method: String,
    /// Whether `step_s` is an extrapolation from a part of a step.
    pub extrapolated: bool,
}

/// Shows a step being timed: a bar that fills with elapsed time against an estimate on a
/// terminal, a line before and after otherwise; nothing with `--json`.
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet }
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Runs `work`, showing `label` and, when known, the `estimate_s` it should take.
    fn run<T>(
        &self,
        label: &str,
        estimate_s: Option<f64>,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<(T, f64)> {
        let about = estimate_s.map_or(String::new(), |e| format!(", about {}", seconds(e)));
        let bar = match estimate_s {
            Some(e) if !self.quiet => ProgressBar::new((e * 10.0).ceil().max(1.0) as u64),
            _ => ProgressBar::hidden(),
        };
        if bar.is_hidden() {
            self.say(&format!("timing: {label}{about}…"));
        } else {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "timing: {msg} [{bar:30}] {elapsed} elapsed, eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
        }
        let start = Instant::now();
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            if !bar.is_hidden() {
                scope.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        let tenths = (start.elapsed().as_secs_f64() * 10.0) as u64;
                        // Past the estimate the bar waits at its end.
                        bar.set_position(tenths.min(bar.length().unwrap_or(1) - 1));
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
            }
            let result = work();
            done.store(true, Ordering::Relaxed);
            result
        });
        let secs = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let value = result?;
        self.say(&format!("timing: {label}: {}", seconds(secs)));
        Ok((value, secs))
    }
}

/// Loads the model, allocates a step of `config`'s shape, and times it as `timing` says on the
/// sequences of the first real step (`seqs`, `batch_size × grad_accum` of them).
pub fn measure(
    gpu: &Gpu,
    file: &crate::common::ModelFile,
    config: &TrainConfig,
    lora_config: &LoraConfig,
    seqs: &[Sequence],
    timing: Timing,
    progress: &Progress,
) -> Result<Measured> {
    let model = afinador_core::model::Model::load(gpu, &file.gguf, &file.bytes)?;
    let lora = GpuLora::init(gpu, &model.config, lora_config, config.seed)?;
    let mut trainer = Trainer::new(&model, lora);
    trainer.set_memory_savings(session::savings_for(gpu, &model, config, lora_config)?);
    let micro: Vec<(Vec<u32>, Vec<u32>)> = seqs
        .chunks(config.batch_size)
        .map(session::concat)
        .collect();
    trainer.prepare(gpu, config.batch_size, config.seq_len, micro.len())?;
    let options = config.step_options(config.lr);
    let time = match timing {
        Timing::None => None,
        Timing::Steps(n) => Some(full_steps(
            gpu,
            &mut trainer,
            config,
            &micro,
            n,
            options,
            progress,
        )?),
        Timing::OneSequence => Some(one_sequence(
            gpu,
            &mut trainer,
            config,
            &seqs[0],
            options,
            progress,
        )?),
    };
    Ok(Measured {
        // The counter's peak: the full step's buffers, whatever was timed after them.
        measured_bytes: gpu.memory.peak(),
        time,
    })
}

fn full_steps(
    gpu: &Gpu,
    trainer: &mut Trainer<'_>,
    config: &TrainConfig,
    micro: &[(Vec<u32>, Vec<u32>)],
    n: usize,
    options: StepOptions,
    progress: &Progress,
) -> Result<StepTime> {
    let batches: Vec<MicroBatch> = micro
        .iter()
        .map(|(i, t)| MicroBatch { ids: i, targets: t })
        .collect();
    let shape = format!(
        "{}×{} tokens{}",
        config.batch_size,
        config.seq_len,
        if config.grad_accum > 1 {
            format!(" × {} micro-batches", config.grad_accum)
        } else {
            String::new()
        }
    );
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let label = if i == 0 {
            format!("step 1/{n} of {shape} (compiles the kernels)")
        } else {
            format!("step {}/{n}", i + 1)
        };
        // From the second step on, the previous one is the estimate.
        let estimate = times.last().copied().filter(|_| i > 1);
        let (_, secs) = progress.run(&label, estimate, || {
            Ok(pollster::block_on(trainer.train_step(
                gpu,
                &batches,
                config.batch_size,
                options,
            ))?)
        })?;
        times.push(secs);
    }
    let rest = &times[1.min(times.len() - 1)..];
    Ok(StepTime {
        first_step_s: times.first().copied(),
        step_s: rest.iter().sum::<f64>() / rest.len() as f64,
        method: format!("{n} timed step{}", if n == 1 { "" } else { "s" }),
        extrapolated: false,
    })
}

/// Tokens of the warm-up micro-batch that compiles the kernels before the timed one.
const WARM_UP_TOKENS: usize = 16;

fn one_sequence(
    gpu: &Gpu,
    trainer: &mut Trainer<'_>,
    config: &TrainConfig,
    seq: &Sequence,
    options: StepOptions,
    progress: &Progress,
) -> Result<StepTime> {
    let t = config.seq_len;
    // Warm-up on the sequence's first tokens, every target trained: the first run compiles
    // the kernels, the second gives the speed the estimate of the timed run comes from.
    let w = WARM_UP_TOKENS.min(t - 1);
    let warm = MicroBatch {
        ids: &seq.ids[..w],
        targets: &seq.ids[1..=w],
    };
    let step = |trainer: &mut Trainer<'_>, batch: &MicroBatch<'_>| -> Result<()> {
        pollster::block_on(trainer.train_step(gpu, std::slice::from_ref(batch), 1, options))?;
        Ok(())
    };
    progress.run("compiling the kernels (a 16-token warm-up)", None, || {
        step(trainer, &warm)
    })?;
    let (_, warm_s) = progress.run("a second warm-up", None, || step(trainer, &warm))?;
    let one = MicroBatch {
        ids: &seq.ids,
        targets: &seq.targets,
    };
    let estimate = warm_s * t as f64 / w as f64;
    let (_, one_s) = progress.run(
        &format!("one sequence of {t} tokens"),
        Some(estimate),
        || step(trainer, &one),
    )?;
    let sequences = config.batch_size * config.grad_accum;
    Ok(StepTime {
        first_step_s: None,
        step_s: one_s * sequences as f64,
        method: format!(
            "extrapolated: one sequence of {t} tokens took {}, × {sequences} sequences per step \
             (give --time-steps N to time N whole steps)",
            seconds(one_s)
        ),
        extrapolated: true,
    })
}

/// `12.3 s`, `4 min 5 s`.
pub fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        super::duration(s)
    }
}
