//! RMSNorm (`rmsnorm.wgsl`): `out[r, :] = x[r, :] · rstd[r] · w`, saving `rstd` for the backward.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result, grid_1d};

/// Mirrors `Params` in rmsnorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RmsNormParams {
    pub c: u32,
    pub r: u32,
    pub eps: f32,
    pub accumulate: u32,
    pub out_off: u32,
    pub _pad: [u32; 3],
}
assert_params_size!(RmsNormParams, 32);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::RmsNorm,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
        Binding::ReadWrite,
    ],
};

pub const LAYOUT_BACKWARD: KernelLayout = KernelLayout {
    shader: Shader::RmsNorm,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
};

/// Input gradient of [`rmsnorm`]: `dx (+)= rstd·(g − x̂·mean(g·x̂))` with `g = dy·w` (`+=`
/// when `accumulate`, so it can add straight into the residual stream's gradient). The weight
/// is frozen.
#[allow(clippy::too_many_arguments)]
pub async fn rmsnorm_backward(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    w: &GpuBuffer,
    dy: &GpuBuffer,
    rstd: &GpuBuffer,
    dx: &GpuBuffer,
    (rows, c): (u32, u32),
    accumulate: bool,
) -> Result<()> {
    let params = RmsNormParams {
        c,
        r: rows,
        eps: 0.0,
        accumulate: accumulate as u32,
        ..Default::default()
    };
    rec.dispatch(
        &LAYOUT_BACKWARD,
        &["BACKWARD"],
        &params,
        &[x, w, dy, rstd, dx],
        grid_1d(rows),
    )
    .await
}

/// CPU reference of the input gradient (returned, not accumulated).
pub fn rmsnorm_backward_ref(x: &[f32], w: &[f32], dy: &[f32], c: usize, eps: f32) -> Vec<f32> {
    let mut dx = vec![0.0; x.len()];
    for ((row, g), out) in x.chunks(c).zip(dy.chunks(c)).zip(dx.chunks_mut(c)) {
        let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / c as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        let mean_gx = (0..c)
            .map(|i| g[i] as f64 * w[i] as f64 * row[i] as f64 * inv)
            .sum::<f64>()
            / c as f64;
        for i in 0..c {
            let gi = g[i] as f64 * w[i] as f64;
            out[i] = (inv * (gi - row[i] as f64 * inv * mean_gx)) as f32;
        }
    }
    dx
}

/// Normalize `rows` rows of `c` values of `x` into `out` (`=`), writing `rstd[rows]` (`=`).
pub async fn rmsnorm(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    w: &GpuBuffer,
    out: &GpuBuffer,
    rstd: &GpuBuffer,
    (rows, c): (u32, u32),
    eps: f32,
) -> Result<()> {
    rmsnorm_to(rec, x, w, (out, 0), rstd, (rows, c), eps).await
}

/// [`rmsnorm`] writing `out` from element `out.1` (a position of the KV cache).
pub async fn rmsnorm_to(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    w: &GpuBuffer,
    out: (&GpuBuffer, u32),
    rstd: &GpuBuffer,
    (rows, c): (u32, u32),
    eps: f32,
) -> Result<()> {
    let params = RmsNormParams {
        c,
        r: rows,
        eps,
        out_off: out.1,
        ..Default::default()
    };
    rec.dispatch(&LAYOUT, &[], &params, &[x, w, out.0, rstd], grid_1d(rows))
        .await
}

