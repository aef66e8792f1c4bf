//! `afinador bench train`: training throughput and GPU memory of QLoRA steps at given
//! batch×sequence shapes, attention-only and all-linear LoRA, on random tokens.

use std::time::Instant;

use afinador_core::kernels::optim::AdamW;
use afinador_core::lora::{LoraConfig, Module};
use afinador_core::train::{GpuLora, MicroBatch, StepOptions, Trainer};
use afinador_core::util::Rng;
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::common::{GpuArgs, LikeArgs, ModelArgs, print_json};

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
    /// Timed steps per configuration (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
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
    let model = file.load(&gpu)?;
    let vocab = model.config.vocab_size as u64;
    let mut rows = Vec::new();
    for &(b, t) in &shapes {
        for (name, modules) in &targets {
            let config = LoraConfig::new(args.lora_r, 2.0 * args.lora_r as f32, modules);
            // The previous configuration's buffers are gone: measure this one's peak alone.
            gpu.memory.reset_peak();
            let lora = GpuLora::init(&gpu, &model.config, &config, 1)?;
            let mut trainer = Trainer::new(&model, lora);
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
                "gpu_memory_bytes": memory,
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
