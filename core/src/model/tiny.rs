//! Small random models of any architecture ([`super::ARCHITECTURES`]) written as real GGUF
//! files: for tests (a CPU reference can follow them exactly), smoke tests and the browser
//! tests, where a 135M model is too slow.

use super::arch::{self, Architecture};
use crate::formats::{GgmlType, Gguf, GgufError, GgufWriter, MetaValue};
use crate::util::Rng;

/// The architecture, shape and weight format of a tiny model.
#[derive(Clone, Debug, PartialEq)]
pub struct TinySpec {
    pub arch: Architecture,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// HS when it is not C / NH (qwen3, gemma3), written as `attention.key_length`.
    pub head_dim: Option<usize>,
    /// For architectures with local layers: the window and every how many layers one is global
    /// (tests: a window short enough to matter, layers alternating; real shapes: their own).
    pub local_layers: (u32, u32),
    /// Ignored when a tokenizer is copied (the vocabulary then sets it).
    pub vocab_size: usize,
    pub context_length: usize,
    /// Type of the projection matrices: one of [`TinySpec::weight_types`]; the embedding is Q8_0
    /// unless this is F32.
    pub weight_type: GgmlType,
    /// Write Llama 3.1's rope scaling as `rope_freqs.weight` (factor 8, original context 8192);
    /// for phi3, LongRoPE's short and long factors and attention factor instead
    /// ([`long_rope`]).
    pub rope_freqs: bool,
    /// phi3 with `rope_freqs`: the context its short LongRoPE factors serve
    /// (`rope.scaling.original_context_length`; `None`: the context length), past which the long
    /// ones take over.
    pub rope_original_context: Option<usize>,
    /// The values of each head rope rotates (`rope.dimension_count`; `None`: all of them).
    pub rope_dim: Option<usize>,
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            arch: arch::LLAMA,
            n_layer: 2,
            n_embd: 64,
            n_ff: 128,
            n_head: 4,
            n_head_kv: 2,
            head_dim: None,
            local_layers: (4, 2),
            vocab_size: 256,
            context_length: 512,
            weight_type: GgmlType::Q8_0,
            rope_freqs: false,
            rope_original_context: None,
            rope_dim: None,
            seed: 1,
        }
    }
}

/// A real model's architecture and shape with its file's main projection type (context 4096,
/// seed 1).
const fn shape(
    arch: Architecture,
    n_layer: usize,
    (n_embd, n_ff): (usize, usize),
    (n_head, n_head_kv): (usize, usize),
    vocab_size: usize,
    weight_type: GgmlType,
) -> TinySpec {
    TinySpec {
        arch,
        n_layer,
        n_embd,
        n_ff,
        n_head,
        n_head_kv,
        head_dim: None,
        local_layers: (4, 2),
        vocab_size,
        context_length: 4096,
        weight_type,
        rope_freqs: false,
        rope_original_context: None,
        rope_dim: None,
        seed: 1,
    }
}

/// [`shape`] with Llama 3's rope scaling.
const fn llama3(spec: TinySpec) -> TinySpec {
    TinySpec {
        rope_freqs: true,
        ..spec
    }
}