/// CPU reference; returns (out, rstd).
pub fn rmsnorm_ref(x: &[f32], w: &[f32], c: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0; x.len()];
    let mut rstd = Vec::new();
    for (row, o) in x.chunks(c).zip(out.chunks_mut(c)) {
        let ms = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / c as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        for i in 0..c {
            o[i] = (row[i] as f64 * inv) as f32 * w[i];
        }
        rstd.push(inv as f32);
    }
    (out, rstd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn rmsnorm_backward_matches_finite_differences_and_gpu() {
        let mut rng = Rng::new(15);
        for &(rows, c) in &[(1, 3), (2, 7), (3, 576)] {
            let x = rng.vec_uniform(rows * c, -2.0, 2.0);
            let w = rng.vec_uniform(c, 0.5, 1.5);
            let dy = rng.vec_uniform(rows * c, -1.0, 1.0);
            let want = rmsnorm_backward_ref(&x, &w, &dy, c, 1e-5);
            // L = Σ dy·rmsnorm(x): its gradient by central differences.
            if c < 100 {
                let loss = |x: &[f32]| -> f64 {
                    let (out, _) = rmsnorm_ref(x, &w, c, 1e-5);
                    out.iter()
                        .zip(&dy)
                        .map(|(o, g)| *o as f64 * *g as f64)
                        .sum()
                };
                let fd = crate::kernels::testing::finite_differences(&loss, &x, 1e-3);
                assert_close("rmsnorm dx vs finite differences", &want, &fd, 2e-3, 1e-2);
            }
            let (_, rstd) = rmsnorm_ref(&x, &w, c, 1e-5);
            let dx0 = rng.vec_uniform(rows * c, -1.0, 1.0);
            let (gx, gw, gdy, gr, gdx) = (
                upload(&x),
                upload(&w),
                upload(&dy),
                upload(&rstd),
                upload(&dx0),
            );
            run(async |rec| {
                rmsnorm_backward(
                    rec,
                    &gx,
                    &gw,
                    &gdy,
                    &gr,
                    &gdx,
                    (rows as u32, c as u32),
                    true,
                )
                .await
                .unwrap()
            });
            let want_acc: Vec<f32> = dx0.iter().zip(&want).map(|(a, b)| a + b).collect();
            assert_close("rmsnorm dx gpu", &read(&gdx), &want_acc, 1e-5, 1e-4);
        }
    }

    #[test]
    fn rmsnorm_matches_cpu() {
        let mut rng = Rng::new(5);
        for &(rows, c) in &[(1, 1), (3, 7), (5, 576), (2, 1000)] {
            let x = rng.vec_uniform(rows * c, -3.0, 3.0);
            let w = rng.vec_uniform(c, 0.5, 1.5);
            let (want, want_rstd) = rmsnorm_ref(&x, &w, c, 1e-5);
            let (gx, gw) = (upload(&x), upload(&w));
            let (out, rstd) = (upload(&vec![0.0; rows * c]), upload(&vec![0.0; rows]));
            run(async |rec| {
                rmsnorm(rec, &gx, &gw, &out, &rstd, (rows as u32, c as u32), 1e-5)
                    .await
                    .unwrap()
            });
            assert_close("rmsnorm", &read(&out), &want, 1e-5, 1e-5);
            assert_close("rstd", &read(&rstd), &want_rstd, 1e-5, 1e-5);
        }
    }
}

#[cfg(test)]
mod head_norm_tests {
    use super::*;
    use crate::kernels::testing::{assert_close, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn many_short_rows_written_at_an_offset() {
        // Per-head norms: 40000 rows of 8 (more rows than one dispatch dimension holds), written
        // from element 12 of the output, forward and backward.
        let mut rng = Rng::new(25);
        let (rows, c, off) = (40000usize, 8usize, 12usize);
        let x = rng.vec_uniform(rows * c, -3.0, 3.0);
        let w = rng.vec_uniform(c, 0.5, 1.5);
        let (want, want_rstd) = rmsnorm_ref(&x, &w, c, 1e-6);
        let (gx, gw) = (upload(&x), upload(&w));
        let (gout, grstd) = (upload(&vec![7.0; off + rows * c]), upload(&vec![0.0; rows]));
        run(async |rec| {
            rmsnorm_to(
                rec,
                &gx,
                &gw,
                (&gout, off as u32),
                &grstd,
                (rows as u32, c as u32),
                1e-6,
            )
            .await
            .unwrap()
        });
        let out = read(&gout);
        assert_eq!(&out[..off], &[7.0; 12]);
        assert_close("rmsnorm rows", &out[off..], &want, 1e-5, 1e-4);
        assert_close("rmsnorm rstd", &read(&grstd), &want_rstd, 1e-6, 1e-4);
        let dy = rng.vec_uniform(rows * c, -1.0, 1.0);
        let want_dx = rmsnorm_backward_ref(&x, &w, &dy, c, 1e-6);
        let (gdy, gdx) = (upload(&dy), upload(&vec![0.0; rows * c]));
        run(async |rec| {
            let shape = (rows as u32, c as u32);
            rmsnorm_backward(rec, &gx, &gw, &gdy, &grstd, &gdx, shape, false)
                .await
                .unwrap()
        });
        assert_close("rmsnorm rows dx", &read(&gdx), &want_dx, 1e-5, 1e-4);
    }
}
