//! The error type of the GGUF reader, the writer and the quantized block formats.

use thiserror::Error;

/// Everything that can go wrong reading, writing or decoding GGUF data.
///
/// Every message names the problem, the key or tensor concerned and, where it helps, the byte
/// offset in the file, so that a user can tell a truncated download from a corrupt or exotic file.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GgufError {
    /// The file does not start with the magic bytes `GGUF`.
    #[error("not a GGUF file: the first 4 bytes are '{found}', expected 'GGUF'")]
    NotGguf {
        /// The first bytes of the file, escaped (`PK\x03\x04`).
        found: String,
    },

    /// A GGUF version this reader does not handle (1, big-endian files, or newer than 3).
    #[error("GGUF version {version} is not supported: {hint}")]
    UnsupportedVersion {
        /// The version field as read (little-endian).
        version: u32,
        /// Why, and what to do about it.
        hint: &'static str,
    },

    /// The file ended in the middle of a field.
    #[error(
        "GGUF file is truncated at byte {offset} while reading {what} \
         (the file may be incomplete: download it again)"
    )]
    Truncated {
        /// The length of the file: where it ends.
        offset: u64,
        /// The field being read ("the key of metadata entry 17").
        what: String,
    },

    /// A string length prefix points past the end of the file.
    #[error(
        "{what} at byte {offset} is {len} bytes long, but only {remaining} bytes remain in the file \
         (the file is corrupt or incomplete: download it again)"
    )]
    LengthPastEnd {
        /// The field being read.
        what: String,
        /// Where its length prefix starts.
        offset: u64,
        /// The length it claims.
        len: u64,
        /// The bytes left after the length prefix.
        remaining: u64,
    },

    /// A count (of metadata entries, tensors or array elements) that the rest of the file could
    /// not possibly hold; rejected before anything is allocated for it.
    #[error(
        "{what} at byte {offset} is {count}, more than the {remaining} bytes left in the file \
         could hold (the file is corrupt or incomplete: download it again)"
    )]
    CountTooLarge {
        /// The count being read ("the number of tensors").
        what: String,
        /// Where the count starts.
        offset: u64,
        /// The count as read.
        count: u64,
        /// The bytes left after the count.
        remaining: u64,
    },

    /// A key, string value or tensor name that is not valid UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        what: String,
        /// Where its length prefix starts.
        offset: u64,
    },

    /// A metadata value type id outside 0..=12.
    #[error(
        "metadata key '{key}' has unknown value type {id} at byte {offset} \
         (the file is corrupt or from a newer GGUF version)"
    )]
    UnknownValueType {
        /// The key whose value (or array element type) is unknown.
        key: String,
        /// The type id as read.
        id: u32,
        /// Where the type id starts.
        offset: u64,
    },

    /// Arrays of arrays nested deeper than [`crate::formats::MAX_ARRAY_DEPTH`].
    #[error("metadata key '{key}' has arrays nested more than {max} deep (at byte {offset})")]
    ArrayTooDeep {
        /// The key holding the array.
        key: String,
        /// The limit.
        max: usize,
        /// Where the too-deep array starts.
        offset: u64,
    },

    /// The same metadata key twice.
    #[error("metadata key '{key}' appears twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },

    /// `general.alignment` that is zero or not a power of two.
    #[error("general.alignment is {value}; it must be a power of two")]
    BadAlignment {
        /// The alignment found.
        value: u64,
    },

    /// The same tensor name twice.
    #[error("tensor '{name}' appears twice")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
    },

    /// A tensor name longer than ggml accepts (written files must stay loadable by llama.cpp).
    #[error("tensor name '{name}' is {len} bytes long; ggml allows at most {max}")]
    TensorNameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A tensor asked for by name that the file does not have.
    #[error("tensor '{name}' is missing from the GGUF file")]
    MissingTensor {
        /// The name asked for.
        name: String,
    },

    /// More than [`crate::formats::MAX_DIMS`] dimensions.
    #[error("tensor '{tensor}' has {n_dims} dimensions; GGUF allows at most 4")]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// The number of dimensions as read.
        n_dims: u32,
    },

    /// Dimensions whose element count or byte size does not fit in an `i64`.
    #[error("tensor '{tensor}' has dimensions {dims:?} whose product overflows")]
    DimsOverflow {
        /// The tensor.
        tensor: String,
        /// Its dimensions, in GGUF order.
        dims: Vec<u64>,
    },

    /// A tensor type id that ggml does not define.
    #[error(
        "tensor '{tensor}' has unknown type id {id} \
         (the file is corrupt or needs a newer reader)"
    )]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The type id as read.
        id: u32,
    },

    /// A first dimension that is not a whole number of quantization blocks.
    #[error(
        "tensor '{tensor}' of type {ty} has a first dimension of {ne0}, \
         not a multiple of the block size {block}"
    )]
    RowNotBlockAligned {
        /// The tensor.
        tensor: String,
        /// Its type name.
        ty: &'static str,
        /// The first (contiguous) dimension.
        ne0: u64,
        /// The type's block size in elements.
        block: u64,
    },

    /// A tensor data offset that is not a multiple of the file's alignment.
    #[error(
        "tensor '{tensor}' has data offset {offset}, not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset, relative to the start of the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },

    /// Tensor data that would run past the end of the file.
    #[error(
        "tensor '{tensor}' data (bytes {start}..{end}) runs past the end of the file \
         ({file_len} bytes; the file may be incomplete: download it again)"
    )]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// Absolute start of its data (saturated at `u64::MAX`).
        start: u64,
        /// Absolute end of its data (saturated at `u64::MAX`).
        end: u64,
        /// The length of the bytes given.
        file_len: u64,
    },

    /// A tensor's bytes could not be read from where the file is (a browser `File` that
    /// changed or was removed while it was read, a failed read).
    #[error(
        "reading tensor '{tensor}' failed: {reason} (is the model file still there, unchanged?)"
    )]
    TensorRead {
        /// The tensor.
        tensor: String,
        /// What the reader said.
        reason: String,
    },

    /// A tensor type that ggml defines but afinador cannot decode.
    #[error(
        "{}, which afinador cannot read yet (it reads {}; re-quantize the model with \
         llama-quantize to one of them)",
        unsupported_subject(.ty, .tensor),
        super::GgmlType::supported_names()
    )]
    UnsupportedType {
        /// The type name ("IQ2_XS").
        ty: &'static str,
        /// The tensor, or empty when not known (a bare `dequantize` call).
        tensor: String,
    },

    /// A tensor type afinador reads but cannot write (no quantizer for it).
    #[error(
        "afinador cannot write tensor type {ty}{} (it writes {})",
        in_tensor(tensor),
        super::GgmlType::encodable_names()
    )]
    CannotEncode {
        /// The type name ("Q6_K").
        ty: &'static str,
        /// The tensor, or empty when not known (a bare `quantize` call).
        tensor: String,
    },

    /// A metadata key that is required but absent.
    #[error("metadata key '{key}' is missing from the GGUF file")]
    MissingKey {
        /// The key.
        key: String,
    },

    /// A metadata value of the wrong type.
    #[error("metadata key '{key}' is of type {found}, expected {expected}")]
    WrongMetaType {
        /// The key.
        key: String,
        /// What the caller wanted ("an unsigned integer").
        expected: &'static str,
        /// What the file has ("string").
        found: &'static str,
    },

    /// An integer metadata value that does not fit the type asked for.
    #[error("metadata key '{key}' has value {value}, which does not fit in {expected}")]
    MetaOutOfRange {
        /// The key.
        key: String,
        /// The type asked for ("u32").
        expected: &'static str,
        /// The value, formatted.
        value: String,
    },

    /// Raw data whose length does not match its type and element count.
    #[error(
        "{ty} data for {n_elements} elements must be {expected} bytes, got {found}{}",
        in_tensor(tensor)
    )]
    SizeMismatch {
        /// The type name.
        ty: &'static str,
        /// The tensor, or empty when not known.
        tensor: String,
        /// The element count.
        n_elements: u64,
        /// The byte length the type and count imply.
        expected: u64,
        /// The byte length given.
        found: u64,
    },

    /// An element count that is not a whole number of blocks.
    #[error(
        "{ty} stores blocks of {block} elements; {n_elements} elements is not a whole number of blocks{}",
        in_tensor(tensor)
    )]
    NotBlockMultiple {
        /// The type name.
        ty: &'static str,
        /// The tensor, or empty when not known.
        tensor: String,
        /// The element count.
        n_elements: u64,
        /// The block size.
        block: u64,
    },
}

impl GgufError {
    /// Names the tensor in errors raised by code that only saw its bytes (`dequantize`).
    pub fn in_tensor(mut self, name: &str) -> Self {
        match &mut self {
            Self::UnsupportedType { tensor, .. }
            | Self::CannotEncode { tensor, .. }
            | Self::SizeMismatch { tensor, .. }
            | Self::NotBlockMultiple { tensor, .. }
                if tensor.is_empty() =>
            {
                name.clone_into(tensor);
            }
            _ => {}
        }
        self
    }
}

fn unsupported_subject(ty: &str, tensor: &str) -> String {
    if tensor.is_empty() {
        format!("tensor type {ty}")
    } else {
        format!("tensor '{tensor}' has type {ty}")
    }
}

fn in_tensor(tensor: &str) -> String {
    if tensor.is_empty() {
        String::new()
    } else {
        format!(" in tensor '{tensor}'")
    }
}
