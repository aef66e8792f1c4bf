//! `afinador tokenize`: text to token ids.

use std::path::PathBuf;

use anyhow::Result;

use crate::common::{ModelArgs, print_json, text_or_file};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to tokenize (special tokens such as <|im_start|> become their ids).
    #[arg(long)]
    text: Option<String>,
    /// Read the text from a file.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// Print JSON: {"ids": [...], "tokens": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let text = text_or_file(&args.text, &args.text_file, "text")?;
    let file = args.model.read()?;
    let tokenizer = args.model.tokenizer(&file)?;
    let ids = tokenizer.encode(&text, true)?;
    let tokens: Vec<String> = ids
        .iter()
        .map(|&id| tokenizer.token_str(id).unwrap_or_default())
        .collect();
    if args.json {
        return print_json(&serde_json::json!({ "ids": ids, "tokens": tokens }));
    }
    for (id, tok) in ids.iter().zip(&tokens) {
        println!("{id:>8}  {tok:?}");
    }
    println!("{} tokens", ids.len());
    Ok(())
}
