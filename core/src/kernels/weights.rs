//! Model weights on the GPU in the layouts `weights.wgsl` reads, packed from GGUF blocks.

use crate::gpu::{Gpu, GpuBuffer, Result};

/// The on-GPU format of a weight matrix (F16 and BF16 tensors are widened to F32 on upload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl WeightFormat {
    /// The preprocessor flag selecting this format in `weights.wgsl`.
    pub fn define(self) -> &'static str {
        match self {
            WeightFormat::F32 => "W_F32",
            WeightFormat::Q4_0 => "W_Q4_0",
            WeightFormat::Q4_1 => "W_Q4_1",
            WeightFormat::Q8_0 => "W_Q8_0",
        }
    }

    /// Bytes of one GGUF block and the values it holds.
    pub fn gguf_block(self) -> (usize, usize) {
        match self {
            WeightFormat::F32 => (4, 1),
            WeightFormat::Q4_0 => (18, 32),
            WeightFormat::Q4_1 => (20, 32),
            WeightFormat::Q8_0 => (34, 32),
        }
    }

    /// How many values of a row must divide evenly (the block length; 4 for f32 loads).
    pub fn k_multiple(self) -> usize {
        match self {
            WeightFormat::F32 => 4,
            _ => 32,
        }
    }
}

/// Repack GGUF-layout bytes of `format` into the two word arrays of `weights.wgsl`:
/// quants (or f32 bits) and scales.
pub fn pack_weight(format: WeightFormat, raw: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let (block_bytes, _) = format.gguf_block();
    let blocks = raw.chunks_exact(block_bytes);
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let half = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as u32;
    match format {
        WeightFormat::F32 => (raw.chunks_exact(4).map(word).collect(), vec![0]),
        WeightFormat::Q4_0 | WeightFormat::Q8_0 => {
            let n = raw.len() / block_bytes;
            let mut q = Vec::with_capacity(n * (block_bytes - 2) / 4);
            let mut s = vec![0u32; n.div_ceil(2)];
            for (i, b) in blocks.enumerate() {
                s[i / 2] |= half(b) << (16 * (i % 2));
                q.extend(b[2..].chunks_exact(4).map(word));
            }
            (q, s)
        }
        WeightFormat::Q4_1 => {
            let n = raw.len() / block_bytes;
            let mut q = Vec::with_capacity(n * 4);
            let mut s = Vec::with_capacity(n);
            for b in blocks {
                s.push(half(b) | (half(&b[2..]) << 16));
                q.extend(b[4..].chunks_exact(4).map(word));
            }
            (q, s)
        }
    }
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
