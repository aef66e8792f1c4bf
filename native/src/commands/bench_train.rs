//! `afinador bench train`: training throughput and GPU memory of QLoRA steps at given
//! batch×sequence shapes, attention-only and all-linear LoRA, on random tokens, each beside the
//! memory plan `preflight` would print for it (`--plan-only`: the plan alone, from the shape,
//! with no weights uploaded — the 8B figures of docs/PERFORMANCE.md).

use std::time::Instant;

use afinador_core::kernels::optim::AdamW;
use afinador_core::lora::{LoraConfig, Module};
use afinador_core::train::{GpuLora, MicroBatch, StepOptions, Trainer};
use afinador_core::util::Rng;
use anyhow::{Context, Result, bail};
use serde_json::json;

use afinador_core::train::memory::{MemoryPlan, MemorySavings, RunShape};

use crate::common::{GpuArgs, LikeArgs, ModelArgs, print_json};

const GIB: f64 = (1u64 << 30) as f64;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    weights: LikeArgs,
    /// Batch×sequence shapes to time [default: 1x256,8x512].
    #[arg(long, default_value = "1x256,8x512")]
    shapes: String,
    /// LoRA targets: attention, all-linear, or both.
    #[arg(long, default_value = "both")]
    targets: String,
    #[arg(long, default_value_t = 16)]
    lora_r: usize,
    /// Timed steps per configuration (after one warm-up step); 0: only allocate a step's
    /// buffers and report the memory.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Train with gradient checkpointing.
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Keep the residual stream between the passes as bf16.
    #[arg(long)]
    bf16_stream: bool,
    /// Print the memory plan of each configuration without uploading weights or running.
    #[arg(long)]
    plan_only: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let (b, t) = s
        .split_once('x')
        .with_context(|| format!("shape '{s}' is not BxT (e.g. 8x512)"))?;
    Ok((b.trim().parse()?, t.trim().parse()?))
}

pub fn run(args: Args) -> Result<()> {
    let shapes: Vec<(usize, usize)> = args
        .shapes
        .split(',')
        .map(parse_shape)
        .collect::<Result<_>>()?;
    let targets: Vec<(&str, Vec<Module>)> = match args.targets.as_str() {
        "attention" => vec![(
            "attention",
            vec![Module::QProj, Module::KProj, Module::VProj, Module::OProj],
        )],
        "all-linear" => vec![("all-linear", Module::ALL.to_vec())],
        "both" => vec![
            (
                "attention",
                vec![Module::QProj, Module::KProj, Module::VProj, Module::OProj],
            ),
            ("all-linear", Module::ALL.to_vec()),
        ],
        other => bail!("unknown --targets '{other}': use attention, all-linear or both"),
    };
    let (file, shape) = args.weights.file(&args.model)?;
    let gpu = args.gpu.open()?;
    let model_config = afinador_core::model::ModelConfig::from_gguf(&file.gguf)?;
    // The architecture's modules for those projections (phi3: the fused ones).
    let targets = targets
        .into_iter()
        .map(|(name, modules)| {
            let modules = model_config.arch.lora_modules(&modules);
            Ok((name, modules.map_err(anyhow::Error::msg)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let weight_bytes: u64 = file.gguf.tensors().iter().map(|t| t.n_bytes).sum();
    let savings = MemorySavings {
        checkpointing: args.gradient_checkpointing,
        bf16_stream: args.bf16_stream,
    };
    let plan = |b: usize, t: usize, config: &LoraConfig| {
        let run = RunShape {
            batch: b,
            seq_len: t,
            grad_accum: 1,
            savings,
        };
        let max_binding = gpu.limits.max_storage_buffer_binding_size;
        MemoryPlan::training(&model_config, weight_bytes, config, run, max_binding)
    };
    if args.plan_only {
        let mut rows = Vec::new();
        for &(b, t) in &shapes {
            for (name, modules) in &targets {
                let config = LoraConfig::new(args.lora_r, 2.0 * args.lora_r as f32, modules);
                let p = plan(b, t, &config)?;
                rows.push(json!({
                    "batch": b, "seq_len": t, "lora": name, "lora_r": args.lora_r,
                    "gradient_checkpointing": args.gradient_checkpointing,
                    "bf16_stream": args.bf16_stream,
                    "plan": p, "plan_bytes": p.total(),
                }));
                if !args.json {
                    eprintln!("{b}×{t} {name}: plan {:.2} GiB", p.total() as f64 / GIB);
                }
            }
        }
        if args.json {
            return print_json(&json!({ "model": shape, "results": rows }));
        }
        return Ok(());
    }
    let model = file.load(&gpu)?;
    let vocab = model.config.vocab_size as u64;
    let mut rows = Vec::new();
    for &(b, t) in &shapes {
        for (name, modules) in &targets {
            let config = LoraConfig::new(args.lora_r, 2.0 * args.lora_r as f32, modules);
            let planned = plan(b, t, &config)?.total();
            // The previous configuration's buffers are gone: measure this one's peak alone.
            gpu.memory.reset_peak();
            let lora = GpuLora::init(&gpu, &model.config, &config, 1)?;
            let mut trainer = Trainer::new(&model, lora);
            trainer.set_memory_savings(savings);
            if args.steps == 0 {
                trainer.prepare(&gpu, b, t, 1)?;
                let memory = gpu.memory.peak();
                rows.push(json!({
                    "batch": b, "seq_len": t, "lora": name, "lora_r": args.lora_r,
                    "gradient_checkpointing": args.gradient_checkpointing,
                    "bf16_stream": args.bf16_stream,
                    "gpu_memory_bytes": memory, "plan_bytes": planned,
                }));
                if !args.json {
                    eprintln!(
                        "{b}×{t} {name}: {:.3} GiB allocated, plan {:.3} GiB",
                        memory as f64 / GIB,
                        planned as f64 / GIB
                    );
                }
                continue;
            }
            let mut rng = Rng::new(2);
            let ids: Vec<u32> = (0..b * t).map(|_| rng.below(vocab) as u32).collect();
            let targets: Vec<u32> = (0..b * t)
                .map(|i| {
                    if (i + 1) % t == 0 {
                        u32::MAX
                    } else {
                        ids[i + 1]
                    }
                })
                .collect();
            let batch = [MicroBatch {
                ids: &ids,
                targets: &targets,
            }];
            let options = StepOptions {
                adamw: AdamW::default(),
                max_grad_norm: 1.0,
            };
            pollster::block_on(trainer.train_step(&gpu, &batch, b, options))?; // warm-up
            let start = Instant::now();
            for _ in 0..args.steps {
                pollster::block_on(trainer.train_step(&gpu, &batch, b, options))?;
            }
            let secs = start.elapsed().as_secs_f64() / args.steps.max(1) as f64;
            let memory = gpu.memory.peak();
            rows.push(json!({
                "batch": b,
                "seq_len": t,
                "lora": name,
                "lora_r": args.lora_r,
                "step_s": secs,
                "tokens_per_s": (b * t) as f64 / secs,
                "gradient_checkpointing": args.gradient_checkpointing,
                    "bf16_stream": args.bf16_stream,
                "gpu_memory_bytes": memory,
                "plan_bytes": planned,
            }));
            if !args.json {
                eprintln!(
                    "{b}×{t} {name}: {:.0} tok/s, {:.2} s/step, {:.2} GB",
                    (b * t) as f64 / secs,
                    secs,
                    memory as f64 / 1e9
                );
            }
        }
    }
    if args.json {
        return print_json(&json!({ "adapter": gpu.adapter, "model": shape, "results": rows }));
    }
    Ok(())
}