/// The shapes `--like` names: the real models' architectures, layers, widths, heads, vocabulary
/// and main projection type. The weights are random (rope base, norms and eps stay the tiny
/// model's), so these serve speed and memory figures, not numerics.
pub const LIKE: [(&str, TinySpec); 10] = [
    (
        "smollm2-135m",
        shape(arch::LLAMA, 30, (576, 1536), (9, 3), 49152, GgmlType::Q4_1),
    ),
    (
        "qwen2.5-0.5b",
        shape(
            arch::QWEN2,
            24,
            (896, 4864),
            (14, 2),
            151936,
            GgmlType::Q5_0,
        ),
    ),
    (
        "qwen3-0.6b",
        TinySpec {
            head_dim: Some(128),
            ..shape(
                arch::QWEN3,
                28,
                (1024, 3072),
                (16, 8),
                151936,
                GgmlType::Q8_0,
            )
        },
    ),
    (
        "gemma3-270m",
        TinySpec {
            head_dim: Some(256),
            local_layers: (512, 6),
            ..shape(
                arch::GEMMA3,
                18,
                (640, 2048),
                (4, 1),
                262144,
                GgmlType::Q5_0,
            )
        },
    ),
    (
        "qwen2.5-1.5b",
        shape(
            arch::QWEN2,
            28,
            (1536, 8960),
            (12, 2),
            151936,
            GgmlType::Q4_K,
        ),
    ),
    (
        "llama-3.2-1b",
        llama3(shape(
            arch::LLAMA,
            16,
            (2048, 8192),
            (32, 8),
            128256,
            GgmlType::Q4_K,
        )),
    ),
    (
        "phi3-mini",
        shape(
            arch::PHI3,
            32,
            (3072, 8192),
            (32, 32),
            32064,
            GgmlType::Q4_K,
        ),
    ),
    (
        // Phi-4-mini: tied embeddings, 96 of each head's 128 values rotated, LongRoPE (its
        // original context 4096).
        "phi4-mini",
        TinySpec {
            rope_freqs: true,
            rope_dim: Some(96),
            ..shape(
                arch::PHI3,
                32,
                (3072, 8192),
                (24, 8),
                200064,
                GgmlType::Q4_K,
            )
        },
    ),
    (
        "mistral-7b",
        shape(
            arch::MISTRAL,
            32,
            (4096, 14336),
            (32, 8),
            32000,
            GgmlType::Q4_K,
        ),
    ),
    (
        "llama-3.1-8b",
        llama3(shape(
            arch::LLAMA,
            32,
            (4096, 14336),
            (32, 8),
            128256,
            GgmlType::Q4_K,
        )),
    ),
];

impl TinySpec {
    /// The spec of a real model's shape ([`LIKE`]), or `None` for an unknown name.
    pub fn like(name: &str) -> Option<TinySpec> {
        LIKE.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, spec)| spec.clone())
    }

    /// One tiny spec per distinct block: every architecture, and llama with Llama 3's rope
    /// scaling. The block-level tests (finite differences, the burn oracle, the CPU reference
    /// trainer, incremental decode) run each.
    pub fn block_variants() -> Vec<TinySpec> {
        let mut out: Vec<TinySpec> = super::ARCHITECTURES
            .iter()
            .map(|&arch| TinySpec {
                arch,
                // Per-head norms come with heads wider than C / NH in the real models.
                head_dim: arch.qk_norm.then_some(24),
                ..TinySpec::default()
            })
            .collect();
        for arch in [super::arch::LLAMA, super::arch::PHI3] {
            out.push(TinySpec {
                arch,
                rope_freqs: true,
                // The tests' sequences (9-40 tokens) run past it: LongRoPE's long factors. The
                // short ones are checked against the references by tests/tiny_models.rs.
                rope_original_context: arch.fused_projections.then_some(8),
                // And a partial rotary embedding, like Phi-4-mini's (96 of 128): 12 of 16.
                rope_dim: arch.fused_projections.then_some(12),
                ..TinySpec::default()
            });
        }
        out
    }

    /// A short name for test messages: the architecture, "+rope_freqs" when scaled.
    pub fn label(&self) -> String {
        match self.rope_freqs {
            true => format!("{}+rope_freqs", self.arch.name),
            false => self.arch.name.to_string(),
        }
    }

    /// The names [`TinySpec::like`] knows, comma-separated.
    pub fn like_names() -> String {
        LIKE.map(|(name, _)| name).join(", ")
    }

    /// The weight types a tiny model can be written in: every GPU weight format. F32, F16,
    /// Q4_0, Q4_1, Q8_0 and BF16 quantize random values; the others get random blocks
    /// ([`crate::kernels::random_blocks`]) and need rows that hold whole blocks (k-quants:
    /// `n_embd` and `n_ff` multiples of 256).
    pub fn weight_types() -> Vec<GgmlType> {
        crate::kernels::WeightFormat::ALL
            .iter()
            .map(|&f| GgmlType::from(f))
            .collect()
    }
}

