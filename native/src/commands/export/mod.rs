//! `afinador export`: a LoRA adapter into the formats other tools load — a GGUF LoRA for
//! llama.cpp (`--lora`), a Hugging Face PEFT directory, an Ollama model folder (GGUF LoRA +
//! `Modelfile`), or a GGUF model with the adapter merged in. The adapter may be afinador's or
//! one trained elsewhere (a PEFT directory or a GGUF LoRA for the same base model).

use std::path::{Path, PathBuf};

use afinador_core::formats::Gguf;
use afinador_core::lora::LoraAdapter;
use afinador_core::model::ModelConfig;
use afinador_core::tokenizer::Tokenizer;
use afinador_core::train::TrainConfig;
use anyhow::{Context, Result, bail};

mod scale_out;

use super::merge::{merge_to_file, parse_merged_type};
use super::train::files::{AdapterFiles, write_dir_atomic};
use crate::common::{ModelArgs, print_json, read_adapter};

/// What to write.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A GGUF LoRA file for `llama-cli --lora` (default: ADAPTER/adapter.gguf).
    GgufLora,
    /// A Hugging Face PEFT directory (`PeftModel.from_pretrained`); needs --output.
    Peft,
    /// A folder with the GGUF LoRA and an Ollama `Modelfile` (default: ADAPTER/ollama).
    Ollama,
    /// A GGUF model with the adapter merged into its weights (default: ADAPTER/merged.gguf).
    Merged,
    /// An Axolotl YAML of a run's configuration, QLoRA (needs --run; default: RUN/axolotl.yml).
    Axolotl,
    /// A TRL SFTTrainer script of a run's configuration, QLoRA (needs --run; default:
    /// RUN/train_trl.py).
    Trl,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The adapter: a PEFT directory (afinador's `adapter/`, `best/`, a checkpoint, or one from
    /// PEFT/Unsloth for the same base model) or a GGUF LoRA file.
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    adapter: Option<PathBuf>,
    /// A training run's directory (its config.json), for --to axolotl|trl.
    #[arg(long)]
    run: Option<PathBuf>,
    /// The format to write.
    #[arg(long, value_enum)]
    to: Target,
    /// Where to write it (a file for gguf-lora and merged, a directory otherwise).
    #[arg(long)]
    output: Option<PathBuf>,
    /// merged: type of the merged projections (q8_0, q6_k, q4_k, f16, bf16 or f32; the
    /// k-quants need rows a multiple of 256 wide).
    #[arg(long, default_value = "q8_0")]
    merged_type: String,
    /// ollama: a system prompt for the Modelfile.
    #[arg(long)]
    system: Option<String>,
    /// ollama: the model name the printed `ollama create` line uses.
    #[arg(long, default_value = "afinador-adapter")]
    name: String,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    if matches!(args.to, Target::Axolotl | Target::Trl) {
        return export_run(&args);
    }
    let Some(adapter_path) = &args.adapter else {
        bail!(
            "--to {} exports an adapter: give --adapter DIR|LORA.gguf",
            target_name(args.to)
        );
    };
    let file = args.model.read()?;
    let adapter = read_adapter(adapter_path, &file.gguf)?;
    let config = ModelConfig::from_gguf(&file.gguf)?;
    let output = match &args.output {
        Some(p) => p.clone(),
        None => default_output(adapter_path, args.to)?,
    };
    let files = AdapterFiles::new(&adapter, &config)?;
    let mut next_step = None;
    match args.to {
        Target::GgufLora => write_file(&output, &files.gguf)?,
        Target::Peft => write_dir_atomic(
            &output,
            &[
                ("adapter_config.json", files.config_json.as_bytes()),
                ("adapter_model.safetensors", &files.safetensors),
            ],
        )?,
        Target::Ollama => {
            let model_path =
                std::fs::canonicalize(crate::common::locate_model(&args.model.model)?)?;
            let tokenizer = args.model.tokenizer(&file)?;
            let modelfile = modelfile(&model_path, &file.gguf, &tokenizer, args.system.as_deref());
            write_dir_atomic(
                &output,
                &[
                    ("adapter.gguf", &files.gguf),
                    ("Modelfile", modelfile.as_bytes()),
                ],
            )?;
            next_step = Some(format!(
                "ollama create {} -f {}",
                args.name,
                output.join("Modelfile").display()
            ));
        }
        Target::Merged => {
            let ty = parse_merged_type(&args.merged_type)?;
            merge_to_file(&file, &adapter, ty, &output)?;
        }
        Target::Axolotl | Target::Trl => unreachable!("handled by export_run"),
    }
    report(&args, &adapter, &output, next_step)
}

