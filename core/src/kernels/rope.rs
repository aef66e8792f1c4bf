//! Rotary position embedding (`rope.wgsl`), in place, on adjacent pairs (llama's GGUF layout) or
//! NEOX halves ([`RopeStyle`]).

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result, grid_1d};
pub use crate::model::RopeStyle;

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
    pub pair_step: u32,
    pub pair_gap: u32,
    pub scale: f32,
    pub rot: u32,
    pub _pad: [u32; 3],
}
assert_params_size!(RopeParams, 64);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Rope,
    bindings: &[Binding::Uniform, Binding::ReadWrite, Binding::Read],
};

/// The rotation: pair i of a head turns by `pos · base^(−2i/ROT) / factors[i]` (`factors`: ROT/2
/// values, all 1 unless the model has Llama 3's `rope_freqs.weight` or Phi-3's LongRoPE factors)
/// and is scaled by `scale` (LongRoPE's attention factor, 1 otherwise). `F`: a GPU buffer for
/// the kernel, a slice for the CPU references.
#[derive(Clone, Copy, Debug)]
pub struct RopeFreqs<F> {
    pub base: f32,
    pub factors: F,
    pub scale: f32,
}

/// Where the heads to rotate live: T tokens, `row_stride` apart, of H heads of HS values, the
/// first `rot` of which rotate (`rot` = HS but for partial rotary embeddings); token t is at
/// position `pos0 + t % period` (`period` = each sequence's length when B sequences are stacked,
/// `u32::MAX` for one sequence); `style` says which values pair up.
#[derive(Clone, Copy, Debug)]
pub struct RopeShape {
    pub style: RopeStyle,
    pub period: u32,
    pub t: u32,
    pub h: u32,
    pub hs: u32,
    pub rot: u32,
    pub off: u32,
    pub row_stride: u32,
}

impl RopeShape {
    /// Distance between the first values of consecutive pairs.
    fn pair_step(&self) -> u32 {
        match self.style {
            RopeStyle::Adjacent => 2,
            RopeStyle::Neox => 1,
        }
    }

    /// Distance between the two values of a pair.
    fn pair_gap(&self) -> u32 {
        match self.style {
            RopeStyle::Adjacent => 1,
            RopeStyle::Neox => self.rot / 2,
        }
    }
}

/// Rotate in place (`inverse` rotates back, for the backward pass). Token t is at `pos0 + t`.
pub async fn rope(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    s: RopeShape,
    pos0: u32,
    freqs: RopeFreqs<&GpuBuffer>,
    inverse: bool,
) -> Result<()> {
    let params = RopeParams {
        t: s.t,
        h: s.h,
        hs: s.hs,
        pos0,
        off: s.off,
        row_stride: s.row_stride,
        theta_base: freqs.base,
        sign: if inverse { -1.0 } else { 1.0 },
        period: s.period,
        pair_step: s.pair_step(),
        pair_gap: s.pair_gap(),
        scale: freqs.scale,
        rot: s.rot,
        _pad: [0; 3],
    };
    let pairs = s.t * s.h * s.rot / 2;
    let buffers = [x, freqs.factors];
    rec.dispatch(
        &LAYOUT,
        &[],
        &params,
        &buffers,
        grid_1d(pairs.div_ceil(256)),
    )
    .await
}

