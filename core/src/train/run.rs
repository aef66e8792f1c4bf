//! The run driver both front ends call: the first pass's collection, a timed step with its
//! metrics line and the evaluation it is due, the end of a pass (the epoch's evaluation, the
//! next epoch or the stop) and the end of the run (the final evaluation and the summary).
//!
//! The front ends keep only I/O: they read the data and offer it ([`Session::offer`]), give a
//! clock, and write what comes back (metrics lines, the best adapter when an evaluation says it
//! is one, checkpoints, the summary) to files, the terminal, or JavaScript. The run's time is
//! owned here: [`TrainerState::elapsed_s`](super::checkpoint::TrainerState) counts the seconds
//! spent in steps and evaluations, by the front end's clock, so a paused browser tab or a
//! resumed CLI run report the same kind of figure.
//!
//! ```text
//! first pass:  FirstPass::take(seq, is_val)* → FirstPass::plan → Session::start
//! each pass:   Session::begin_pass; { Session::offer(seq) → train_step }*; end_pass → stop?
//! the end:     Session::finish(interrupted) → the final evaluation and the summary
//! ```

use super::data::{DataStats, Sequence};
use super::session::{Plan, Session, StepReport, StopReason, add_eval_metrics};
use super::{Result, StepStats, TrainConfig};
use crate::gpu::Gpu;

/// A monotonic clock in seconds (native: `Instant`; the browser: `performance.now()`).
pub type Clock<'a> = &'a dyn Fn() -> f64;

/// The first pass over the data, before any step: the validation sequences and how many
/// training sequences an epoch has.
#[derive(Debug, Default)]
pub struct FirstPass {
    pub val: Vec<Sequence>,
    pub per_epoch: usize,
}

impl FirstPass {
    /// Count a training sequence, keep a validation one.
    pub fn take(&mut self, seq: Sequence, is_val: bool) {
        if is_val {
            self.val.push(seq);
        } else {
            self.per_epoch += 1;
        }
    }

    /// The run's length from what the pass saw.
    pub fn plan(&self, config: &TrainConfig, stats: &DataStats) -> Result<Plan> {
        Plan::new(config, self.per_epoch, stats)
    }
}

/// An evaluation on the validation set.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub stats: StepStats,
    /// The step it followed.
    pub step: usize,
    /// A new best loss: the front end keeps the adapter as it is now.
    pub best: bool,
    /// Its own metrics line (`step`, `epoch`, the eval keys).
    pub line: serde_json::Value,
}

/// What [`Session::train_step`] did.
#[derive(Clone, Debug)]
pub struct StepOutcome {
    pub report: StepReport,
    /// The step's `metrics.jsonl` line, with the evaluation's keys when one followed; `None`
    /// for a step skipped on a non-finite gradient.
    pub line: Option<serde_json::Value>,
    /// The evaluation `eval_every` asked for after this step.
    pub eval: Option<Evaluation>,
    /// Seconds the step took (the evaluation not included).
    pub seconds: f64,
}

/// What [`Session::end_pass`] did.
#[derive(Clone, Debug)]
pub struct PassEnd {
    /// The end-of-epoch evaluation (when `eval_every` is 0).
    pub eval: Option<Evaluation>,
    /// Why the run stops here; `None`: the next epoch has begun.
    pub stop: Option<StopReason>,
}

/// What [`Session::finish`] did.
#[derive(Clone, Debug)]
pub struct Finish {
    pub reason: StopReason,
    /// The final evaluation of a completed run (when the last step had none).
    pub eval: Option<Evaluation>,
    /// `training_summary.json`, less what only the front end knows (files, device, memory).
    pub summary: serde_json::Value,
}

impl Session<'_> {
    /// One optimizer step on the sequences [`offer`](Self::offer) gathered, its metrics line
    /// and, when due, an evaluation.
    pub async fn train_step(&mut self, gpu: &Gpu, clock: Clock<'_>) -> Result<StepOutcome> {
        let start = clock();
        let report = self.step(gpu).await?;
        let seconds = clock() - start;
        self.state.elapsed_s += seconds;
        if report.stats.skipped {
            return Ok(StepOutcome {
                report,
                line: None,
                eval: None,
                seconds,
            });
        }
        let tokens_per_s = report.tokens as f64 / seconds.max(1e-9);
        let mut line = report.metrics(tokens_per_s, self.state.elapsed_s);
        let mut eval = None;
        if self.eval_due(&report) {
            let e = self.evaluate_now(gpu, clock).await?;
            add_eval_metrics(&mut line, &e.stats);
            eval = Some(e);
        }
        Ok(StepOutcome {
            report,
            line: Some(line),
            eval,
            seconds,
        })
    }

    /// Evaluate on the validation set now and track the best loss (early stopping).
    pub async fn evaluate_now(&mut self, gpu: &Gpu, clock: Clock<'_>) -> Result<Evaluation> {
        let start = clock();
        let stats = self.evaluate(gpu).await?;
        self.state.elapsed_s += clock() - start;
        let best = self.record_eval(stats.loss);
        Ok(Evaluation {
            line: self.eval_line(&stats),
            step: self.state.step,
            stats,
            best,
        })
    }

    /// A pass over the data has ended (the user did not interrupt it): stop when the session
    /// says so; else the end-of-epoch evaluation when one is due (which may stop the run
    /// early), then the next epoch.
    pub async fn end_pass(&mut self, gpu: &Gpu, clock: Clock<'_>) -> Result<PassEnd> {
        if let Some(stop) = self.stop_reason() {
            return Ok(PassEnd {
                eval: None,
                stop: Some(stop),
            });
        }
        let eval = match self.epoch_eval_due() {
            true => Some(self.evaluate_now(gpu, clock).await?),
            false => None,
        };
        let stop = match self.stop_reason() {
            Some(stop) => Some(stop),
            None if !self.next_epoch() => Some(StopReason::Completed),
            None => None,
        };
        Ok(PassEnd { eval, stop })
    }

    /// The end of the run (`interrupted`: the user stopped it): why it ended, the final
    /// evaluation when it completed, and the summary.
    pub async fn finish(
        &mut self,
        gpu: &Gpu,
        clock: Clock<'_>,
        interrupted: bool,
    ) -> Result<Finish> {
        let reason = self.end_reason(interrupted);
        let eval = match self.final_eval_due(reason) {
            true => Some(self.evaluate_now(gpu, clock).await?),
            false => None,
        };
        Ok(Finish {
            reason,
            eval,
            summary: self.summary(reason),
        })
    }
}
