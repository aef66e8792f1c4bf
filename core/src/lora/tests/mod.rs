//! Tests of the LoRA adapter formats, on small made-up llama shapes with odd sizes.

mod adapter_tests;
mod gguf_tests;
mod merge_tests;
mod peft_errors;
mod peft_tests;
mod permute_tests;

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use super::{HfModel, LoraAdapter, LoraConfig, LoraPair, Module, QkOrder};

/// A tiny llama shape: C 10, FF 14, NH 3, KVH 1, HS 4 (q out 12, k/v out 4).
pub(super) const C: usize = 10;
pub(super) const FF: usize = 14;
pub(super) const NH: usize = 3;
pub(super) const KVH: usize = 1;
/// The Q/K row order of the test adapters' base model.
pub(super) const QK: QkOrder = QkOrder::Permuted {
    n_head: NH,
    n_head_kv: KVH,
};
pub(super) const HS: usize = 4;
/// The Hugging Face model of the test adapters: a causal LM with [`QK`].
pub(super) const HF: HfModel = HfModel {
    qk_order: QK,
    language_model: false,
};
/// What export writes before `layers.{i}.` for [`HF`].
pub(super) const PREFIX: &str = "base_model.model.model.";

/// (in, out) of a module in the tiny shape.
pub(super) fn dims(m: Module) -> (usize, usize) {
    match m {
        Module::QProj => (C, NH * HS),
        Module::KProj | Module::VProj => (C, KVH * HS),
        Module::OProj => (NH * HS, C),
        Module::GateProj | Module::UpProj => (C, FF),
        Module::DownProj => (FF, C),
        Module::QkvProj => (C, (NH + 2 * KVH) * HS),
        Module::GateUpProj => (C, 2 * FF),
    }
}

/// Deterministic values in [-1, 1) (a 64-bit LCG), distinct enough to catch any reordering.
pub(super) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// An adapter of rank `r` on `layers` layers and `modules`, alpha 2r, random A and B.
pub(super) fn adapter(r: usize, layers: usize, modules: &[Module]) -> LoraAdapter {
    let mut tensors = Vec::new();
    for layer in 0..layers {
        for (k, &module) in modules.iter().enumerate() {
            let (in_features, out_features) = dims(module);
            let seed = (layer * 16 + k) as u64;
            tensors.push(LoraPair {
                layer,
                module,
                a: values(r * in_features, 2 * seed),
                b: values(out_features * r, 2 * seed + 1),
                in_features,
                out_features,
            });
        }
    }
    LoraAdapter {
        config: LoraConfig::new(r, 2.0 * r as f32, modules),
        tensors,
    }
}

/// A safetensors file from (name, dtype, shape, bytes), with PEFT's metadata.
pub(super) fn safetensors_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("valid test tensor");
            (name.to_string(), view)
        })
        .collect();
    let meta = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize(views, Some(meta)).expect("serialize test file")
}

/// Little-endian f32 bytes.
pub(super) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A minimal PEFT config for rank `r`.
pub(super) fn config_json(r: usize, extra: &str) -> String {
    format!(
        r#"{{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": {r}, "lora_alpha": 16,
            "target_modules": ["q_proj", "v_proj"]{extra}}}"#
    )
}
