//! Hugging Face PEFT LoRA adapters: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! What PEFT writes and reads (checked against PEFT's source, `huggingface/peft`):
//! - `PeftModel.save_pretrained` saves the LoRA state dict with the adapter name removed
//!   (`….q_proj.lora_A.weight`, not `….lora_A.default.weight`) through safetensors with
//!   metadata `{"format": "pt"}`, and the config as `json.dumps(indent=2, sort_keys=True)` with
//!   `inference_mode` set to true (`src/peft/peft_model.py`, `src/peft/config.py`).
//! - Loading maps each file key to the model's key with the adapter name put back
//!   (`BaseTuner._remap_adapter_state_dict_for_load` in `src/peft/tuners/tuners_utils.py`; older
//!   PEFT: `_insert_adapter_name_into_state_dict`) and calls `load_state_dict(strict=False)`
//!   (`src/peft/utils/save_and_load.py`): a misnamed tensor is left out with a warning, not an
//!   error, so names must be exact.
//! - The config is built as `LoraConfig(**json)`; a key unknown to the installed PEFT is dropped
//!   with a warning, a missing key takes its default (`PeftConfigMixin.from_peft_type`).
//!
//! Tensor names are `base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight`
//! and `….mlp.{gate,up,down}_proj…` (a multimodal model's decoder:
//! `base_model.model.model.language_model.layers.{i}…`, see [`HfModel`]); lora_A is `[R, in]`,
//! lora_B `[out, R]`. Hugging Face stores
//! q/k rows in its own RoPE order, afinador in GGUF's: export un-permutes lora_B of q_proj and
//! k_proj, import permutes it (see [`super::permute`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, SafeTensors, View};

use super::peft_config::{config_json, parse_config};
use super::permute::{QkOrder, gguf_to_hf_rows, hf_to_gguf_rows};
use super::{LoraAdapter, LoraError, LoraPair, Module};

/// PEFT's name for the config file.
pub const PEFT_CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's name for the weights file.
pub const PEFT_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The prefixes before `layers.{i}.` that import accepts: PEFT's for a causal LM
/// (`base_model.model.model.`), for a bare decoder (`base_model.model.`), for a multimodal
/// model's decoder (transformers 4.52 and later: `model.language_model.`; before:
/// `language_model.model.`), and the plain transformers ones.
const NAME_PREFIXES: [&str; 8] = [
    "base_model.model.model.",
    "base_model.model.",
    "base_model.model.model.language_model.",
    "base_model.model.language_model.model.",
    "model.language_model.",
    "language_model.model.",
    "model.",
    "",
];

/// The Hugging Face model a PEFT adapter is for, as far as its names and rows differ from the
/// GGUF's (`ModelConfig::hf_model`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HfModel {
    /// How the GGUF orders q_proj/k_proj rows relative to it.
    pub qk_order: QkOrder,
    /// Its decoder is a multimodal model's `model.language_model` (e.g. Gemma 3 4B-27B's
    /// `Gemma3ForConditionalGeneration`), not a causal LM's `model`.
    pub language_model: bool,
}

impl HfModel {
    /// What export writes before `layers.{i}.`: PEFT's `base_model.model.` around the model's
    /// path to its decoder layers.
    pub fn tensor_prefix(&self) -> &'static str {
        match self.language_model {
            false => "base_model.model.model.",
            true => "base_model.model.model.language_model.",
        }
    }
}

/// The two files of a PEFT adapter directory, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftFiles {
    /// The contents of `adapter_config.json`.
    pub adapter_config_json: String,
    /// The contents of `adapter_model.safetensors`.
    pub adapter_model_safetensors: Vec<u8>,
}

/// Which matrix of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    A,
    B,
}

impl Half {
    fn name(self) -> &'static str {
        match self {
            Half::A => "lora_A",
            Half::B => "lora_B",
        }
    }
}

/// The PEFT name of one matrix after `prefix` ([`HfModel::tensor_prefix`]):
/// `base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight`.
pub fn peft_tensor_name(prefix: &str, layer: usize, module: Module, lora_b: bool) -> String {
    let half = if lora_b { Half::B } else { Half::A };
    format!(
        "{prefix}layers.{layer}.{}.{}.{}.weight",
        module.hf_block(),
        module.hf_name(),
        half.name()
    )
}

