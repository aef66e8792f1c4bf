//! The tensor encodings afinador decodes: F32, F16, BF16, the ggml blocks Q4_0, Q4_1, Q5_0,
//! Q5_1, Q8_0, and the k-quants of [`super::kquant`].
//!
//! Block layouts (ggml-common.h), 32 elements per block, little-endian:
//!
//! | type | bytes | layout                                       | element `j`      |
//! |------|-------|----------------------------------------------|------------------|
//! | Q4_0 | 18    | f16 `d`, 16 bytes `qs`                       | `d * (q - 8)`    |
//! | Q4_1 | 20    | f16 `d`, f16 `m`, 16 bytes `qs`              | `d * q + m`      |
//! | Q5_0 | 22    | f16 `d`, u32 `qh`, 16 bytes `qs`             | `d * (q - 16)`   |
//! | Q5_1 | 24    | f16 `d`, f16 `m`, u32 `qh`, 16 bytes `qs`    | `d * q + m`      |
//! | Q8_0 | 34    | f16 `d`, 32 × i8 `qs`                        | `d * qs[j]`      |
//!
//! In the 4- and 5-bit blocks element `j` (0..16) is the low nibble of `qs[j]` and element
//! `j + 16` its high nibble; the 5-bit ones add bit `j` of `qh` as the value 16. Decoding is
//! bit-exact with `gguf.quants.dequantize` (`tests/data/quant_reference.json`). The quantizers
//! (Q4_0, Q4_1, Q8_0, and [`super::kquant`]'s Q4_K and Q6_K) are ggml's reference ones
//! (`quantize_row_q4_0_ref` and friends in ggml-quants.c) and produce the same bytes for finite
//! inputs.

use half::f16;

use super::kquant::{self, QK_K};
use super::{GgmlType, GgufError};

/// Elements per Q4_0 block.
pub const QK4_0: usize = 32;
/// Elements per Q4_1 block.
pub const QK4_1: usize = 32;
/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;

/// A Q4_0 block: 32 elements `d * (q - 8)`, q in 0..16.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles: element `j` low, element `j + 16` high.
    pub qs: [u8; QK4_0 / 2],
}

/// A Q4_1 block: 32 elements `d * q + m`, q in 0..16.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Nibbles: element `j` low, element `j + 16` high.
    pub qs: [u8; QK4_1 / 2],
}

/// A Q8_0 block: 32 elements `d * q`, q an i8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK8_0],
}

fn f16_at(bytes: &[u8], i: usize) -> f16 {
    f16::from_le_bytes([bytes[i], bytes[i + 1]])
}

/// ggml's reference 4-bit rounding: truncate toward zero as C's `(int8_t)` cast does, clamp to
/// 0..=15 (the clamp at 0 only matters for non-finite inputs, where C is undefined).
fn nibble(x: f32) -> u8 {
    (x as i8).clamp(0, 15) as u8
}

impl BlockQ4_0 {
    /// Encoded size in bytes.
    pub const BYTES: usize = 18;

    /// Decodes the block's bytes.
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[2..]);
        Self {
            d: f16_at(b, 0),
            qs,
        }
    }

    /// Encodes the block.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[..2].copy_from_slice(&self.d.to_le_bytes());
        b[2..].copy_from_slice(&self.qs);
        b
    }

    /// Decodes the 32 elements.
    pub fn dequantize(&self, out: &mut [f32; QK4_0]) {
        let d = self.d.to_f32();
        let (lo, hi) = out.split_at_mut(16);
        for ((&q, l), h) in self.qs.iter().zip(lo).zip(hi) {
            *l = f32::from(i16::from(q & 0x0F) - 8) * d;
            *h = f32::from(i16::from(q >> 4) - 8) * d;
        }
    }

    /// ggml's `quantize_row_q4_0_ref`: `d = max / -8` where `max` is the element of largest
    /// magnitude (the first one, with its sign), `q = min(15, (int8)(x / d + 8.5))`.
    pub fn quantize(x: &[f32; QK4_0]) -> Self {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = nibble(x[j] * id + 8.5) | (nibble(x[j + 16] * id + 8.5) << 4);
        }
        Self {
            d: f16::from_f32(d),
            qs,
        }
    }
}

impl BlockQ4_1 {
    /// Encoded size in bytes.
    pub const BYTES: usize = 20;

