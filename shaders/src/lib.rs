//! afinador's WGSL kernels and the small preprocessor that makes their variants.
//!
//! Every kernel family is one `.wgsl` file under `wgsl/`. Variants (weight formats, f16,
//! subgroups, …) are selected with `#ifdef NAME` / `#ifndef NAME` / `#else` / `#endif` blocks and
//! shared code is pulled in with `#include "file.wgsl"`; `#define NAME` sets a flag from inside a
//! file. Shapes never appear in shader text: they travel in each kernel's uniform `Params`.
//!
//! [`VARIANTS`] lists every (shader, defines) pair the engine can ask for, so the tests validate
//! each of them offline with naga.

mod preprocess;
mod tiles;
mod weights;

pub use preprocess::{PreprocessError, preprocess};
pub use tiles::MatmulTiles;
pub use weights::WeightFormat;

/// One kernel family: one `.wgsl` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    /// Tiled GEMM `C[M,N] (+)= A[M,K] · B[K,N]` with f32 or quantized B.
    Matmul,
    /// Matrix–vector products for decode: `y[N] (+)= W[N,K] · x[K]`.
    Gemv,
    /// Row gather from an f32 or quantized embedding table.
    Embedding,
    /// RMSNorm over the last dimension.
    RmsNorm,
    /// Rotary position embedding (adjacent pairs, GGUF llama convention).
    Rope,
    /// Causal flash attention with grouped-query heads.
    Attention,
    /// Element-wise kernels (SwiGLU, add).
    Elementwise,
    /// Per-row log-softmax statistics of logits: log-sum-exp, argmax, target log-probability,
    /// entropy; and the cross-entropy gradient.
    Logits,
    /// AdamW over flat parameter arrays.
    AdamW,
    /// Two-pass reductions (the global gradient norm).
    Reduce,
    /// f32 values packed into bf16 pairs and back (training's 16-bit saved residual stream).
    Bf16,
}

impl Shader {
    /// Every kernel family.
    pub const ALL: [Shader; 11] = [
        Shader::Matmul,
        Shader::Gemv,
        Shader::Embedding,
        Shader::RmsNorm,
        Shader::Rope,
        Shader::Attention,
        Shader::Elementwise,
        Shader::Logits,
        Shader::AdamW,
        Shader::Reduce,
        Shader::Bf16,
    ];

    /// The file name under `wgsl/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Matmul => "matmul.wgsl",
            Shader::Gemv => "gemv.wgsl",
            Shader::Embedding => "embedding.wgsl",
            Shader::RmsNorm => "rmsnorm.wgsl",
            Shader::Rope => "rope.wgsl",
            Shader::Attention => "attention.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Logits => "logits.wgsl",
            Shader::AdamW => "adamw.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Bf16 => "bf16.wgsl",
        }
    }

    /// The raw (not yet preprocessed) text of this shader.
    pub fn raw_source(self) -> &'static str {
        source_file(self.file_name()).expect("every shader file is embedded")
    }

    /// The preprocessed WGSL for this shader with the given flags defined.
    pub fn source(self, defines: &[&str]) -> Result<String, PreprocessError> {
        preprocess(self.file_name(), defines, &source_file)
    }
}

/// The text of an embedded `.wgsl` file (shaders and their includes) by name.
pub fn source_file(name: &str) -> Option<&'static str> {
    Some(match name {
        "matmul.wgsl" => include_str!("../wgsl/matmul.wgsl"),
        "gemv.wgsl" => include_str!("../wgsl/gemv.wgsl"),
        "embedding.wgsl" => include_str!("../wgsl/embedding.wgsl"),
        "rmsnorm.wgsl" => include_str!("../wgsl/rmsnorm.wgsl"),
        "rope.wgsl" => include_str!("../wgsl/rope.wgsl"),
        "attention.wgsl" => include_str!("../wgsl/attention.wgsl"),
        "elementwise.wgsl" => include_str!("../wgsl/elementwise.wgsl"),
        "logits.wgsl" => include_str!("../wgsl/logits.wgsl"),
        "weights.wgsl" => include_str!("../wgsl/weights.wgsl"),
        "adamw.wgsl" => include_str!("../wgsl/adamw.wgsl"),
        "reduce.wgsl" => include_str!("../wgsl/reduce.wgsl"),
        "bf16.wgsl" => include_str!("../wgsl/bf16.wgsl"),
        _ => return None,
    })
}

/// Every (shader, defines) variant the engine may build; validated offline by the tests.
pub fn variants() -> Vec<(Shader, Vec<&'static str>)> {
    let mut out = Vec::new();
    for w in WeightFormat::ALL.iter().map(|f| f.define()) {
        out.push((Shader::Matmul, vec![w]));
        out.push((Shader::Matmul, vec![w, "DIRECT"]));
        out.push((Shader::Matmul, vec![w, "WT"]));
        out.push((Shader::Matmul, vec![w, "WT", "DIRECT"]));
        out.push((Shader::Matmul, vec![w, "COOP"]));
        out.push((Shader::Matmul, vec![w, "WT", "COOP"]));
        out.push((Shader::Gemv, vec![w]));
        out.push((Shader::Gemv, vec![w, "SUBGROUPS"]));
        out.push((Shader::Embedding, vec![w]));
    }
    out.push((Shader::Matmul, vec!["B_STRIDED"]));
    out.push((Shader::Matmul, vec!["B_STRIDED", "DIRECT"]));
    out.push((Shader::Matmul, vec!["B_STRIDED", "COOP"]));
    for kernel in [None, Some("DIRECT"), Some("COOP")] {
        out.push((
            Shader::Matmul,
            ["B_STRIDED", "F16"].into_iter().chain(kernel).collect(),
        ));
    }
    out.push((Shader::RmsNorm, vec![]));
    out.push((Shader::RmsNorm, vec!["BACKWARD"]));
    out.push((Shader::Elementwise, vec!["OP_SWIGLU_BWD"]));
    out.push((Shader::Elementwise, vec!["OP_SWIGLU_BWD", "ACT_GELU"]));
    out.push((Shader::Elementwise, vec!["OP_DROPOUT"]));
    out.push((Shader::Logits, vec!["GRAD"]));
    out.push((Shader::AdamW, vec![]));
    out.push((Shader::Reduce, vec!["SUMSQ_PARTIAL"]));
    out.push((Shader::Reduce, vec!["NORM_FINISH"]));
    out.push((Shader::Rope, vec![]));
    for pass in [None, Some("BWD_DQ"), Some("BWD_DKV")] {
        out.push((Shader::Attention, pass.into_iter().collect()));
        out.push((
            Shader::Attention,
            pass.into_iter().chain(["DIRECT"]).collect(),
        ));
    }
    out.push((Shader::Elementwise, vec!["OP_SWIGLU"]));
    out.push((Shader::Elementwise, vec!["OP_SWIGLU", "ACT_GELU"]));
    out.push((Shader::Elementwise, vec!["OP_ADD"]));
    out.push((Shader::Elementwise, vec!["OP_BIAS"]));
    out.push((Shader::Logits, vec![]));
    out.push((Shader::Bf16, vec![]));
    out.push((Shader::Bf16, vec!["UNPACK"]));
    out
}

#[cfg(test)]
mod tests;
