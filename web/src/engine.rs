//! The GPU device, the loaded model and generation.

use std::borrow::Cow;

use afinador_core::formats::{Gguf, GgufError, TensorInfo, TensorSource};
use afinador_core::gpu::{Backend, Gpu, GpuOptions};
use afinador_core::model::{DeviceLimits, Generation, Model, SamplingConfig, Support};
use afinador_core::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
use afinador_core::train::{ModelTextEncoder, TrainConfig};
use wasm_bindgen::prelude::*;

use crate::blob::BlobFile;
use crate::training::Run;
use crate::{err, now_ms, to_js};

/// A model file, parsed, with its tokenizer and weights on the GPU.
///
/// It lives as long as the module instance (the trainer borrows it for the whole run): a page
/// that wants another model starts a fresh worker, which frees everything.
pub(crate) struct Loaded {
    pub file: ModelFile,
    pub gguf: Gguf,
    pub tokenizer: Tokenizer,
    pub template: Option<String>,
    pub model: Model,
}

/// Where the model's tensors are read from: bytes in memory (a download), or a `File` read
/// one tensor at a time.
pub(crate) enum ModelFile {
    Bytes(Vec<u8>),
    File(BlobFile),
}

impl ModelFile {
    fn len(&self) -> u64 {
        match self {
            ModelFile::Bytes(b) => b.len() as u64,
            ModelFile::File(f) => f.len,
        }
    }
}

impl TensorSource for ModelFile {
    fn tensor(&self, gguf: &Gguf, info: &TensorInfo) -> Result<Cow<'_, [u8]>, GgufError> {
        match self {
            ModelFile::Bytes(b) => gguf.tensor_bytes(info, b).map(Cow::Borrowed),
            ModelFile::File(f) => f.tensor(gguf, info),
        }
    }
}

/// afinador on one WebGPU device: a model, a training run, generation.
#[wasm_bindgen]
pub struct Afinador {
    pub(crate) gpu: Gpu,
    pub(crate) loaded: Option<&'static Loaded>,
    pub(crate) encoder: Option<ModelTextEncoder<'static>>,
    pub(crate) config: TrainConfig,
    pub(crate) run: Option<Run>,
    /// The kernel benchmark in progress (`bench.html`).
    pub(crate) bench: Option<afinador_core::bench::KernelBench>,
    /// The browser reports a fallback (software) adapter, as SwiftShader is.
    pub(crate) fallback: bool,
}

#[wasm_bindgen]
impl Afinador {
    /// Open the browser's WebGPU adapter (with every optional feature afinador can use).
    /// Fails with a message naming what to enable when WebGPU is missing.
    pub async fn create() -> Result<Afinador, JsError> {
        crate::install_panic_hook();
        let options = GpuOptions {
            backend: Backend::WebGpu,
            adapter_index: None,
        };
        let mut gpu = Gpu::new(&options).await.map_err(|e| {
            JsError::new(&format!(
                "WebGPU is not available ({e}). Use a browser with WebGPU: Chrome/Edge 113+, \
                 Firefox 141+ (Windows) or Safari 26+; on Linux, Chrome needs \
                 --enable-unsafe-webgpu (chrome://flags/#enable-unsafe-webgpu)."
            ))
        })?;
        // wgpu's WebGPU backend reports no name; the browser describes its adapter itself.
        let mut fallback = false;
        if let Some(info) = BrowserAdapter::ask().await {
            gpu.adapter.name = info.name();
            fallback = info.fallback;
            if let Some(vendor) = info.vendor {
                gpu.adapter.vendor = vendor;
            }
        }
        Ok(Afinador {
            gpu,
            loaded: None,
            encoder: None,
            config: TrainConfig::default(),
            run: None,
            bench: None,
            fallback,
        })
    }

    /// The adapter: name, vendor, backend, features, limits, and `fallback` (a software
    /// adapter the browser fell back to).
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> Result<JsValue, JsError> {
        let mut info = serde_json::to_value(&self.gpu.adapter).map_err(err)?;
        info["name"] = adapter_name(&self.gpu).into();
        info["fallback"] = self.fallback.into();
        to_js(&info)
    }

