//! Flags and loading shared by the subcommands.

use std::path::{Path, PathBuf};

use afinador_core::formats::Gguf;
use afinador_core::gpu::{Backend, Gpu, GpuOptions};
use afinador_core::kernels::matmul::{MatmulTiles, MatmulVariant};
use afinador_core::model::Model;
use afinador_core::tokenizer::Tokenizer;
use anyhow::{Context, Result, bail};

/// The model `--model` uses when none is given (fetched by `scripts/fetch-model`).
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Which GPU to use.
#[derive(clap::Args, Debug, Clone)]
pub struct GpuArgs {
    /// Graphics API: auto, vulkan, metal, dx12 or gl.
    #[arg(long, default_value = "auto", env = "AFINADOR_BACKEND")]
    pub backend: String,
    /// Adapter index from `afinador devices` (default: the best one). Named --gpu because
    /// --adapter names a LoRA adapter.
    #[arg(long, env = "AFINADOR_GPU")]
    pub gpu: Option<usize>,
}

impl GpuArgs {
    pub fn backend(&self) -> Result<Backend> {
        Backend::parse(&self.backend).with_context(|| {
            format!(
                "unknown backend '{}': use auto, vulkan, metal, dx12 or gl",
                self.backend
            )
        })
    }

    /// Open the adapter, with the matmul build `afinador bench tune` chose for it, if any.
    pub fn open(&self) -> Result<Gpu> {
        let options = GpuOptions {
            backend: self.backend()?,
            adapter_index: self.gpu,
        };
        let gpu = pollster::block_on(Gpu::new(&options))?;
        gpu.set_matmul(crate::commands::bench_tune::tuned(&gpu));
        Ok(gpu)
    }
}

/// Parse a matmul build: `direct`, `coop` or `tiled:TM,TN,WX,WY,BK` (see [`matmul_spec`]).
pub fn parse_matmul(text: &str) -> Result<MatmulVariant> {
    let usage = "--matmul takes `direct`, `coop` or tiled:TM,TN,WX,WY,BK, e.g. tiled:8,8,16,16,8";
    match text {
        "direct" => return Ok(MatmulVariant::Direct),
        "coop" => return Ok(MatmulVariant::Coop),
        _ => {}
    }
    let sizes = text.strip_prefix("tiled:").context(usage)?;
    let n: Vec<u32> = sizes
        .split(',')
        .map(|x| x.trim().parse())
        .collect::<Result<_, _>>()
        .context(usage)?;
    let [tm, tn, wx, wy, bk] = n[..] else {
        bail!("{usage}");
    };
    let tiles = MatmulTiles { tm, tn, wx, wy, bk };
    if !tiles.is_valid() {
        bail!(
            "--matmul {text}: the kernel cannot hold these tiles (TM, TN ≤ 8, WX·WY ≤ 256, \
             BK % 4 = 0, WX·TN % 4 = 0, WY·TM·BK and BK·WX·TN ≤ 2048)"
        );
    }
    Ok(MatmulVariant::Tiled(tiles))
}

/// The text [`parse_matmul`] reads back.
pub fn matmul_spec(variant: MatmulVariant) -> String {
    match variant {
        MatmulVariant::Direct => "direct".into(),
        MatmulVariant::Coop => "coop".into(),
        MatmulVariant::Tiled(t) => format!("tiled:{},{},{},{},{}", t.tm, t.tn, t.wx, t.wy, t.bk),
    }
}

/// Which model file.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF model file (llama, mistral, qwen2, qwen3, gemma3 or phi3; F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
    /// or Q2_K–Q6_K weights; `afinador inspect` says whether a file is supported).
    #[arg(long, default_value = DEFAULT_MODEL, env = "AFINADOR_MODEL")]
    pub model: PathBuf,
    /// A Hugging Face tokenizer.json to use instead of the GGUF's own vocabulary.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// Where the model file `path` is. The default model's relative path is looked up in the
/// current directory, then in the repository the binary was built in (the directories above
/// `target/release/afinador`), so `afinador` works from any directory of a checkout.
pub fn locate_model(path: &Path) -> Result<PathBuf> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if path != Path::new(DEFAULT_MODEL) {
        bail!("model file {} does not exist", path.display());
    }
    let beside_binary = std::env::current_exe().ok().into_iter().flat_map(|exe| {
        exe.ancestors()
            .skip(1)
            .map(|dir| dir.join(DEFAULT_MODEL))
            .collect::<Vec<_>>()
    });
    if let Some(found) = beside_binary.into_iter().find(|p| p.exists()) {
        return Ok(found);
    }
    bail!(
        "the default model {DEFAULT_MODEL} is neither in the current directory nor in the \
         checkout this afinador was built in: run scripts/fetch-model in the repository, or give \
         --model PATH (or AFINADOR_MODEL=PATH)"
    )
}

/// A GGUF file, parsed, with its bytes.
pub struct ModelFile {
    pub bytes: ModelBytes,
    pub gguf: Gguf,
}

/// A model file's bytes: mapped from disk (the operating system reads each tensor's pages as
/// it is uploaded, and can drop them again: a 5 GB model is never copied whole into memory),
/// or owned (a generated `--like` model, an empty file).
pub enum ModelBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for ModelBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ModelBytes::Mapped(m) => m,
            ModelBytes::Owned(v) => v,
        }
    }
}

