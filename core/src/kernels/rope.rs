//! Rotary position embedding (`rope.wgsl`), in place, on adjacent pairs (GGUF llama layout).

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result, grid_1d};

/// Mirrors `Params` in rope.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RopeParams {
    pub t: u32,
    pub h: u32,
    pub hs: u32,
    pub pos0: u32,
    pub off: u32,
    pub row_stride: u32,
    pub theta_base: f32,
    pub sign: f32,
    pub period: u32,
    pub _pad: [u32; 3],
}
assert_params_size!(RopeParams, 48);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Rope,
    bindings: &[Binding::Uniform, Binding::ReadWrite],
};

/// Where the heads to rotate live: T tokens, `row_stride` apart, of H heads of HS values;
/// token t is at position `pos0 + t % period` (`period` = each sequence's length when B
/// sequences are stacked, `u32::MAX` for one sequence).
#[derive(Clone, Copy, Debug)]
pub struct RopeShape {
    pub period: u32,
    pub t: u32,
    pub h: u32,
    pub hs: u32,
    pub off: u32,
    pub row_stride: u32,
}

/// Rotate in place (`inverse` rotates back, for the backward pass). Token t is at `pos0 + t`.
pub async fn rope(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    s: RopeShape,
    pos0: u32,
    theta_base: f32,
    inverse: bool,
) -> Result<()> {
    let params = RopeParams {
        t: s.t,
        h: s.h,
        hs: s.hs,
        pos0,
        off: s.off,
        row_stride: s.row_stride,
        theta_base,
        sign: if inverse { -1.0 } else { 1.0 },
        period: s.period,
        _pad: [0; 3],
    };
    let pairs = s.t * s.h * s.hs / 2;
    rec.dispatch(&LAYOUT, &[], &params, &[x], grid_1d(pairs.div_ceil(256)))
        .await
}

/// CPU reference (in place).
pub fn rope_ref(x: &mut [f32], s: RopeShape, pos0: u32, theta_base: f32, inverse: bool) {
    let hs = s.hs as usize;
    for t in 0..s.t as usize {
        let pos = (pos0 as usize + t % s.period as usize) as f64;
        for h in 0..s.h as usize {
            let base = s.off as usize + t * s.row_stride as usize + h * hs;
            for i in 0..hs / 2 {
                let theta = pos * (theta_base as f64).powf(-2.0 * i as f64 / hs as f64);
                let (sn, cs) = theta.sin_cos();
                let sn = if inverse { -sn } else { sn };
                let (x0, x1) = (x[base + 2 * i] as f64, x[base + 2 * i + 1] as f64);
                x[base + 2 * i] = (x0 * cs - x1 * sn) as f32;
                x[base + 2 * i + 1] = (x0 * sn + x1 * cs) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn rope_matches_cpu_and_inverts() {
        let mut rng = Rng::new(6);
        // 5 tokens of 3 heads of 8 inside rows of 40 (other values untouched), from position 300.
        let s = RopeShape {
            period: 3,
            t: 5,
            h: 3,
            hs: 8,
            off: 4,
            row_stride: 40,
        };
        let x = rng.vec_uniform(4 + 5 * 40, -1.0, 1.0);
        let mut want = x.clone();
        rope_ref(&mut want, s, 300, 10000.0, false);
        let g = upload(&x);
        run(async |rec| rope(rec, &g, s, 300, 10000.0, false).await.unwrap());
        assert_close("rope", &read(&g), &want, 2e-5, 1e-4);
        run(async |rec| rope(rec, &g, s, 300, 10000.0, true).await.unwrap());
        assert_close("rope inverse", &read(&g), &x, 2e-5, 1e-4);
        // Real model shape: 9 heads of 64, base 100000, positions up to 2000.
        let s = RopeShape {
            period: u32::MAX,
            t: 4,
            h: 9,
            hs: 64,
            off: 0,
            row_stride: 576,
        };
        let x = rng.vec_uniform(4 * 576, -1.0, 1.0);
        let mut want = x.clone();
        rope_ref(&mut want, s, 1996, 100000.0, false);
        let g = upload(&x);
        run(async |rec| rope(rec, &g, s, 1996, 100000.0, false).await.unwrap());
        assert_close("rope smollm", &read(&g), &want, 2e-4, 1e-3);
    }
}
