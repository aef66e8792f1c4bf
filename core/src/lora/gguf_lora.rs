//! GGUF LoRA adapters, the format of llama.cpp's `--lora` (written by its
//! `convert_lora_to_gguf.py`).
//!
//! What llama.cpp checks when it loads one (`src/llama-adapter.cpp`,
//! `llama_adapter_lora_init_impl`, as vendored by llama-cpp-python 0.3.36):
//! - `general.type` is `"adapter"`, `adapter.type` is `"lora"`, and `general.architecture` is the
//!   base model's; `adapter.lora.alpha` is read with `gguf_get_val_f32`, which asserts the
//!   value's type is f32 (a missing key reads as 0).
//! - tensors are named `<base tensor>.lora_a` / `.lora_b` (`blk.0.attn_q.weight.lora_a`); a
//!   `*_norm.weight` tensor is skipped; any other name is an error.
//! - for a base weight with `ne = [in, out]`: `lora_a.ne[0] == in`, `lora_b.ne[1] == out`, and
//!   `lora_a.ne[1] == lora_b.ne[0]` (the rank). So lora_a has GGUF dims `[in, R]` (numpy
//!   `[R, in]`, PEFT's lora_A as is) and lora_b dims `[R, out]` (numpy `[out, R]`).
//! - the update is `scale · B·(A·x)` with `scale = adapter_scale · alpha / R` where `R = lora_b.ne[0]`,
//!   or `adapter_scale` when alpha is 0 (`llama_adapter_lora_weight::get_scale`). llama.cpp has no
//!   rsLoRA: the alpha written is `alpha·√R` for an rsLoRA adapter, so that `alpha'/R = alpha/√R`.
//!
//! Rows stay in GGUF order: lora_b of q/k is written as afinador holds it (permuted like the base
//! weights), which is what llama.cpp's converter produces from a PEFT adapter.

use super::{LoraAdapter, LoraConfig, LoraError, LoraPair, Module};
use crate::formats::{GgmlType, Gguf, GgufWriter, KEY_ARCHITECTURE, MetaValue};

/// `general.type`; an adapter file holds `"adapter"`.
pub const KEY_GENERAL_TYPE: &str = "general.type";
/// `adapter.type`; a LoRA adapter holds `"lora"`.
pub const KEY_ADAPTER_TYPE: &str = "adapter.type";
/// `adapter.lora.alpha` (f32).
pub const KEY_LORA_ALPHA: &str = "adapter.lora.alpha";

/// A GGUF LoRA file as read by [`from_gguf_lora`].
#[derive(Debug, Clone, PartialEq)]
pub struct GgufLora {
    /// `general.architecture` ("llama"): the base model's architecture.
    pub architecture: String,
    /// The adapter, rows in GGUF order.
    pub adapter: LoraAdapter,
    /// Tensors present but not read: `*_norm.weight` vectors, which llama.cpp skips too.
    pub skipped: Vec<String>,
}

/// The alpha llama.cpp needs for the same scale: `alpha`, or `alpha·√r` for rsLoRA.
fn llama_cpp_alpha(config: &LoraConfig) -> f32 {
    if config.use_rslora {
        config.alpha * (config.r as f32).sqrt()
    } else {
        config.alpha
    }
}

/// Writes `adapter` as a GGUF LoRA for llama.cpp's `--lora`: F32 tensors
/// `blk.{i}.{attn_q|…}.weight.lora_a` (dims `[in, R]`) and `.lora_b` (dims `[R, out]`), lora_b in
/// GGUF row order, for a base model of `architecture` ("llama").
pub fn to_gguf_lora(adapter: &LoraAdapter, architecture: &str) -> Result<Vec<u8>, LoraError> {
    adapter.validate()?;
    if adapter.tensors.is_empty() {
        return Err(LoraError::NoTensors {
            what: "the adapter",
        });
    }
    if architecture.is_empty() {
        return Err(LoraError::GgufMeta {
            key: KEY_ARCHITECTURE,
            problem: "is empty: pass the base model's architecture (\"llama\")".into(),
        });
    }
    let r = adapter.config.r as u64;
    let mut w = GgufWriter::new();
    w.add_metadata(KEY_ARCHITECTURE, architecture)?;
    w.add_metadata(KEY_GENERAL_TYPE, "adapter")?;
    w.add_metadata(KEY_ADAPTER_TYPE, "lora")?;
    w.add_metadata(KEY_LORA_ALPHA, llama_cpp_alpha(&adapter.config))?;
    let mut pairs: Vec<&LoraPair> = adapter.tensors.iter().collect();
    pairs.sort_by_key(|p| (p.layer, p.module));
    for p in pairs {
        let base = p.gguf_weight_name();
        let (in_f, out_f) = (p.in_features as u64, p.out_features as u64);
        w.add_tensor_f32(format!("{base}.lora_a"), &[in_f, r], GgmlType::F32, &p.a)?;
        w.add_tensor_f32(format!("{base}.lora_b"), &[r, out_f], GgmlType::F32, &p.b)?;
    }
    Ok(w.to_bytes())
}