    /// Parse a GGUF file's bytes, build its tokenizer and upload its weights; returns the
    /// model's description (architecture, shape, parameters, tokenizer, GPU bytes). Once per
    /// instance.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&mut self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let gguf = Gguf::parse(&bytes).map_err(|e| err(format!("not a valid GGUF file: {e}")))?;
        self.load(ModelFile::Bytes(bytes), gguf)
    }

    /// [`loadModel`](Self::load_model) from a `File` (or `Blob`), read one tensor at a time in
    /// this worker: the file is never in memory whole.
    #[wasm_bindgen(js_name = loadModelFile)]
    pub fn load_model_file(&mut self, file: JsValue) -> Result<JsValue, JsError> {
        let file = BlobFile::new(file).map_err(err)?;
        let gguf = file
            .header()
            .map_err(|e| err(format!("not a valid GGUF file: {e}")))?;
        self.load(ModelFile::File(file), gguf)
    }

    fn load(&mut self, file: ModelFile, gguf: Gguf) -> Result<JsValue, JsError> {
        if self.loaded.is_some() {
            return Err(JsError::new(
                "a model is already loaded: create a new Afinador (a new worker) for another model",
            ));
        }
        // The core's support check (`afinador inspect`'s) before anything is uploaded: every
        // problem at once rather than the first tensor the loader trips on; and the tensors
        // against this device's limits.
        let mut support = Support::of(&gguf);
        support.fit(&gguf, &DeviceLimits::of(&self.gpu));
        let tokenizer = support.tokenizer(Tokenizer::from_gguf(&gguf));
        let tokenizer = match tokenizer {
            Some(t) if support.is_supported() => t,
            _ => return Err(JsError::new(&support.message(4))),
        };
        let template = gguf
            .metadata()
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_string);
        let model = Model::load_from(&self.gpu, &gguf, &file, None).map_err(err)?;
        let loaded: &'static Loaded = Box::leak(Box::new(Loaded {
            file,
            gguf,
            tokenizer,
            template,
            model,
        }));
        let encoder =
            ModelTextEncoder::new(&loaded.tokenizer, loaded.template.as_deref()).map_err(err)?;
        self.loaded = Some(loaded);
        self.encoder = Some(encoder);
        self.model_info()
    }

    /// The loaded model's description.
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> Result<JsValue, JsError> {
        let l = self.loaded()?;
        let c = &l.model.config;
        let info = serde_json::json!({
            "config": c,
            "parameters": c.n_params(),
            "file_bytes": l.file.len(),
            "gpu_bytes": l.model.weights.device_bytes(),
            "tokenizer": {
                "vocab_size": l.tokenizer.vocab_size(),
                "pre": l.tokenizer.pre_tokenizer(),
                "bos": l.tokenizer.bos_id(),
                "eos": l.tokenizer.eos_id(),
                "chat_template": l.template.is_some(),
            },
        });
        to_js(&info)
    }

    /// Generate after `prompt` (greedy when `temperature` is 0). With `with_adapter`, the LoRA
    /// adapter trained so far is merged into a second copy of the model for this call. With
    /// `chat`, the prompt is wrapped as a user message in the model's chat template.
    /// Returns `{ text, tokens, tokens_per_s, adapter }`.
    pub async fn generate(
        &self,
        prompt: String,
        max_new_tokens: usize,
        with_adapter: bool,
        chat: bool,
        temperature: f32,
        seed: u64,
    ) -> Result<JsValue, JsError> {
        let text = match chat {
            true => self.render_chat(&[ChatMessage::user(prompt)])?,
            false => prompt,
        };
        self.generate_text(text, max_new_tokens, with_adapter, temperature, seed)
            .await
    }

    /// [`generate`](Self::generate) after a conversation, `[{ role, content }, …]` (a system
    /// message, then the user's, as a chat data set's records hold them), in the model's chat
    /// template with the assistant's turn opened.
    #[wasm_bindgen(js_name = generateMessages)]
    pub async fn generate_messages(
        &self,
        messages: JsValue,
        max_new_tokens: usize,
        with_adapter: bool,
        temperature: f32,
        seed: u64,
    ) -> Result<JsValue, JsError> {
        let json: String = js_sys::JSON::stringify(&messages)
            .map_err(|_| JsError::new("messages must be [{ role, content }, …]"))?
            .into();
        let messages: Vec<serde_json::Value> = serde_json::from_str(&json)
            .map_err(|e| err(format!("messages must be [{{ role, content }}, …]: {e}")))?;
        let text_of = |m: &serde_json::Value, key: &str| {
            m.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| err(format!("every message needs a string '{key}': {m}")))
        };
        let messages = messages
            .iter()
            .map(|m| {
                Ok(ChatMessage::new(
                    text_of(m, "role")?,
                    text_of(m, "content")?,
                ))
            })
            .collect::<Result<Vec<_>, JsError>>()?;
        let text = self.render_chat(&messages)?;
        self.generate_text(text, max_new_tokens, with_adapter, temperature, seed)
            .await
    }
}

