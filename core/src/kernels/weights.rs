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

/// The lengths in words of the two arrays [`pack_weight`] makes of `blocks` whole blocks.
pub fn packed_words(format: WeightFormat, blocks: usize) -> (usize, usize) {
    let (q, s) = packed_words_u64(format, blocks as u64);
    (q as usize, s as usize)
}

/// [`packed_words`] in u64, for sizes a header claims (which may not fit a wasm32 `usize`).
pub fn packed_words_u64(format: WeightFormat, blocks: u64) -> (u64, u64) {
    let quant_words = |skip: usize| blocks * (format.block_bytes() - skip) as u64 / 4;
    match format {
        WeightFormat::F32 | WeightFormat::F16 | WeightFormat::BF16 => {
            (blocks * format.block_bytes() as u64 / 4, 1)
        }
        WeightFormat::Q4_0 | WeightFormat::Q5_0 | WeightFormat::Q8_0 => {
            (quant_words(2), blocks.div_ceil(2))
        }
        WeightFormat::Q4_1 | WeightFormat::Q5_1 => (quant_words(4), blocks),
        WeightFormat::Q2_K => (16 * blocks, 5 * blocks),
        WeightFormat::Q3_K => (24 * blocks, 4 * blocks),
        WeightFormat::Q4_K | WeightFormat::Q5_K => (quant_words(16), 4 * blocks),
        WeightFormat::Q6_K => (48 * blocks, 5 * blocks),
    }
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

/// A weight matrix W[rows, cols] on the GPU (GGUF dims [cols, rows]), in one or more parts of
/// whole rows: a weight larger than one storage binding (a 151936-row vocabulary projection, a
/// 262144-row embedding) is split by rows, and every kernel that reads a weight runs once per
/// part ([`crate::kernels::matmul::matmul_weight`], `matmul_weight_t`, `gemv`, `embedding`).
#[derive(Clone, Debug)]
pub struct GpuWeight {
    pub format: WeightFormat,
    pub rows: usize,
    pub cols: usize,
    pub parts: Vec<WeightPart>,
}

/// Rows `row0 .. row0 + rows` of a [`GpuWeight`], packed as [`pack_weight`] packs them.
#[derive(Clone, Debug)]
pub struct WeightPart {
    pub row0: usize,
    pub rows: usize,
    pub q: GpuBuffer,
    pub s: GpuBuffer,
}

impl GpuWeight {
    /// Upload a weight from its GGUF bytes (`rows · cols` values in `format`), split into parts
    /// that each fit the device's storage binding limit.
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        format: WeightFormat,
        raw: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<GpuWeight> {
        let limit = gpu.limits.max_storage_buffer_binding_size;
        Self::upload_in_parts(gpu, name, format, raw, (rows, cols), limit)
    }

    /// [`upload`](Self::upload) with parts of at most `max_part_bytes` per buffer (tests split
    /// small weights with it).
    pub fn upload_in_parts(
        gpu: &Gpu,
        name: &str,
        format: WeightFormat,
        raw: &[u8],
        (rows, cols): (usize, usize),
        max_part_bytes: u64,
    ) -> Result<GpuWeight> {
        let row_bytes = cols / format.block_values() * format.block_bytes();
        // Packing moves bytes between the two buffers but never makes either longer than the
        // row's bytes plus one word.
        let rows_per_part = ((max_part_bytes as usize / (row_bytes + 4)).max(1)).min(rows.max(1));
        let mut parts = Vec::with_capacity(rows.div_ceil(rows_per_part));
        for row0 in (0..rows).step_by(rows_per_part) {
            let n = rows_per_part.min(rows - row0);
            let label = |what: &str| match rows_per_part < rows {
                true => format!("{name}{what} rows {row0}..{}", row0 + n),
                false => format!("{name}{what}"),
            };
            let blocks = n * cols / format.block_values();
            let (q_words, s_words) = packed_words(format, blocks);
            let part = WeightPart {
                row0,
                rows: n,
                q: GpuBuffer::zeroed(gpu, &label(""), 4 * q_words as u64)?,
                s: GpuBuffer::zeroed(gpu, &label(".scales"), 4 * s_words as u64)?,
            };
            write_packed(
                gpu,
                &part,
                format,
                &raw[row0 * row_bytes..(row0 + n) * row_bytes],
                row_bytes,
            );
            parts.push(part);
        }
        Ok(GpuWeight {
            format,
            rows,
            cols,
            parts,
        })
    }

    /// Bytes this weight occupies on the device.
    pub fn device_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.q.size + p.s.size).sum()
    }
}

