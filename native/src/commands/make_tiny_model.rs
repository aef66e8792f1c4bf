//! `afinador make-tiny-model`: a small random Llama GGUF for smoke tests and browser tests.

use std::path::PathBuf;

use afinador_core::model::tiny::{TinySpec, make_tiny_gguf};
use anyhow::{Context, Result, bail};

use crate::common::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the GGUF file.
    #[arg(long)]
    output: PathBuf,
    /// Copy the tokenizer of this GGUF model (its vocabulary sets the vocab size).
    #[arg(long)]
    tokenizer_from: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 64)]
    embd: usize,
    #[arg(long, default_value_t = 128)]
    ff: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    /// Vocabulary size when no tokenizer is copied.
    #[arg(long, default_value_t = 256)]
    vocab: usize,
    /// Weight type of the projections: any type the GPU reads (f32, f16, bf16, q4_0, q4_1,
    /// q5_0, q5_1, q8_0, q2_k … q6_k); types afinador cannot encode get random blocks, and the
    /// k-quants need --embd and --ff multiples of 256.
    #[arg(long, default_value = "q4_1")]
    weights: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    let types = TinySpec::weight_types();
    let Some(weight_type) = types
        .iter()
        .copied()
        .find(|t| t.name().eq_ignore_ascii_case(&args.weights))
    else {
        let names: Vec<String> = types.iter().map(|t| t.name().to_lowercase()).collect();
        bail!(
            "unknown weight type '{}': use {}",
            args.weights,
            names.join(", ")
        );
    };
    if !args.embd.is_multiple_of(args.heads) || !args.heads.is_multiple_of(args.kv_heads) {
        bail!("--embd must be a multiple of --heads, and --heads of --kv-heads");
    }
    let spec = TinySpec {
        n_layer: args.layers,
        n_embd: args.embd,
        n_ff: args.ff,
        n_head: args.heads,
        n_head_kv: args.kv_heads,
        vocab_size: args.vocab,
        context_length: 2048,
        weight_type,
        seed: args.seed,
    };
    let source = match &args.tokenizer_from {
        Some(path) => Some(
            ModelArgs {
                model: path.clone(),
                tokenizer: None,
            }
            .read()?,
        ),
        None => None,
    };
    let bytes = make_tiny_gguf(&spec, source.as_ref().map(|f| &f.gguf))?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {} ({} bytes)", args.output.display(), bytes.len());
    Ok(())
}
