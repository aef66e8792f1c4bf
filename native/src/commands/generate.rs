//! `afinador generate`: text from a prompt, streamed as it is produced.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use afinador_core::model::{Generation, SamplingConfig};
use afinador_core::tokenizer::{ChatMessage, ChatTemplate};
use anyhow::{Result, bail};

use crate::common::{GpuArgs, ModelArgs, print_json, text_or_file};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    /// A LoRA adapter to apply to the model: a Hugging Face PEFT directory
    /// (adapter_config.json + adapter_model.safetensors) or a GGUF LoRA file.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The prompt.
    #[arg(long)]
    prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A system message for --chat.
    #[arg(long)]
    system: Option<String>,
    /// Stop after this many new tokens (or at end of generation).
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Sample within the smallest set of tokens whose probability reaches p.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON: ids, text, prompt_tokens_per_s, decode_tokens_per_s.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let prompt = text_or_file(&args.prompt, &args.prompt_file, "prompt")?;
    let file = args.model.read()?;
    let tokenizer = args.model.tokenizer(&file)?;
    let text = if args.chat {
        let template = file.gguf.metadata().get_str("tokenizer.chat_template").ok();
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(prompt));
        ChatTemplate::for_model(template, &tokenizer)?.render(&messages, true)?
    } else {
        prompt
    };
    let ids = tokenizer.encode(&text, true)?;
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let gpu = args.gpu.open()?;
    let model = file.load_with_adapter(&gpu, args.adapter.as_deref())?;
    let sampling = SamplingConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    let mut generation = Generation::new(&gpu, &model, ids.len() + args.max_new_tokens, sampling)?;

    let mut decoder = tokenizer.stream_decoder();
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    // The prompt's forward pass ends when the first new token is chosen.
    let mut first_token_at: Option<Instant> = None;
    let mut write_error = None;
    let stop = |id| tokenizer.is_eog(id);
    let on_token = |id| {
        first_token_at.get_or_insert_with(Instant::now);
        if !args.json {
            let piece = decoder.push(id);
            if let Err(e) = write!(out, "{piece}").and_then(|_| out.flush()) {
                write_error.get_or_insert(e);
            }
        }
    };
    let new_ids =
        pollster::block_on(generation.generate(&gpu, &ids, args.max_new_tokens, stop, on_token))?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let end = Instant::now();
    let decode_start = first_token_at.unwrap_or(end);
    let prompt_s = (decode_start - start).as_secs_f64();
    let decode_s = (end - decode_start).as_secs_f64();
    // Tokens decoded by forward passes after the prompt's.
    let decoded = new_ids.len().saturating_sub(1);
    let prompt_tps = ids.len() as f64 / prompt_s.max(1e-9);
    let decode_tps = if decoded > 0 {
        decoded as f64 / decode_s.max(1e-9)
    } else {
        0.0
    };
    if args.json {
        return print_json(&serde_json::json!({
            "ids": new_ids,
            "text": tokenizer.decode(&new_ids),
            "prompt_tokens": ids.len(),
            "prompt_tokens_per_s": prompt_tps,
            "decode_tokens_per_s": decode_tps,
        }));
    }
    writeln!(out, "{}", decoder.finish())?;
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s | decode: {} tokens, {:.1} tok/s | {}",
        ids.len(),
        prompt_tps,
        new_ids.len(),
        decode_tps,
        gpu.adapter.name
    );
    Ok(())
}
