//! What sets one model architecture apart from another, written once per architecture.
//!
//! Every part of afinador that depends on the architecture reads it from here: the config
//! reader (which GGUF `general.architecture` values load), the weight loader (optional tensors
//! such as the q/k/v biases), the forward pass and the training step (rope style, biases), the
//! CPU reference trainer and the burn oracle (the same description, independently implemented),
//! and LoRA import/export (whether GGUF permuted the Q/K rows relative to Hugging Face).
//!
//! To add an architecture: add a constant here and to [`ARCHITECTURES`]; if it needs an
//! operation the block does not have yet (a norm, an activation), add a field here, the kernel
//! and its CPU reference, then read the field in the one block both inference and training run
//! (`model/block.rs`, its backward in `train/step/block.rs`) and in the two independent
//! references (`train/reference.rs`, `train/oracle/model.rs`). `make-tiny-model --arch NAME`
//! then writes random models of it for the tests (ARCHITECTURE.md has the whole list).

use serde::Serialize;

use crate::lora::Module;

/// Which elements of a head rotary embedding rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RopeStyle {
    /// Pairs (2i, 2i + 1): llama's GGUF layout. llama.cpp's converter permuted the Q/K rows
    /// so that adjacent values rotate together (llama.cpp's "normal" rope).
    Adjacent,
    /// Pairs (i, i + HS/2): Hugging Face's `rotate_half`, kept as converted (llama.cpp's NEOX
    /// rope; qwen2, phi3, gemma).
    Neox,
}

/// The activation of the gated feed-forward block (`act(gate) ⊙ up`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Activation {
    /// SiLU (SwiGLU): llama, qwen.
    Silu,
    /// GELU, tanh approximation (GeGLU): gemma.
    GeluTanh,
}

/// One architecture's facts: everything the block and the adapters need beyond the shape.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Architecture {
    /// `general.architecture` in GGUF (and the prefix of its metadata keys).
    pub name: &'static str,
    /// Hugging Face's `model_type` (its `config.json`), for exports.
    pub hf_model_type: &'static str,
    pub rope: RopeStyle,
    /// The q, k and v projections add a bias (`blk.N.attn_{q,k,v}.bias`, F32).
    pub qkv_bias: bool,
    /// Each query and key head is RMS-normalized before rope (`blk.N.attn_{q,k}_norm.weight`,
    /// HS values each).
    pub qk_norm: bool,
    /// GGUF's Q/K rows are permuted relative to Hugging Face's (llama's converter, for
    /// [`RopeStyle::Adjacent`]); PEFT export un-permutes lora_B of q_proj/k_proj, import
    /// permutes it (`lora::permute`).
    pub qk_permuted: bool,
    /// The activation of the gated feed-forward block.
    pub activation: Activation,
    /// The token embeddings are multiplied by √C before the first block (gemma).
    pub scale_embeddings: bool,
    /// RMSNorm on the attention and feed-forward outputs before each residual add
    /// (`blk.N.post_attention_norm.weight`, `blk.N.post_ffw_norm.weight`; gemma3).
    pub post_norms: bool,
    /// Local attention layers, when the file gives a window (`attention.sliding_window`).
    pub sliding_window: Option<SlidingWindow>,
    /// The q, k and v projections are one tensor (`blk.N.attn_qkv.weight`, Hugging Face's
    /// `qkv_proj`: rows q, then k, then v) and so are gate and up (`blk.N.ffn_up.weight`, 2·FF
    /// rows, Hugging Face's `gate_up_proj`: gate first); LoRA adapts the fused modules (phi3).
    pub fused_projections: bool,
    /// From this width (`embedding_length`) up, the Hugging Face model is multimodal, its
    /// decoder under `model.language_model` (PEFT: `…model.language_model.layers.N…`): Gemma 3
    /// 4B, 12B and 27B are `Gemma3ForConditionalGeneration` (C 2560, 3840, 5376), 270M and 1B
    /// `Gemma3ForCausalLM` (C 640, 1152). The GGUF keeps no other trace of it: llama.cpp's
    /// converter writes the text half under the same architecture name and the vision tower to
    /// a separate mmproj file.
    pub hf_multimodal_from_width: Option<usize>,
}

/// Which layers attend only the last `attention.sliding_window` positions, and their rope base.
/// GGUF does not say: llama.cpp hard-codes both (for gemma3 in `src/models/gemma3.cpp`:
/// `load_swa_pattern(ml, 6)`, i.e. `llama_hparams::set_swa_pattern` in
/// `src/llama-hparams.cpp`, unless the file has `attention.sliding_window_pattern`; the local
/// base defaults to `rope_freq_base_train_swa = 10000` in `src/llama-hparams.h` unless the file
/// has `rope.freq_base_swa`). afinador reads the same keys with the same defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SlidingWindow {
    /// Layer l is global when `l % global_every == global_every − 1`, local otherwise.
    pub global_every: u32,
    /// The rope base of the local layers.
    pub local_rope_base: f32,
}

pub const LLAMA: Architecture = Architecture {
    name: "llama",
    hf_model_type: "llama",
    rope: RopeStyle::Adjacent,
    qkv_bias: false,
    qk_norm: false,
    qk_permuted: true,
    activation: Activation::Silu,
    scale_embeddings: false,
    post_norms: false,
    sliding_window: None,
    fused_projections: false,
    hf_multimodal_from_width: None,
};

/// Mistral 7B as llama.cpp writes it: the llama block (its sliding window is not used by
/// llama.cpp either).
pub const MISTRAL: Architecture = Architecture {
    name: "mistral",
    hf_model_type: "mistral",
    ..LLAMA
};