/// The `--to` value that selects `to`.
fn target_name(to: Target) -> String {
    use clap::ValueEnum;
    to.to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// `--run DIR --to axolotl|trl`.
fn export_run(args: &Args) -> Result<()> {
    let Some(run_dir) = &args.run else {
        bail!(
            "--to {} exports a training run: give --run RUN_DIR (a directory afinador train wrote)",
            target_name(args.to)
        );
    };
    let path = run_dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} a run directory?)",
            path.display(),
            run_dir.display()
        )
    })?;
    let config: TrainConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an afinador run configuration", path.display()))?;
    let model = ModelArgs {
        model: PathBuf::from(&config.model),
        tokenizer: None,
    };
    let file = model.read()?;
    let name = file
        .gguf
        .metadata()
        .get_str("general.name")
        .unwrap_or("")
        .to_string();
    let stem = run_dir
        .file_name()
        .map_or("run".into(), |n| n.to_string_lossy().to_string());
    let (default_file, suffix) = match args.to {
        Target::Axolotl => ("axolotl.yml", "axolotl"),
        _ => ("train_trl.py", "trl"),
    };
    let run = scale_out::Run {
        config: &config,
        format: scale_out::record_format(&config)?,
        base_model: scale_out::hf_repository(&file.gguf),
        gguf_name: name,
        output_dir: format!("{stem}-{suffix}"),
    };
    let text = match args.to {
        Target::Axolotl => scale_out::axolotl(&run, run_dir),
        _ => scale_out::trl(&run, run_dir),
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| run_dir.join(default_file));
    write_file(&output, text.as_bytes())?;
    if args.json {
        return print_json(&serde_json::json!({
            "to": target_name(args.to),
            "output": output,
            "base_model": run.base_model,
        }));
    }
    eprintln!("wrote {}", output.display());
    if run.base_model.is_none() {
        eprintln!(
            "note: the GGUF names no Hugging Face repository: replace {} in it with the \
             checkpoint the model was converted from",
            scale_out::PLACEHOLDER
        );
    }
    Ok(())
}

/// Where each format goes when `--output` is not given: inside the adapter's directory (or
/// beside a GGUF LoRA file).
fn default_output(adapter: &Path, to: Target) -> Result<PathBuf> {
    let (dir, stem) = if adapter.is_dir() {
        (adapter.to_path_buf(), String::new())
    } else {
        let stem = adapter
            .file_stem()
            .map(|s| format!("{}-", s.to_string_lossy()))
            .unwrap_or_default();
        (
            adapter.parent().unwrap_or(Path::new(".")).to_path_buf(),
            stem,
        )
    };
    Ok(match to {
        Target::GgufLora if adapter.is_dir() => dir.join("adapter.gguf"),
        Target::GgufLora => bail!("the adapter is already a GGUF LoRA: give --output for a copy"),
        Target::Peft if adapter.is_dir() => {
            bail!("--to peft needs --output DIR (the adapter is already a PEFT directory)")
        }
        Target::Peft => dir.join(format!("{stem}peft")),
        Target::Ollama => dir.join(format!("{stem}ollama")),
        Target::Merged => dir.join(format!("{stem}merged.gguf")),
        Target::Axolotl | Target::Trl => unreachable!("a run's export"),
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    // Through a temporary sibling, so an existing file is replaced whole or not at all.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .with_context(|| format!("writing {} (is the disk full?)", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Ollama's Go template for ChatML models (`<|im_start|>role … <|im_end|>`), the format of
/// SmolLM2, Qwen and many fine-tunes.
const CHATML_TEMPLATE: &str = "{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
";

/// An Ollama `Modelfile`: the base GGUF, the adapter beside it, the chat template (ChatML
/// written out; any other left to Ollama, which reads `tokenizer.chat_template` from the GGUF
/// and knows the common ones), the end-of-turn tokens as stops, the system prompt.
fn modelfile(model: &Path, gguf: &Gguf, tokenizer: &Tokenizer, system: Option<&str>) -> String {
    let template = gguf
        .metadata()
        .get_str("tokenizer.chat_template")
        .ok()
        .map(str::to_owned);
    let mut s = String::from(
        "# Written by `afinador export --to ollama`: the base model with this LoRA adapter.\n\
         # Create it with `ollama create NAME -f Modelfile` (run from any directory).\n",
    );
    s.push_str(&format!("FROM {}\n", model.display()));
    s.push_str("ADAPTER ./adapter.gguf\n");
    match template.as_deref() {
        Some(t) if t.contains("<|im_start|>") => {
            s.push_str("# The model's chat template is ChatML, written here as Ollama's Go template.\n");
            s.push_str(&format!("TEMPLATE \"\"\"{CHATML_TEMPLATE}\"\"\"\n"));
        }
        Some(_) => s.push_str(
            "# TEMPLATE is left to Ollama: it reads tokenizer.chat_template from the base GGUF and\n\
             # maps the templates it knows; write one here if `ollama show --template` is wrong.\n",
        ),
        None => s.push_str(
            "# The base GGUF has no chat template: Ollama sends prompts as they are.\n",
        ),
    }
    for id in tokenizer.eog_ids() {
        if let Some(text) = tokenizer.token_text(id).filter(|t| !t.is_empty()) {
            s.push_str(&format!("PARAMETER stop {}\n", quote(text)));
        }
    }
    if let Some(system) = system {
        s.push_str(&format!("SYSTEM \"\"\"{system}\"\"\"\n"));
    }
    s
}

/// A Modelfile string argument.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn report(
    args: &Args,
    adapter: &LoraAdapter,
    output: &Path,
    next_step: Option<String>,
) -> Result<()> {
    let c = &adapter.config;
    if args.json {
        return print_json(&serde_json::json!({
            "to": target_name(args.to),
            "output": output,
            "lora_pairs": adapter.tensors.len(),
            "r": c.r,
            "alpha": c.alpha,
            "next": next_step,
        }));
    }
    eprintln!(
        "wrote {} ({} LoRA pairs, r {}, alpha {})",
        output.display(),
        adapter.tensors.len(),
        c.r,
        c.alpha
    );
    if let Some(line) = next_step {
        println!("{line}");
    }
    Ok(())
}
