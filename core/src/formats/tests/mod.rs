//! Tests of the formats module: writer → reader round trips, every error, mutation fuzzing, the
//! quantized blocks, and the real SmolLM2 file.

mod errors;
mod fuzz;
mod quant_tests;
mod real_model;
mod reference;
mod roundtrip;

use super::*;

/// splitmix64: a small seeded generator, so every failure reproduces.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[lo, hi)`.
    pub(super) fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }
}

/// Metadata with every value type, arrays of every element type and nested arrays.
pub(super) fn all_metadata() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", "llama".into()),
        ("test.u8", 200u8.into()),
        ("test.i8", (-100i8).into()),
        ("test.u16", 60_000u16.into()),
        ("test.i16", (-30_000i16).into()),
        ("test.u32", 4_000_000_000u32.into()),
        ("test.i32", (-2_000_000_000i32).into()),
        ("test.u64", u64::MAX.into()),
        ("test.i64", i64::MIN.into()),
        ("test.f32", 1.5e-3f32.into()),
        ("test.f64", (-2.25e100f64).into()),
        ("test.bool", true.into()),
        ("test.string", "héllo, 世界".into()),
        ("test.empty_string", "".into()),
        ("test.arr.u8", vec![0u8, 1, 255].into()),
        ("test.arr.i8", vec![-128i8, 0, 127].into()),
        ("test.arr.u16", vec![1u16, 65_535].into()),
        ("test.arr.i16", vec![-32_768i16, 32_767].into()),
        ("test.arr.u32", vec![7u32, 8, 9].into()),
        ("test.arr.i32", vec![-1i32, 0, 1, 6].into()),
        ("test.arr.u64", vec![u64::MAX, 0].into()),
        ("test.arr.i64", vec![i64::MIN, i64::MAX].into()),
        ("test.arr.f32", vec![0.0f32, -1.25, 3.5e10].into()),
        ("test.arr.f64", vec![1e-300f64, -0.5].into()),
        ("test.arr.bool", vec![true, false, true].into()),
        ("test.arr.string", vec!["a", "", "ü<s>"].into()),
        ("test.arr.empty", MetaArray::F32(vec![]).into()),
        (
            "test.arr.nested",
            vec![
                MetaArray::I32(vec![1, 2]),
                MetaArray::String(vec!["x".into()]),
                MetaArray::Array(vec![MetaArray::Bool(vec![false]), MetaArray::U8(vec![])]),
                MetaArray::Array(vec![]),
            ]
            .into(),
        ),
    ]
}

/// The three tensors of the sample file: (name, dims, type).
pub(super) const SAMPLE_TENSORS: [(&str, &[u64], GgmlType); 3] = [
    ("blk.0.attn_norm.weight", &[7, 3], GgmlType::F16),
    ("blk.0.attn_q.weight", &[64, 2], GgmlType::Q4_1),
    ("token_embd.weight", &[32, 1, 3], GgmlType::Q8_0),
];

/// Deterministic values for a tensor of `n` elements.
pub(super) fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.f32_in(-2.0, 2.0)).collect()
}

/// A writer holding [`all_metadata`] and [`SAMPLE_TENSORS`].
pub(super) fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    for (key, value) in all_metadata() {
        w.add_metadata(key, value).expect("valid metadata");
    }
    for (i, (name, dims, ty)) in SAMPLE_TENSORS.into_iter().enumerate() {
        let n = dims.iter().product::<u64>() as usize;
        w.add_tensor_f32(name, dims, ty, &values(i as u64, n))
            .expect("valid tensor");
    }
    w
}

/// The sample file's bytes.
pub(super) fn sample_bytes() -> Vec<u8> {
    sample_writer().to_bytes()
}

/// Hand-built GGUF bytes, for files the writer refuses to produce.
#[derive(Default)]
pub(super) struct Raw(pub(super) Vec<u8>);

impl Raw {
    /// Magic, version and the two counts.
    pub(super) fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }

    pub(super) fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }

    pub(super) fn u32(self, v: u32) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    pub(super) fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    /// A length-prefixed string of raw bytes.
    pub(super) fn str(self, s: &[u8]) -> Self {
        self.u64(s.len() as u64).bytes(s)
    }

    /// A metadata entry holding a u32.
    pub(super) fn kv_u32(self, key: &str, v: u32) -> Self {
        self.str(key.as_bytes()).u32(4).u32(v)
    }

    /// A tensor info.
    pub(super) fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut raw = self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            raw = raw.u64(d);
        }
        raw.u32(ty).u64(offset)
    }

    /// Zero padding up to a multiple of `align`, then `n` data bytes.
    pub(super) fn data(mut self, align: usize, n: usize) -> Self {
        let padded = self.0.len().next_multiple_of(align);
        self.0.resize(padded + n, 0x11);
        self
    }
}
