//! Storage buffers with their limits checked up front, the device memory they hold, and async
//! readback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Gpu, GpuError, Result};

/// Bytes of storage buffers alive on a device now, and the most there have been at once.
///
/// wgpu cannot tell how much memory a device has or uses; every [`GpuBuffer`] reports its size
/// here instead, so a run can state (and a plan can be checked against) what it really holds.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    live: AtomicU64,
    peak: AtomicU64,
}

impl MemoryCounter {
    /// Bytes held by buffers alive now.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The largest [`MemoryCounter::live`] seen since the device opened (or the last reset).
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Start measuring the peak again from what is alive now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }

    fn add(&self, bytes: u64) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

/// One buffer's share of the counter, given back when the last clone of the buffer drops.
#[derive(Debug)]
struct Allocation {
    bytes: u64,
    counter: Arc<MemoryCounter>,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.counter.live.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A storage buffer on the device (also a copy source and destination).
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    /// Size in bytes.
    pub size: u64,
    pub label: String,
    _allocation: Arc<Allocation>,
}

impl GpuBuffer {
    /// Check `size` against the device's binding limit before asking for it.
    fn check(gpu: &Gpu, label: &str, size: u64) -> Result<()> {
        let limit = gpu.limits.max_storage_buffer_binding_size;
        if size > limit {
            return Err(GpuError::TooLarge {
                label: label.into(),
                size,
                limit,
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        if size > gpu.limits.max_buffer_size {
            return Err(GpuError::TooLarge {
                label: label.into(),
                size,
                limit: gpu.limits.max_buffer_size,
                limit_name: "max_buffer_size",
            });
        }
        Ok(())
    }

    fn usage() -> wgpu::BufferUsages {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
    }

    /// A zero-filled buffer of `size` bytes (at least 4).
    pub fn zeroed(gpu: &Gpu, label: &str, size: u64) -> Result<GpuBuffer> {
        let size = size.max(4).next_multiple_of(4);
        Self::check(gpu, label, size)?;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: Self::usage(),
            mapped_at_creation: false,
        });
        gpu.memory.add(size);
        Ok(GpuBuffer {
            buffer,
            size,
            label: label.into(),
            _allocation: Arc::new(Allocation {
                bytes: size,
                counter: gpu.memory.clone(),
            }),
        })
    }

    /// A buffer holding `data` (padded to 4 bytes; an empty slice gives a 4-byte buffer).
    pub fn from_bytes(gpu: &Gpu, label: &str, data: &[u8]) -> Result<GpuBuffer> {
        let buf = Self::zeroed(gpu, label, data.len() as u64)?;
        if !data.is_empty() {
            let mut padded;
            let bytes = if data.len().is_multiple_of(4) {
                data
            } else {
                padded = data.to_vec();
                padded.resize(data.len().next_multiple_of(4), 0);
                &padded
            };
            gpu.queue.write_buffer(&buf.buffer, 0, bytes);
        }
        Ok(buf)
    }

    /// A buffer holding a slice of plain values.
    pub fn from_slice<T: bytemuck::Pod>(gpu: &Gpu, label: &str, data: &[T]) -> Result<GpuBuffer> {
        Self::from_bytes(gpu, label, bytemuck::cast_slice(data))
    }

    /// Overwrite part of the buffer (queued; visible to the next submission).
    pub fn write<T: bytemuck::Pod>(&self, gpu: &Gpu, offset_bytes: u64, data: &[T]) {
        gpu.queue
            .write_buffer(&self.buffer, offset_bytes, bytemuck::cast_slice(data));
    }
}

/// Read `len` bytes at `offset` (both multiples of 4) back to the host.
async fn read_bytes(gpu: &Gpu, src: &GpuBuffer, offset: u64, len: u64) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if offset + len > src.size {
        return Err(GpuError::Readback(format!(
            "asked for bytes {offset}..{} of '{}', which has {}",
            offset + len,
            src.label,
            src.size
        )));
    }
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: len,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&src.buffer, offset, &staging, 0, len);
    gpu.queue.submit([encoder.finish()]);
    let slice = staging.slice(..);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    // Natively, wgpu completes map_async when the device is polled; in the browser the event
    // loop does it and the future below resolves on its own.
    #[cfg(not(target_arch = "wasm32"))]
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    rx.await
        .map_err(|_| GpuError::Readback("the device was lost".into()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let data = slice
        .get_mapped_range()
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(data)
}

/// Read `count` f32 values starting at element `offset`.
pub async fn read_buffer_f32(
    gpu: &Gpu,
    src: &GpuBuffer,
    offset: usize,
    count: usize,
) -> Result<Vec<f32>> {
    let bytes = read_bytes(gpu, src, offset as u64 * 4, count as u64 * 4).await?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// Read `count` u32 values starting at element `offset`.
pub async fn read_buffer_u32(
    gpu: &Gpu,
    src: &GpuBuffer,
    offset: usize,
    count: usize,
) -> Result<Vec<u32>> {
    let bytes = read_bytes(gpu, src, offset as u64 * 4, count as u64 * 4).await?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::GpuOptions;

    #[test]
    fn the_memory_counter_follows_buffers_until_their_last_clone_drops() {
        // A device of its own: other tests allocate on the shared one concurrently.
        let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))
            .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        assert_eq!(gpu.memory.live(), 0);
        let a = GpuBuffer::zeroed(&gpu, "a", 1000).unwrap();
        let b = GpuBuffer::from_slice(&gpu, "b", &[1.0f32; 6]).unwrap();
        assert_eq!(gpu.memory.live(), 1000 + 24);
        let a2 = a.clone();
        drop(a);
        assert_eq!(gpu.memory.live(), 1024, "a clone keeps the buffer alive");
        drop(a2);
        assert_eq!(gpu.memory.live(), 24);
        assert_eq!(gpu.memory.peak(), 1024);
        gpu.memory.reset_peak();
        assert_eq!(gpu.memory.peak(), 24);
        drop(b);
        assert_eq!(gpu.memory.live(), 0);
    }
}
