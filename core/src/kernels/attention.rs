//! Causal flash attention forward with GQA (`attention.wgsl`), for prompts and KV-cache decode.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result};

/// Mirrors `Params` in attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionParams {
    pub t: u32,
    pub nh: u32,
    pub kvh: u32,
    pub hs: u32,
    pub pos0: u32,
    pub s: u32,
    pub scale: f32,
    pub _pad: u32,
}
assert_params_size!(AttentionParams, 32);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Attention,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
        Binding::ReadWrite,
    ],
};

/// Shapes: B sequences of T queries (at positions pos0..pos0+T) over key/value rows of
/// capacity S per sequence.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub b: u32,
    pub t: u32,
    pub nh: u32,
    pub kvh: u32,
    pub hs: u32,
    pub pos0: u32,
    pub s: u32,
}

/// `o = softmax(q·kᵀ/√HS, causal) · v` (`=`), and `lse` (`=`) per (b, t, head).
#[allow(clippy::too_many_arguments)]
pub async fn attention(
    rec: &mut Recorder<'_>,
    q: &GpuBuffer,
    k: &GpuBuffer,
    v: &GpuBuffer,
    o: &GpuBuffer,
    lse: &GpuBuffer,
    sh: AttentionShape,
) -> Result<()> {
    assert!(sh.hs <= 256 && sh.nh.is_multiple_of(sh.kvh) && sh.pos0 + sh.t <= sh.s);
    let params = AttentionParams {
        t: sh.t,
        nh: sh.nh,
        kvh: sh.kvh,
        hs: sh.hs,
        pos0: sh.pos0,
        s: sh.s,
        scale: 1.0 / (sh.hs as f32).sqrt(),
        _pad: 0,
    };
    rec.dispatch(
        &LAYOUT,
        &[],
        &params,
        &[q, k, v, o, lse],
        [sh.t, sh.nh, sh.b],
    )
    .await
}

/// CPU reference; returns (o, lse).
pub fn attention_ref(q: &[f32], k: &[f32], v: &[f32], sh: AttentionShape) -> (Vec<f32>, Vec<f32>) {
    let (b, t, nh, kvh, hs, s) = (
        sh.b as usize,
        sh.t as usize,
        sh.nh as usize,
        sh.kvh as usize,
        sh.hs as usize,
        sh.s as usize,
    );
    let scale = 1.0 / (hs as f64).sqrt();
    let mut o = vec![0.0; b * t * nh * hs];
    let mut lse = vec![0.0; b * t * nh];
    for bi in 0..b {
        for ti in 0..t {
            let n_keys = sh.pos0 as usize + ti + 1;
            for h in 0..nh {
                let g = h / (nh / kvh);
                let qo = ((bi * t + ti) * nh + h) * hs;
                let kv = |si: usize| (bi * s + si) * kvh * hs + g * hs;
                let scores: Vec<f64> = (0..n_keys)
                    .map(|si| {
                        (0..hs)
                            .map(|d| q[qo + d] as f64 * k[kv(si) + d] as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let sum: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                for d in 0..hs {
                    let acc: f64 = scores
                        .iter()
                        .enumerate()
                        .map(|(si, x)| (x - m).exp() * v[kv(si) + d] as f64)
                        .sum();
                    o[qo + d] = (acc / sum) as f32;
                }
                lse[(bi * t + ti) * nh + h] = (m + sum.ln()) as f32;
            }
        }
    }
    (o, lse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn attention_matches_cpu_for_prompts_and_decode() {
        let mut rng = Rng::new(7);
        let shapes = [
            AttentionShape {
                b: 1,
                t: 1,
                nh: 1,
                kvh: 1,
                hs: 8,
                pos0: 0,
                s: 1,
            },
            AttentionShape {
                b: 2,
                t: 7,
                nh: 4,
                kvh: 2,
                hs: 16,
                pos0: 0,
                s: 7,
            },
            // 9 heads over 3 kv heads of 64 (SmolLM2), more keys than one 64-key chunk.
            AttentionShape {
                b: 1,
                t: 70,
                nh: 9,
                kvh: 3,
                hs: 64,
                pos0: 0,
                s: 70,
            },
            // decode: one query after 100 cached positions, in a cache of capacity 128
            AttentionShape {
                b: 1,
                t: 1,
                nh: 9,
                kvh: 3,
                hs: 64,
                pos0: 100,
                s: 128,
            },
            // a chunk of queries continuing a cached prefix; head size 96 (not a multiple of 64)
            AttentionShape {
                b: 1,
                t: 5,
                nh: 2,
                kvh: 1,
                hs: 96,
                pos0: 61,
                s: 66,
            },
        ];
        for sh in shapes {
            let (b, t, nh, kvh, hs, s) = (
                sh.b as usize,
                sh.t as usize,
                sh.nh as usize,
                sh.kvh as usize,
                sh.hs as usize,
                sh.s as usize,
            );
            let q = rng.vec_uniform(b * t * nh * hs, -1.0, 1.0);
            let k = rng.vec_uniform(b * s * kvh * hs, -1.0, 1.0);
            let v = rng.vec_uniform(b * s * kvh * hs, -1.0, 1.0);
            let (want_o, want_lse) = attention_ref(&q, &k, &v, sh);
            let (gq, gk, gv) = (upload(&q), upload(&k), upload(&v));
            let (go, glse) = (upload(&vec![0.0; q.len()]), upload(&vec![0.0; b * t * nh]));
            run(async |rec| attention(rec, &gq, &gk, &gv, &go, &glse, sh).await.unwrap());
            assert_close(&format!("o {sh:?}"), &read(&go), &want_o, 1e-5, 1e-4);
            assert_close(&format!("lse {sh:?}"), &read(&glse), &want_lse, 1e-5, 1e-4);
        }
    }
}