/// Writes `adapter` as a PEFT LoRA adapter for the Hugging Face model `hf`: f32 tensors under
/// its names, lora_B of q_proj/k_proj in its row order.
///
/// `target_modules` lists the modules that hold tensors (for a multimodal model, a pattern
/// that matches them in its decoder only); `lora_alpha` is written as an integer when it is
/// one, as PEFT does.
pub fn to_peft(adapter: &LoraAdapter, hf: HfModel) -> Result<PeftFiles, LoraError> {
    adapter.validate()?;
    if adapter.tensors.is_empty() {
        return Err(LoraError::NoTensors {
            what: "the adapter",
        });
    }
    let r = adapter.config.r;
    let mut tensors = Vec::with_capacity(2 * adapter.tensors.len());
    for p in &adapter.tensors {
        let b = match p.module.rope_heads(hf.qk_order) {
            Some(heads) => Cow::Owned(gguf_to_hf_rows(&p.b, p.out_features, heads).ok_or(
                LoraError::HeadSplit {
                    module: p.module.hf_name(),
                    rows: p.out_features,
                    n_head: heads,
                },
            )?),
            None => Cow::Borrowed(&p.b),
        };
        tensors.push((
            peft_tensor_name(hf.tensor_prefix(), p.layer, p.module, false),
            F32Tensor::new(vec![r, p.in_features], &p.a),
        ));
        tensors.push((
            peft_tensor_name(hf.tensor_prefix(), p.layer, p.module, true),
            F32Tensor::new(vec![p.out_features, r], &b),
        ));
    }
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let adapter_model_safetensors =
        safetensors::serialize(tensors, Some(metadata)).map_err(|e| LoraError::Safetensors {
            reason: e.to_string(),
        })?;
    Ok(PeftFiles {
        adapter_config_json: config_json(&adapter.config, &adapter.modules(), hf.language_model),
        adapter_model_safetensors,
    })
}

/// An f32 tensor ready for safetensors: little-endian bytes and a shape.
struct F32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F32Tensor {
    fn new(shape: Vec<usize>, values: &[f32]) -> F32Tensor {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        F32Tensor { shape, bytes }
    }
}

impl View for F32Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Reads a PEFT LoRA adapter made for a base model whose GGUF orders Q/K rows as `order` says:
/// f32, f16 or bf16 tensors, names with or without PEFT's `.default` adapter name; lora_B of
/// q_proj/k_proj is permuted into GGUF row order where the GGUF permuted them.
///
/// The config's `target_modules` becomes the list of modules that hold tensors. Options that
/// change what the adapter computes (DoRA, rank or alpha patterns, biases, extra trained
/// modules, LoRA variants, initialisations that modify the base weights) are refused.
pub fn from_peft(
    config_json: &str,
    safetensors: &[u8],
    order: QkOrder,
) -> Result<LoraAdapter, LoraError> {
    let config = parse_config(config_json)?;
    let file = SafeTensors::deserialize(safetensors).map_err(|e| LoraError::Safetensors {
        reason: e.to_string(),
    })?;

    type Found = (String, Vec<usize>, Vec<f32>);
    let mut pairs: BTreeMap<(usize, Module), [Option<Found>; 2]> = BTreeMap::new();
    let mut names = file.names();
    names.sort_unstable();
    for name in names {
        let (layer, module, half) = parse_tensor_name(name)?;
        let view = file.tensor(name).map_err(|e| LoraError::Safetensors {
            reason: e.to_string(),
        })?;
        let values = to_f32(name, view.dtype(), view.data())?;
        let slot = &mut pairs.entry((layer, module)).or_default()[half as usize];
        if let Some((first, ..)) = slot {
            return Err(LoraError::DuplicateTensor {
                name: name.to_owned(),
                first: first.clone(),
            });
        }
        *slot = Some((name.to_owned(), view.shape().to_vec(), values));
    }
    if pairs.is_empty() {
        return Err(LoraError::NoTensors {
            what: PEFT_WEIGHTS_FILE,
        });
    }

    let r = config.r;
    let mut tensors = Vec::with_capacity(pairs.len());
    for ((layer, module), [a, b]) in pairs {
        let missing = |present: Half, missing: Half| LoraError::MissingHalf {
            layer,
            module: module.hf_name(),
            present: present.name(),
            missing: missing.name(),
        };
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => return Err(missing(Half::A, Half::B)),
            _ => return Err(missing(Half::B, Half::A)),
        };
        let (a_name, a_shape, a) = a;
        let (b_name, b_shape, b) = b;
        let shape_err = |name: String, shape: &[usize], expected: String| LoraError::TensorShape {
            name,
            shape: shape.iter().map(|&d| d as u64).collect(),
            expected: format!("{expected} (r = {r} from {PEFT_CONFIG_FILE})"),
        };
        let in_features = match a_shape[..] {
            [rows, cols] if rows == r && cols > 0 => cols,
            _ => return Err(shape_err(a_name, &a_shape, format!("[r, in] = [{r}, in]"))),
        };
        let out_features = match b_shape[..] {
            [rows, cols] if cols == r && rows > 0 => rows,
            _ => {
                return Err(shape_err(
                    b_name,
                    &b_shape,
                    format!("[out, r] = [out, {r}]"),
                ));
            }
        };
        let b = match module.rope_heads(order) {
            Some(heads) => {
                hf_to_gguf_rows(&b, out_features, heads).ok_or(LoraError::HeadSplit {
                    module: module.hf_name(),
                    rows: out_features,
                    n_head: heads,
                })?
            }
            None => b,
        };
        tensors.push(LoraPair {
            layer,
            module,
            a,
            b,
            in_features,
            out_features,
        });
    }
    let mut adapter = LoraAdapter { config, tensors };
    adapter.config.target_modules = adapter
        .modules()
        .iter()
        .map(|m| m.hf_name().to_owned())
        .collect();
    adapter.validate()?;
    Ok(adapter)
}

