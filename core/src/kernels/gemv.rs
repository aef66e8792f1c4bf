//! Matrix–vector products for decode (`gemv.wgsl`): `y[m, N] (+)= α · W[N, K] · x[m, K]` for a
//! few rows m, reading quantized weights once.

use afinador_shaders::Shader;

use super::{GpuWeight, assert_params_size};
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result};

/// Mirrors `Params` in gemv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemvParams {
    pub n: u32,
    pub k: u32,
    pub x_off: u32,
    pub y_off: u32,
    pub y_sm: u32,
    pub accumulate: u32,
    pub alpha: f32,
    pub _pad: u32,
}
assert_params_size!(GemvParams, 32);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Gemv,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
};

/// Rows of W per workgroup (gemv.wgsl's ROWS).
const ROWS: u32 = 8;

/// `y[m, :] (+)= α · W · x[m, :]` for `m` rows of x (row-major, K values each) at `x_off`;
/// y rows `y_stride` apart from `y_off`.
#[allow(clippy::too_many_arguments)]
pub async fn gemv(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    x_off: u32,
    w: &GpuWeight,
    y: &GpuBuffer,
    y_off: u32,
    y_stride: u32,
    m: u32,
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    let (n, k) = (w.rows as u32, w.cols as u32);
    debug_assert_eq!(k as usize % w.format.k_multiple(), 0);
    let params = GemvParams {
        n,
        k,
        x_off,
        y_off,
        y_sm: y_stride,
        accumulate: accumulate as u32,
        alpha,
        _pad: 0,
    };
    rec.dispatch(
        &LAYOUT,
        &[w.format.define()],
        &params,
        &[x, &w.q, &w.s, y],
        [n.div_ceil(ROWS), m, 1],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::WeightFormat;
    use crate::kernels::testing::{assert_close, dequant, gpu, random_blocks, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn gemv_matches_cpu_for_every_format() {
        let mut rng = Rng::new(3);
        for format in [
            WeightFormat::F32,
            WeightFormat::Q4_0,
            WeightFormat::Q4_1,
            WeightFormat::Q8_0,
        ] {
            for &(m, n, k) in &[(1, 1, 32), (1, 37, 64), (3, 129, 576), (1, 1000, 160)] {
                let raw = random_blocks(format, n * k, &mut rng);
                let w = dequant(format, &raw, n * k);
                let x = rng.vec_uniform(m * k, -1.0, 1.0);
                let y0 = rng.vec_uniform(m * n, -1.0, 1.0);
                let want: Vec<f32> = (0..m * n)
                    .map(|i| {
                        let (r, c) = (i / n, i % n);
                        let dot: f64 = (0..k)
                            .map(|l| x[r * k + l] as f64 * w[c * k + l] as f64)
                            .sum();
                        y0[i] + 2.0 * dot as f32
                    })
                    .collect();
                let gw = GpuWeight::upload(gpu(), "w", format, &raw, n, k).unwrap();
                let (gx, gy) = (upload(&x), upload(&y0));
                run(async |rec| {
                    gemv(rec, &gx, 0, &gw, &gy, 0, n as u32, m as u32, 2.0, true)
                        .await
                        .unwrap()
                });
                assert_close(
                    &format!("gemv {format:?} {m}x{n}x{k}"),
                    &read(&gy),
                    &want,
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}
