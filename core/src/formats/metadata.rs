//! GGUF metadata: typed values, arrays, and an ordered key → value map with typed getters.

use std::borrow::Cow;
use std::collections::HashMap;

use super::GgufError;

/// The key naming the model architecture ("llama").
pub const KEY_ARCHITECTURE: &str = "general.architecture";
/// The key holding the data alignment (a `u32` power of two; 32 when absent).
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// One metadata value, of any GGUF value type.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// GGUF type 0.
    U8(u8),
    /// GGUF type 1.
    I8(i8),
    /// GGUF type 2.
    U16(u16),
    /// GGUF type 3.
    I16(i16),
    /// GGUF type 4.
    U32(u32),
    /// GGUF type 5.
    I32(i32),
    /// GGUF type 10.
    U64(u64),
    /// GGUF type 11.
    I64(i64),
    /// GGUF type 6.
    F32(f32),
    /// GGUF type 12.
    F64(f64),
    /// GGUF type 7 (one byte; any non-zero byte reads as `true`).
    Bool(bool),
    /// GGUF type 8 (UTF-8, length-prefixed).
    String(String),
    /// GGUF type 9: a typed array, possibly of arrays.
    Array(MetaArray),
}

/// A GGUF array: every element has the same type, kept in a typed `Vec` (a vocabulary of 49152
/// tokens is a `Vec<String>`, not 49152 boxed values). Arrays of arrays nest, each inner array
/// with its own element type.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaArray {
    /// Array of u8.
    U8(Vec<u8>),
    /// Array of i8.
    I8(Vec<i8>),
    /// Array of u16.
    U16(Vec<u16>),
    /// Array of i16.
    I16(Vec<i16>),
    /// Array of u32.
    U32(Vec<u32>),
    /// Array of i32.
    I32(Vec<i32>),
    /// Array of u64.
    U64(Vec<u64>),
    /// Array of i64.
    I64(Vec<i64>),
    /// Array of f32.
    F32(Vec<f32>),
    /// Array of f64.
    F64(Vec<f64>),
    /// Array of bool.
    Bool(Vec<bool>),
    /// Array of strings.
    String(Vec<String>),
    /// Array of arrays.
    Array(Vec<MetaArray>),
}

/// GGUF value type ids, as stored before each value and array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub(crate) fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The fewest bytes one value of this type takes in a file (a string is at least its u64
    /// length, an array at least its element type and length).
    pub(crate) fn min_size(self) -> usize {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

impl MetaValue {
    pub(crate) fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F32(_) => ValueType::F32,
            Self::F64(_) => ValueType::F64,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
        }
    }

    /// The value's type as a word for messages ("u32", "string", "array").
    pub fn type_name(&self) -> &'static str {
        type_name(self.value_type())
    }

    /// The value as an integer when it is of an integer type (not bool, not float).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl MetaArray {
    pub(crate) fn elem_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F32(_) => ValueType::F32,
            Self::F64(_) => ValueType::F64,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
        }
    }

    /// The element type as a word for messages ("i32", "string", "array").
    pub fn elem_type_name(&self) -> &'static str {
        type_name(self.elem_type())
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::U8 => "u8",
        ValueType::I8 => "i8",
        ValueType::U16 => "u16",
        ValueType::I16 => "i16",
        ValueType::U32 => "u32",
        ValueType::I32 => "i32",
        ValueType::U64 => "u64",
        ValueType::I64 => "i64",
        ValueType::F32 => "f32",
        ValueType::F64 => "f64",
        ValueType::Bool => "bool",
        ValueType::String => "string",
        ValueType::Array => "array",
    }
}

macro_rules! from_impls {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for MetaValue {
            fn from(v: $t) -> Self {
                MetaValue::$variant(v)
            }
        }
        impl From<Vec<$t>> for MetaValue {
            fn from(v: Vec<$t>) -> Self {
                MetaValue::Array(MetaArray::$variant(v))
            }
        }
        impl From<Vec<$t>> for MetaArray {
            fn from(v: Vec<$t>) -> Self {
                MetaArray::$variant(v)
            }
        }
    )*};
}

from_impls!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String,
);

impl From<&str> for MetaValue {
    fn from(v: &str) -> Self {
        MetaValue::String(v.to_owned())
    }
}

impl From<Vec<&str>> for MetaValue {
    fn from(v: Vec<&str>) -> Self {
        MetaValue::Array(MetaArray::String(
            v.into_iter().map(str::to_owned).collect(),
        ))
    }
}

impl From<MetaArray> for MetaValue {
    fn from(v: MetaArray) -> Self {
        MetaValue::Array(v)
    }
}

impl From<Vec<MetaArray>> for MetaValue {
    fn from(v: Vec<MetaArray>) -> Self {
        MetaValue::Array(MetaArray::Array(v))
    }
}

