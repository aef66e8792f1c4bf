//! f32 matmul `C[S, S] = A[S, S] · B[S, S]` through afinador's kernel (the variant the engine picks
//! for the adapter) and through burn-wgpu (CubeCL's autotuned matmul, with fusion) on the same
//! adapter, at the kernel bench's shapes; prints both rates and our ratio over burn.
//!
//! Both sides are timed the same way, by the wall clock: one matmul and the readback of C per
//! iteration, after a warm-up (burn's first call also autotunes), median of the repeats. Before
//! timing, both results are checked against each other (and ours against the CPU reference at
//! the small shapes).
//!
//! `cargo run --release -- [--quick] [--sizes 512,1024] [--json]` (the adapter: burn's default
//! device and afinador's default choice, which agree on a machine with one adapter; both are
//! printed).

use std::time::Instant;

use afinador_core::gpu::{Gpu, GpuBuffer, GpuOptions, Recorder, read_buffer_f32};
use afinador_core::kernels::matmul::{MatView, MatmulVariant, matmul, matmul_ref};
use afinador_core::util::Rng;
use burn::tensor::{Device, DeviceKind, Tensor, TensorData};

/// Median wall-clock seconds of `repeats` runs of `f` after one warm-up run.
fn median_secs(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn ours(gpu: &Gpu, a: &GpuBuffer, b: &GpuBuffer, c: &GpuBuffer, s: usize) -> Vec<f32> {
    pollster::block_on(async {
        let mut rec = Recorder::new(gpu);
        let s32 = s as u32;
        let (av, bv, cv) = (
            MatView::rows(a, 0, s32),
            MatView::rows(b, 0, s32),
            MatView::rows(c, 0, s32),
        );
        matmul(&mut rec, av, bv, cv, (s32, s32, s32), 1.0, false)
            .await
            .expect("record");
        rec.submit().await.expect("submit");
        read_buffer_f32(gpu, c, 0, s * s).await.expect("read C")
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (quick, json) = (
        args.iter().any(|a| a == "--quick"),
        args.iter().any(|a| a == "--json"),
    );
    // `--sizes 512,1024` (S of the S×S×S products); default the kernel bench's 512, 1024, 4096.
    let sizes: Vec<usize> = match args.iter().position(|a| a == "--sizes") {
        Some(i) => args
            .get(i + 1)
            .expect("--sizes takes a list like 512,1024")
            .split(',')
            .map(|x| x.parse().expect("--sizes takes numbers"))
            .collect(),
        None if quick => vec![128, 256],
        None => vec![512, 1024, 4096],
    };
    let repeats = if quick { 3 } else { 5 };
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))
        .unwrap_or_else(|e| panic!("no GPU adapter: {e}"));
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let variant = MatmulVariant::for_recorder(&Recorder::new(&gpu)).label();
    let mut rows = Vec::new();
    for &s in &sizes {
        let mut rng = Rng::new(s as u64);
        let (a, b) = (
            rng.vec_uniform(s * s, -1.0, 1.0),
            rng.vec_uniform(s * s, -1.0, 1.0),
        );
        let ga = GpuBuffer::from_slice(&gpu, "a", &a).expect("upload");
        let gb = GpuBuffer::from_slice(&gpu, "b", &b).expect("upload");
        let gc = GpuBuffer::zeroed(&gpu, "c", (s * s * 4) as u64).expect("alloc");
        let ta = Tensor::<2>::from_data(TensorData::new(a.clone(), [s, s]), &device);
        let tb = Tensor::<2>::from_data(TensorData::new(b.clone(), [s, s]), &device);
        let burn_c = || -> Vec<f32> {
            ta.clone()
                .matmul(tb.clone())
                .try_to_vec_as::<f32>()
                .expect("read burn's C")
        };
        // Correctness before timing.
        let (mine, theirs) = (ours(&gpu, &ga, &gb, &gc, s), burn_c());
        let diff = mine
            .iter()
            .zip(&theirs)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-3 * (s as f32).sqrt(),
            "S {s}: ours and burn's differ by {diff}"
        );
        if s <= 1024 {
            let mut want = vec![0.0; s * s];
            matmul_ref(&a, &b, &mut want, (s, s, s), 1.0, false);
            let err = mine
                .iter()
                .zip(&want)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(err <= 1e-3 * (s as f32).sqrt(), "S {s}: ours vs CPU {err}");
        }
        let reps = if s >= 4096 { 1 } else { repeats };
        let t_ours = median_secs(reps, || {
            ours(&gpu, &ga, &gb, &gc, s);
        });
        let t_burn = median_secs(reps, || {
            burn_c();
        });
        let flops = 2.0 * (s * s * s) as f64;
        let (g_ours, g_burn) = (flops / t_ours / 1e9, flops / t_burn / 1e9);
        rows.push(serde_json::json!({
            "kernel": "matmul_f32",
            "shape": format!("M{s} N{s} K{s}"),
            "variant": variant,
            "ours_ms": t_ours * 1e3,
            "burn_ms": t_burn * 1e3,
            "ours_gflops": g_ours,
            "burn_gflops": g_burn,
            "ratio": g_ours / g_burn,
            "max_abs_diff": diff,
        }));
    }
    if json {
        let out = serde_json::json!({
            "adapter": gpu.adapter,
            "burn_device": format!("{device:?}"),
            "timer": "wall clock, matmul + readback of C",
            "results": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return;
    }
    println!(
        "{} ({}), burn device {device:?}; wall clock per matmul + readback of C",
        gpu.adapter.name, gpu.adapter.backend
    );
    println!(
        "{:<18} {:<18} {:>10} {:>10} {:>12} {:>12} {:>8}",
        "shape", "our variant", "ours ms", "burn ms", "ours GFLOP/s", "burn GFLOP/s", "ours/burn"
    );
    for r in &rows {
        println!(
            "{:<18} {:<18} {:>10.1} {:>10.1} {:>12.2} {:>12.2} {:>8.2}",
            r["shape"].as_str().unwrap_or("?"),
            r["variant"].as_str().unwrap_or("?"),
            r["ours_ms"].as_f64().unwrap_or(0.0),
            r["burn_ms"].as_f64().unwrap_or(0.0),
            r["ours_gflops"].as_f64().unwrap_or(0.0),
            r["burn_gflops"].as_f64().unwrap_or(0.0),
            r["ratio"].as_f64().unwrap_or(0.0),
        );
    }
}
