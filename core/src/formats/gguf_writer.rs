//! GGUF v3 writer: builds a whole file in memory.
//!
//! Used by the tests, by `make-tiny-model`, and by merge/export. Tensors are laid out in the
//! order they were added, each at an offset that is a multiple of the alignment, each padded to
//! it (as llama.cpp's writer does), so the result loads in llama.cpp as well as here.

use std::collections::HashSet;

use super::gguf::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_TENSOR_NAME, TensorInfo, align_up,
};
use super::metadata::KEY_ALIGNMENT;
use super::{GgmlType, GgufError, MetaArray, MetaValue, Metadata, quant};

/// The GGUF version the writer produces.
pub const GGUF_WRITE_VERSION: u32 = 3;

/// Builds a GGUF v3 file in memory: add metadata and tensors, then call
/// [`GgufWriter::to_bytes`].
#[derive(Debug, Clone)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<(TensorInfo, Vec<u8>)>,
    names: HashSet<String>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty file with the default alignment (32).
    pub fn new() -> Self {
        Self {
            metadata: Metadata::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// The metadata added so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The data alignment that [`GgufWriter::to_bytes`] will use.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Sets the data alignment, writing it as `general.alignment` (a `u32` power of two).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self, GgufError> {
        if !alignment.is_power_of_two() {
            return Err(GgufError::BadAlignment {
                value: alignment.into(),
            });
        }
        self.metadata.set(KEY_ALIGNMENT, alignment);
        self.alignment = alignment.into();
        Ok(self)
    }

    /// Adds a metadata entry of any type (`"llama"`, `576u32`, `vec!["a", "b"]`,
    /// `MetaArray::Array(..)`). A repeated key is a [`GgufError::DuplicateKey`];
    /// `general.alignment` must be a `u32` power of two.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetaValue>,
    ) -> Result<&mut Self, GgufError> {
        let key = key.into();
        let value = value.into();
        if key == KEY_ALIGNMENT {
            let MetaValue::U32(alignment) = value else {
                return Err(GgufError::WrongMetaType {
                    key,
                    expected: "u32",
                    found: value.type_name(),
                });
            };
            if !alignment.is_power_of_two() {
                return Err(GgufError::BadAlignment {
                    value: alignment.into(),
                });
            }
            self.alignment = alignment.into();
        }
        if let MetaValue::Array(array) = &value
            && array_depth(array) > MAX_ARRAY_DEPTH
        {
            return Err(GgufError::ArrayTooDeep {
                key,
                max: MAX_ARRAY_DEPTH,
                offset: 0,
            });
        }
        self.metadata.insert(key, value)?;
        Ok(self)
    }

    /// Adds a tensor with its raw data (already in `ty`'s layout). `dims` are in GGUF order
    /// (`dims[0]` contiguous); the data length must match them exactly. Any known type may be
    /// written, decodable by afinador or not (export copies tensors through unchanged).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        if name.len() > MAX_TENSOR_NAME {
            return Err(GgufError::TensorNameTooLong {
                len: name.len(),
                name,
                max: MAX_TENSOR_NAME,
            });
        }
        if self.names.contains(&name) {
            return Err(GgufError::DuplicateTensor { name });
        }
        let info = TensorInfo::new(name, dims.to_vec(), ty, 0)?;
        if info.n_bytes != data.len() as u64 {
            return Err(GgufError::SizeMismatch {
                ty: ty.name(),
                tensor: info.name,
                n_elements: info.n_elements,
                expected: info.n_bytes,
                found: data.len() as u64,
            });
        }
        self.names.insert(info.name.clone());
        self.tensors.push((info, data));
        Ok(self)
    }

    /// Adds a tensor from f32 values, encoding them as `ty` with [`quant::quantize`] (F32, F16,
    /// BF16, Q8_0, Q4_0, Q4_1, Q4_K or Q6_K; the k-quants need `dims[0]` a multiple of 256).
    pub fn add_tensor_f32(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        values: &[f32],
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        let data = quant::quantize(ty, values).map_err(|e| e.in_tensor(&name))?;
        self.add_tensor(name, dims, ty, data)
    }

    /// The whole file: header, metadata, tensor infos, padding, and each tensor's data at an
    /// aligned offset.
    pub fn to_bytes(&self) -> Vec<u8> {
        let a = self.alignment;
        // Offsets relative to the data section.
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut data_len = 0u64;
        for (info, _) in &self.tensors {
            offsets.push(data_len);
            data_len = align_up(data_len + info.n_bytes, a);
        }

        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        put(&mut out, GGUF_WRITE_VERSION.to_le_bytes());
        put(&mut out, (self.tensors.len() as u64).to_le_bytes());
        put(&mut out, (self.metadata.len() as u64).to_le_bytes());
        for (key, value) in self.metadata.iter() {
            put_str(&mut out, key);
            put(&mut out, (value.value_type() as u32).to_le_bytes());
            put_value(&mut out, value);
        }
        for ((info, _), &offset) in self.tensors.iter().zip(&offsets) {
            put_str(&mut out, &info.name);
            put(&mut out, (info.dims.len() as u32).to_le_bytes());
            for &d in &info.dims {
                put(&mut out, d.to_le_bytes());
            }
            put(&mut out, info.ty.id().to_le_bytes());
            put(&mut out, offset.to_le_bytes());
        }
        let data_start = align_up(out.len() as u64, a) as usize;
        out.reserve_exact(data_start - out.len() + data_len as usize);
        out.resize(data_start, 0);
        for ((_, data), &offset) in self.tensors.iter().zip(&offsets) {
            out.resize(data_start + offset as usize, 0);
            out.extend_from_slice(data);
        }
        out.resize(data_start + data_len as usize, 0);
        out
    }
}

