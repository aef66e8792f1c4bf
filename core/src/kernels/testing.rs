//! Test helpers: one shared GPU, random data, tolerances.

use std::sync::OnceLock;

use crate::gpu::{Gpu, GpuOptions};

/// The test GPU (lavapipe on machines without one). A test that finds no adapter fails.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::new(&GpuOptions::default()))
            .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
    })
}

/// Assert `|got − want| ≤ atol + rtol·|want|` element-wise, naming the first failure.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let tol = atol + rtol * w.abs();
        assert!(
            err <= tol && g.is_finite() == w.is_finite(),
            "{what}: element {i}: got {g}, want {w} (|err| {err} > tol {tol})"
        );
        if err > worst.1 {
            worst = (i, err);
        }
    }
}

pub use super::weights::random_blocks;

/// CPU dequantization of GGUF blocks (the reference for the GPU loaders).
pub fn dequant(format: super::WeightFormat, raw: &[u8], n: usize) -> Vec<f32> {
    crate::formats::quant::dequantize(format.into(), raw, n).expect("valid blocks")
}

/// The shapes (M, N, K) of `shapes` whose rows of K values hold whole blocks of `format`.
pub fn shapes_for(
    format: super::WeightFormat,
    shapes: &[(usize, usize, usize)],
) -> Vec<(usize, usize, usize)> {
    shapes
        .iter()
        .copied()
        .filter(|&(_, _, k)| k.is_multiple_of(format.k_multiple()))
        .collect()
}

/// Run `f` on a fresh recorder (fastest variants), submit, and wait.
pub fn run<F>(f: F)
where
    F: for<'r> AsyncFnOnce(&'r mut crate::gpu::Recorder<'static>),
{
    run_with(false, f)
}

/// Run `f` on a fresh recorder, portable variants only when `portable`, submit, and wait.
pub fn run_with<F>(portable: bool, f: F)
where
    F: for<'r> AsyncFnOnce(&'r mut crate::gpu::Recorder<'static>),
{
    pollster::block_on(async {
        let mut rec = if portable {
            crate::gpu::Recorder::portable(gpu())
        } else {
            crate::gpu::Recorder::new(gpu())
        };
        f(&mut rec).await;
        rec.submit().await.expect("submit");
    })
}

/// Read a whole f32 buffer back.
pub fn read(buf: &crate::gpu::GpuBuffer) -> Vec<f32> {
    pollster::block_on(crate::gpu::read_buffer_f32(
        gpu(),
        buf,
        0,
        (buf.size / 4) as usize,
    ))
    .expect("readback")
}

/// An f32 buffer holding `data`.
pub fn upload(data: &[f32]) -> crate::gpu::GpuBuffer {
    crate::gpu::GpuBuffer::from_slice(gpu(), "test", data).expect("upload")
}

/// A recorder for the test GPU: portable variants only, or the fastest ones.
pub fn recorder(portable: bool) -> crate::gpu::Recorder<'static> {
    if portable {
        crate::gpu::Recorder::portable(gpu())
    } else {
        crate::gpu::Recorder::new(gpu())
    }
}

/// Central finite differences of `f` at `x` (evaluated in f32 inputs, f64 outputs).
pub fn finite_differences(f: &dyn Fn(&[f32]) -> f64, x: &[f32], h: f32) -> Vec<f32> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let up = f(&x);
            x[i] = orig - h;
            let down = f(&x);
            x[i] = orig;
            ((up - down) / (2.0 * h as f64)) as f32
        })
        .collect()
}
