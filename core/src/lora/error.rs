//! The error type of the LoRA adapter formats.

use thiserror::Error;

use crate::formats::GgufError;

/// Everything that can go wrong building, reading or writing a LoRA adapter.
///
/// Each message names the file, the key or tensor concerned and, where it helps, what afinador
/// expected instead, so that a user can tell an unsupported adapter kind from a corrupt file.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LoraError {
    /// `adapter_config.json` is not JSON, or not a JSON object.
    #[error("adapter_config.json is not a valid JSON object: {reason}")]
    ConfigJson {
        /// What the JSON parser said.
        reason: String,
    },

    /// A key of `adapter_config.json` is missing or holds a value of the wrong kind.
    #[error("adapter_config.json: {key} {problem}")]
    ConfigField {
        /// The key ("r", "lora_alpha").
        key: String,
        /// What is wrong ("is missing", "is \"8\", expected a positive integer").
        problem: String,
    },

    /// `adapter_config.json` describes another kind of PEFT adapter.
    #[error(
        "adapter_config.json: peft_type is '{peft_type}', afinador reads LORA adapters \
         (train or convert a plain LoRA adapter)"
    )]
    NotLora {
        /// The `peft_type` found.
        peft_type: String,
    },

    /// A LoRA variant or option that changes what the adapter computes, which afinador does not
    /// implement (DoRA, rank patterns, extra trained modules…).
    #[error("adapter_config.json: {key} = {value}: {hint}")]
    UnsupportedOption {
        /// The key ("use_dora").
        key: String,
        /// Its value as JSON.
        value: String,
        /// Why it cannot be read and what to do.
        hint: &'static str,
    },

    /// `adapter_model.safetensors` could not be parsed or written.
    #[error("adapter_model.safetensors: {reason}")]
    Safetensors {
        /// What the safetensors library said.
        reason: String,
    },

    /// A tensor that is not one afinador knows how to place.
    #[error("adapter tensor '{name}' {hint}")]
    UnexpectedTensor {
        /// The tensor's name in the file.
        name: String,
        /// What it is taken to be and why it is refused.
        hint: String,
    },

    /// A tensor of an element type afinador does not read.
    #[error("adapter tensor '{name}' has dtype {dtype}, expected {expected}")]
    UnsupportedDtype {
        /// The tensor's name in the file.
        name: String,
        /// The element type found.
        dtype: String,
        /// The element types accepted.
        expected: &'static str,
    },

    /// A tensor whose shape does not fit the rank or the other tensors.
    #[error("adapter tensor {name} has shape {shape:?}, expected {expected}")]
    TensorShape {
        /// The tensor's name in the file.
        name: String,
        /// Its shape as stored (outermost first for safetensors, GGUF order for GGUF).
        shape: Vec<u64>,
        /// The expected shape, with its letters ("[r, in] = [8, in]").
        expected: String,
    },

    /// The same matrix appears twice (e.g. `lora_A.weight` and `lora_A.default.weight`).
    #[error("adapter tensor '{name}' appears twice in the file (as '{first}' too)")]
    DuplicateTensor {
        /// The second name seen.
        name: String,
        /// The first name seen for the same matrix.
        first: String,
    },

    /// One matrix of an A/B pair is missing.
    #[error("layer {layer} {module}: the adapter has {present} but no {missing}")]
    MissingHalf {
        /// The decoder layer.
        layer: usize,
        /// The module ("q_proj").
        module: &'static str,
        /// The matrix present ("lora_A").
        present: &'static str,
        /// The matrix missing ("lora_B").
        missing: &'static str,
    },

    /// The adapter holds no LoRA matrices at all.
    #[error("{what} holds no LoRA matrices")]
    NoTensors {
        /// The file or object ("adapter_model.safetensors").
        what: &'static str,
    },

    /// An in-memory adapter that breaks its own invariants.
    #[error("invalid LoRA adapter: {problem}")]
    InvalidAdapter {
        /// What is wrong ("layer 3 q_proj: a has 100 values, expected r×in = 8×576 = 4608").
        problem: String,
    },

    /// A target module name afinador does not know.
    #[error(
        "unknown LoRA target module '{name}': afinador adapts q_proj, k_proj, v_proj, o_proj, \
         gate_proj, up_proj and down_proj (or 'all-linear' for all seven), and phi3's fused qkv_proj \
         and gate_up_proj"
    )]
    UnknownModule {
        /// The name given.
        name: String,
    },

    /// Q/K rows that cannot be split into heads of an even size, so the RoPE row order cannot
    /// be converted between Hugging Face and GGUF.
    #[error(
        "{module}: {rows} output rows cannot be split into {n_head} heads of an even size \
         (is the head count right? q_proj uses the attention heads, k_proj the KV heads)"
    )]
    HeadSplit {
        /// The module ("q_proj").
        module: &'static str,
        /// The number of rows of lora_B (the module's output features).
        rows: usize,
        /// The head count given.
        n_head: usize,
    },

    /// A merge into a type whose blocks do not divide the merged projection's rows.
    #[error(
        "cannot store the merged {tensor} as {ty}: its rows are {width} values wide, not a \
         multiple of {ty}'s blocks of {block}; merge into a type whose blocks fit ({fits})"
    )]
    MergedRowWidth {
        /// The tensor ("blk.0.attn_q.weight").
        tensor: String,
        /// The type asked for ("Q4_K").
        ty: &'static str,
        /// Values per row (`dims[0]`).
        width: u64,
        /// The type's block size.
        block: u64,
        /// The types that would fit, comma-separated ("Q8_0, F16, BF16, F32").
        fits: String,
    },

    /// The GGUF container could not be parsed or written.
    #[error("GGUF LoRA: {0}")]
    Gguf(#[from] GgufError),

    /// A GGUF LoRA metadata key that is missing or holds the wrong value.
    #[error("GGUF LoRA: {key} {problem}")]
    GgufMeta {
        /// The key ("general.type").
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}
