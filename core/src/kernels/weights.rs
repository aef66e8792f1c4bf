//! Model weights on the GPU in the layouts `weights.wgsl` reads, packed from GGUF blocks.

pub use afinador_shaders::WeightFormat;

use crate::formats::GgmlType;
use crate::formats::quant::f32_to_bf16_bits;
use crate::gpu::{Gpu, GpuBuffer, Result};
use crate::util::Rng;

impl From<WeightFormat> for GgmlType {
    fn from(format: WeightFormat) -> GgmlType {
        GgmlType::from_id(format.ggml_id()).expect("every weight format is a ggml type")
    }
}

impl GgmlType {
    /// The GPU format a tensor of this type is uploaded as, kept in its own encoding; `None`
    /// for a type the kernels cannot read.
    pub fn weight_format(self) -> Option<WeightFormat> {
        WeightFormat::ALL
            .iter()
            .copied()
            .find(|f| f.ggml_id() == self.id())
    }
}

/// Repack GGUF-layout bytes of `format` (whole blocks) into the two word arrays of
/// `weights.wgsl`: quants (or the float bits) and scales. Every field lands on a 32-bit word
/// boundary, so the shaders only make aligned 32-bit loads; the layouts are described in
/// `weights.wgsl`'s header.
pub fn pack_weight(format: WeightFormat, raw: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let blocks = raw.chunks_exact(format.block_bytes());
    let n = blocks.len();
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let half = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as u32;
    // Two f16 per word, one per block: the Q*_0 scales.
    let paired_halves = |offset: usize| {
        let mut s = vec![0u32; n.div_ceil(2)];
        for (i, b) in raw.chunks_exact(format.block_bytes()).enumerate() {
            s[i / 2] |= half(&b[offset..]) << (16 * (i % 2));
        }
        s
    };
    let mut q = Vec::with_capacity(raw.len() / 4 + n);
    let mut s = Vec::new();
    match format {
        WeightFormat::F32 | WeightFormat::F16 | WeightFormat::BF16 => {
            return (words(raw).collect(), vec![0]);
        }
        // f16 d, then the quants (Q5_0: qh, qs), not word-aligned in the file.
        WeightFormat::Q4_0 | WeightFormat::Q5_0 | WeightFormat::Q8_0 => {
            blocks.for_each(|b| q.extend(words(&b[2..])));
            s = paired_halves(0);
        }
        // f16 d and m in one word, then the quants (Q5_1: qh, qs).
        WeightFormat::Q4_1 | WeightFormat::Q5_1 => {
            for b in blocks {
                s.push(word(b));
                q.extend(words(&b[4..]));
            }
        }
        // 16 scale bytes, 64 qs, (d, dmin): the pair first.
        WeightFormat::Q2_K => {
            for b in blocks {
                s.push(word(&b[80..]));
                s.extend(words(&b[..16]));
                q.extend(words(&b[16..80]));
            }
        }
        // 32 hmask, 64 qs, 12 scale bytes, f16 d (110 bytes): d gets a word of its own.
        WeightFormat::Q3_K => {
            for b in blocks {
                q.extend(words(&b[..96]));
                s.extend(words(&b[96..108]));
                s.push(half(&b[108..]));
            }
        }
        // (d, dmin), 12 scale bytes, [32 qh,] 128 qs: already aligned.
        WeightFormat::Q4_K | WeightFormat::Q5_K => {
            for b in blocks {
                s.extend(words(&b[..16]));
                q.extend(words(&b[16..]));
            }
        }
        // 128 ql, 64 qh, 16 scales, f16 d (210 bytes): d gets a word of its own.
        WeightFormat::Q6_K => {
            for b in blocks {
                q.extend(words(&b[..192]));
                s.extend(words(&b[192..208]));
                s.push(half(&b[208..]));
            }
        }
    }
    (q, s)
}

/// Random GGUF blocks of `format` for `n` values: random quant bytes (every quant value
/// appears), the f16 scale and min fields overwritten with finite random values sized so that
/// weights stay O(0.1)–O(1); float formats uniform in [-1, 1]. `n` must be whole blocks.
/// For tests and benchmarks.
pub fn random_blocks(format: WeightFormat, n: usize, rng: &mut Rng) -> Vec<u8> {
    use WeightFormat::*;
    // (byte offset, magnitude) of each f16 field of a block (ggml-common.h layouts).
    let fields: &[(usize, f32)] = match format {
        F32 => return values(n, rng, |x| x.to_le_bytes().to_vec()),
        F16 => return values(n, rng, |x| half::f16::from_f32(x).to_le_bytes().to_vec()),
        BF16 => return values(n, rng, |x| f32_to_bf16_bits(x).to_le_bytes().to_vec()),
        Q4_0 => &[(0, 0.1)],
        Q8_0 => &[(0, 0.01)],
        Q5_0 => &[(0, 0.05)],
        Q4_1 => &[(0, 0.1), (2, 0.5)],
        Q5_1 => &[(0, 0.05), (2, 0.5)],
        Q2_K => &[(80, 0.01), (82, 0.02)],
        Q3_K => &[(108, 0.005)],
        Q4_K => &[(0, 0.001), (2, 0.005)],
        Q5_K => &[(0, 0.0005), (2, 0.005)],
        Q6_K => &[(208, 0.0002)],
    };
    let bytes = format.block_bytes();
    let mut out: Vec<u8> = (0..n / format.block_values() * bytes)
        .map(|_| rng.next_u32() as u8)
        .collect();
    for block in out.chunks_exact_mut(bytes) {
        for &(at, mag) in fields {
            let v = half::f16::from_f32(rng.uniform(-mag, mag));
            block[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn values(n: usize, rng: &mut Rng, enc: impl Fn(f32) -> Vec<u8>) -> Vec<u8> {
    (0..n).flat_map(|_| enc(rng.uniform(-1.0, 1.0))).collect()
}

/// The little-endian words of `b` (a multiple of 4 bytes long).
fn words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.as_chunks::<4>().0.iter().map(|&w| u32::from_le_bytes(w))
}

/// A weight matrix W[rows, cols] on the GPU (GGUF dims [cols, rows]).
#[derive(Clone, Debug)]
pub struct GpuWeight {
    pub format: WeightFormat,
    pub rows: usize,
    pub cols: usize,
    pub q: GpuBuffer,
    pub s: GpuBuffer,
}

impl GpuWeight {
    /// Upload a weight from its GGUF bytes (`rows · cols` values in `format`).
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        format: WeightFormat,
        raw: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<GpuWeight> {
        let (q, s) = pack_weight(format, raw);
        Ok(GpuWeight {
            format,
            rows,
            cols,
            q: GpuBuffer::from_slice(gpu, name, &q)?,
            s: GpuBuffer::from_slice(gpu, &format!("{name}.scales"), &s)?,
        })
    }

    /// Bytes this weight occupies on the device.
    pub fn device_bytes(&self) -> u64 {
        self.q.size + self.s.size
    }
}