/// Splits `<prefix>layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}[.default].weight`.
fn parse_tensor_name(name: &str) -> Result<(usize, Module, Half), LoraError> {
    let refuse = |hint: &str| LoraError::UnexpectedTensor {
        name: name.to_owned(),
        hint: hint.to_owned(),
    };
    if name.contains("lora_magnitude_vector") {
        return Err(refuse(
            "is a DoRA magnitude vector: afinador applies plain LoRA (train with use_dora=False)",
        ));
    }
    if name.contains("lora_embedding_") {
        return Err(refuse(
            "adapts an embedding: afinador adapts only the linear modules of the decoder layers",
        ));
    }
    let not_lora = || {
        refuse(
            "is not a lora_A/lora_B matrix of a decoder layer's q/k/v/o/gate/up/down_proj \
             (expected names like base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight)",
        )
    };
    let Some(stem) = name.strip_suffix(".weight") else {
        return Err(if name.contains(".lora_") {
            refuse(
                "is a LoRA bias or an unknown LoRA parameter: afinador reads lora_A/lora_B weights only",
            )
        } else {
            not_lora()
        });
    };
    let stem = stem.strip_suffix(".default").unwrap_or(stem);
    let (stem, half) = if let Some(s) = stem.strip_suffix(".lora_A") {
        (s, Half::A)
    } else if let Some(s) = stem.strip_suffix(".lora_B") {
        (s, Half::B)
    } else {
        return Err(not_lora());
    };
    let mut parts = stem.rsplitn(5, '.');
    let (Some(module), Some(block), Some(layer), Some("layers")) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_lora());
    };
    let prefix = match parts.next() {
        Some(p) => &stem[..p.len() + 1],
        None => "",
    };
    let module = Module::from_hf_name(module).ok_or_else(not_lora)?;
    let layer = layer.parse::<usize>().map_err(|_| not_lora())?;
    if block != module.hf_block() || !NAME_PREFIXES.contains(&prefix) {
        return Err(not_lora());
    }
    Ok((layer, module, half))
}

/// Decodes little-endian F32, F16 or BF16 data.
fn to_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, LoraError> {
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(LoraError::UnsupportedDtype {
                name: name.to_owned(),
                dtype: format!("{other:?}"),
                expected: "F32, F16 or BF16",
            });
        }
    })
}
