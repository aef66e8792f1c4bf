//! `afinador make-random-adapter`: a LoRA adapter with seeded random A and B (B not zero, so it
//! changes the model), for a given base model. The same flags give the same bytes on every
//! machine (the values come from a seeded CPU generator, not from training), which is what the
//! llama.cpp reference script and its test need to meet on one adapter.

use std::path::PathBuf;

use afinador_core::lora::{LoraAdapter, LoraConfig, LoraPair, Module};
use afinador_core::model::ModelConfig;
use afinador_core::util::Rng;
use anyhow::{Context, Result};

use super::train::files::AdapterFiles;
use crate::common::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the adapter directory (PEFT files and adapter.gguf).
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 2)]
    lora_r: usize,
    #[arg(long, default_value_t = 4.0)]
    lora_alpha: f32,
    /// Comma list of modules, or all-linear.
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj")]
    target_modules: String,
    /// Standard deviation of every A and B value (normal).
    #[arg(long, default_value_t = 0.02)]
    std: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    let file = args.model.read()?;
    let model = ModelConfig::from_gguf(&file.gguf)?;
    let names: Vec<&str> = args.target_modules.split(',').map(str::trim).collect();
    let modules = model
        .arch
        .lora_modules(&Module::parse_list(&names)?)
        .map_err(anyhow::Error::msg)?;
    let config = LoraConfig::new(args.lora_r, args.lora_alpha, &modules);
    let mut rng = Rng::new(args.seed);
    let mut tensors = Vec::new();
    for layer in 0..model.n_layer {
        for &module in &modules {
            let (out, inp) = model.module_shape(module);
            let mut values =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() * args.std).collect() };
            tensors.push(LoraPair {
                layer,
                module,
                a: values(args.lora_r * inp),
                b: values(out * args.lora_r),
                in_features: inp,
                out_features: out,
            });
        }
    }
    let adapter = LoraAdapter { config, tensors };
    AdapterFiles::new(&adapter, &model)?
        .write_dir(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} pairs, r {})",
        args.output.display(),
        adapter.tensors.len(),
        args.lora_r
    );
    Ok(())
}
