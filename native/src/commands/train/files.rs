//! Writing run outputs safely: atomic directories (temp + fsync + rename), adapters, JSON lines.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use afinador_core::lora::{LoraAdapter, to_gguf_lora, to_peft};
use afinador_core::model::ModelConfig;
use afinador_core::train::checkpoint::CheckpointFiles;
use anyhow::{Context, Result};

/// Write `files` (name → bytes) as the directory `dest`, atomically: into a temporary sibling,
/// each file fsynced, then renamed over `dest` (the previous `dest` stays intact until then).
pub fn write_dir_atomic(dest: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let parent = dest
        .parent()
        .context("destination has no parent directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = dest
        .file_name()
        .context("destination has no name")?
        .to_string_lossy();
    let tmp = parent.join(format!(".tmp-{name}"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for (file, bytes) in files {
        let path = tmp.join(file);
        let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {} (is the disk full?)", path.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
    }
    let old = parent.join(format!(".old-{name}"));
    let _ = fs::remove_dir_all(&old);
    if dest.exists() {
        fs::rename(dest, &old).with_context(|| format!("moving {} aside", dest.display()))?;
    }
    fs::rename(&tmp, dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    let _ = fs::remove_dir_all(&old);
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// An adapter as the files every adapter directory holds: the Hugging Face PEFT pair
/// (`adapter_config.json`, `adapter_model.safetensors`, Q/K rows un-permuted to HF order) and
/// `adapter.gguf`, the same adapter as a GGUF LoRA for llama.cpp's `--lora` and Ollama.
pub struct AdapterFiles {
    pub config_json: String,
    pub safetensors: Vec<u8>,
    pub gguf: Vec<u8>,
}

/// The name of the GGUF LoRA in an adapter directory.
pub const ADAPTER_GGUF: &str = "adapter.gguf";

impl AdapterFiles {
    /// The files of `adapter` for a base model of `model`'s shape and architecture.
    pub fn new(adapter: &LoraAdapter, model: &ModelConfig) -> Result<AdapterFiles> {
        let peft = to_peft(adapter, model.hf_model())?;
        Ok(AdapterFiles {
            config_json: peft.adapter_config_json,
            safetensors: peft.adapter_model_safetensors,
            gguf: to_gguf_lora(adapter, model.arch.name)?,
        })
    }

    /// Name → bytes, as [`write_dir_atomic`] takes them.
    pub fn entries(&self) -> [(&str, &[u8]); 3] {
        [
            ("adapter_config.json", self.config_json.as_bytes()),
            ("adapter_model.safetensors", &self.safetensors),
            (ADAPTER_GGUF, &self.gguf),
        ]
    }

    /// Write them as the directory `dest`, atomically.
    pub fn write_dir(&self, dest: &Path) -> Result<()> {
        write_dir_atomic(dest, &self.entries())
    }
}

/// Write a checkpoint directory: the adapter files, the optimizer state and the trainer state.
pub fn write_checkpoint(dest: &Path, adapter: &AdapterFiles, ckpt: &CheckpointFiles) -> Result<()> {
    let mut files = adapter.entries().to_vec();
    files.push(("optimizer.safetensors", &ckpt.tensors));
    files.push(("trainer_state.json", ckpt.state_json.as_bytes()));
    write_dir_atomic(dest, &files)
}

/// Read a checkpoint directory written by [`write_checkpoint`].
pub fn read_checkpoint(dir: &Path) -> Result<CheckpointFiles> {
    let state = dir.join("trainer_state.json");
    let tensors = dir.join("optimizer.safetensors");
    Ok(CheckpointFiles {
        state_json: fs::read_to_string(&state)
            .with_context(|| format!("reading {}", state.display()))?,
        tensors: fs::read(&tensors).with_context(|| format!("reading {}", tensors.display()))?,
    })
}

/// The checkpoint to resume from: `dir` itself when it is one, else its newest `checkpoints/step-N`.
pub fn resolve_resume(dir: &Path) -> Result<PathBuf> {
    if dir.join("trainer_state.json").exists() {
        return Ok(dir.to_path_buf());
    }
    let newest = checkpoints(&dir.join("checkpoints"))?.pop();
    newest
        .map(|(_, p)| p)
        .with_context(|| format!("{} holds no checkpoint to resume from", dir.display()))
}

/// `step-N` checkpoint directories under `dir`, oldest first.
pub fn checkpoints(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(n) = name.strip_prefix("step-").and_then(|n| n.parse().ok()) {
                found.push((n, e.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Appends JSON lines to a file, flushing each.
pub struct JsonLines(File);

impl JsonLines {
    pub fn append(path: &Path) -> Result<JsonLines> {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(JsonLines(f))
    }

    pub fn write(&mut self, value: &serde_json::Value) -> Result<()> {
        writeln!(self.0, "{value}")?;
        self.0.flush()?;
        Ok(())
    }
}