/// CPU reference (in place).
pub fn rope_ref(x: &mut [f32], s: RopeShape, pos0: u32, freqs: RopeFreqs<&[f32]>, inverse: bool) {
    let (theta_base, factors, scale) = (freqs.base, freqs.factors, freqs.scale as f64);
    let (hs, rot) = (s.hs as usize, s.rot as usize);
    let (step, gap) = (s.pair_step() as usize, s.pair_gap() as usize);
    for t in 0..s.t as usize {
        let pos = (pos0 as usize + t % s.period as usize) as f64;
        for h in 0..s.h as usize {
            let base = s.off as usize + t * s.row_stride as usize + h * hs;
            for (i, &factor) in factors[..rot / 2].iter().enumerate() {
                let theta =
                    pos * (theta_base as f64).powf(-2.0 * i as f64 / rot as f64) / factor as f64;
                let (sn, cs) = theta.sin_cos();
                let (sn, cs) = (sn * scale, cs * scale);
                let sn = if inverse { -sn } else { sn };
                let (a, b) = (base + i * step, base + i * step + gap);
                let (x0, x1) = (x[a] as f64, x[b] as f64);
                x[a] = (x0 * cs - x1 * sn) as f32;
                x[b] = (x0 * sn + x1 * cs) as f32;
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
        for style in [RopeStyle::Adjacent, RopeStyle::Neox] {
            rope_matches_cpu_and_inverts_in(style);
        }
    }

    #[test]
    fn neox_pairs_halves_and_adjacent_pairs_neighbours() {
        // One head of 4 at position 1 with base 1: pair 0 turns by 1 rad, pair 1 by 1/1 = 1 rad
        // too (base^0 … base^-0.5 = 1). Adjacent pairs (x0, x1), (x2, x3); NEOX (x0, x2), (x1, x3).
        let (sn, cs) = 1f64.sin_cos();
        let shape = |style| RopeShape {
            style,
            period: u32::MAX,
            t: 1,
            h: 1,
            hs: 4,
            rot: 4,
            off: 0,
            row_stride: 4,
        };
        let turn = |a: f64, b: f64| [(a * cs - b * sn) as f32, (a * sn + b * cs) as f32];
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope_ref(
            &mut x,
            shape(RopeStyle::Adjacent),
            1,
            RopeFreqs {
                base: 1.0,
                factors: &[1.0; 2][..],
                scale: 1.0,
            },
            false,
        );
        let (p0, p1) = (turn(1.0, 2.0), turn(3.0, 4.0));
        assert_eq!(x, vec![p0[0], p0[1], p1[0], p1[1]]);
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope_ref(
            &mut x,
            shape(RopeStyle::Neox),
            1,
            RopeFreqs {
                base: 1.0,
                factors: &[1.0; 2][..],
                scale: 1.0,
            },
            false,
        );
        let (p0, p1) = (turn(1.0, 3.0), turn(2.0, 4.0));
        assert_eq!(x, vec![p0[0], p1[0], p0[1], p1[1]]);
    }

    #[test]
    fn partial_rotation_turns_the_first_rot_values_of_each_head_only() {
        // Phi-4-mini rotates 96 of 128 values a head: here 6 of 10, 2 heads, both pairings.
        for style in [RopeStyle::Adjacent, RopeStyle::Neox] {
            let s = RopeShape {
                style,
                period: u32::MAX,
                t: 3,
                h: 2,
                hs: 10,
                rot: 6,
                off: 0,
                row_stride: 20,
            };
            let x = Rng::new(9).vec_uniform(60, -1.0, 1.0);
            let factors = [1.0, 1.5, 3.0];
            let mut want = x.clone();
            rope_ref(&mut want, s, 7, freqs_ref(100.0, &factors, 1.0), false);
            for (i, (w, v)) in want.iter().zip(&x).enumerate() {
                assert_eq!(i % 10 >= 6, w == v, "{style:?} value {i}");
            }
            // NEOX pairs (i, i + 3) within the rotated 6: value 2 turns with value 5.
            let g = upload(&x);
            let gf = upload(&factors);
            let freqs = RopeFreqs {
                base: 100.0,
                factors: &gf,
                scale: 1.0,
            };
            run(async |rec| rope(rec, &g, s, 7, freqs, false).await.unwrap());
            assert_close(
                &format!("partial rope {style:?}"),
                &read(&g),
                &want,
                1e-5,
                1e-4,
            );
            run(async |rec| rope(rec, &g, s, 7, freqs, true).await.unwrap());
            assert_close("partial rope inverse", &read(&g), &x, 1e-5, 1e-4);
        }
    }

    fn freqs_ref(base: f32, factors: &[f32], scale: f32) -> RopeFreqs<&[f32]> {
        RopeFreqs {
            base,
            factors,
            scale,
        }
    }

    fn rope_matches_cpu_and_inverts_in(style: RopeStyle) {
        let mut rng = Rng::new(6);
        // 5 tokens of 3 heads of 8 inside rows of 40 (other values untouched), from position 300.
        let s = RopeShape {
            style,
            period: 3,
            t: 5,
            h: 3,
            hs: 8,
            rot: 8,
            off: 4,
            row_stride: 40,
        };
        let x = rng.vec_uniform(4 + 5 * 40, -1.0, 1.0);
        // Llama 3-like factors: high frequencies as they are, low ones slowed 8×, a blend between.
        let factors = [1.0, 1.0, 2.7, 8.0];
        let g_factors = upload(&factors);
        let freqs = RopeFreqs {
            base: 10000.0,
            factors: &g_factors,
            scale: 1.0,
        };
        let mut want = x.clone();
        rope_ref(&mut want, s, 300, freqs_ref(10000.0, &factors, 1.0), false);
        let mut plain = x.clone();
        rope_ref(
            &mut plain,
            s,
            300,
            freqs_ref(10000.0, &[1.0; 4], 1.0),
            false,
        );
        assert!(plain != want, "the factors change the rotation");
        let g = upload(&x);
        run(async |rec| rope(rec, &g, s, 300, freqs, false).await.unwrap());
        assert_close(&format!("rope {style:?}"), &read(&g), &want, 2e-5, 1e-4);
        run(async |rec| rope(rec, &g, s, 300, freqs, true).await.unwrap());
        assert_close("rope inverse", &read(&g), &x, 2e-5, 1e-4);
        // LongRoPE's attention factor scales both; the inverse is the transpose, scaled alike.
        let scaled = RopeFreqs {
            scale: 1.13,
            ..freqs
        };
        let mut want = x.clone();
        rope_ref(&mut want, s, 300, freqs_ref(10000.0, &factors, 1.13), false);
        let mut back = want.clone();
        rope_ref(&mut back, s, 300, freqs_ref(10000.0, &factors, 1.13), true);
        let twice: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let rotated = (i >= 4) && ((i - 4) % 40) < 24;
                if rotated { v * 1.13 * 1.13 } else { v }
            })
            .collect();
        assert_close(
            "scaled inverse is the scaled transpose",
            &back,
            &twice,
            1e-5,
            1e-5,
        );
        run(async |rec| rope(rec, &g, s, 300, scaled, false).await.unwrap());
        assert_close(
            &format!("rope {style:?} scaled"),
            &read(&g),
            &want,
            2e-5,
            1e-4,
        );
        run(async |rec| rope(rec, &g, s, 300, scaled, true).await.unwrap());
        assert_close("rope scaled inverse", &read(&g), &back, 2e-5, 1e-4);
        // Real model shape: 9 heads of 64, base 100000, positions up to 2000.
        let s = RopeShape {
            style,
            period: u32::MAX,
            t: 4,
            h: 9,
            hs: 64,
            rot: 64,
            off: 0,
            row_stride: 576,
        };
        let x = rng.vec_uniform(4 * 576, -1.0, 1.0);
        let ones = upload(&[1.0; 32]);
        let freqs = RopeFreqs {
            base: 100000.0,
            factors: &ones,
            scale: 1.0,
        };
        let mut want = x.clone();
        rope_ref(
            &mut want,
            s,
            1996,
            freqs_ref(100000.0, &[1.0; 32], 1.0),
            false,
        );
        let g = upload(&x);
        run(async |rec| rope(rec, &g, s, 1996, freqs, false).await.unwrap());
        assert_close("rope smollm", &read(&g), &want, 2e-4, 1e-3);
    }
}
