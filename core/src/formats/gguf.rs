//! GGUF v2/v3 reader over an in-memory byte slice.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the
//! metadata entries (string key, u32 value type, value), the tensor infos (string name, u32
//! n_dims, u64 dims, u32 ggml type, u64 offset), padding to `general.alignment`, then the tensor
//! data. Strings are a u64 byte length and UTF-8 bytes, arrays a u32 element type, a u64 count and
//! the elements.
//!
//! The parser never panics, never reads out of bounds and never allocates more than a small
//! multiple of the input's size, whatever the bytes: every count and length is checked against
//! the bytes that remain before anything is reserved for it, and what is reserved up front is
//! capped besides.

use std::borrow::Cow;
use std::collections::HashMap;

use super::metadata::{KEY_ALIGNMENT, ValueType};
use super::{GgmlType, GgufError, MetaArray, MetaValue, Metadata, quant};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// The deepest nesting of arrays of arrays the reader accepts.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// The longest tensor name ggml accepts, in bytes (`GGML_MAX_NAME` less the NUL).
pub const MAX_TENSOR_NAME: usize = 63;

/// The most elements reserved up front for a list whose count comes from the file; a longer list
/// grows as its elements are actually read, so a corrupt count cannot reserve much memory.
const MAX_PREALLOC: usize = 1 << 16;
/// The fewest bytes one metadata entry takes: key length, value type, a one-byte value.
const MIN_KV_SIZE: usize = 8 + 4 + 1;
/// The fewest bytes one tensor info takes: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_SIZE: usize = 8 + 4 + 4 + 8;

/// One tensor's description from the file header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name ("blk.0.attn_q.weight").
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is the contiguous one (ggml's `ne[0]`).
    pub dims: Vec<u64>,
    /// The element type.
    pub ty: GgmlType,
    /// Offset of its data from the start of the data section ([`Gguf::data_offset`]).
    pub offset: u64,
    /// The number of elements (the product of `dims`).
    pub n_elements: u64,
    /// The size of its data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Checks a tensor's shape against its type and computes its element count and byte size.
    ///
    /// Errors: more than [`MAX_DIMS`] dimensions, a product (or byte size) that overflows an
    /// `i64`, or a first dimension that is not a whole number of blocks.
    pub fn new(
        name: impl Into<String>,
        dims: Vec<u64>,
        ty: GgmlType,
        offset: u64,
    ) -> Result<TensorInfo, GgufError> {
        let name = name.into();
        if dims.len() > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                n_dims: u32::try_from(dims.len()).unwrap_or(u32::MAX),
            });
        }
        const I64_MAX: u64 = i64::MAX as u64;
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|_| d <= I64_MAX))
            .filter(|&n| n <= I64_MAX);
        let Some(n_elements) = n_elements else {
            return Err(GgufError::DimsOverflow { tensor: name, dims });
        };
        let ne0 = dims.first().copied().unwrap_or(1);
        if !ne0.is_multiple_of(ty.block_size()) {
            return Err(GgufError::RowNotBlockAligned {
                tensor: name,
                ty: ty.name(),
                ne0,
                block: ty.block_size(),
            });
        }
        let Some(n_bytes) = ty.bytes_for(n_elements).filter(|&b| b <= I64_MAX) else {
            return Err(GgufError::DimsOverflow { tensor: name, dims });
        };
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_elements,
            n_bytes,
        })
    }
}

/// A parsed GGUF header: metadata, tensor infos and where the tensor data starts.
///
/// It owns its metadata and tensor infos but not the tensor data: pass the file's bytes to
/// [`Gguf::tensor_bytes`] to borrow a tensor's data.
#[derive(Debug, Clone)]
pub struct Gguf {
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl Gguf {
    /// Parses a GGUF v2 or v3 file held in memory, checking every tensor's layout, alignment and
    /// bounds against `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        Self::parse_header(bytes, bytes.len() as u64)
    }