    /// Decodes the block's bytes.
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[4..]);
        Self {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            qs,
        }
    }

    /// Encodes the block.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[..2].copy_from_slice(&self.d.to_le_bytes());
        b[2..4].copy_from_slice(&self.m.to_le_bytes());
        b[4..].copy_from_slice(&self.qs);
        b
    }

    /// Decodes the 32 elements.
    pub fn dequantize(&self, out: &mut [f32; QK4_1]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let (lo, hi) = out.split_at_mut(16);
        for ((&q, l), h) in self.qs.iter().zip(lo).zip(hi) {
            *l = f32::from(q & 0x0F) * d + m;
            *h = f32::from(q >> 4) * d + m;
        }
    }

    /// ggml's `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `m = min`,
    /// `q = min(15, (int8)((x - min) / d + 0.5))`.
    pub fn quantize(x: &[f32; QK4_1]) -> Self {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = nibble((x[j] - min) * id + 0.5) | (nibble((x[j + 16] - min) * id + 0.5) << 4);
        }
        Self {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs,
        }
    }
}

impl BlockQ8_0 {
    /// Encoded size in bytes.
    pub const BYTES: usize = 34;

    /// Decodes the block's bytes.
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        let mut qs = [0i8; QK8_0];
        for (q, &byte) in qs.iter_mut().zip(&b[2..]) {
            *q = byte as i8;
        }
        Self {
            d: f16_at(b, 0),
            qs,
        }
    }

    /// Encodes the block.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[..2].copy_from_slice(&self.d.to_le_bytes());
        for (byte, &q) in b[2..].iter_mut().zip(&self.qs) {
            *byte = q as u8;
        }
        b
    }

    /// Decodes the 32 elements.
    pub fn dequantize(&self, out: &mut [f32; QK8_0]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = f32::from(q) * d;
        }
    }

    /// ggml's `quantize_row_q8_0_ref`: `d = amax / 127`, `q = round(x / d)` (half away from zero).
    pub fn quantize(x: &[f32; QK8_0]) -> Self {
        let amax = x.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK8_0];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
        Self {
            d: f16::from_f32(d),
            qs,
        }
    }
}

/// Decodes a Q5_0 (22 bytes) or, with `min`, a Q5_1 (24 bytes) block: the 5-bit value of
/// element `j` is its nibble plus 16 when bit `j` of `qh` is set; Q5_0 gives `d * (q - 16)`,
/// Q5_1 `d * q + m`.
pub fn dequantize_q5(b: &[u8], min: bool, out: &mut [f32; 32]) {
    let d = f16_at(b, 0).to_f32();
    let (m, rest) = if min {
        (f16_at(b, 2).to_f32(), &b[4..])
    } else {
        (0.0, &b[2..])
    };
    let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let qs = &rest[4..20];
    for (j, o) in out.iter_mut().enumerate() {
        let nibble = (qs[j % 16] >> (4 * (j / 16))) & 0xF;
        let q = nibble | ((((qh >> j) & 1) as u8) << 4);
        *o = if min {
            d * f32::from(q) + m
        } else {
            d * f32::from(q as i8 - 16)
        };
    }
}

/// ggml's `ggml_compute_fp32_to_bf16`: round to nearest even, NaN forced quiet.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// bf16 bits to f32 (exact).
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Decodes every `B`-byte block of `bytes` into `N` values of `out` with `f`.
fn decode<const B: usize, const N: usize>(
    bytes: &[u8],
    out: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; N]),
) {
    for (b, o) in bytes
        .as_chunks::<B>()
        .0
        .iter()
        .zip(out.as_chunks_mut::<N>().0)
    {
        f(b, o);
    }
}

fn unsupported(ty: GgmlType) -> GgufError {
    GgufError::UnsupportedType {
        ty: ty.name(),
        tensor: String::new(),
    }
}

fn cannot_encode(ty: GgmlType) -> GgufError {
    GgufError::CannotEncode {
        ty: ty.name(),
        tensor: String::new(),
    }
}

/// Checks that `n_elements` of `ty` is a whole number of blocks taking exactly `n_bytes`.
fn check_size(ty: GgmlType, n_bytes: usize, n_elements: usize) -> Result<(), GgufError> {
    let n = n_elements as u64;
    let Some(expected) = ty.bytes_for(n) else {
        return Err(GgufError::NotBlockMultiple {
            ty: ty.name(),
            tensor: String::new(),
            n_elements: n,
            block: ty.block_size(),
        });
    };
    if expected != n_bytes as u64 {
        return Err(GgufError::SizeMismatch {
            ty: ty.name(),
            tensor: String::new(),
            n_elements: n,
            expected,
            found: n_bytes as u64,
        });
    }
    Ok(())
}

