//! A model's architecture and shape, read from GGUF metadata.

use serde::Serialize;

use super::{Architecture, ModelError, Result};
use crate::formats::Gguf;
use std::ops::Range;

use crate::kernels::rope::RopeFreqs;
use crate::lora::{HfModel, Module, QkOrder};

/// The architecture and shape of a model. Letters as in the kernels: C, FF, NH, KVH, HS, V, L.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelConfig {
    pub arch: Architecture,
    pub name: String,
    /// L: transformer blocks.
    pub n_layer: usize,
    /// C: embedding width.
    pub n_embd: usize,
    /// FF: feed-forward width.
    pub n_ff: usize,
    /// NH: query heads.
    pub n_head: usize,
    /// KVH: key/value heads (GQA when < NH).
    pub n_head_kv: usize,
    /// HS: head size.
    pub head_dim: usize,
    /// The leading values of each q/k head that rope rotates (`rope.dimension_count`): HS, or
    /// fewer with a partial rotary embedding (Phi-4-mini: 96 of 128); the rest pass through.
    pub rope_dim: usize,
    /// V: vocabulary size.
    pub vocab_size: usize,
    /// The context length the model was trained for.
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// The output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// The local layers' window, pattern and rope base, when the architecture has them and the
    /// file gives a window.
    pub sliding_window: Option<LocalLayers>,
    /// The tensor of per-pair rope frequency divisors, if the file has one: Llama 3's
    /// `rope_freqs.weight`, or LongRoPE's `rope_factors_short.weight` (phi3).
    pub rope_factors: Option<&'static str>,
    /// What cos and sin are multiplied by (`rope.scaling.attn_factor`, LongRoPE's attention
    /// factor; 1 without).
    pub rope_scale: f32,
    /// With LongRoPE, the longest context the short factors serve
    /// (`rope.scaling.original_context_length`); a longer one takes `rope_factors_long.weight`
    /// (see [`RopeFactors::for_context`]).
    pub long_rope_after: Option<usize>,
}

/// LongRoPE's factors for contexts longer than `rope.scaling.original_context_length`.
pub const LONG_ROPE_FACTORS: &str = "rope_factors_long.weight";

/// A model's per-pair rope frequency divisors (HS/2 values each), on the GPU or the host:
/// `base` — ones, Llama 3's `rope_freqs.weight` or LongRoPE's short factors — and LongRoPE's
/// long factors with the context past which they replace `base`.
#[derive(Clone, Debug)]
pub struct RopeFactors<B> {
    pub base: B,
    pub long: Option<(usize, B)>,
}

impl<B> RopeFactors<B> {
    /// The factors a run over a context of `positions` rotates with: LongRoPE's long ones when
    /// it exceeds the original context. A context is what the run holds: a training sequence, or
    /// a KV cache's capacity (prompt + new tokens) — llama.cpp likewise decides by its context
    /// size (`llama_model::get_rope_factors`), Hugging Face by the longest position of a forward.
    pub fn for_context(&self, positions: usize) -> &B {
        match &self.long {
            Some((after, long)) if positions > *after => long,
            _ => &self.base,
        }
    }
}

/// The sliding-window layers of a model (see [`super::arch::SlidingWindow`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LocalLayers {
    /// Positions a local layer's query sees (itself included).
    pub window: u32,
    pub global_every: u32,
    pub rope_base: f32,
}

impl LocalLayers {
    /// Layer `l` attends locally (every layer but each `global_every`-th).
    fn is_local(&self, l: usize) -> bool {
        self.global_every == 0 || (l as u32 % self.global_every) < self.global_every - 1
    }
}