/// Whether [`make_tiny_gguf`] writes `ty` by quantizing random values rather than as random
/// blocks. The k-quants stay random blocks although Q4_K and Q6_K can be encoded: the tiny
/// models' reference data (`tests/data/reference_nll_tiny.json`, checked by sha256) were made
/// from such files, and the k-quant searches would take minutes on `--like` shapes.
fn quantizes_values(ty: GgmlType) -> bool {
    ty.can_encode() && ty.block_size() < crate::formats::kquant::QK_K as u64
}

/// A GGUF file for `spec` with random weights; with `tokenizer_from`, every `tokenizer.*` key of
/// that model is copied (so the tiny model tokenizes exactly like it).
pub fn make_tiny_gguf(
    spec: &TinySpec,
    tokenizer_from: Option<&Gguf>,
) -> Result<Vec<u8>, GgufError> {
    let mut rng = Rng::new(spec.seed);
    let mut w = GgufWriter::new();
    let arch = spec.arch.name;
    let mut vocab = spec.vocab_size;
    w.add_metadata("general.architecture", arch)?;
    // llama.cpp sets Phi-3 token attributes by model name ("phi3" in it), needing Phi-3's own
    // special tokens, which a copied tokenizer lacks; so the name avoids it.
    let name = match spec.arch.fused_projections {
        true => "afinador tiny (fused projections)".to_owned(),
        false => format!("afinador tiny {arch}"),
    };
    w.add_metadata("general.name", name)?;
    w.add_metadata("general.type", "model")?;
    let head_dim = spec.head_dim.unwrap_or(spec.n_embd / spec.n_head);
    let rope_dim = spec.rope_dim.unwrap_or(head_dim);
    let meta: [(&str, MetaValue); 9] = [
        ("context_length", (spec.context_length as u32).into()),
        ("embedding_length", (spec.n_embd as u32).into()),
        ("block_count", (spec.n_layer as u32).into()),
        ("feed_forward_length", (spec.n_ff as u32).into()),
        ("attention.head_count", (spec.n_head as u32).into()),
        ("attention.head_count_kv", (spec.n_head_kv as u32).into()),
        ("attention.layer_norm_rms_epsilon", 1e-5f32.into()),
        ("rope.freq_base", 10000f32.into()),
        ("rope.dimension_count", (rope_dim as u32).into()),
    ];
    for (key, value) in meta {
        w.add_metadata(format!("{arch}.{key}"), value)?;
    }
    if spec.arch.sliding_window.is_some() {
        let (window, global_every) = spec.local_layers;
        w.add_metadata(format!("{arch}.attention.sliding_window"), window)?;
        w.add_metadata(
            format!("{arch}.attention.sliding_window_pattern"),
            global_every,
        )?;
    }
    if spec.head_dim.is_some() {
        for key in ["attention.key_length", "attention.value_length"] {
            w.add_metadata(format!("{arch}.{key}"), head_dim as u32)?;
        }
    }
    if let Some(src) = tokenizer_from {
        for (key, value) in src.metadata().iter() {
            if key.starts_with("tokenizer.") {
                w.add_metadata(key, value.clone())?;
            }
        }
        vocab = src.metadata().get_str_array("tokenizer.ggml.tokens")?.len();
    }
    let (c, ff) = (spec.n_embd as u64, spec.n_ff as u64);
    let q = (spec.n_head * head_dim) as u64;
    let kv = (spec.n_head_kv * head_dim) as u64;
    let mut matrix = |w: &mut GgufWriter, name: &str, rows: u64, cols: u64, ty: GgmlType| {
        let n = (rows * cols) as usize;
        if let (false, Some(format)) = (quantizes_values(ty), ty.weight_format()) {
            if !cols.is_multiple_of(format.k_multiple() as u64) {
                return Err(GgufError::NotBlockMultiple {
                    ty: ty.name(),
                    tensor: name.to_owned(),
                    n_elements: cols,
                    block: format.k_multiple() as u64,
                });
            }
            let raw = crate::kernels::random_blocks(format, n, &mut rng);
            return w.add_tensor(name, &[cols, rows], ty, raw).map(|_| ());
        }
        let bound = 1.0 / (cols as f32).sqrt();
        let values = rng.vec_uniform(n, -bound, bound);
        w.add_tensor_f32(name, &[cols, rows], ty, &values)
            .map(|_| ())
    };
    let embd_type = if spec.weight_type == GgmlType::F32 {
        GgmlType::F32
    } else {
        GgmlType::Q8_0
    };
    matrix(&mut w, "token_embd.weight", vocab as u64, c, embd_type)?;
    let mut norms = Rng::new(spec.seed ^ 0x5eed);
    let mut norm = |w: &mut GgufWriter, name: &str| {
        let values: Vec<f32> = (0..c).map(|_| 1.0 + norms.uniform(-0.1, 0.1)).collect();
        w.add_tensor_f32(name, &[c], GgmlType::F32, &values)
            .map(|_| ())
    };
    norm(&mut w, "output_norm.weight")?;
    match (spec.rope_freqs, spec.arch.fused_projections) {
        (true, false) => {
            let factors = llama3_rope_factors(rope_dim, 10000.0);
            w.add_tensor_f32(
                "rope_freqs.weight",
                &[factors.len() as u64],
                GgmlType::F32,
                &factors,
            )?;
        }
        (true, true) => {
            let original = spec.rope_original_context.unwrap_or(spec.context_length);
            let rope = long_rope(rope_dim, original);
            for (name, factors) in [
                ("rope_factors_long.weight", &rope.long),
                ("rope_factors_short.weight", &rope.short),
            ] {
                w.add_tensor_f32(name, &[factors.len() as u64], GgmlType::F32, factors)?;
            }
            w.add_metadata(
                format!("{arch}.rope.scaling.original_context_length"),
                original as u32,
            )?;
            w.add_metadata(format!("{arch}.rope.scaling.attn_factor"), rope.attn_factor)?;
        }
        (false, _) => {}
    }
    let mut biases = Rng::new(spec.seed ^ 0xb1a5);
    for i in 0..spec.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let t = spec.weight_type;
        norm(&mut w, &n("attn_norm"))?;
        norm(&mut w, &n("ffn_norm"))?;
        if spec.arch.post_norms {
            norm(&mut w, &n("post_attention_norm"))?;
            norm(&mut w, &n("post_ffw_norm"))?;
        }
        if spec.arch.fused_projections {
            matrix(&mut w, &n("attn_qkv"), q + 2 * kv, c, t)?;
            matrix(&mut w, &n("attn_output"), c, q, t)?;
            matrix(&mut w, &n("ffn_up"), 2 * ff, c, t)?;
        } else {
            matrix(&mut w, &n("attn_q"), q, c, t)?;
            matrix(&mut w, &n("attn_k"), kv, c, t)?;
            matrix(&mut w, &n("attn_v"), kv, c, t)?;
            matrix(&mut w, &n("attn_output"), c, q, t)?;
            matrix(&mut w, &n("ffn_gate"), ff, c, t)?;
            matrix(&mut w, &n("ffn_up"), ff, c, t)?;
        }
        matrix(&mut w, &n("ffn_down"), c, ff, t)?;
        if spec.arch.qk_norm {
            // Around 1 like trained norms, varied so a wrong weight shows.
            for m in ["attn_q_norm", "attn_k_norm"] {
                let values = biases.vec_uniform(head_dim, 0.5, 1.5);
                w.add_tensor_f32(n(m), &[head_dim as u64], GgmlType::F32, &values)?;
            }
        }
        if spec.arch.qkv_bias {
            // Large like qwen2's (its k biases reach ~145 on a weight scale of ~0.1).
            for (m, len) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
                let values = biases.vec_uniform(len as usize, -2.0, 2.0);
                let name = format!("blk.{i}.{m}.bias");
                w.add_tensor_f32(name, &[len], GgmlType::F32, &values)?;
            }
        }
    }
    Ok(w.to_bytes())
}

