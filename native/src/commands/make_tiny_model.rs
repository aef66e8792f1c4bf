//! `afinador make-tiny-model`: a small random GGUF of any supported architecture for smoke tests
//! and browser tests.

use std::path::PathBuf;

use afinador_core::formats::GgmlType;
use afinador_core::model::Architecture;
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
    /// A real model's shape and main weight type instead of the flags below (random weights,
    /// for speed and memory figures): smollm2-135m, qwen2.5-0.5b, qwen3-0.6b, gemma3-270m,
    /// qwen2.5-1.5b, llama-3.2-1b, phi3-mini, phi4-mini, mistral-7b, llama-3.1-8b. --layers and --weights
    /// still apply.
    #[arg(long)]
    like: Option<String>,
    /// The architecture (llama, mistral, qwen2, qwen3, gemma3, phi3) [default: llama, or the
    /// --like shape's].
    #[arg(long)]
    arch: Option<String>,
    /// Add Llama 3.1's rope scaling (`rope_freqs.weight`), or for phi3 LongRoPE's short and
    /// long factors and attention factor [default: only for the --like Llama 3 shapes].
    #[arg(long)]
    rope_freqs: bool,
    /// With phi3 and --rope-freqs: the context LongRoPE's short factors serve
    /// (`rope.scaling.original_context_length`), past which the long ones do [default: the
    /// context length, 2048].
    #[arg(long)]
    rope_original_context: Option<usize>,
    /// The values of each head rope rotates (`rope.dimension_count`), fewer than the head size
    /// for a partial rotary embedding like Phi-4-mini's [default: all of them].
    #[arg(long)]
    rope_dims: Option<usize>,
    /// Decoder layers [default: 2, or the --like shape's].
    #[arg(long)]
    layers: Option<usize>,
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
    /// q5_0, q5_1, q8_0, q2_k … q6_k); Q5_0, Q5_1 and the k-quants get random blocks, and the
    /// k-quants need --embd and --ff multiples of 256.
    /// [default: q4_1, or the --like shape's]
    #[arg(long)]
    weights: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    let spec = spec(&args)?;
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

/// The model `args` describe.
fn spec(args: &Args) -> Result<TinySpec> {
    let mut spec = match &args.like {
        Some(name) => TinySpec::like(name).with_context(|| {
            format!(
                "unknown --like '{name}': use one of {}",
                TinySpec::like_names()
            )
        })?,
        None => {
            if !args.embd.is_multiple_of(args.heads) || !args.heads.is_multiple_of(args.kv_heads) {
                bail!("--embd must be a multiple of --heads, and --heads of --kv-heads");
            }
            TinySpec {
                arch: afinador_core::model::arch::LLAMA,
                n_layer: 2,
                n_embd: args.embd,
                n_ff: args.ff,
                n_head: args.heads,
                n_head_kv: args.kv_heads,
                head_dim: None,
                local_layers: (4, 2),
                vocab_size: args.vocab,
                context_length: 2048,
                weight_type: GgmlType::Q4_1,
                rope_freqs: false,
                rope_original_context: None,
                rope_dim: None,
                seed: args.seed,
            }
        }
    };
    if let Some(name) = &args.arch {
        spec.arch = Architecture::from_gguf_name(name).with_context(|| {
            format!(
                "unknown --arch '{name}': use one of {}",
                Architecture::names()
            )
        })?;
    }
    spec.rope_freqs |= args.rope_freqs;
    if let Some(n) = args.rope_original_context {
        if !(spec.rope_freqs && spec.arch.fused_projections) {
            bail!(
                "--rope-original-context is LongRoPE's (phi3 with --rope-freqs); add those or drop it"
            );
        }
        spec.rope_original_context = Some(n);
    }
    spec.rope_dim = args.rope_dims.or(spec.rope_dim);
    if let Some(layers) = args.layers {
        spec.n_layer = layers;
    }
    if let Some(name) = &args.weights {
        spec.weight_type = weight_type(name)?;
    }
    spec.seed = args.seed;
    Ok(spec)
}

/// A `--weights` name.
pub fn weight_type(name: &str) -> Result<GgmlType> {
    let types = TinySpec::weight_types();
    let Some(ty) = types
        .iter()
        .copied()
        .find(|t| t.name().eq_ignore_ascii_case(name))
    else {
        let names: Vec<String> = types.iter().map(|t| t.name().to_lowercase()).collect();
        bail!("unknown weight type '{name}': use {}", names.join(", "));
    };
    Ok(ty)
}
