//! ggml tensor types: ids, names and block layouts.

macro_rules! ggml_types {
    ($($(#[doc = $doc:literal])* $name:ident = $id:literal, $block:literal, $size:literal;)*) => {
        /// A ggml tensor type, with the id it has in GGUF files.
        ///
        /// Every type ggml defines is listed, so that sizes can be checked and a file holding a
        /// type afinador cannot decode still parses; [`GgmlType::is_supported`] tells which ones
        /// the loaders and [`crate::formats::quant::dequantize`] read. Ids 4, 5, 31..=33 and
        /// 36..=38 were removed from ggml and are unknown here.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum GgmlType {
            $($(#[doc = $doc])* $name = $id,)*
        }

        impl GgmlType {
            /// Every type, in id order.
            pub const ALL: &[GgmlType] = &[$(GgmlType::$name,)*];

            /// The type with GGUF/ggml id `id`, or `None` for ids ggml does not define.
            pub fn from_id(id: u32) -> Option<GgmlType> {
                match id {
                    $($id => Some(GgmlType::$name),)*
                    _ => None,
                }
            }

            /// The name llama.cpp prints ("Q4_0", "BF16").
            pub fn name(self) -> &'static str {
                match self {
                    $(GgmlType::$name => stringify!($name),)*
                }
            }

            /// Elements per block (1 for plain scalar types).
            pub fn block_size(self) -> u64 {
                match self {
                    $(GgmlType::$name => $block,)*
                }
            }

            /// Bytes per block (ggml's `type_size`).
            pub fn type_size(self) -> u64 {
                match self {
                    $(GgmlType::$name => $size,)*
                }
            }
        }
    };
}

// name = id, elements per block, bytes per block (ggml-common.h).
ggml_types! {
    /// 32-bit float.
    F32 = 0, 1, 4;
    /// IEEE half float.
    F16 = 1, 1, 2;
    /// 4-bit, blocks of 32: f16 scale `d`, `x = d * (q - 8)`.
    Q4_0 = 2, 32, 18;
    /// 4-bit, blocks of 32: f16 scale `d` and min `m`, `x = d * q + m`.
    Q4_1 = 3, 32, 20;
    /// 5-bit, blocks of 32.
    Q5_0 = 6, 32, 22;
    /// 5-bit with min, blocks of 32.
    Q5_1 = 7, 32, 24;
    /// 8-bit, blocks of 32: f16 scale `d`, `x = d * q`.
    Q8_0 = 8, 32, 34;
    /// 8-bit with f16 scale and sum, blocks of 32 (an activation format).
    Q8_1 = 9, 32, 36;
    /// k-quant 2-bit, super-blocks of 256.
    Q2_K = 10, 256, 84;
    /// k-quant 3-bit.
    Q3_K = 11, 256, 110;
    /// k-quant 4-bit.
    Q4_K = 12, 256, 144;
    /// k-quant 5-bit.
    Q5_K = 13, 256, 176;
    /// k-quant 6-bit.
    Q6_K = 14, 256, 210;
    /// k-quant 8-bit (an activation format).
    Q8_K = 15, 256, 292;
    /// i-quant, 2.06 bits per weight.
    IQ2_XXS = 16, 256, 66;
    /// i-quant, 2.31 bits per weight.
    IQ2_XS = 17, 256, 74;
    /// i-quant, 3.06 bits per weight.
    IQ3_XXS = 18, 256, 98;
    /// i-quant, 1.56 bits per weight.
    IQ1_S = 19, 256, 50;
    /// non-linear 4-bit, blocks of 32.
    IQ4_NL = 20, 32, 18;
    /// i-quant, 3.44 bits per weight.
    IQ3_S = 21, 256, 110;
    /// i-quant, 2.5 bits per weight.
    IQ2_S = 22, 256, 82;
    /// i-quant, 4.25 bits per weight.
    IQ4_XS = 23, 256, 136;
    /// 8-bit integer.
    I8 = 24, 1, 1;
    /// 16-bit integer.
    I16 = 25, 1, 2;
    /// 32-bit integer.
    I32 = 26, 1, 4;
    /// 64-bit integer.
    I64 = 27, 1, 8;
    /// 64-bit float.
    F64 = 28, 1, 8;
    /// i-quant, 1.75 bits per weight.
    IQ1_M = 29, 256, 56;
    /// bfloat16.
    BF16 = 30, 1, 2;
    /// ternary, 1.69 bits per weight.
    TQ1_0 = 34, 256, 54;
    /// ternary, 2.06 bits per weight.
    TQ2_0 = 35, 256, 66;
    /// OCP microscaling FP4: blocks of 32 under one E8M0 scale byte.
    MXFP4 = 39, 32, 17;
    /// NVIDIA FP4: blocks of 64 in four sub-blocks, each under a UE4M3 scale byte.
    NVFP4 = 40, 64, 36;
    /// 1-bit, blocks of 128.
    Q1_0 = 41, 128, 18;
}

impl GgmlType {
    /// The id stored in GGUF files.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Whether this is a block-quantized type.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Whether afinador can decode it: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the
    /// k-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            Self::F32
                | Self::F16
                | Self::BF16
                | Self::Q4_0
                | Self::Q4_1
                | Self::Q5_0
                | Self::Q5_1
                | Self::Q8_0
                | Self::Q2_K
                | Self::Q3_K
                | Self::Q4_K
                | Self::Q5_K
                | Self::Q6_K
        )
    }

    /// Whether afinador can encode it ([`crate::formats::quant::quantize`]): F32, F16, BF16,
    /// Q8_0, Q4_0, Q4_1, Q4_K and Q6_K.
    pub fn can_encode(self) -> bool {
        matches!(
            self,
            Self::F32
                | Self::F16
                | Self::BF16
                | Self::Q8_0
                | Self::Q4_0
                | Self::Q4_1
                | Self::Q4_K
                | Self::Q6_K
        )
    }

    /// The names of the types afinador decodes, comma-separated, in id order.
    pub fn supported_names() -> String {
        Self::names_where(Self::is_supported)
    }

    /// The names of the types afinador encodes, comma-separated, in id order.
    pub fn encodable_names() -> String {
        Self::names_where(Self::can_encode)
    }

    fn names_where(keep: fn(Self) -> bool) -> String {
        let names: Vec<&str> = Self::ALL
            .iter()
            .copied()
            .filter(|&t| keep(t))
            .map(Self::name)
            .collect();
        names.join(", ")
    }

    /// Bytes taken by `n_elements` elements, or `None` when `n_elements` is not a whole number of
    /// blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let block = self.block_size();
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