impl ModelConfig {
    /// Read the config from `gguf`'s metadata (and the embedding's shape).
    pub fn from_gguf(gguf: &Gguf) -> Result<ModelConfig> {
        let meta = gguf.metadata();
        let name = gguf.architecture()?;
        let arch = Architecture::from_gguf_name(name)
            .ok_or_else(|| ModelError::UnsupportedArchitecture(name.to_owned()))?;
        let key = |k: &str| format!("{}.{k}", arch.name);
        let get = |k: &str| -> Result<usize> { Ok(meta.get_u64(&key(k))? as usize) };
        let opt = |k: &str| meta.get(&key(k)).is_some();
        let n_embd = get("embedding_length")?;
        let n_head = get("attention.head_count")?;
        let n_head_kv = if opt("attention.head_count_kv") {
            get("attention.head_count_kv")?
        } else {
            n_head
        };
        let head_dim = if opt("attention.key_length") {
            get("attention.key_length")?
        } else {
            n_embd / n_head.max(1)
        };
        let embd = gguf.require_tensor("token_embd.weight")?;
        let vocab_size = embd.dims.get(1).copied().unwrap_or(0) as usize;
        let config = ModelConfig {
            name: meta
                .get_str("general.name")
                .unwrap_or(arch.name)
                .to_string(),
            n_layer: get("block_count")?,
            n_embd,
            n_ff: get("feed_forward_length")?,
            n_head,
            n_head_kv,
            head_dim,
            rope_dim: if opt("rope.dimension_count") {
                get("rope.dimension_count")?
            } else {
                head_dim
            },
            vocab_size,
            context_length: if opt("context_length") {
                get("context_length")?
            } else {
                2048
            },
            rms_eps: meta
                .get_f32(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            rope_base: if opt("rope.freq_base") {
                meta.get_f32(&key("rope.freq_base"))?
            } else {
                10000.0
            },
            tied_embeddings: gguf.tensor("output.weight").is_none(),
            sliding_window: match (arch.sliding_window, opt("attention.sliding_window")) {
                (Some(local), true) => Some(LocalLayers {
                    window: get("attention.sliding_window")? as u32,
                    global_every: match opt("attention.sliding_window_pattern") {
                        true => get("attention.sliding_window_pattern")? as u32,
                        false => local.global_every,
                    },
                    rope_base: match opt("rope.freq_base_swa") {
                        true => meta.get_f32(&key("rope.freq_base_swa"))?,
                        false => local.local_rope_base,
                    },
                }),
                _ => None,
            },
            rope_factors: ["rope_freqs.weight", "rope_factors_short.weight"]
                .into_iter()
                .find(|name| gguf.tensor(name).is_some()),
            rope_scale: meta
                .get_f32(&key("rope.scaling.attn_factor"))
                .unwrap_or(1.0),
            long_rope_after: match gguf.tensor("rope_factors_short.weight") {
                Some(_) => Some(get("rope.scaling.original_context_length")?),
                None => None,
            },
            arch,
        };
        // Llama 3.x's scaling arrives as per-pair factors (`rope_freqs.weight`, read with the
        // weights); position-scaling kinds are not implemented.
        if let Ok(kind) = meta.get_str(&key("rope.scaling.type")) {
            let factor = meta.get_f32(&key("rope.scaling.factor")).unwrap_or(1.0);
            if !matches!(kind, "none" | "llama3") && factor != 1.0 {
                return Err(ModelError::Unsupported(format!(
                    "rope scaling '{kind}' with factor {factor} (afinador implements Llama 3's \
                     rope_freqs factors only)"
                )));
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Check that the shape is one the kernels handle.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::BadConfig(msg));
        if self.n_layer == 0
            || self.n_embd == 0
            || self.n_head == 0
            || self.n_head_kv == 0
            || self.vocab_size == 0
        {
            return bad(format!("empty dimension in {self:?}"));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!(
                "{} heads are not a multiple of {} kv heads",
                self.n_head, self.n_head_kv
            ));
        }
        if self.head_dim > 256 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head size {} (afinador supports even head sizes up to 256)",
                self.head_dim
            ));
        }
        if self.rope_dim == 0 || self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(format!(
                "rope.dimension_count {} (an even count of values a head of {} rotates)",
                self.rope_dim, self.head_dim
            ));
        }
        Ok(())
    }

    /// NH·HS: width of the query projection.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// KVH·HS: width of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// The shape (out, in) of a module's weight.
    pub fn module_shape(&self, module: Module) -> (usize, usize) {
        let (c, ff, q, kv) = (self.n_embd, self.n_ff, self.q_dim(), self.kv_dim());
        match module {
            Module::QProj => (q, c),
            Module::KProj | Module::VProj => (kv, c),
            Module::OProj => (c, q),
            Module::GateProj | Module::UpProj => (ff, c),
            Module::DownProj => (c, ff),
            Module::QkvProj => (q + 2 * kv, c),
            Module::GateUpProj => (2 * ff, c),
        }
    }

    /// Where projection `p`'s weight rows live: the module whose tensor (and LoRA pair) holds
    /// them, and the rows within it — all of `p` itself unless the architecture fuses it.
    pub fn projection_rows(&self, p: Module) -> (Module, Range<usize>) {
        let module = match self.arch.fused_projections {
            true => p.fused_into().unwrap_or(p),
            false => p,
        };
        let mut row0 = 0;
        for &part in module.parts() {
            let rows = self.module_shape(part).0;
            if part == p {
                return (module, row0..row0 + rows);
            }
            row0 += rows;
        }
        unreachable!("{p} is a part of {module}")
    }

    /// What the token embeddings are multiplied by before the first block: √C for gemma, 1
    /// otherwise.
    pub fn embedding_scale(&self) -> f32 {
        match self.arch.scale_embeddings {
            true => (self.n_embd as f32).sqrt(),
            false => 1.0,
        }
    }

    /// The attention window of layer `l` (`u32::MAX`: every earlier position).
    pub fn layer_window(&self, l: usize) -> u32 {
        match self.sliding_window {
            Some(s) if s.is_local(l) => s.window,
            _ => u32::MAX,
        }
    }

    /// The rope base of layer `l`.
    pub fn layer_rope_base(&self, l: usize) -> f32 {
        match self.sliding_window {
            Some(s) if s.is_local(l) => s.rope_base,
            _ => self.rope_base,
        }
    }

    /// The rotation of layer `l`, with the model's per-pair `factors` (on the GPU or the host).
    pub fn layer_rope<F>(&self, l: usize, factors: F) -> RopeFreqs<F> {
        RopeFreqs {
            base: self.layer_rope_base(l),
            factors,
            scale: self.rope_scale,
        }
    }

    /// The model's rope factors, each read by `tensor` (`None`: ones).
    pub fn rope_factors<B, E>(
        &self,
        mut tensor: impl FnMut(Option<&'static str>) -> std::result::Result<B, E>,
    ) -> std::result::Result<RopeFactors<B>, E> {
        Ok(RopeFactors {
            base: tensor(self.rope_factors)?,
            long: match self.long_rope_after {
                Some(after) => Some((after, tensor(Some(LONG_ROPE_FACTORS))?)),
                None => None,
            },
        })
    }

    /// The Hugging Face model a PEFT adapter of this model is for.
    pub fn hf_model(&self) -> HfModel {
        HfModel {
            qk_order: self.qk_order(),
            language_model: self
                .arch
                .hf_multimodal_from_width
                .is_some_and(|width| self.n_embd >= width),
        }
    }

    /// How the GGUF orders the rows of q_proj and k_proj relative to Hugging Face.
    pub fn qk_order(&self) -> QkOrder {
        if self.arch.qk_permuted {
            QkOrder::Permuted {
                n_head: self.n_head,
                n_head_kv: self.n_head_kv,
            }
        } else {
            QkOrder::Same
        }
    }

    /// Parameter count (all weights, as in the GGUF).
    pub fn n_params(&self) -> usize {
        let per_layer = self.n_embd * (self.q_dim() + 2 * self.kv_dim())
            + self.q_dim() * self.n_embd
            + 3 * self.n_embd * self.n_ff
            + 2 * self.n_embd
            + if self.arch.post_norms {
                2 * self.n_embd
            } else {
                0
            }
            + if self.arch.qk_norm {
                2 * self.head_dim
            } else {
                0
            }
            + if self.arch.qkv_bias {
                self.q_dim() + 2 * self.kv_dim()
            } else {
                0
            };
        let out = if self.tied_embeddings {
            0
        } else {
            self.vocab_size * self.n_embd
        };
        self.vocab_size * self.n_embd + self.n_layer * per_layer + self.n_embd + out
    }
}
