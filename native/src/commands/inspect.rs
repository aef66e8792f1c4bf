//! `afinador inspect`: what is inside a GGUF model.

use std::collections::BTreeMap;

use afinador_core::model::LlamaConfig;
use anyhow::Result;

use crate::common::{ModelArgs, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let file = args.model.read()?;
    let gguf = &file.gguf;
    let config = LlamaConfig::from_gguf(gguf)?;
    let tokenizer = args.model.tokenizer(&file)?;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for t in gguf.tensors() {
        *types.entry(t.ty.name().to_string()).or_default() += 1;
    }
    let meta = gguf.metadata();
    let template = meta.get_str("tokenizer.chat_template").ok();
    let tok = serde_json::json!({
        "model": meta.get_str("tokenizer.ggml.model").ok(),
        "pre": meta.get_str("tokenizer.ggml.pre").ok(),
        "vocab_size": tokenizer.vocab_size(),
        "bos_id": tokenizer.bos_id(),
        "eos_id": tokenizer.eos_id(),
        "add_bos": tokenizer.add_bos(),
    });
    let report = serde_json::json!({
        "file": args.model.model.display().to_string(),
        "file_bytes": file.bytes.len(),
        "gguf_version": gguf.version(),
        "architecture": config.architecture,
        "name": config.name,
        "config": config,
        "n_params": config.n_params(),
        "n_tensors": gguf.tensors().len(),
        "tensor_types": types,
        "tokenizer": tok,
        "chat_template": template,
    });
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} ({}, GGUF v{}, {:.1} MB)",
        config.name,
        config.architecture,
        gguf.version(),
        file.bytes.len() as f64 / 1e6
    );
    println!(
        "  layers {}, embedding {}, feed-forward {}, heads {} (kv {}), head size {}, vocab {}",
        config.n_layer,
        config.n_embd,
        config.n_ff,
        config.n_head,
        config.n_head_kv,
        config.head_dim,
        config.vocab_size
    );
    println!(
        "  context {}, rope base {}, rms eps {:e}, tied embeddings {}, {:.1} M parameters",
        config.context_length,
        config.rope_base,
        config.rms_eps,
        config.tied_embeddings,
        config.n_params() as f64 / 1e6
    );
    let types: Vec<String> = types.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
    println!("  tensors: {} ({})", gguf.tensors().len(), types.join(", "));
    println!("  tokenizer: {}", report["tokenizer"]);
    match template {
        Some(t) => println!("  chat template:\n{t}"),
        None => println!("  chat template: none (ChatML is used)"),
    }
    Ok(())
}
