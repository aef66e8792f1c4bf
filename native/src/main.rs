//! `afinador`: fine-tune language models with LoRA/QLoRA on any GPU — the command line.

mod commands;
mod common;
mod host_memory;

use clap::{Parser, Subcommand};

/// Fine-tune and run language models with LoRA/QLoRA on any GPU (Vulkan, Metal, DX12, GL).
#[derive(Parser, Debug)]
#[command(name = "afinador", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the GPU adapters wgpu can reach, with their features and limits.
    Devices(commands::devices::Args),
    /// Show a GGUF model's architecture, hyper-parameters, tensors and tokenizer.
    Inspect(commands::inspect::Args),
    /// Turn text into token ids with the model's tokenizer.
    Tokenize(commands::tokenize::Args),
    /// Negative log-likelihood and perplexity of a text under the model.
    Score(commands::score::Args),
    /// Generate text from a prompt.
    Generate(commands::generate::Args),
    /// Fine-tune a model with LoRA on a data file (the base stays 4-bit).
    Train(Box<commands::train::Args>),
    /// Score generations against references: ROUGE, BLEU, EM/F1, multiple-choice accuracy.
    Eval(Box<commands::eval::Args>),
    /// Check a training run before starting it: memory plan, data statistics, time estimate.
    Preflight(Box<commands::preflight::Args>),
    /// Charts and an HTML report of a training run's directory.
    Report(commands::report::Args),
    /// Write an adapter for other tools: GGUF LoRA (llama.cpp), PEFT, Ollama, or merged.
    Export(commands::export::Args),
    /// Write a GGUF model with a LoRA adapter merged into its weights.
    Merge(commands::merge::Args),
    /// Write a small random GGUF of any supported architecture (for smoke tests and the browser
    /// tests).
    MakeTinyModel(commands::make_tiny_model::Args),
    /// Write a seeded random LoRA adapter for a model (for tests and reference scripts).
    MakeRandomAdapter(commands::make_random_adapter::Args),
    /// Benchmarks: kernels at the real model's shapes.
    Bench(commands::bench::Args),
    /// Serve the browser trainer (web/dist) on 127.0.0.1.
    Web(commands::web::Args),
}

fn main() {
    quiet_vulkan_runtime_dir();
    exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(args) => commands::devices::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Score(args) => commands::score::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Train(args) => commands::train::run(*args),
        Command::MakeTinyModel(args) => commands::make_tiny_model::run(args),
        Command::MakeRandomAdapter(args) => commands::make_random_adapter::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Merge(args) => commands::merge::run(args),
        Command::Eval(args) => commands::eval::run(*args),
        Command::Preflight(args) => commands::preflight::run(*args),
        Command::Report(args) => commands::report::run(args),
        Command::Web(args) => commands::web::run(args),
    };
    if let Err(e) = result {
        // One line: the error and its causes.
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}

/// Mesa's Vulkan drivers print `error: XDG_RUNTIME_DIR is invalid or not set` (twice, on every
/// run) when the variable is missing, as it is in containers, CI and `sudo` shells. Point it at a
/// private directory of our own before any GPU instance exists; an existing value is kept.
fn quiet_vulkan_runtime_dir() {
    if !cfg!(target_os = "linux") || std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let dir = std::env::temp_dir().join(format!("afinador-xdg-{user}"));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The XDG spec asks for a directory only its owner can enter.
        if std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).is_err() {
            return;
        }
    }
    // SAFETY: called first thing in `main`, before any other thread exists, so nothing reads the
    // environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

/// `afinador inspect | head` closes our stdout early: end quietly, as other command-line tools
/// do, instead of panicking in `println!` (Rust ignores SIGPIPE by default).
fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal, first thing in `main`, before any
    // other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
