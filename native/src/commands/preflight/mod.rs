//! `afinador preflight`: will this training run fit, and how long will it take? The device and
//! its limits, a memory plan by category against them (and the largest batch that fits), the
//! data's statistics — printed at once — then a time estimate from timed steps, with progress
//! while they run.

mod timing;

use std::io::Write;
use std::path::Path;

use afinador_core::train::data::{DataStats, LengthHistogram, Sequence};
use afinador_core::train::memory::largest_batch;
use afinador_core::train::session;
use afinador_core::train::{MemoryPlan, ModelTextEncoder, TrainConfig};
use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::train;
use crate::common::{ModelArgs, print_json};
use timing::{Progress, Timing};

#[derive(clap::Args, Debug)]
#[group(skip)]
pub struct Args {
    #[command(flatten)]
    train: train::Args,
    /// Whole training steps to time for the estimate (0: only allocate a step's buffers; the
    /// first step also compiles the kernels and is reported apart). Default: 3 on a GPU; on a
    /// CPU adapter (lavapipe), where one step can take minutes, one sequence is timed and the
    /// step's time extrapolated from it.
    #[arg(long)]
    time_steps: Option<usize>,
}

const GIB: f64 = (1u64 << 30) as f64;

pub fn run(args: Args) -> Result<()> {
    let config = args.train.resolve()?;
    train::check_inputs(&config)?;
    let json_out = args.train.json;
    let model_args = ModelArgs {
        model: config.model.clone().into(),
        tokenizer: None,
    };
    let file = model_args.read()?;
    let tokenizer = model_args.tokenizer(&file)?;
    let template = file.gguf.metadata().get_str("tokenizer.chat_template").ok();
    let encoder = ModelTextEncoder::new(&tokenizer, template)?;
    let gpu = args.train.gpu.open()?;

    // Data: one pass, as the trainer's first pass.
    let seqs_per_step = config.batch_size * config.grad_accum;
    let mut first_step: Vec<Sequence> = Vec::with_capacity(seqs_per_step);
    let (mut train_seqs, mut val_seqs) = (0usize, 0usize);
    let stats = train::data::stream(
        Path::new(&config.data),
        &session::data_config(&config, config.val_ratio)?,
        0,
        &encoder,
        |s, is_val| {
            if is_val {
                val_seqs += 1;
            } else {
                train_seqs += 1;
                if first_step.len() < seqs_per_step {
                    first_step.push(s);
                }
            }
            Ok(true)
        },
    )?;
    let eval_stats = match &config.eval_data {
        Some(path) => {
            val_seqs = 0;
            let s = train::data::stream(
                Path::new(path),
                &session::data_config(&config, 0.0)?,
                0,
                &encoder,
                |_, _| {
                    val_seqs += 1;
                    Ok(true)
                },
            )?;
            Some(s)
        }
        None => None,
    };
    // The trainer's own schedule; its error (the data does not fill one batch) fails the
    // preflight once the report is out.
    let schedule = session::Plan::new(&config, train_seqs, &stats);
    let (steps_per_epoch, total_steps) = schedule
        .as_ref()
        .map_or((0, 0), |p| (p.steps_per_epoch, p.total_steps));

    // Memory.
    let model_config = afinador_core::model::ModelConfig::from_gguf(&file.gguf)?;
    let weight_bytes: u64 = file.gguf.tensors().iter().map(|t| t.n_bytes).sum();
    // The adapter's name does not change its size.
    let lora_config = session::lora_config(&config, &model_config.arch, String::new())?;
    let max_binding = gpu.limits.max_storage_buffer_binding_size;
    let budget = match config.memory_budget_gib {
        Some(gib) => Some((gib * GIB) as u64),
        None if gpu.is_cpu() => available_system_memory(),
        None => None,
    };
    // The savings as the run will decide them (auto: against --memory-budget), and the plan
    // with checkpointing the other way for comparison.
    let run = MemoryPlan::for_run(
        &model_config,
        weight_bytes,
        &lora_config,
        &config,
        max_binding,
    )?;
    let (plan, other, shape) = (run.plan, run.checkpointing_toggled, run.shape);
    let checkpointing = shape.savings.checkpointing;
    let fits = plan.fits(budget, max_binding);
    let max_batch = largest_batch(
        &model_config,
        weight_bytes,
        &lora_config,
        shape,
        budget,
        max_binding,
    )?;

    let mut recommendations = recommend(&config, &stats, &plan, budget, max_binding, max_batch);
    if let Some(b) = budget.filter(|&b| !checkpointing && plan.total() > b && other.total() <= b) {
        recommendations.insert(
            0,
            format!(
                "with --gradient-checkpointing on the plan needs {:.2} GiB and fits the {:.2} GiB \
                 (activations {:.0} MiB instead of {:.0} MiB, for a second forward pass per step)",
                other.total() as f64 / GIB,
                b as f64 / GIB,
                other.activations as f64 / (1 << 20) as f64,
                plan.activations as f64 / (1 << 20) as f64
            ),
        );
    } else if let Some(b) = budget.filter(|&b| plan.total() > b && !shape.savings.bf16_stream) {
        let both = afinador_core::train::MemorySavings {
            checkpointing: true,
            bf16_stream: true,
        };
        let saving = MemoryPlan::training(
            &model_config,
            weight_bytes,
            &lora_config,
            afinador_core::train::RunShape {
                savings: both,
                ..shape
            },
            max_binding,
        )?;
        if saving.total() <= b {
            recommendations.insert(
                0,
                format!(
                    "with --gradient-checkpointing on --bf16-stream on the plan needs {:.2} GiB \
                     and fits the {:.2} GiB (each layer's input kept as bf16 between the passes)",
                    saving.total() as f64 / GIB,
                    b as f64 / GIB,
                ),
            );
        }
    }
    if let Err(e) = &schedule {
        recommendations.push(e.to_string());
    }
    let mut report = json!({
        "device": {
            "name": gpu.adapter.name,
            "backend": gpu.adapter.backend,
            "device_type": gpu.adapter.device_type,
            "features": gpu.adapter.features,
            "max_storage_buffer_binding_size": max_binding,
            "max_buffer_size": gpu.limits.max_buffer_size,
            "memory_budget_bytes": budget,
        },
        "model": {
            "path": config.model,
            "layers": model_config.n_layer,
            "embedding": model_config.n_embd,
            "vocab": model_config.vocab_size,
            "weight_bytes": weight_bytes,
        },
        "memory": {
            "plan": plan,
            "total_bytes": plan.total(),
            "gradient_checkpointing": checkpointing,
            "bf16_stream": shape.savings.bf16_stream,
            "total_bytes_with_checkpointing_toggled": other.total(),
            "fits": fits,
            "largest_batch_at_seq_len": max_batch,
            "measured_bytes": null,
        },
        "data": data_json(&stats, &config, train_seqs, val_seqs, eval_stats.as_ref()),
        "schedule": {
            "sequences_per_step": seqs_per_step,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
        },
        "time": null,
        "recommendations": recommendations,
    });
    // What is known before any step runs goes out now: timing can take minutes.
    if !json_out {
        print!("{}", render_plan(&report, &stats));
        std::io::stdout().flush()?;
    }

    // The memory really allocated, and the time of the first real batch.
    let runnable = fits && schedule.is_ok() && first_step.len() == seqs_per_step;
    if runnable {
        let timing = Timing::choose(args.time_steps, &gpu);
        let progress = Progress::new(json_out);
        let measured = timing::measure(
            &gpu,
            &file,
            &config,
            &lora_config,
            &first_step,
            timing,
            &progress,
        )?;
        report["memory"]["measured_bytes"] = json!(measured.measured_bytes);
        if let Some(t) = &measured.time {
            report["time"] = json!({
                "method": t.method,
                "extrapolated": t.extrapolated,
                "first_step_s": t.first_step_s,
                "step_s": t.step_s,
                "tokens_per_s": (seqs_per_step * config.seq_len) as f64 / t.step_s,
                "epoch_s": t.step_s * steps_per_epoch as f64,
                "run_s": t.step_s * total_steps as f64,
            });
        }
    }
    if json_out {
        print_json(&report)?;
    } else {
        print!("{}", render_measured(&report));
    }
    if let Err(e) = schedule {
        bail!("{e}");
    }
    Ok(())
}