    /// Parses the metadata and tensor table from the start of a file of `file_len` bytes
    /// (`head` may stop anywhere after the table; a [`GgufError::Truncated`] says it stopped
    /// too early), checking every tensor's bounds against `file_len`: for reading the tensors
    /// one at a time ([`TensorSource`]).
    pub fn parse_header(head: &[u8], file_len: u64) -> Result<Gguf, GgufError> {
        let bytes = head;
        let mut r = Reader {
            buf: bytes,
            pos: 0,
            file_len,
        };
        check_magic(bytes)?;
        r.pos = GGUF_MAGIC.len();
        let version = r.u32().ctx(|| "the GGUF version".into())?;
        check_version(version)?;
        let n_tensors = r
            .count(MIN_TENSOR_INFO_SIZE)
            .ctx(|| "the number of tensors".into())?;
        let n_kv = r
            .count(MIN_KV_SIZE)
            .ctx(|| "the number of metadata entries".into())?;

        let mut metadata = Metadata::with_capacity(n_kv.min(MAX_PREALLOC));
        for i in 0..n_kv {
            let key = r
                .string()
                .ctx(|| format!("the key of metadata entry {i}"))?;
            let value = read_value(&mut r, &key)?;
            metadata.insert(key, value)?;
        }

        let alignment = match metadata.get(KEY_ALIGNMENT) {
            None => DEFAULT_ALIGNMENT,
            Some(_) => u64::from(metadata.get_u32(KEY_ALIGNMENT)?),
        };
        if !alignment.is_power_of_two() {
            return Err(GgufError::BadAlignment { value: alignment });
        }

        let mut tensors = Vec::with_capacity(n_tensors.min(MAX_PREALLOC));
        let mut index = HashMap::with_capacity(n_tensors.min(MAX_PREALLOC));
        for i in 0..n_tensors {
            let info = read_tensor_info(&mut r, i)?;
            if index.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor { name: info.name });
            }
            tensors.push(info);
        }

        let data_offset = align_up(r.pos as u64, alignment);
        let gguf = Gguf {
            version,
            metadata,
            tensors,
            index,
            alignment,
            data_offset,
        };
        for info in &gguf.tensors {
            if !info.offset.is_multiple_of(alignment) {
                return Err(GgufError::MisalignedTensor {
                    tensor: info.name.clone(),
                    offset: info.offset,
                    alignment,
                });
            }
            gguf.tensor_range(info)
                .filter(|r| r.end <= file_len)
                .ok_or_else(|| gguf.out_of_bounds(info, file_len))?;
        }
        Ok(gguf)
    }

    /// Where `info`'s bytes lie in the file (`None` on overflow).
    pub fn tensor_range(&self, info: &TensorInfo) -> Option<std::ops::Range<u64>> {
        let start = self.data_offset.checked_add(info.offset)?;
        Some(start..start.checked_add(info.n_bytes)?)
    }

    fn out_of_bounds(&self, info: &TensorInfo, file_len: u64) -> GgufError {
        let range = self.tensor_range(info);
        GgufError::TensorOutOfBounds {
            tensor: info.name.clone(),
            start: range.as_ref().map_or(u64::MAX, |r| r.start),
            end: range.map_or(u64::MAX, |r| r.end),
            file_len,
        }
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata, in file order, with typed getters.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The model architecture (`general.architecture`, "llama").
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.metadata.architecture()
    }

    /// The data alignment (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The absolute byte offset where the tensor data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor called `name`, or [`GgufError::MissingTensor`].
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            name: name.to_owned(),
        })
    }

    /// Borrows a tensor's raw data from the file's bytes (the slice [`Gguf::parse`] read).
    pub fn tensor_bytes<'a>(
        &self,
        info: &TensorInfo,
        file: &'a [u8],
    ) -> Result<&'a [u8], GgufError> {
        self.tensor_range(info)
            .and_then(|r| Some(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?))
            .and_then(|r| file.get(r))
            .ok_or_else(|| self.out_of_bounds(info, file.len() as u64))
    }

    /// Decodes a tensor of a supported type to f32; an unsupported type is a
    /// [`GgufError::UnsupportedType`] naming the tensor.
    pub fn tensor_f32(&self, info: &TensorInfo, file: &[u8]) -> Result<Vec<f32>, GgufError> {
        if !info.ty.is_supported() {
            // Named before the bounds, as always.
            return self.decode_f32(info, &[]);
        }
        self.decode_f32(info, self.tensor_bytes(info, file)?)
    }

    /// Decodes the bytes of tensor `info` (as [`TensorSource::tensor`] gives them) to f32.
    pub fn decode_f32(&self, info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>, GgufError> {
        if !info.ty.is_supported() {
            return Err(GgufError::UnsupportedType {
                ty: info.ty.name(),
                tensor: info.name.clone(),
            });
        }
        let n = usize::try_from(info.n_elements).map_err(|_| GgufError::DimsOverflow {
            tensor: info.name.clone(),
            dims: info.dims.clone(),
        })?;
        quant::dequantize(info.ty, bytes, n).map_err(|e| e.in_tensor(&info.name))
    }
}