impl ModelBytes {
    /// Map `path` read-only.
    fn map(path: &Path) -> Result<ModelBytes> {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        if meta.len() == 0 || !meta.is_file() {
            // Nothing to map (or not a regular file): read it, so the GGUF parser names the
            // problem.
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            return Ok(ModelBytes::Owned(bytes));
        }
        // SAFETY: the mapping is read-only and afinador never writes the file. Another process
        // truncating or rewriting the model file while it is mapped would change these bytes
        // under us (the contract every memory-mapping model loader, llama.cpp's included, asks
        // of its users); every read of them is bounds-checked against the length seen here.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) };
        Ok(ModelBytes::Mapped(
            map.with_context(|| format!("mapping {}", path.display()))?,
        ))
    }
}

impl ModelArgs {
    pub fn read(&self) -> Result<ModelFile> {
        let path = &locate_model(&self.model)?;
        let bytes = ModelBytes::map(path)?;
        let gguf = Gguf::parse(&bytes)
            .with_context(|| format!("{} is not a valid GGUF file", path.display()))?;
        Ok(ModelFile { bytes, gguf })
    }

    pub fn tokenizer(&self, file: &ModelFile) -> Result<Tokenizer> {
        match &self.tokenizer {
            Some(path) => {
                let json = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(Tokenizer::from_json(&json)?)
            }
            None => Ok(Tokenizer::from_gguf(&file.gguf)?),
        }
    }
}

impl ModelFile {
    /// Upload the weights and compile the kernels the model needs.
    pub fn load(&self, gpu: &Gpu) -> Result<Model> {
        self.load_with_adapter(gpu, None)
    }

    /// [`load`](Self::load) with a PEFT adapter directory merged in.
    pub fn load_with_adapter(&self, gpu: &Gpu, adapter_dir: Option<&Path>) -> Result<Model> {
        let adapter = match adapter_dir {
            Some(dir) => Some(read_adapter(dir, &self.gguf)?),
            None => None,
        };
        let model = Model::load_with_adapter(gpu, &self.gguf, &self.bytes, adapter.as_ref())?;
        pollster::block_on(model.compile_kernels(gpu))?;
        Ok(model)
    }
}

/// A LoRA adapter for `gguf`'s model, in GGUF row order: a Hugging Face PEFT directory (ours or
/// one made by PEFT for a llama model of the same shape) or a GGUF LoRA file (llama.cpp's
/// `--lora` format: ours, or one from `convert_lora_to_gguf.py`).
pub fn read_adapter(path: &Path, gguf: &Gguf) -> Result<afinador_core::lora::LoraAdapter> {
    if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let lora = afinador_core::lora::from_gguf_lora(&bytes)
            .with_context(|| format!("{} is not a GGUF LoRA adapter", path.display()))?;
        let base = gguf.architecture()?;
        if lora.architecture != base {
            bail!(
                "{} adapts a '{}' model but the base model is '{base}'",
                path.display(),
                lora.architecture
            );
        }
        return Ok(lora.adapter);
    }
    let dir = path;
    let config_path = dir.join("adapter_config.json");
    let tensors_path = dir.join("adapter_model.safetensors");
    let config = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "reading {} (is {} a PEFT adapter directory?)",
            config_path.display(),
            dir.display()
        )
    })?;
    let tensors = std::fs::read(&tensors_path)
        .with_context(|| format!("reading {}", tensors_path.display()))?;
    let model = afinador_core::model::ModelConfig::from_gguf(gguf)?;
    afinador_core::lora::from_peft(&config, &tensors, model.qk_order())
        .with_context(|| format!("the adapter in {}", dir.display()))
}

/// The text of `--text`/`--prompt` or of the file given instead.
pub fn text_or_file(text: &Option<String>, file: &Option<PathBuf>, what: &str) -> Result<String> {
    match (text, file) {
        (Some(t), None) => Ok(t.clone()),
        (None, Some(p)) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        }
        _ => bail!("give exactly one of --{what} and --{what}-file"),
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `--like NAME [--layers N]`: random weights of a real model's shape instead of `--model`
/// (benchmarks that must not need the model file, or time 7–8B shapes without theirs).
#[derive(clap::Args, Debug, Clone)]
pub struct LikeArgs {
    /// Random weights of a real model's shape instead of --model (see `make-tiny-model
    /// --like`): smollm2-135m, qwen2.5-0.5b, qwen3-0.6b, gemma3-270m, qwen2.5-1.5b, llama-3.2-1b,
    /// mistral-7b, llama-3.1-8b.
    #[arg(long)]
    pub like: Option<String>,
    /// With --like: fewer decoder layers than the real shape.
    #[arg(long, requires = "like")]
    pub layers: Option<usize>,
}

impl LikeArgs {
    /// The model to load (the `--like` shape, or `model`'s file), parsed, and what it is.
    pub fn file(&self, model: &ModelArgs) -> Result<(ModelFile, String)> {
        use afinador_core::model::tiny::{TinySpec, make_tiny_gguf};
        let Some(name) = &self.like else {
            return Ok((model.read()?, model.model.display().to_string()));
        };
        let mut spec = TinySpec::like(name).with_context(|| {
            format!(
                "unknown --like '{name}': use one of {}",
                TinySpec::like_names()
            )
        })?;
        if let Some(layers) = self.layers {
            spec.n_layer = layers;
        }
        let bytes = make_tiny_gguf(&spec, None)?;
        let gguf = Gguf::parse(&bytes)?;
        Ok((
            ModelFile {
                bytes: ModelBytes::Owned(bytes),
                gguf,
            },
            format!("{name} (random weights)"),
        ))
    }
}
