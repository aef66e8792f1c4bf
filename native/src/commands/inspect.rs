//! `afinador inspect`: what is inside a GGUF model.

use std::collections::BTreeMap;

use afinador_core::model::{ModelConfig, Support};
use anyhow::Result;

use crate::common::{GpuArgs, ModelArgs, print_json};
use crate::host_memory;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Also list every tensor with its type and dimensions.
    #[arg(long)]
    tensors: bool,
    /// Print JSON (always with the tensor list).
    #[arg(long)]
    json: bool,
    /// Also upload the weights to the GPU and report the time and the host memory it took
    /// (peak above the process's start, and beyond the device buffers).
    #[arg(long)]
    load: bool,
    #[command(flatten)]
    gpu: GpuArgs,
}

pub fn run(args: Args) -> Result<()> {
    let file = args.model.read()?;
    let gguf = &file.gguf;
    // What afinador cannot run, found before anything runs: the architecture or a key, tensor
    // types, the tokenizer (the core's check, which the browser runs on a download's header).
    // The rest of the report is printed either way.
    let mut support = Support::of(gguf);
    let tokenizer = support.tokenizer(args.model.tokenizer(&file).map_err(|e| format!("{e:#}")));
    let Support { config, problems } = support;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for t in gguf.tensors() {
        *types.entry(t.ty.name().to_string()).or_default() += 1;
    }
    let meta = gguf.metadata();
    let template = meta.get_str("tokenizer.chat_template").ok();
    let tok = tokenizer.as_ref().map(|tokenizer| {
        serde_json::json!({
            "model": meta.get_str("tokenizer.ggml.model").ok(),
            "pre": meta.get_str("tokenizer.ggml.pre").ok(),
            "vocab_size": tokenizer.vocab_size(),
            "bos_id": tokenizer.bos_id(),
            "eos_id": tokenizer.eos_id(),
            "add_bos": tokenizer.add_bos(),
        })
    });
    let tensors: Vec<serde_json::Value> = gguf
        .tensors()
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "type": t.ty.name(),
                "dims": t.dims,
                "supported": t.ty.is_supported(),
            })
        })
        .collect();
    let load = match (args.load, problems.is_empty()) {
        (true, true) => Some(measure_load(&args, &file)?),
        _ => None,
    };
    let report = serde_json::json!({
        "file": args.model.model.display().to_string(),
        "file_bytes": file.bytes.len(),
        "gguf_version": gguf.version(),
        "architecture": gguf.architecture().ok(),
        "name": config.as_ref().map(|c| c.name.clone()),
        "supported": problems.is_empty(),
        "problems": problems,
        "config": config,
        "n_params": config.as_ref().map(ModelConfig::n_params),
        "n_tensors": gguf.tensors().len(),
        "tensor_types": types,
        "tensors": tensors,
        "tokenizer": tok,
        "chat_template": template,
        "load": load,
    });
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} ({}, GGUF v{}, {:.1} MB)",
        config.as_ref().map_or("?", |c| c.name.as_str()),
        gguf.architecture().unwrap_or("?"),
        gguf.version(),
        file.bytes.len() as f64 / 1e6
    );
    if problems.is_empty() {
        println!("  supported: afinador can load, run and fine-tune it");
    } else {
        println!("  NOT supported ({} problems):", problems.len());
        for p in problems.iter().take(10) {
            println!("    {p}");
        }
        if problems.len() > 10 {
            println!(
                "    … and {} more (--json lists them all)",
                problems.len() - 10
            );
        }
    }
    if let Some(config) = &config {
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
    }
    let types: Vec<String> = types.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
    println!("  tensors: {} ({})", gguf.tensors().len(), types.join(", "));
    if args.tensors {
        for t in gguf.tensors() {
            println!("    {:<32} {:<6} {:?}", t.name, t.ty.name(), t.dims);
        }
    }
    if let Some(tok) = &report["tokenizer"].as_object() {
        println!("  tokenizer: {}", serde_json::Value::Object((*tok).clone()));
    }
    if let Some(load) = &load {
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "  load: {:.1} s on {}; device buffers {:.0} MB; host memory above the start: {} \
             (largest tensor {:.0} MB)",
            load.seconds,
            load.adapter,
            mb(load.device_bytes),
            load.host
                .map_or("not measured (no /proc)".into(), |h| format!(
                    "peak {:.0} MB, {:.0} MB beyond the device buffers; {:.0} MB of mapped file \
                 pages (page cache)",
                    mb(h.anon_above_start),
                    mb(h.beyond_device_buffers),
                    mb(h.file_pages_after)
                )),
            mb(load.largest_tensor_bytes)
        );
    }
    match template {
        Some(t) => println!("  chat template:\n{t}"),
        None => {
            let builtin = tokenizer.as_ref().map_or("ChatML", |t| {
                afinador_core::tokenizer::ChatTemplate::builtin(t).0
            });
            println!("  chat template: none ({builtin} is used)")
        }
    }
    Ok(())
}

/// What loading the weights took.
#[derive(serde::Serialize)]
struct LoadReport {
    adapter: String,
    seconds: f64,
    device_bytes: u64,
    largest_tensor_bytes: u64,
    host: Option<host_memory::HostPeak>,
}

/// Open the GPU, then upload the weights while the host memory is sampled.
fn measure_load(args: &Args, file: &crate::common::ModelFile) -> Result<LoadReport> {
    let gpu = args.gpu.open()?;
    let start = std::time::Instant::now();
    let (model, host) = host_memory::measure(gpu.memory.clone(), || {
        afinador_core::model::Model::load(&gpu, &file.gguf, &file.bytes)
    });
    let model = model?;
    Ok(LoadReport {
        adapter: gpu.adapter.name.clone(),
        seconds: start.elapsed().as_secs_f64(),
        device_bytes: model.weights.device_bytes(),
        largest_tensor_bytes: file
            .gguf
            .tensors()
            .iter()
            .map(|t| t.n_bytes)
            .max()
            .unwrap_or(0),
        host,
    })
}