/// Nesting depth of an array: 1 for an array of scalars or strings, at least 2 for an array of
/// arrays (even an empty one: the reader limits the element type).
fn array_depth(array: &MetaArray) -> usize {
    match array {
        MetaArray::Array(v) => 1 + v.iter().map(array_depth).max().unwrap_or(1),
        _ => 1,
    }
}

fn put<const N: usize>(out: &mut Vec<u8>, bytes: [u8; N]) {
    out.extend_from_slice(&bytes);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, (s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U8(v) => put(out, v.to_le_bytes()),
        MetaValue::I8(v) => put(out, v.to_le_bytes()),
        MetaValue::U16(v) => put(out, v.to_le_bytes()),
        MetaValue::I16(v) => put(out, v.to_le_bytes()),
        MetaValue::U32(v) => put(out, v.to_le_bytes()),
        MetaValue::I32(v) => put(out, v.to_le_bytes()),
        MetaValue::U64(v) => put(out, v.to_le_bytes()),
        MetaValue::I64(v) => put(out, v.to_le_bytes()),
        MetaValue::F32(v) => put(out, v.to_le_bytes()),
        MetaValue::F64(v) => put(out, v.to_le_bytes()),
        MetaValue::Bool(v) => out.push(u8::from(*v)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, array: &MetaArray) {
    put(out, (array.elem_type() as u32).to_le_bytes());
    put(out, (array.len() as u64).to_le_bytes());
    fn all<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], f: fn(T) -> [u8; N]) {
        for &x in v {
            put(out, f(x));
        }
    }
    match array {
        MetaArray::U8(v) => out.extend_from_slice(v),
        MetaArray::I8(v) => all(out, v, i8::to_le_bytes),
        MetaArray::U16(v) => all(out, v, u16::to_le_bytes),
        MetaArray::I16(v) => all(out, v, i16::to_le_bytes),
        MetaArray::U32(v) => all(out, v, u32::to_le_bytes),
        MetaArray::I32(v) => all(out, v, i32::to_le_bytes),
        MetaArray::U64(v) => all(out, v, u64::to_le_bytes),
        MetaArray::I64(v) => all(out, v, i64::to_le_bytes),
        MetaArray::F32(v) => all(out, v, f32::to_le_bytes),
        MetaArray::F64(v) => all(out, v, f64::to_le_bytes),
        MetaArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(out, s)),
        MetaArray::Array(v) => v.iter().for_each(|a| put_array(out, a)),
    }
}