/// Where a model's tensor bytes come from, one tensor at a time: the whole file in memory or
/// mapped ([`WholeFile`]), or a reader of parts of it (a browser `File`, read slice by slice),
/// so a model is uploaded without ever being in memory whole.
pub trait TensorSource {
    /// The bytes of tensor `info` of `gguf`.
    fn tensor(&self, gguf: &Gguf, info: &TensorInfo) -> Result<Cow<'_, [u8]>, GgufError>;
}

/// A GGUF file's whole content as a [`TensorSource`].
pub struct WholeFile<'a>(pub &'a [u8]);

impl TensorSource for WholeFile<'_> {
    fn tensor(&self, gguf: &Gguf, info: &TensorInfo) -> Result<Cow<'_, [u8]>, GgufError> {
        gguf.tensor_bytes(info, self.0).map(Cow::Borrowed)
    }
}

/// Rounds `pos` up to a multiple of `alignment` (a power of two), saturating.
pub(crate) fn align_up(pos: u64, alignment: u64) -> u64 {
    pos.checked_next_multiple_of(alignment).unwrap_or(u64::MAX)
}

fn check_magic(bytes: &[u8]) -> Result<(), GgufError> {
    let head = &bytes[..bytes.len().min(4)];
    if head == GGUF_MAGIC {
        return Ok(());
    }
    if head.len() < 4 && GGUF_MAGIC.starts_with(head) {
        return Err(GgufError::Truncated {
            offset: bytes.len() as u64,
            what: "the magic bytes 'GGUF'".into(),
        });
    }
    Err(GgufError::NotGguf {
        found: head.escape_ascii().to_string(),
    })
}

fn check_version(version: u32) -> Result<(), GgufError> {
    let hint = match version {
        2 | 3 => return Ok(()),
        1 => {
            "version 1 is the 2023 pre-release format with 32-bit counts; \
             convert the model again with a current llama.cpp"
        }
        v if matches!(v.swap_bytes(), 1..=3) => {
            "the file is big-endian; afinador reads little-endian GGUF files \
             (convert it with llama.cpp's gguf-py)"
        }
        _ => "afinador reads GGUF versions 2 and 3; the file is corrupt or from a newer format",
    };
    Err(GgufError::UnsupportedVersion { version, hint })
}