/// Reads a GGUF LoRA adapter (any tensor type afinador decodes: F32, F16, BF16, Q8_0, …).
///
/// The config gets `r` from the tensors, `alpha` from `adapter.lora.alpha` (when it is absent or
/// 0, llama.cpp applies the update unscaled, so alpha is set to `r`), no dropout, no rsLoRA, and
/// `target_modules` from the tensors present.
pub fn from_gguf_lora(bytes: &[u8]) -> Result<GgufLora, LoraError> {
    let gguf = Gguf::parse(bytes)?;
    let meta = gguf.metadata();
    let text = |key: &'static str, expected: &str, hint: &str| -> Result<(), LoraError> {
        let problem = match meta.get(key) {
            Some(MetaValue::String(s)) if s == expected => return Ok(()),
            Some(MetaValue::String(s)) => format!("is '{s}', expected '{expected}'{hint}"),
            Some(v) => format!("is a {}, expected the string '{expected}'", v.type_name()),
            None => format!("is missing (expected '{expected}'){hint}"),
        };
        Err(LoraError::GgufMeta { key, problem })
    };
    let not_model = " (is this a model rather than an adapter?)";
    text(KEY_GENERAL_TYPE, "adapter", not_model)?;
    text(KEY_ADAPTER_TYPE, "lora", "")?;
    let architecture = meta.architecture()?.to_owned();
    let alpha = match meta.get(KEY_LORA_ALPHA) {
        None => 0.0,
        Some(MetaValue::F32(a)) => *a,
        Some(_) => meta.get_f32(KEY_LORA_ALPHA)?,
    };

    // (layer, module) -> [lora_a, lora_b] as (name, dims, values).
    type Found = (String, Vec<u64>, Vec<f32>);
    let mut found: std::collections::BTreeMap<(usize, Module), [Option<Found>; 2]> =
        Default::default();
    let mut skipped = Vec::new();
    for info in gguf.tensors() {
        let name = info.name.as_str();
        let (base, slot) = if let Some(base) = name.strip_suffix(".lora_a") {
            (base, 0)
        } else if let Some(base) = name.strip_suffix(".lora_b") {
            (base, 1)
        } else if name.ends_with("_norm.weight") {
            skipped.push(name.to_owned());
            continue;
        } else {
            return Err(LoraError::UnexpectedTensor {
                name: name.to_owned(),
                hint: "has an unexpected suffix (llama.cpp reads only .lora_a, .lora_b and \
                       *_norm.weight tensors)"
                    .into(),
            });
        };
        let (layer, module) =
            parse_base_name(base, &architecture).ok_or_else(|| LoraError::UnexpectedTensor {
                name: name.to_owned(),
                hint: "adapts a tensor afinador does not adapt (only blk.N.attn_q/attn_k/\
                       attn_v/attn_qkv/attn_output/ffn_gate/ffn_up/ffn_down.weight)"
                    .into(),
            })?;
        let values = gguf.tensor_f32(info, bytes)?;
        let entry = &mut found.entry((layer, module)).or_default()[slot];
        *entry = Some((name.to_owned(), info.dims.clone(), values));
    }
    if found.is_empty() {
        return Err(LoraError::NoTensors {
            what: "the GGUF LoRA file",
        });
    }

    let mut r = None;
    let mut tensors = Vec::with_capacity(found.len());
    for ((layer, module), [a, b]) in found {
        let missing = |present: &'static str, missing: &'static str| LoraError::MissingHalf {
            layer,
            module: module.hf_name(),
            present,
            missing,
        };
        let ((a_name, a_dims, a), (b_name, b_dims, b)) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => return Err(missing("lora_a", "lora_b")),
            _ => return Err(missing("lora_b", "lora_a")),
        };
        let rank = *r.get_or_insert(a_dims.get(1).copied().unwrap_or(0));
        let shape_err = |name: String, dims: Vec<u64>, expected: String| LoraError::TensorShape {
            name,
            shape: dims,
            expected,
        };
        let (in_f, out_f) = match (&a_dims[..], &b_dims[..]) {
            (&[in_f, ra], _) if ra != rank || in_f == 0 || ra == 0 => {
                return Err(shape_err(
                    a_name,
                    a_dims,
                    format!("GGUF dims [in, r] = [in, {rank}] (r of the first pair)"),
                ));
            }
            (&[in_f, _], &[rb, out_f]) if rb == rank && out_f > 0 => (in_f, out_f),
            (&[_, _], _) => {
                return Err(shape_err(
                    b_name,
                    b_dims,
                    format!("GGUF dims [r, out] = [{rank}, out] (r from its lora_a)"),
                ));
            }
            _ => {
                return Err(shape_err(
                    a_name,
                    a_dims,
                    "GGUF dims [in, r] (2 dimensions)".into(),
                ));
            }
        };
        tensors.push(LoraPair {
            layer,
            module,
            a,
            b,
            in_features: in_f as usize,
            out_features: out_f as usize,
        });
    }
    let r = r.unwrap_or(0) as usize;
    let mut config = LoraConfig::new(r, if alpha == 0.0 { r as f32 } else { alpha }, &[]);
    let mut adapter = LoraAdapter {
        config: config.clone(),
        tensors,
    };
    config.target_modules = adapter
        .modules()
        .iter()
        .map(|m| m.hf_name().to_owned())
        .collect();
    adapter.config = config;
    adapter.validate()?;
    Ok(GgufLora {
        architecture,
        adapter,
        skipped,
    })
}

/// Splits `blk.{i}.{attn_q|…}.weight` (in `architecture`, `ffn_up` may be the fused
/// `gate_up_proj`).
fn parse_base_name(base: &str, architecture: &str) -> Option<(usize, Module)> {
    let rest = base.strip_prefix("blk.")?.strip_suffix(".weight")?;
    let (layer, module) = rest.split_once('.')?;
    let module = match crate::model::Architecture::from_gguf_name(architecture) {
        Some(arch) => arch.module_by_gguf_name(module)?,
        None => Module::from_gguf_name(module)?,
    };
    Some((layer.parse().ok()?, module))
}
