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

/// Which build of the kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemvVariant {
    /// Workgroup-memory reduction; runs everywhere.
    Portable,
    /// Subgroup reduction (needs the `SUBGROUP` feature).
    Subgroups,
}

impl GemvVariant {
    /// The preprocessor flags of this variant for weight format flag `w`.
    pub fn defines(self, w: &'static str) -> Vec<&'static str> {
        match self {
            GemvVariant::Portable => vec![w],
            GemvVariant::Subgroups => vec![w, "SUBGROUPS"],
        }
    }

    /// Rows of W per workgroup (gemv.wgsl's ROWS for this variant).
    fn rows_per_workgroup(self) -> u32 {
        match self {
            GemvVariant::Portable => 8,
            GemvVariant::Subgroups => 32,
        }
    }

    /// The fastest variant the recorder's device supports (portable when it must be).
    pub fn for_recorder(rec: &Recorder<'_>) -> GemvVariant {
        if rec.gpu().has(wgpu::Features::SUBGROUP) && !rec.is_portable() {
            GemvVariant::Subgroups
        } else {
            GemvVariant::Portable
        }
    }
}

/// `y[m, :] (+)= α · W · x[m, :]` for `m` rows of x (row-major, K values each) at `x_off`
/// (a multiple of 4); y rows `y_stride` apart from `y_off`. Uses the best variant.
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
    let variant = GemvVariant::for_recorder(rec);
    gemv_variant(
        rec, variant, x, x_off, w, y, y_off, y_stride, m, alpha, accumulate,
    )
    .await
}

/// [`gemv`] with an explicit variant.
#[allow(clippy::too_many_arguments)]
pub async fn gemv_variant(
    rec: &mut Recorder<'_>,
    variant: GemvVariant,
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
    let k = w.cols as u32;
    debug_assert!((k as usize).is_multiple_of(w.format.k_multiple()) && x_off.is_multiple_of(4));
    // Each part of W gives its own values of y.
    for part in &w.parts {
        let n = part.rows as u32;
        let params = GemvParams {
            n,
            k,
            x_off,
            y_off: y_off + part.row0 as u32,
            y_sm: y_stride,
            accumulate: accumulate as u32,
            alpha,
            _pad: 0,
        };
        rec.dispatch(
            &LAYOUT,
            &variant.defines(w.format.define()),
            &params,
            &[x, &part.q, &part.s, y],
            [n.div_ceil(variant.rows_per_workgroup()), m, 1],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::WeightFormat;
    use crate::kernels::testing::{
        assert_close, dequant, gpu, random_blocks, read, run, shapes_for, upload,
    };
    use crate::util::Rng;

    #[test]
    fn gemv_matches_cpu_for_every_format_and_variant() {
        let mut rng = Rng::new(3);
        let variants = if gpu().has(wgpu::Features::SUBGROUP) {
            vec![GemvVariant::Portable, GemvVariant::Subgroups]
        } else {
            vec![GemvVariant::Portable]
        };
        for variant in variants {
            for &format in WeightFormat::ALL {
                let shapes = [
                    (1, 1, 32),
                    (1, 37, 64),
                    (3, 129, 576),
                    (1, 1000, 160),
                    (1, 3, 256),
                    (2, 45, 768),
                ];
                for (m, n, k) in shapes_for(format, &shapes) {
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
                        let (n, m) = (n as u32, m as u32);
                        gemv_variant(rec, variant, &gx, 0, &gw, &gy, 0, n, m, 2.0, true)
                            .await
                            .unwrap()
                    });
                    assert_close(
                        &format!("gemv {variant:?} {format:?} {m}x{n}x{k}"),
                        &read(&gy),
                        &want,
                        1e-4,
                        1e-4,
                    );
                }
            }
        }
    }
}