fn data_json(
    stats: &DataStats,
    config: &TrainConfig,
    train_seqs: usize,
    val_seqs: usize,
    eval_stats: Option<&DataStats>,
) -> Value {
    let h = &stats.lengths;
    json!({
        "path": config.data,
        "records": stats.records,
        "bad_records": stats.bad_records,
        "first_bad": stats.first_bad,
        "truncated": stats.truncated,
        "truncated_pct": 100.0 * stats.truncated as f64 / stats.records.max(1) as f64,
        "seq_len": config.seq_len,
        "token_lengths": {
            "min": h.min,
            "mean": h.mean(),
            "max": h.max,
            "histogram": histogram_rows(h).iter().map(|(lo, hi, n)| json!({"from": lo, "to": hi, "records": n})).collect::<Vec<_>>(),
        },
        "train_records": stats.records - stats.val_records,
        "val_records": eval_stats.map_or(stats.val_records, |e| e.records),
        "train_sequences": train_seqs,
        "val_sequences": val_seqs,
        "eval_data": eval_stats.map(|e| json!({
            "records": e.records,
            "bad_records": e.bad_records,
            "first_bad": e.first_bad,
        })),
    })
}

/// `(from, to exclusive, count)` of every non-empty bucket.
fn histogram_rows(h: &LengthHistogram) -> Vec<(usize, usize, usize)> {
    h.buckets
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            let (lo, hi) = LengthHistogram::bucket_range(i);
            (lo, hi, *n)
        })
        .collect()
}

