//! RMSNorm (`rmsnorm.wgsl`): `out[r, :] = x[r, :] · rstd[r] · w`, saving `rstd` for the backward.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result};

/// Mirrors `Params` in rmsnorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RmsNormParams {
    pub c: u32,
    pub r: u32,
    pub eps: f32,
    pub _pad: u32,
}
assert_params_size!(RmsNormParams, 16);

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
    let params = RmsNormParams {
        c,
        r: rows,
        eps,
        _pad: 0,
    };
    rec.dispatch(&LAYOUT, &[], &params, &[x, w, out, rstd], [rows, 1, 1])
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
