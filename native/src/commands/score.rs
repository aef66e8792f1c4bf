//! `afinador score`: how likely the model finds a text.

use std::path::PathBuf;

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
    /// The text to score.
    #[arg(long)]
    text: Option<String>,
    /// Read the text from a file.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// Print JSON: tokens, nll, ppl, argmax, entropy.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let text = text_or_file(&args.text, &args.text_file, "text")?;
    let file = args.model.read()?;
    let tokenizer = args.model.tokenizer(&file)?;
    let ids = tokenizer.encode(&text, true)?;
    if ids.len() < 2 {
        bail!(
            "the text has {} token(s): at least 2 are needed to score one prediction",
            ids.len()
        );
    }
    let gpu = args.gpu.open()?;
    let model = file.load_with_adapter(&gpu, args.adapter.as_deref())?;
    let score = pollster::block_on(model.score(&gpu, &ids))?;
    if args.json {
        return print_json(&serde_json::json!({
            "tokens": score.tokens,
            "nll": score.nll,
            "ppl": score.ppl,
            "argmax": score.argmax,
            "entropy": score.entropy,
            "token_logprobs": score.token_logprobs,
        }));
    }
    println!(
        "tokens {}  nll {:.4} nats  ppl {:.3}  entropy {:.3}",
        score.tokens, score.nll, score.ppl, score.entropy
    );
    Ok(())
}
