//! The process's own host memory while a model loads, from `/proc/self/status` (Linux): how far
//! anonymous memory (`RssAnon`: what the process allocated, not file pages it mapped) rises
//! above where it started. On a CPU adapter (lavapipe) device buffers are host memory too, so
//! the figure that says what afinador itself holds subtracts the bytes of live GPU buffers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use afinador_core::gpu::MemoryCounter;
use serde::Serialize;

/// Peaks seen while a piece of work ran, in bytes above the anonymous memory before it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HostPeak {
    /// The highest `RssAnon` above the start.
    pub anon_above_start: u64,
    /// The highest `RssAnon` above the start less the device buffers alive at that moment:
    /// afinador's own host memory (staging, packing) on an adapter whose buffers live in host
    /// memory; an over-estimate on a discrete GPU, where they do not.
    pub beyond_device_buffers: u64,
    /// Mapped file pages resident when the work ended (`RssFile`): page cache the kernel may
    /// drop at any time.
    pub file_pages_after: u64,
    /// Samples taken (every 2 ms).
    pub samples: u64,
}

/// A field of `/proc/self/status` in bytes (`None` off Linux).
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Run `work` while a thread samples host memory; `None` for the peak where `/proc` is absent.
pub fn measure<T>(device: Arc<MemoryCounter>, work: impl FnOnce() -> T) -> (T, Option<HostPeak>) {
    let Some(start) = status_bytes("RssAnon:") else {
        return (work(), None);
    };
    let device_start = device.live();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = HostPeak::default();
            loop {
                let finished = done.load(Ordering::Relaxed);
                if let Some(anon) = status_bytes("RssAnon:") {
                    let above = anon.saturating_sub(start);
                    let device = device.live().saturating_sub(device_start);
                    peak.anon_above_start = peak.anon_above_start.max(above);
                    peak.beyond_device_buffers =
                        peak.beyond_device_buffers.max(above.saturating_sub(device));
                    peak.samples += 1;
                }
                if finished {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let out = work();
    done.store(true, Ordering::Relaxed);
    let mut peak = sampler.join().expect("the memory sampler does not panic");
    peak.file_pages_after = status_bytes("RssFile:").unwrap_or(0);
    (out, Some(peak))
}