fn recommend(
    config: &TrainConfig,
    stats: &DataStats,
    plan: &MemoryPlan,
    budget: Option<u64>,
    max_binding: u64,
    max_batch: Option<usize>,
) -> Vec<String> {
    let mut out = Vec::new();
    if plan.largest_buffer > max_binding {
        out.push(format!(
            "one buffer needs {:.1} MiB but the device binds at most {:.1} MiB per buffer: \
             lower --batch-size or --seq-len",
            plan.largest_buffer as f64 / (1 << 20) as f64,
            max_binding as f64 / (1 << 20) as f64
        ));
    }
    if let Some(b) = budget.filter(|b| plan.total() > *b) {
        let advice = match max_batch {
            Some(m) => format!(
                "use --batch-size {m} with --grad-accum {} for the same tokens per step",
                (config.batch_size * config.grad_accum).div_ceil(m)
            ),
            None => "even a batch of one does not fit: lower --seq-len or --lora-r, or use a \
                     smaller model"
                .into(),
        };
        out.push(format!(
            "the plan needs {:.2} GiB but {:.2} GiB are available: {advice}",
            plan.total() as f64 / GIB,
            b as f64 / GIB
        ));
    }
    if stats.bad_records > 0 {
        let lines: Vec<String> = stats.first_bad.iter().map(|b| b.line.to_string()).collect();
        out.push(format!(
            "{} bad records will be skipped (lines {}{}): fix them, or see the reasons below",
            stats.bad_records,
            lines.join(", "),
            if stats.bad_records > lines.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    let pct = 100.0 * stats.truncated as f64 / stats.records.max(1) as f64;
    if pct > 5.0 {
        let longest = stats.lengths.max.next_power_of_two();
        let dropped = if stats.dropped > 0 {
            format!(
                " ({} lost every trained token and are not used at all)",
                stats.dropped
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{pct:.0}% of the records are longer than --seq-len {} and lose their end{dropped}: \
             raise --seq-len (the longest has {} tokens; {longest} covers all)",
            config.seq_len, stats.lengths.max
        ));
    }
    out
}

/// The part of the text report known before any step runs.
fn render_plan(r: &Value, stats: &DataStats) -> String {
    let on_off = |v: &Value| {
        if v.as_bool() == Some(true) {
            "on"
        } else {
            "off"
        }
    };
    let mib = |v: &Value| v.as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
    let d = &r["device"];
    let m = &r["memory"];
    let p = &m["plan"];
    let mut s = format!(
        "device   {} ({}, {}); max binding {:.0} MiB, max buffer {:.0} MiB, budget {}\n",
        d["name"].as_str().unwrap_or("?"),
        d["backend"].as_str().unwrap_or("?"),
        d["device_type"].as_str().unwrap_or("?"),
        mib(&d["max_storage_buffer_binding_size"]),
        mib(&d["max_buffer_size"]),
        match d["memory_budget_bytes"].as_u64() {
            Some(b) => format!("{:.2} GiB", b as f64 / GIB),
            None => "unknown (give --memory-budget GiB)".into(),
        }
    );
    s.push_str(&format!(
        "memory plan (MiB), gradient checkpointing {} (the other way: {:.1} MiB in all), bf16 \
         stream {}\n",
        on_off(&m["gradient_checkpointing"]),
        mib(&m["total_bytes_with_checkpointing_toggled"]),
        on_off(&m["bf16_stream"])
    ));
    for key in [
        "weights",
        "lora_parameters",
        "lora_gradients",
        "optimizer_state",
        "activations",
        "scratch",
        "logits",
    ] {
        s.push_str(&format!("  {key:<16} {:>10.1}\n", mib(&p[key])));
    }
    s.push_str(&format!(
        "  {:<16} {:>10.1}  ({})\n",
        "total",
        mib(&m["total_bytes"]),
        if m["fits"].as_bool() == Some(true) {
            "fits"
        } else {
            "does NOT fit"
        }
    ));
    s.push_str(&format!(
        "  largest batch at seq len {}: {}\n",
        r["data"]["seq_len"],
        m["largest_batch_at_seq_len"]
            .as_u64()
            .map_or("none".into(), |b| b.to_string())
    ));
    let data = &r["data"];
    s.push_str(&format!(
        "data     {stats}\n         train {} records → {} sequences, validation {} records → {} \
         sequences; {:.1}% truncated at {} tokens\n         token lengths: min {} mean {:.0} max {}\n",
        data["train_records"],
        data["train_sequences"],
        data["val_records"],
        data["val_sequences"],
        data["truncated_pct"].as_f64().unwrap_or(0.0),
        data["seq_len"],
        data["token_lengths"]["min"],
        data["token_lengths"]["mean"].as_f64().unwrap_or(0.0),
        data["token_lengths"]["max"],
    ));
    let rows = histogram_rows(&stats.lengths);
    let top = rows.iter().map(|r| r.2).max().unwrap_or(1);
    for (lo, hi, n) in rows {
        s.push_str(&format!(
            "         {:>6}–{:<6} {:>7} {}\n",
            lo,
            hi - 1,
            n,
            "#".repeat((40 * n).div_ceil(top))
        ));
    }
    let sch = &r["schedule"];
    s.push_str(&format!(
        "schedule {} sequences per step, {} steps per epoch, {} steps in the run\n",
        sch["sequences_per_step"], sch["steps_per_epoch"], sch["total_steps"]
    ));
    s
}

/// The rest of the text report: what timing measured, and the recommendations.
fn render_measured(r: &Value) -> String {
    let mut s = String::new();
    if let Some(measured) = r["memory"]["measured_bytes"].as_u64() {
        s.push_str(&format!(
            "memory   {:.1} MiB allocated for a step on this device (plan: {:.1} MiB)\n",
            measured as f64 / (1 << 20) as f64,
            r["memory"]["total_bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64
        ));
    }
    match r["time"].as_object() {
        Some(t) => {
            let first = match t["first_step_s"].as_f64() {
                Some(f) => format!("; the first step, with kernel compilation, took {f:.1} s"),
                None => String::new(),
            };
            s.push_str(&format!(
                "time     {:.2} s per step ({:.0} tok/s{first}): an epoch ≈ {}, the run ≈ {}\n\
                 \x20        {}\n",
                t["step_s"].as_f64().unwrap_or(0.0),
                t["tokens_per_s"].as_f64().unwrap_or(0.0),
                duration(t["epoch_s"].as_f64().unwrap_or(0.0)),
                duration(t["run_s"].as_f64().unwrap_or(0.0)),
                t["method"].as_str().unwrap_or_default(),
            ));
        }
        None => s.push_str("time     not measured (--time-steps 0, or the run cannot start)\n"),
    }
    let recs = r["recommendations"].as_array().cloned().unwrap_or_default();
    if recs.is_empty() {
        s.push_str("ready: nothing to change\n");
    }
    for rec in recs {
        s.push_str(&format!("→ {}\n", rec.as_str().unwrap_or_default()));
    }
    s
}

fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// `MemAvailable` of /proc/meminfo (Linux), what a CPU adapter can use.
fn available_system_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(7500.0), "2 h 5 min");
    }
}