/// Pack `raw` (whole rows of `row_bytes`) into `part` a few MiB at a time, streamed
/// ([`Gpu::write_streamed`]): the host never holds more than one chunk packed plus what wgpu
/// stages until the next flush, however large the weight (an 8B model's 1 GB embedding
/// included).
fn write_packed(gpu: &Gpu, part: &WeightPart, format: WeightFormat, raw: &[u8], row_bytes: usize) {
    const CHUNK: usize = 4 << 20;
    // An even number of rows per chunk keeps every chunk's scales on whole words (the Q*_0
    // formats pair two blocks' f16 scales in one word).
    let rows_per_chunk = (CHUNK / row_bytes.max(1)).max(2) & !1;
    let (mut q_off, mut s_off) = (0u64, 0u64);
    for chunk in raw.chunks(rows_per_chunk * row_bytes) {
        let (q, s) = pack_weight(format, chunk);
        gpu.write_streamed(&part.q, q_off, &q);
        q_off += 4 * q.len() as u64;
        if !format.is_float() {
            gpu.write_streamed(&part.s, s_off, &s);
            s_off += 4 * s.len() as u64;
        }
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;
    use crate::kernels::embedding::embedding;
    use crate::kernels::gemv::gemv;
    use crate::kernels::matmul::{matmul_weight, matmul_weight_t};
    use crate::kernels::testing::{assert_close, gpu, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn packed_lengths_are_what_packing_makes_and_chunked_uploads_equal_whole_ones() {
        let mut rng = Rng::new(30);
        for &format in WeightFormat::ALL {
            for blocks in [1, 2, 3, 7, 64] {
                let n = blocks * format.block_values().max(4);
                let raw = random_blocks(format, n, &mut rng);
                let (q, s) = pack_weight(format, &raw);
                let b = raw.len() / format.block_bytes();
                assert_eq!(
                    packed_words(format, b),
                    (q.len(), s.len()),
                    "{format} × {b}"
                );
            }
            // Rows of 4 MiB / 3 rows a chunk → several chunks, an odd last one: the buffers
            // hold exactly what one pack of the whole weight gives.
            let cols = 256 * 40;
            let rows = ((9 << 20) / (cols / format.block_values() * format.block_bytes())) | 1;
            let raw = random_blocks(format, rows * cols, &mut rng);
            let w = GpuWeight::upload(gpu(), "w", format, &raw, rows, cols).unwrap();
            let (q, s) = pack_weight(format, &raw);
            let part = &w.parts[0];
            let got_q = pollster::block_on(crate::gpu::read_buffer_u32(gpu(), &part.q, 0, q.len()));
            assert!(got_q.unwrap() == q, "{format}: packed quants differ");
            if !format.is_float() {
                let got_s =
                    pollster::block_on(crate::gpu::read_buffer_u32(gpu(), &part.s, 0, s.len()));
                assert!(got_s.unwrap() == s, "{format}: packed scales differ");
            }
        }
    }

    #[test]
    fn a_weight_split_by_rows_computes_what_one_part_computes() {
        // 37 rows of 64 Q8_0 values (68 bytes a row) in parts of 5 rows (the last one 2), and an
        // F16 weight in parts of 1 row: every reader — GEMM, GEMV, the transposed GEMM of the
        // backward pass (accumulating), the embedding gather — gives exactly the one-part result.
        let mut rng = Rng::new(31);
        for (format, part_bytes) in [(WeightFormat::Q8_0, 5 * 72), (WeightFormat::F16, 1)] {
            let (rows, cols, m) = (37usize, 64usize, 6usize);
            let raw = random_blocks(format, rows * cols, &mut rng);
            let whole = GpuWeight::upload_in_parts(gpu(), "w", format, &raw, (rows, cols), 1 << 30)
                .unwrap();
            let split =
                GpuWeight::upload_in_parts(gpu(), "w", format, &raw, (rows, cols), part_bytes)
                    .unwrap();
            assert_eq!(whole.parts.len(), 1);
            assert!(
                split.parts.len() > 5,
                "{format}: {} parts",
                split.parts.len()
            );
            assert_eq!(split.parts.iter().map(|p| p.rows).sum::<usize>(), rows);
            let x = upload(&rng.vec_uniform(m * cols, -1.0, 1.0));
            let dy = upload(&rng.vec_uniform(m * rows, -1.0, 1.0));
            let ids: Vec<u32> = [0, 36, 5, 4, 17, 30].to_vec();
            let ids_buf = crate::gpu::GpuBuffer::from_slice(gpu(), "ids", &ids).unwrap();
            let outputs = |w: &GpuWeight| {
                let y = upload(&vec![0.0; m * rows]);
                let yv = upload(&vec![0.0; rows]);
                let dx = upload(&vec![0.5; m * cols]);
                let e = upload(&vec![0.0; m * cols]);
                run(async |rec| {
                    matmul_weight(rec, &x, 0, w, &y, 0, rows as u32, m as u32, 1.0, false)
                        .await
                        .unwrap();
                    gemv(rec, &x, 0, w, &yv, 0, rows as u32, 1, 1.0, false)
                        .await
                        .unwrap();
                    matmul_weight_t(rec, &dy, 0, w, &dx, 0, cols as u32, m as u32, 1.0, true)
                        .await
                        .unwrap();
                    embedding(rec, &ids_buf, m as u32, w, (&e, 0), 1.0)
                        .await
                        .unwrap();
                });
                [read(&y), read(&yv), read(&dx), read(&e)]
            };
            let (want, got) = (outputs(&whole), outputs(&split));
            for (what, (g, w)) in ["gemm", "gemv", "gemm wt", "embedding"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_close(&format!("{format} {what}"), g, w, 1e-5, 1e-5);
            }
        }
    }
}