/// Qwen2 / Qwen2.5: the llama block with q/k/v biases and NEOX rope, Q/K rows as in Hugging
/// Face (llama.cpp: `LLM_ARCH_QWEN2`, `LLAMA_ROPE_TYPE_NEOX`).
pub const QWEN2: Architecture = Architecture {
    name: "qwen2",
    hf_model_type: "qwen2",
    qkv_bias: true,
    ..LLAMA_SHAPED_NEOX
};

/// The llama block with NEOX rope and Hugging Face's Q/K order: what the others start from.
const LLAMA_SHAPED_NEOX: Architecture = Architecture {
    name: "",
    hf_model_type: "",
    rope: RopeStyle::Neox,
    qk_permuted: false,
    ..LLAMA
};

/// Qwen3: no biases, RMSNorm on each query and key head before NEOX rope (llama.cpp:
/// `LLM_ARCH_QWEN3`).
pub const QWEN3: Architecture = Architecture {
    name: "qwen3",
    hf_model_type: "qwen3",
    qkv_bias: false,
    qk_norm: true,
    ..QWEN2
};

/// Gemma 3 (text): embeddings × √C, per-head q/k norms, NEOX rope, GeGLU (tanh GELU), norms
/// after attention and after the feed-forward block, and sliding-window layers (five local to one
/// global, local rope base 10000) with a tied output (llama.cpp: `LLM_ARCH_GEMMA3`,
/// `src/models/gemma3.cpp`). The attention scale is 1/√HS (gemma's 27B differs: not supported).
pub const GEMMA3: Architecture = Architecture {
    name: "gemma3",
    hf_model_type: "gemma3_text",
    qk_norm: true,
    activation: Activation::GeluTanh,
    scale_embeddings: true,
    post_norms: true,
    sliding_window: Some(SlidingWindow {
        global_every: 6,
        local_rope_base: 10000.0,
    }),
    hf_multimodal_from_width: Some(2560),
    ..LLAMA_SHAPED_NEOX
};

/// Phi-3 / Phi-3.5 (mini, medium): the llama block with NEOX rope, fused q/k/v and gate/up
/// projections, and for the long-context models LongRoPE — per-pair factors
/// (`rope_factors_short.weight` up to `rope.scaling.original_context_length`,
/// `rope_factors_long.weight` beyond) and `rope.scaling.attn_factor` on cos and sin (llama.cpp:
/// `src/models/phi3.cpp`, `llama_model::get_rope_factors`, `llama_context`'s
/// `yarn_attn_factor`). llama.cpp ignores `attention.sliding_window` for phi3 (“Phi SWA is
/// currently disabled”), and so does afinador.
pub const PHI3: Architecture = Architecture {
    name: "phi3",
    hf_model_type: "phi3",
    fused_projections: true,
    ..LLAMA_SHAPED_NEOX
};

/// Every architecture afinador runs.
pub const ARCHITECTURES: &[Architecture] = &[LLAMA, MISTRAL, QWEN2, QWEN3, GEMMA3, PHI3];

impl Architecture {
    /// The architecture GGUF calls `name`, if afinador runs it.
    pub fn from_gguf_name(name: &str) -> Option<Architecture> {
        ARCHITECTURES.iter().find(|a| a.name == name).copied()
    }

    /// The modules LoRA adapts in a layer: the seven projections, or with fused projections
    /// `qkv_proj`, `o_proj`, `gate_up_proj` and `down_proj`.
    pub fn modules(&self) -> &'static [Module] {
        match self.fused_projections {
            false => &Module::ALL,
            true => &[
                Module::QkvProj,
                Module::OProj,
                Module::GateUpProj,
                Module::DownProj,
            ],
        }
    }

    /// The modules of this architecture that cover the projections `requested` (a PEFT
    /// target list, projection names like `q_proj` or module names like `qkv_proj`): with
    /// fused projections, q/k/v become `qkv_proj` and gate/up `gate_up_proj` — only all of a
    /// fused module's projections together, since they share its A matrix.
    pub fn lora_modules(&self, requested: &[Module]) -> Result<Vec<Module>, String> {
        let names = |ms: &[Module]| {
            ms.iter()
                .map(|m| m.hf_name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = Vec::new();
        for &m in requested {
            let module = match (self.modules().contains(&m), self.fused_projections) {
                (true, _) => m,
                (false, true) if m.fused_into().is_some() => {
                    let fused = m.fused_into().expect("checked");
                    if !fused.parts().iter().all(|p| requested.contains(p)) {
                        return Err(format!(
                            "{} computes {} as one {fused} with one LoRA A matrix: target all \
                             of them, or {fused}",
                            self.name,
                            names(fused.parts())
                        ));
                    }
                    fused
                }
                _ => {
                    return Err(format!(
                        "{} has no {m} (its modules: {})",
                        self.name,
                        names(self.modules())
                    ));
                }
            };
            if !out.contains(&module) {
                out.push(module);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The module a GGUF tensor base name (`attn_q`, `ffn_up`) adapts in this architecture:
    /// `ffn_up` is `up_proj`, or `gate_up_proj` where gate and up are fused.
    pub fn module_by_gguf_name(&self, name: &str) -> Option<Module> {
        self.modules()
            .iter()
            .copied()
            .find(|m| m.gguf_name() == name)
    }

    /// The names of [`ARCHITECTURES`], comma-separated.
    pub fn names() -> String {
        ARCHITECTURES
            .iter()
            .map(|a| a.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
