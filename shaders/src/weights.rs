//! The weight formats the kernels read: the one table that the shader variants, the engine's
//! uploads, the tests and the benchmarks are all derived from.
//!
//! Each format is one `#ifdef W_<NAME>` section of `wgsl/weights.wgsl` (`w_load4`, `w_dot_word`)
//! and one repacking in the core's `kernels::weights::pack_weight`; its GGUF block layout and
//! CPU decoding live in the core's `formats` module, keyed by [`WeightFormat::ggml_id`].
//! Adding a format: a row here, a section in `weights.wgsl`, a repacking arm, and a CPU decoder
//! for the GGUF type (ARCHITECTURE.md, "Weight formats").

macro_rules! weight_formats {
    ($($(#[doc = $doc:literal])* $name:ident = $define:literal, $id:literal, $values:literal,
       $bytes:literal;)*) => {
        /// A weight matrix's format on the GPU, named as its GGUF tensor type.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum WeightFormat {
            $($(#[doc = $doc])* $name,)*
        }

        impl WeightFormat {
            /// Every format the kernels read, in GGUF id order.
            pub const ALL: &[WeightFormat] = &[$(WeightFormat::$name,)*];

            /// The GGUF tensor type name ("Q4_K").
            pub fn name(self) -> &'static str {
                match self {
                    $(WeightFormat::$name => stringify!($name),)*
                }
            }

            /// The preprocessor flag selecting this format in `weights.wgsl`.
            pub fn define(self) -> &'static str {
                match self {
                    $(WeightFormat::$name => $define,)*
                }
            }

            /// The GGUF/ggml tensor type id of the blocks this format is uploaded from.
            pub fn ggml_id(self) -> u32 {
                match self {
                    $(WeightFormat::$name => $id,)*
                }
            }

            /// Values per GGUF block (1 for plain float types).
            pub fn block_values(self) -> usize {
                match self {
                    $(WeightFormat::$name => $values,)*
                }
            }

            /// Bytes per GGUF block.
            pub fn block_bytes(self) -> usize {
                match self {
                    $(WeightFormat::$name => $bytes,)*
                }
            }
        }
    };
}

// name = flag, GGUF type id, values per block, bytes per block (ggml-common.h).
weight_formats! {
    /// f32, row-major.
    F32 = "W_F32", 0, 1, 4;
    /// IEEE half floats, two per word, unpacked with `unpack2x16float` (no `shader-f16` needed).
    F16 = "W_F16", 1, 1, 2;
    /// 4-bit, blocks of 32 under an f16 scale: `d·(q − 8)`.
    Q4_0 = "W_Q4_0", 2, 32, 18;
    /// 4-bit, blocks of 32 under an f16 scale and min: `d·q + m`.
    Q4_1 = "W_Q4_1", 3, 32, 20;
    /// 5-bit, blocks of 32 under an f16 scale: `d·(q − 16)`.
    Q5_0 = "W_Q5_0", 6, 32, 22;
    /// 5-bit, blocks of 32 under an f16 scale and min: `d·q + m`.
    Q5_1 = "W_Q5_1", 7, 32, 24;
    /// 8-bit, blocks of 32 under an f16 scale: `d·q`.
    Q8_0 = "W_Q8_0", 8, 32, 34;
    /// k-quant 2-bit: super-blocks of 256, 16 sub-blocks with 4-bit scales and mins.
    Q2_K = "W_Q2_K", 10, 256, 84;
    /// k-quant 3-bit: super-blocks of 256, 16 sub-blocks with 6-bit signed scales.
    Q3_K = "W_Q3_K", 11, 256, 110;
    /// k-quant 4-bit: super-blocks of 256, 8 sub-blocks with 6-bit scales and mins.
    Q4_K = "W_Q4_K", 12, 256, 144;
    /// k-quant 5-bit: Q4_K plus a fifth bit per value.
    Q5_K = "W_Q5_K", 13, 256, 176;
    /// k-quant 6-bit: super-blocks of 256, 16 sub-blocks with i8 scales.
    Q6_K = "W_Q6_K", 14, 256, 210;
    /// bfloat16, two per word, widened with shifts.
    BF16 = "W_BF16", 30, 1, 2;
}

impl WeightFormat {
    /// What a row's length must be a multiple of: the block length, or 4 for the float formats
    /// (`w_load4` reads four values at a time).
    pub fn k_multiple(self) -> usize {
        self.block_values().max(4)
    }

    /// A plain float format (F32, F16, BF16): no blocks, no scales.
    pub fn is_float(self) -> bool {
        self.block_values() == 1
    }

    /// The names of every format, comma-separated (for messages).
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
        names.join(", ")
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
