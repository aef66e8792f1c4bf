use afinador_core::gpu::*;
use afinador_core::kernels::*;
use std::time::Instant;
fn main() {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default())).unwrap();
    let which: Vec<String> = std::env::args().skip(1).collect();
    for (fmt, n, k) in [
        (WeightFormat::F32, 1536usize, 576usize),
        (WeightFormat::Q8_0, 1536usize, 576usize),
        (WeightFormat::Q4_1, 1536usize, 576usize),
        (WeightFormat::Q8_0, 49152, 576),
        (WeightFormat::Q4_1, 4096, 4096),
    ] {
        let (bb, bv) = fmt.gguf_block();
        let raw = vec![0x11u8; n * k / bv * bb];
        let w = GpuWeight::upload(&gpu, "w", fmt, &raw, n, k).unwrap();
        let x = GpuBuffer::zeroed(&gpu, "x", (k * 4 * 64) as u64).unwrap();
        let y = GpuBuffer::zeroed(&gpu, "y", (n * 4 * 64) as u64).unwrap();
        for m in [1u32, 64] {
            if which.iter().any(|w| w == "gemv") && m != 1 {
                continue;
            }
            for rep in 0..2 {
                let iters = if m == 1 { 20 } else { 3 };
                let t0 = Instant::now();
                pollster::block_on(async {
                    let mut rec = Recorder::new(&gpu);
                    for _ in 0..iters {
                        if m == 1 {
                            gemv::gemv(&mut rec, &x, 0, &w, &y, 0, n as u32, 1, 1.0, false)
                                .await
                                .unwrap();
                        } else {
                            matmul::matmul_weight(
                                &mut rec, &x, 0, &w, &y, 0, n as u32, m, 1.0, false,
                            )
                            .await
                            .unwrap();
                        }
                    }
                    rec.submit().await.unwrap();
                    read_buffer_f32(&gpu, &y, 0, 1).await.unwrap();
                });
                let dt = t0.elapsed().as_secs_f64() / iters as f64;
                if rep == 1 {
                    println!(
                        "{fmt:?} {n}x{k} m={m}: {:.3} ms  {:.2} GB/s  {:.2} GFLOP/s",
                        dt * 1e3,
                        w.device_bytes() as f64 / dt / 1e9,
                        2.0 * (n * k) as f64 * m as f64 / dt / 1e9
                    );
                }
            }
        }
    }
}
