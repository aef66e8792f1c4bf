//! `afinador merge`: a GGUF model with a LoRA adapter merged into its weights.

use std::path::{Path, PathBuf};

use afinador_core::formats::GgmlType;
use afinador_core::lora::LoraAdapter;
use afinador_core::lora::merge::merge_into_gguf;
use anyhow::{Context, Result, anyhow};

use crate::common::{ModelArgs, ModelFile, read_adapter};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The adapter to merge: a PEFT directory or a GGUF LoRA file.
    #[arg(long)]
    adapter: PathBuf,
    /// Where to write the merged GGUF.
    #[arg(long)]
    output: PathBuf,
    /// Type of the merged projections: q8_0, q6_k, q4_k, f16, bf16 or f32 (the others keep
    /// their type). q6_k and q4_k (ggml's k-quants, bit-exact with its reference quantizers)
    /// need rows a multiple of 256 wide.
    #[arg(long, default_value = "q8_0")]
    merged_type: String,
}

pub fn run(args: Args) -> Result<()> {
    let ty = parse_merged_type(&args.merged_type)?;
    let file = args.model.read()?;
    let adapter = read_adapter(&args.adapter, &file.gguf)?;
    merge_to_file(&file, &adapter, ty, &args.output)
}

/// The `--merged-type` values (any case: errors name the types in upper case).
const MERGED_TYPES: [GgmlType; 6] = [
    GgmlType::Q8_0,
    GgmlType::Q6_K,
    GgmlType::Q4_K,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

/// `--merged-type`.
pub fn parse_merged_type(name: &str) -> Result<GgmlType> {
    MERGED_TYPES
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<String> = MERGED_TYPES
                .iter()
                .map(|t| t.name().to_lowercase())
                .collect();
            anyhow!("unknown --merged-type '{name}': use {}", names.join(", "))
        })
}

/// Write `file`'s model with `adapter` merged into its projections (of type `ty`) to `output`.
pub fn merge_to_file(
    file: &ModelFile,
    adapter: &LoraAdapter,
    ty: GgmlType,
    output: &Path,
) -> Result<()> {
    let bytes = merge_into_gguf(&file.gguf, &file.bytes, adapter, ty)?;
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "merged {} LoRA pairs into {} ({:.1} MB)",
        adapter.tensors.len(),
        output.display(),
        bytes.len() as f64 / 1e6
    );
    Ok(())
}