fn read_value(r: &mut Reader<'_>, key: &str) -> Result<MetaValue, GgufError> {
    let ty = read_value_type(r, key)?;
    let what = || format!("the value of metadata key '{key}'");
    Ok(match ty {
        ValueType::U8 => MetaValue::U8(r.le().map(u8::from_le_bytes).ctx(what)?),
        ValueType::I8 => MetaValue::I8(r.le().map(i8::from_le_bytes).ctx(what)?),
        ValueType::U16 => MetaValue::U16(r.le().map(u16::from_le_bytes).ctx(what)?),
        ValueType::I16 => MetaValue::I16(r.le().map(i16::from_le_bytes).ctx(what)?),
        ValueType::U32 => MetaValue::U32(r.le().map(u32::from_le_bytes).ctx(what)?),
        ValueType::I32 => MetaValue::I32(r.le().map(i32::from_le_bytes).ctx(what)?),
        ValueType::U64 => MetaValue::U64(r.le().map(u64::from_le_bytes).ctx(what)?),
        ValueType::I64 => MetaValue::I64(r.le().map(i64::from_le_bytes).ctx(what)?),
        ValueType::F32 => MetaValue::F32(r.le().map(f32::from_le_bytes).ctx(what)?),
        ValueType::F64 => MetaValue::F64(r.le().map(f64::from_le_bytes).ctx(what)?),
        ValueType::Bool => MetaValue::Bool(r.le::<1>().map(|[b]| b != 0).ctx(what)?),
        ValueType::String => MetaValue::String(r.string().ctx(what)?),
        ValueType::Array => MetaValue::Array(read_array(r, key, 1)?),
    })
}

fn read_value_type(r: &mut Reader<'_>, key: &str) -> Result<ValueType, GgufError> {
    let offset = r.pos as u64;
    let id = r
        .u32()
        .ctx(|| format!("the value type of metadata key '{key}'"))?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_owned(),
        id,
        offset,
    })
}

/// Reads an array at nesting `depth` (1 for an array that is itself the value).
fn read_array(r: &mut Reader<'_>, key: &str, depth: usize) -> Result<MetaArray, GgufError> {
    let start = r.pos as u64;
    let ty = read_value_type(r, key)?;
    if ty == ValueType::Array && depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::ArrayTooDeep {
            key: key.to_owned(),
            max: MAX_ARRAY_DEPTH,
            offset: start,
        });
    }
    let n = r
        .count(ty.min_size())
        .ctx(|| format!("the length of the array in metadata key '{key}'"))?;
    let what = || format!("the value of metadata key '{key}'");
    Ok(match ty {
        ValueType::U8 => MetaArray::U8(r.take(n).ctx(what)?.to_vec()),
        ValueType::I8 => MetaArray::I8(r.vec(n, i8::from_le_bytes).ctx(what)?),
        ValueType::U16 => MetaArray::U16(r.vec(n, u16::from_le_bytes).ctx(what)?),
        ValueType::I16 => MetaArray::I16(r.vec(n, i16::from_le_bytes).ctx(what)?),
        ValueType::U32 => MetaArray::U32(r.vec(n, u32::from_le_bytes).ctx(what)?),
        ValueType::I32 => MetaArray::I32(r.vec(n, i32::from_le_bytes).ctx(what)?),
        ValueType::U64 => MetaArray::U64(r.vec(n, u64::from_le_bytes).ctx(what)?),
        ValueType::I64 => MetaArray::I64(r.vec(n, i64::from_le_bytes).ctx(what)?),
        ValueType::F32 => MetaArray::F32(r.vec(n, f32::from_le_bytes).ctx(what)?),
        ValueType::F64 => MetaArray::F64(r.vec(n, f64::from_le_bytes).ctx(what)?),
        ValueType::Bool => MetaArray::Bool(r.vec(n, |[b]: [u8; 1]| b != 0).ctx(what)?),
        ValueType::String => {
            let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
            for _ in 0..n {
                v.push(r.string().ctx(what)?);
            }
            MetaArray::String(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
            for _ in 0..n {
                v.push(read_array(r, key, depth + 1)?);
            }
            MetaArray::Array(v)
        }
    })
}

fn read_tensor_info(r: &mut Reader<'_>, i: usize) -> Result<TensorInfo, GgufError> {
    let name = r.string().ctx(|| format!("the name of tensor {i}"))?;
    let n_dims = r
        .u32()
        .ctx(|| format!("the number of dimensions of tensor '{name}'"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            tensor: name,
            n_dims,
        });
    }
    let dims = r
        .vec(n_dims as usize, u64::from_le_bytes)
        .ctx(|| format!("the dimensions of tensor '{name}'"))?;
    let id = r.u32().ctx(|| format!("the type of tensor '{name}'"))?;
    let Some(ty) = GgmlType::from_id(id) else {
        return Err(GgufError::UnknownTensorType { tensor: name, id });
    };
    let offset = r
        .u64()
        .ctx(|| format!("the data offset of tensor '{name}'"))?;
    TensorInfo::new(name, dims, ty, offset)
}

