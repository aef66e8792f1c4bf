//! `afinador bench decode`: prompt (prefill) and decode throughput of greedy generation, on the
//! real model or on random weights of a named shape (`--like`, so the 98 MB model file need not
//! travel to a GPU machine, and 7–8B shapes can be timed without their files).

use std::time::Instant;

use afinador_core::model::{Generation, SamplingConfig};
use afinador_core::util::Rng;
use anyhow::Result;
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
    /// Prompt tokens (random ids) fed before decoding.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens decoded one at a time (greedy, no stop token).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let (file, shape) = args.weights.file(&args.model)?;
    let gpu = args.gpu.open()?;
    let model = file.load(&gpu)?;
    let vocab = model.config.vocab_size as u64;
    let mut rng = Rng::new(3);
    let prompt: Vec<u32> = (0..args.prompt_tokens.max(1))
        .map(|_| rng.below(vocab) as u32)
        .collect();
    let greedy = SamplingConfig {
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    // A warm-up generation compiles whatever the first one would, then the timed one.
    let mut warm = Generation::new(&gpu, &model, prompt.len() + 2, greedy.clone())?;
    pollster::block_on(warm.generate(&gpu, &prompt, 2, |_| false, |_| {}))?;
    drop(warm);
    let mut generation = Generation::new(&gpu, &model, prompt.len() + args.new_tokens, greedy)?;
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let ids = pollster::block_on(generation.generate(
        &gpu,
        &prompt,
        args.new_tokens,
        |_| false,
        |_| {
            first.get_or_insert_with(Instant::now);
        },
    ))?;
    let end = Instant::now();
    let first = first.unwrap_or(end);
    let prefill_tps = prompt.len() as f64 / (first - start).as_secs_f64().max(1e-9);
    let decoded = ids.len().saturating_sub(1);
    let decode_tps = decoded as f64 / (end - first).as_secs_f64().max(1e-9);
    let report = json!({
        "adapter": gpu.adapter,
        "model": shape,
        "layers": model.config.n_layer,
        "prompt_tokens": prompt.len(),
        "prefill_tokens_per_s": prefill_tps,
        "decoded_tokens": decoded,
        "decode_tokens_per_s": decode_tps,
        "weight_bytes": file.gguf.tensors().iter().map(|t| t.n_bytes).sum::<u64>(),
        "gpu_memory_bytes": gpu.memory.peak(),
    });
    if args.json {
        return print_json(&report);
    }
    eprintln!(
        "{shape}, {} layers: prefill {} tokens at {prefill_tps:.0} tok/s, decode {decoded} tokens \
         at {decode_tps:.1} tok/s ({})",
        model.config.n_layer,
        prompt.len(),
        gpu.adapter.name
    );
    Ok(())
}