/// GGUF metadata: key → value pairs in file order, with a hash index for lookups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetaValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in file (insertion) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Adds an entry; a key already present is a [`GgufError::DuplicateKey`].
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetaValue>,
    ) -> Result<(), GgufError> {
        let key = key.into();
        if self.index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value.into()));
        Ok(())
    }

    /// Sets an entry, replacing the value in place when the key is present.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<MetaValue>) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value.into(),
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value.into()));
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_owned(),
        })
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let value = self.require(key)?;
        let Some(i) = value.as_integer() else {
            return Err(wrong_type(key, "an integer", value.type_name()));
        };
        T::try_from(i).map_err(|_| GgufError::MetaOutOfRange {
            key: key.to_owned(),
            expected,
            value: i.to_string(),
        })
    }

    /// An integer value of any integer type that fits in a `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, "u32")
    }

    /// An integer value of any integer type that fits in a `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, "u64")
    }

    /// A float value (f32, f64 narrowed to f32, or an integer converted).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match *self.require(key)? {
            MetaValue::F32(v) => Ok(v),
            MetaValue::F64(v) => Ok(v as f32),
            ref other => match other.as_integer() {
                Some(i) => Ok(i as f32),
                None => Err(wrong_type(key, "a number", other.type_name())),
            },
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            MetaValue::String(s) => Ok(s),
            other => Err(wrong_type(key, "a string", other.type_name())),
        }
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match *self.require(key)? {
            MetaValue::Bool(b) => Ok(b),
            ref other => Err(wrong_type(key, "a bool", other.type_name())),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&MetaArray, GgufError> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            other => Err(wrong_type(key, "an array", other.type_name())),
        }
    }

    /// An array of strings (`tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.get_array(key)? {
            MetaArray::String(v) => Ok(v),
            other => Err(wrong_array(key, "an array of strings", other)),
        }
    }

    /// An array of integers that all fit in an `i32` (`tokenizer.ggml.token_type`); borrowed
    /// when the file stores i32, converted from any other integer element type.
    pub fn get_i32_array(&self, key: &str) -> Result<Cow<'_, [i32]>, GgufError> {
        fn conv<T: Copy>(key: &str, v: &[T]) -> Result<Cow<'static, [i32]>, GgufError>
        where
            i32: TryFrom<T>,
            i128: From<T>,
        {
            v.iter()
                .map(|&x| {
                    i32::try_from(x).map_err(|_| GgufError::MetaOutOfRange {
                        key: key.to_owned(),
                        expected: "i32",
                        value: i128::from(x).to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Cow::Owned)
        }
        match self.get_array(key)? {
            MetaArray::I32(v) => Ok(Cow::Borrowed(v)),
            MetaArray::U8(v) => conv(key, v),
            MetaArray::I8(v) => conv(key, v),
            MetaArray::U16(v) => conv(key, v),
            MetaArray::I16(v) => conv(key, v),
            MetaArray::U32(v) => conv(key, v),
            MetaArray::U64(v) => conv(key, v),
            MetaArray::I64(v) => conv(key, v),
            other => Err(wrong_array(key, "an array of integers", other)),
        }
    }

    /// An array of floats (`tokenizer.ggml.scores`); borrowed when the file stores f32,
    /// narrowed from f64.
    pub fn get_f32_array(&self, key: &str) -> Result<Cow<'_, [f32]>, GgufError> {
        match self.get_array(key)? {
            MetaArray::F32(v) => Ok(Cow::Borrowed(v)),
            MetaArray::F64(v) => Ok(Cow::Owned(v.iter().map(|&x| x as f32).collect())),
            other => Err(wrong_array(key, "an array of floats", other)),
        }
    }

    /// The model architecture (`general.architecture`, "llama").
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str(KEY_ARCHITECTURE)
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &'static str) -> GgufError {
    GgufError::WrongMetaType {
        key: key.to_owned(),
        expected,
        found,
    }
}

fn wrong_array(key: &str, expected: &'static str, found: &MetaArray) -> GgufError {
    let found = match found.elem_type() {
        ValueType::U8 => "array of u8",
        ValueType::I8 => "array of i8",
        ValueType::U16 => "array of u16",
        ValueType::I16 => "array of i16",
        ValueType::U32 => "array of u32",
        ValueType::I32 => "array of i32",
        ValueType::U64 => "array of u64",
        ValueType::I64 => "array of i64",
        ValueType::F32 => "array of f32",
        ValueType::F64 => "array of f64",
        ValueType::Bool => "array of bool",
        ValueType::String => "array of string",
        ValueType::Array => "array of arrays",
    };
    wrong_type(key, expected, found)
}