/// A bounds-checked little-endian cursor over the head of a file of `file_len` bytes (the whole
/// file when `buf.len() == file_len`).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Lengths and counts are judged against the file: one that fits the file but runs past the
    /// head is a head that stopped too early ([`Fail::Eof`], then [`GgufError::Truncated`]),
    /// not a corrupt file.
    file_len: u64,
}

/// A failed read, before the caller says what it was reading (see [`Ctx::ctx`]).
enum Fail {
    Eof {
        file_len: usize,
    },
    PastEnd {
        start: usize,
        len: u64,
        remaining: usize,
    },
    Utf8 {
        start: usize,
    },
    Count {
        start: usize,
        count: u64,
        remaining: usize,
    },
}

impl<'a> Reader<'a> {
    /// Bytes left in the file after the cursor (past the end of the head too).
    #[inline]
    fn remaining(&self) -> usize {
        let left = self.file_len.saturating_sub(self.pos as u64);
        usize::try_from(left).unwrap_or(usize::MAX)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        let eof = Fail::Eof {
            file_len: self.buf.len(),
        };
        let end = self.pos.checked_add(n).ok_or(eof)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Fail::Eof {
            file_len: self.buf.len(),
        })?;
        self.pos = end;
        Ok(bytes)
    }

    #[inline]
    fn le<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, Fail> {
        self.le().map(u32::from_le_bytes)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, Fail> {
        self.le().map(u64::from_le_bytes)
    }

    /// `n` values of `N` bytes each, decoded with `f`.
    fn vec<T, const N: usize>(&mut self, n: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>, Fail> {
        let len = n.checked_mul(N).ok_or(Fail::Eof {
            file_len: self.buf.len(),
        })?;
        let (chunks, _) = self.take(len)?.as_chunks::<N>();
        Ok(chunks.iter().map(|&c| f(c)).collect())
    }

    /// A u64 byte length and that many bytes of UTF-8.
    #[inline]
    fn string(&mut self) -> Result<String, Fail> {
        let start = self.pos;
        let len = self.u64()?;
        let remaining = self.remaining();
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= remaining)
            .ok_or(Fail::PastEnd {
                start,
                len,
                remaining,
            })?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Fail::Utf8 { start })
    }

    /// A u64 count of items that each take at least `min_size` bytes, checked against the bytes
    /// left so that no absurd capacity is ever reserved.
    fn count(&mut self, min_size: usize) -> Result<usize, Fail> {
        let start = self.pos;
        let count = self.u64()?;
        let remaining = self.remaining();
        usize::try_from(count)
            .ok()
            .filter(|&n| n.checked_mul(min_size).is_some_and(|b| b <= remaining))
            .ok_or(Fail::Count {
                start,
                count,
                remaining,
            })
    }
}

/// Turns a [`Fail`] into a [`GgufError`] that says what was being read.
trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, GgufError>;
}

impl<T> Ctx<T> for Result<T, Fail> {
    #[inline]
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, GgufError> {
        self.map_err(|fail| match fail {
            Fail::Eof { file_len } => GgufError::Truncated {
                offset: file_len as u64,
                what: what(),
            },
            Fail::PastEnd {
                start,
                len,
                remaining,
            } => GgufError::LengthPastEnd {
                what: what(),
                offset: start as u64,
                len,
                remaining: remaining as u64,
            },
            Fail::Utf8 { start } => GgufError::InvalidUtf8 {
                what: what(),
                offset: start as u64,
            },
            Fail::Count {
                start,
                count,
                remaining,
            } => GgufError::CountTooLarge {
                what: what(),
                offset: start as u64,
                count,
                remaining: remaining as u64,
            },
        })
    }
}