/// Decodes `n_elements` elements of type `ty` from `bytes` (which must be exactly their size).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, GgufError> {
    if !ty.is_supported() {
        return Err(unsupported(ty));
    }
    check_size(ty, bytes.len(), n_elements)?;
    let mut out = vec![0.0f32; n_elements];
    dequantize_row(ty, bytes, &mut out)?;
    Ok(out)
}

/// Decodes `out.len()` elements of type `ty` from `bytes` into `out`, without allocating.
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    if !ty.is_supported() {
        return Err(unsupported(ty));
    }
    check_size(ty, bytes.len(), out.len())?;
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<4>().0) {
                *o = f32::from_le_bytes(*c);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = f16::from_le_bytes(*c).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = bf16_bits_to_f32(u16::from_le_bytes(*c));
            }
        }
        GgmlType::Q4_0 => decode(bytes, out, |b, o: &mut [f32; QK4_0]| {
            BlockQ4_0::from_bytes(b).dequantize(o)
        }),
        GgmlType::Q4_1 => decode(bytes, out, |b, o: &mut [f32; QK4_1]| {
            BlockQ4_1::from_bytes(b).dequantize(o)
        }),
        GgmlType::Q8_0 => decode(bytes, out, |b, o: &mut [f32; QK8_0]| {
            BlockQ8_0::from_bytes(b).dequantize(o)
        }),
        GgmlType::Q5_0 => decode::<22, 32>(bytes, out, |b, o| dequantize_q5(b, false, o)),
        GgmlType::Q5_1 => decode::<24, 32>(bytes, out, |b, o| dequantize_q5(b, true, o)),
        GgmlType::Q2_K => decode::<84, QK_K>(bytes, out, kquant::dequantize_q2_k),
        GgmlType::Q3_K => decode::<110, QK_K>(bytes, out, kquant::dequantize_q3_k),
        GgmlType::Q4_K => decode::<144, QK_K>(bytes, out, kquant::dequantize_q4_k),
        GgmlType::Q5_K => decode::<176, QK_K>(bytes, out, kquant::dequantize_q5_k),
        GgmlType::Q6_K => decode::<210, QK_K>(bytes, out, kquant::dequantize_q6_k),
        _ => return Err(unsupported(ty)),
    }
    Ok(())
}

/// Encodes `x` as `ty` with ggml's reference quantizers (the types
/// [`GgmlType::can_encode`] accepts: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K).
/// `x.len()` must be a whole number of blocks.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, GgufError> {
    if !ty.can_encode() {
        return Err(cannot_encode(ty));
    }
    let n_bytes = ty
        .bytes_for(x.len() as u64)
        .ok_or(GgufError::NotBlockMultiple {
            ty: ty.name(),
            tensor: String::new(),
            n_elements: x.len() as u64,
            block: ty.block_size(),
        })?;
    let mut out = Vec::with_capacity(n_bytes as usize);
    match ty {
        GgmlType::F32 => x.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => x
            .iter()
            .for_each(|&v| out.extend(f16::from_f32(v).to_le_bytes())),
        GgmlType::BF16 => x
            .iter()
            .for_each(|&v| out.extend(f32_to_bf16_bits(v).to_le_bytes())),
        GgmlType::Q4_0 => blocks(x, &mut out, |b| BlockQ4_0::quantize(b).to_bytes()),
        GgmlType::Q4_1 => blocks(x, &mut out, |b| BlockQ4_1::quantize(b).to_bytes()),
        GgmlType::Q8_0 => blocks(x, &mut out, |b| BlockQ8_0::quantize(b).to_bytes()),
        GgmlType::Q4_K => blocks(x, &mut out, kquant::quantize_q4_k),
        GgmlType::Q6_K => blocks(x, &mut out, kquant::quantize_q6_k),
        _ => return Err(cannot_encode(ty)),
    }
    Ok(out)
}

/// Encodes every `K`-value block of `x` into `N` bytes of `out` with `f`.
fn blocks<const K: usize, const N: usize>(
    x: &[f32],
    out: &mut Vec<u8>,
    f: impl Fn(&[f32; K]) -> [u8; N],
) {
    for block in x.as_chunks::<K>().0 {
        out.extend(f(block));
    }
}