/// Phi-3's LongRoPE as its GGUF carries it (`rope_factors_{short,long}.weight`,
/// `rope.scaling.attn_factor`).
pub struct LongRope {
    pub short: Vec<f32>,
    pub long: Vec<f32>,
    pub attn_factor: f32,
}

/// LongRoPE factors shaped like Phi-3-mini-128k's (short ones near 1, long ones growing to ~40
/// for the slowest pairs) for a model whose short factors serve `original_context` positions,
/// extended 32× like it; the attention factor as llama.cpp's converter computes it
/// (`conversion/phi.py`: √(1 + ln scale / ln original)).
pub fn long_rope(rope_dim: usize, original_context: usize) -> LongRope {
    let pairs = rope_dim / 2;
    let ramp = |i: usize| i as f32 / (pairs.max(2) - 1) as f32;
    let scale = 32.0f64;
    LongRope {
        short: (0..pairs).map(|i| 1.0 + 0.5 * ramp(i) * ramp(i)).collect(),
        long: (0..pairs).map(|i| 1.0 + 39.0 * ramp(i).powi(3)).collect(),
        attn_factor: (1.0 + scale.ln() / (original_context as f64).ln()).sqrt() as f32,
    }
}

/// The per-pair divisors Hugging Face's `llama3` rope scaling implies (factor 8, low/high
/// frequency factors 1 and 4, original context 8192), as llama.cpp's converter writes them to
/// `rope_freqs.weight`.
pub fn llama3_rope_factors(rope_dim: usize, base: f64) -> Vec<f32> {
    let (factor, low, high, context) = (8.0f64, 1.0f64, 4.0f64, 8192.0f64);
    (0..rope_dim / 2)
        .map(|i| {
            let wavelen = std::f64::consts::TAU * base.powf(2.0 * i as f64 / rope_dim as f64);
            if wavelen < context / high {
                1.0
            } else if wavelen > context / low {
                factor as f32
            } else {
                let smooth = (context / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    #[test]
    fn tiny_models_parse_and_describe_their_shape() {
        for ty in TinySpec::weight_types() {
            if !quantizes_values(ty) {
                // Random blocks: rows must hold whole blocks.
                let spec = TinySpec {
                    weight_type: ty,
                    ..TinySpec::default()
                };
                let k_quant = ty.block_size() > 64;
                assert_eq!(make_tiny_gguf(&spec, None).is_err(), k_quant, "{ty}");
                continue;
            }
            let spec = TinySpec {
                weight_type: ty,
                ..TinySpec::default()
            };
            let bytes = make_tiny_gguf(&spec, None).unwrap();
            let gguf = Gguf::parse(&bytes).unwrap();
            let config = ModelConfig::from_gguf(&gguf).unwrap();
            assert_eq!((config.n_layer, config.n_embd, config.n_ff), (2, 64, 128));
            assert_eq!(
                (
                    config.n_head,
                    config.n_head_kv,
                    config.head_dim,
                    config.vocab_size
                ),
                (4, 2, 16, 256)
            );
            assert!(config.tied_embeddings);
            assert_eq!(gguf.tensor("blk.1.attn_q.weight").unwrap().ty, ty);
            // Same seed, same bytes.
            assert_eq!(make_tiny_gguf(&spec, None).unwrap(), bytes);
        }
    }
}