impl Afinador {
    /// `messages` in the model's chat template (ChatML without one), the assistant's turn open.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, JsError> {
        let l = self.loaded()?;
        let template = ChatTemplate::for_model(l.template.as_deref(), &l.tokenizer).map_err(err)?;
        template.render(messages, true).map_err(err)
    }

    async fn generate_text(
        &self,
        text: String,
        max_new_tokens: usize,
        with_adapter: bool,
        temperature: f32,
        seed: u64,
    ) -> Result<JsValue, JsError> {
        let l = self.loaded()?;
        let ids = l.tokenizer.encode(&text, true).map_err(err)?;
        if ids.is_empty() {
            return Err(JsError::new("the prompt is empty"));
        }
        let merged = if with_adapter {
            let adapter = self.current_adapter().await?;
            Some(Model::load_from(&self.gpu, &l.gguf, &l.file, Some(&adapter)).map_err(err)?)
        } else {
            None
        };
        let model = merged.as_ref().unwrap_or(&l.model);
        let sampling = SamplingConfig {
            temperature,
            seed,
            ..SamplingConfig::default()
        };
        let mut generation =
            Generation::new(&self.gpu, model, ids.len() + max_new_tokens, sampling).map_err(err)?;
        let start = now_ms();
        let new_ids = generation
            .generate(
                &self.gpu,
                &ids,
                max_new_tokens,
                |id| l.tokenizer.is_eog(id),
                |_| {},
            )
            .await
            .map_err(err)?;
        let seconds = (now_ms() - start) / 1000.0;
        to_js(&serde_json::json!({
            "text": l.tokenizer.decode(&new_ids),
            "tokens": new_ids.len(),
            "prompt_tokens": ids.len(),
            "tokens_per_s": (ids.len() + new_ids.len()) as f64 / seconds.max(1e-9),
            "adapter": with_adapter,
        }))
    }
}

/// What the browser says of its adapter (`GPUAdapter.info`, which browsers may keep short for
/// privacy; asked of a second `requestAdapter()`, which gives the same adapter).
struct BrowserAdapter {
    vendor: Option<String>,
    architecture: Option<String>,
    device: Option<String>,
    description: Option<String>,
    fallback: bool,
}

impl BrowserAdapter {
    async fn ask() -> Option<BrowserAdapter> {
        use js_sys::{Function, Promise, Reflect};
        let get = |v: &JsValue, k: &str| Reflect::get(v, &JsValue::from_str(k)).ok();
        let gpu = get(&get(&js_sys::global(), "navigator")?, "gpu")?;
        let request: Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
        let promise: Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
        let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
        let info = get(&adapter, "info").filter(|i| i.is_object())?;
        let text = |k: &str| get(&info, k)?.as_string().filter(|s| !s.is_empty());
        // `isFallbackAdapter` moved from the adapter to its info; read either.
        let fallback = [
            get(&info, "isFallbackAdapter"),
            get(&adapter, "isFallbackAdapter"),
        ]
        .into_iter()
        .flatten()
        .any(|v| v.as_bool() == Some(true));
        Some(BrowserAdapter {
            vendor: text("vendor"),
            architecture: text("architecture"),
            device: text("device"),
            description: text("description"),
            fallback,
        })
    }

    /// "description", or "vendor architecture device" when there is none; "(fallback)" for a
    /// software adapter the browser falls back to.
    fn name(&self) -> String {
        let parts: Vec<&str> = match &self.description {
            Some(d) => vec![d],
            None => [&self.vendor, &self.architecture, &self.device]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
        };
        let name = match parts.is_empty() {
            true => String::new(),
            false => parts.join(" "),
        };
        match (self.fallback, name.is_empty()) {
            (true, true) => "fallback WebGPU adapter".into(),
            (true, false) => format!("{name} (fallback adapter)"),
            (false, _) => name,
        }
    }
}

/// The adapter's name; browsers often keep it to themselves.
pub(crate) fn adapter_name(gpu: &Gpu) -> String {
    if gpu.adapter.name.is_empty() {
        format!("unnamed WebGPU adapter ({})", gpu.adapter.device_type)
    } else {
        gpu.adapter.name.clone()
    }
}

impl Afinador {
    pub(crate) fn loaded(&self) -> Result<&'static Loaded, JsError> {
        self.loaded
            .ok_or_else(|| JsError::new("no model loaded: call loadModel first"))
    }
}
