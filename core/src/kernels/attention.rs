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
    pub window: u32,
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
    /// Sliding window: a query at position P attends keys at P − window + 1 ..= P
    /// (`u32::MAX`: all earlier keys; gemma3's local layers: 512).
    pub window: u32,
}

impl AttentionShape {
    /// The first key a query at position `pos` attends.
    pub fn first_key(&self, pos: usize) -> usize {
        (pos + 1).saturating_sub(self.window as usize)
    }
}

/// Which build of the attention kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionVariant {
    /// A workgroup of 64 threads per row, scores shared through workgroup memory.
    Portable,
    /// One thread per row, no workgroup memory and no barriers (CPU adapters).
    Direct,
}

/// Which of the three kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Forward,
    Dq,
    Dkv,
}

impl AttentionVariant {
    /// DIRECT on CPU adapters (unless the recorder must be portable) when HS % 4 == 0 and the
    /// longest row of `pass` stays under 60000 loop iterations: llvmpipe ends an invocation's
    /// loops after 65535 in all (see `MatmulVariant::k_chunk`). The count is matmul.wgsl's
    /// DIRECT loops with none unrolled: per key 1 + 2·HS/4 (BWD_DKV: per query, 1 + group ×
    /// (1 + 2·HS/4)).
    fn choose(rec: &Recorder<'_>, sh: AttentionShape, pass: Pass) -> AttentionVariant {
        let hs4 = (sh.hs / 4) as u64;
        let per_key = 1 + 2 * hs4;
        let rows = match pass {
            Pass::Forward => (sh.pos0 + sh.t) as u64 * per_key,
            Pass::Dq => sh.t as u64 * per_key,
            Pass::Dkv => sh.t as u64 * (1 + (sh.nh / sh.kvh) as u64 * per_key),
        };
        let fits = rows + 4 * hs4 < 60_000;
        if rec.gpu().is_cpu() && !rec.is_portable() && sh.hs.is_multiple_of(4) && fits {
            AttentionVariant::Direct
        } else {
            AttentionVariant::Portable
        }
    }

    /// The preprocessor flags with `pass`'s own.
    fn defines(self, pass: Option<&'static str>) -> Vec<&'static str> {
        let direct = (self == AttentionVariant::Direct).then_some("DIRECT");
        pass.into_iter().chain(direct).collect()
    }

    /// The grid: a workgroup per row (portable), or 64 rows per workgroup (DIRECT), for `rows`
    /// rows per sequence laid out as `(outer, inner)`.
    fn groups(self, (outer, inner): (u32, u32), b: u32) -> [u32; 3] {
        match self {
            AttentionVariant::Portable => [outer, inner, b],
            AttentionVariant::Direct => [(outer * inner).div_ceil(64), b, 1],
        }
    }
}

/// The build [`attention`] runs for this shape on the recorder's device.
pub fn forward_variant(rec: &Recorder<'_>, sh: AttentionShape) -> AttentionVariant {
    AttentionVariant::choose(rec, sh, Pass::Forward)
}

/// The builds [`attention_backward`] runs for this shape: (dQ, dK/dV).
pub fn backward_variants(
    rec: &Recorder<'_>,
    sh: AttentionShape,
) -> (AttentionVariant, AttentionVariant) {
    (
        AttentionVariant::choose(rec, sh, Pass::Dq),
        AttentionVariant::choose(rec, sh, Pass::Dkv),
    )
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
        window: sh.window,
    };
    let variant = forward_variant(rec, sh);
    rec.dispatch(
        &LAYOUT,
        &variant.defines(None),
        &params,
        &[q, k, v, o, lse],
        variant.groups((sh.t, sh.nh), sh.b),
    )
    .await
}

pub const LAYOUT_BACKWARD: KernelLayout = KernelLayout {
    shader: Shader::Attention,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
        Binding::ReadWrite,
    ],
};

/// Saved forward tensors and the output gradient, for [`attention_backward`].
#[derive(Clone, Copy, Debug)]
pub struct AttentionSaved<'a> {
    pub q: &'a GpuBuffer,
    pub k: &'a GpuBuffer,
    pub v: &'a GpuBuffer,
    pub o: &'a GpuBuffer,
    pub lse: &'a GpuBuffer,
    pub dout: &'a GpuBuffer,
}

/// Gradients of [`attention`] (prompt from position 0): `dq`, `dk`, `dv` (all `=`); `delta`
/// (B·T·NH floats) is scratch. GQA gradients are summed per kv head inside one workgroup, so
/// no atomics are needed.
pub async fn attention_backward(
    rec: &mut Recorder<'_>,
    saved: AttentionSaved<'_>,
    delta: &GpuBuffer,
    (dq, dk, dv): (&GpuBuffer, &GpuBuffer, &GpuBuffer),
    sh: AttentionShape,
) -> Result<()> {
    assert!(
        sh.pos0 == 0 && sh.s == sh.t,
        "the backward pass runs on whole sequences"
    );
    let params = AttentionParams {
        t: sh.t,
        nh: sh.nh,
        kvh: sh.kvh,
        hs: sh.hs,
        pos0: 0,
        s: sh.s,
        scale: 1.0 / (sh.hs as f32).sqrt(),
        window: sh.window,
    };
    let AttentionSaved {
        q,
        k,
        v,
        o,
        lse,
        dout,
    } = saved;
    let dq_bufs = [q, k, v, o, dout, lse, delta, dq];
    let (variant, dkv_variant) = backward_variants(rec, sh);
    rec.dispatch(
        &LAYOUT_BACKWARD,
        &variant.defines(Some("BWD_DQ")),
        &params,
        &dq_bufs,
        variant.groups((sh.t, sh.nh), sh.b),
    )
    .await?;
    let dkv_bufs = [q, k, v, dout, lse, delta, dk, dv];
    let variant = dkv_variant;
    rec.dispatch(
        &LAYOUT_BACKWARD,
        &variant.defines(Some("BWD_DKV")),
        &params,
        &dkv_bufs,
        variant.groups((sh.s, sh.kvh), sh.b),
    )
    .await
}

/// CPU reference of [`attention_backward`]: (dq, dk, dv).
pub fn attention_backward_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dout: &[f32],
    sh: AttentionShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (b, t, nh, kvh, hs, s) = (
        sh.b as usize,
        sh.t as usize,
        sh.nh as usize,
        sh.kvh as usize,
        sh.hs as usize,
        sh.s as usize,
    );
    let scale = 1.0 / (hs as f64).sqrt();
    let (mut dq, mut dk, mut dv) = (
        vec![0.0f64; q.len()],
        vec![0.0f64; k.len()],
        vec![0.0f64; v.len()],
    );
    for bi in 0..b {
        for ti in 0..t {
            for h in 0..nh {
                let g = h / (nh / kvh);
                let qo = ((bi * t + ti) * nh + h) * hs;
                let kv = |si: usize| (bi * s + si) * kvh * hs + g * hs;
                let (first, n) = (sh.first_key(ti), ti + 1);
                let scores: Vec<f64> = (first..n)
                    .map(|si| {
                        (0..hs)
                            .map(|d| q[qo + d] as f64 * k[kv(si) + d] as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                let probs: Vec<f64> = scores.iter().map(|x| (x - m).exp() / z).collect();
                let dp: Vec<f64> = (first..n)
                    .map(|si| {
                        (0..hs)
                            .map(|d| dout[qo + d] as f64 * v[kv(si) + d] as f64)
                            .sum()
                    })
                    .collect();
                let big_d: f64 = probs.iter().zip(&dp).map(|(p, dp)| p * dp).sum();
                for (i, si) in (first..n).enumerate() {
                    let ds = probs[i] * (dp[i] - big_d);
                    for d in 0..hs {
                        dq[qo + d] += ds * k[kv(si) + d] as f64 * scale;
                        dk[kv(si) + d] += ds * q[qo + d] as f64 * scale;
                        dv[kv(si) + d] += probs[i] * dout[qo + d] as f64;
                    }
                }
            }
        }
    }
    let f = |x: Vec<f64>| x.into_iter().map(|v| v as f32).collect();
    (f(dq), f(dk), f(dv))
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
            let first = sh.first_key(n_keys - 1);
            for h in 0..nh {
                let g = h / (nh / kvh);
                let qo = ((bi * t + ti) * nh + h) * hs;
                let kv = |si: usize| (bi * s + si) * kvh * hs + g * hs;
                let scores: Vec<f64> = (first..n_keys)
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
                        .map(|(i, x)| (x - m).exp() * v[kv(first + i) + d] as f64)
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
    use crate::kernels::testing::{assert_close, read, run_with, upload};
    use crate::util::Rng;

    #[test]
    fn attention_backward_matches_finite_differences_and_gpu() {
        use crate::kernels::testing::finite_differences;
        let mut rng = Rng::new(19);
        // Finite differences on a small GQA shape.
        let sh = AttentionShape {
            b: 1,
            t: 4,
            nh: 4,
            kvh: 2,
            hs: 4,
            pos0: 0,
            s: 4,
            window: u32::MAX,
        };
        let n_q = 4 * 4 * 4;
        let n_kv = 4 * 2 * 4;
        let (q, k, v) = (
            rng.vec_uniform(n_q, -1.0, 1.0),
            rng.vec_uniform(n_kv, -1.0, 1.0),
            rng.vec_uniform(n_kv, -1.0, 1.0),
        );
        let dout = rng.vec_uniform(n_q, -1.0, 1.0);
        // Without and with a sliding window of 2 keys.
        for window in [u32::MAX, 2] {
            let sh = AttentionShape { window, ..sh };
            let (dq, dk, dv) = attention_backward_ref(&q, &k, &v, &dout, sh);
            let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                attention_ref(q, k, v, sh)
                    .0
                    .iter()
                    .zip(&dout)
                    .map(|(o, g)| *o as f64 * *g as f64)
                    .sum()
            };
            assert_close(
                "dq vs fd",
                &dq,
                &finite_differences(&|x| loss(x, &k, &v), &q, 1e-3),
                1e-3,
                1e-2,
            );
            assert_close(
                "dk vs fd",
                &dk,
                &finite_differences(&|x| loss(&q, x, &v), &k, 1e-3),
                1e-3,
                1e-2,
            );
            assert_close(
                "dv vs fd",
                &dv,
                &finite_differences(&|x| loss(&q, &k, x), &v, 1e-3),
                1e-3,
                1e-2,
            );
        }
        // GPU against the reference, on shapes with several chunks of 64 keys or queries.
        for sh in [
            sh,
            AttentionShape {
                b: 2,
                t: 7,
                nh: 4,
                kvh: 2,
                hs: 16,
                pos0: 0,
                s: 7,
                window: u32::MAX,
            },
            AttentionShape {
                b: 1,
                t: 70,
                nh: 9,
                kvh: 3,
                hs: 64,
                pos0: 0,
                s: 70,
                window: u32::MAX,
            },
            // Sliding windows: shorter than a 64-key chunk, and longer (keys of two chunks).
            AttentionShape {
                b: 2,
                t: 70,
                nh: 4,
                kvh: 2,
                hs: 16,
                pos0: 0,
                s: 70,
                window: 5,
            },
            AttentionShape {
                b: 1,
                t: 140,
                nh: 2,
                kvh: 1,
                hs: 8,
                pos0: 0,
                s: 140,
                window: 66,
            },
        ] {
            let (b, t, nh, kvh, hs) = (
                sh.b as usize,
                sh.t as usize,
                sh.nh as usize,
                sh.kvh as usize,
                sh.hs as usize,
            );
            let (nq, nkv) = (b * t * nh * hs, b * t * kvh * hs);
            let (q, k, v) = (
                rng.vec_uniform(nq, -1.0, 1.0),
                rng.vec_uniform(nkv, -1.0, 1.0),
                rng.vec_uniform(nkv, -1.0, 1.0),
            );
            let dout = rng.vec_uniform(nq, -1.0, 1.0);
            let (want_dq, want_dk, want_dv) = attention_backward_ref(&q, &k, &v, &dout, sh);
            let (gq, gk, gv, gdo) = (upload(&q), upload(&k), upload(&v), upload(&dout));
            let (go, glse, delta) = (
                upload(&vec![0.0; nq]),
                upload(&vec![0.0; b * t * nh]),
                upload(&vec![0.0; b * t * nh]),
            );
            for portable in [false, true] {
                let (dq, dk, dv) = (
                    upload(&vec![7.0; nq]),
                    upload(&vec![7.0; nkv]),
                    upload(&vec![7.0; nkv]),
                );
                run_with(portable, async |rec| {
                    attention(rec, &gq, &gk, &gv, &go, &glse, sh).await.unwrap();
                    let saved = AttentionSaved {
                        q: &gq,
                        k: &gk,
                        v: &gv,
                        o: &go,
                        lse: &glse,
                        dout: &gdo,
                    };
                    attention_backward(rec, saved, &delta, (&dq, &dk, &dv), sh)
                        .await
                        .unwrap();
                });
                let what = format!("{sh:?} portable {portable}");
                assert_close(&format!("dq {what}"), &read(&dq), &want_dq, 1e-4, 1e-3);
                assert_close(&format!("dk {what}"), &read(&dk), &want_dk, 1e-4, 1e-3);
                assert_close(&format!("dv {what}"), &read(&dv), &want_dv, 1e-4, 1e-3);
            }
        }
    }

    #[test]
    fn the_direct_build_runs_on_cpu_adapters_within_llvmpipes_loop_budget() {
        // So that the tests above cover both builds here: DIRECT for their shapes on this CPU
        // adapter, the portable one for a recorder that must be portable and for rows longer
        // than llvmpipe's loop budget (T 2048 over HS 64), and for HS not a multiple of 4.
        let rec = crate::kernels::testing::recorder(false);
        assert!(rec.gpu().is_cpu(), "these tests expect lavapipe");
        let sh = |t, hs| AttentionShape {
            b: 1,
            t,
            nh: 9,
            kvh: 3,
            hs,
            pos0: 0,
            s: t,
            window: u32::MAX,
        };
        assert_eq!(forward_variant(&rec, sh(70, 64)), AttentionVariant::Direct);
        assert_eq!(
            AttentionVariant::choose(&rec, sh(320, 64), Pass::Dkv),
            AttentionVariant::Direct
        );
        assert_eq!(
            forward_variant(&rec, sh(2048, 64)),
            AttentionVariant::Portable
        );
        assert_eq!(
            AttentionVariant::choose(&rec, sh(1024, 64), Pass::Dkv),
            AttentionVariant::Portable
        );
        assert_eq!(forward_variant(&rec, sh(8, 6)), AttentionVariant::Portable);
        let portable = crate::kernels::testing::recorder(true);
        assert_eq!(
            forward_variant(&portable, sh(70, 64)),
            AttentionVariant::Portable
        );
    }

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
                window: u32::MAX,
            },
            AttentionShape {
                b: 2,
                t: 7,
                nh: 4,
                kvh: 2,
                hs: 16,
                pos0: 0,
                s: 7,
                window: u32::MAX,
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
                window: u32::MAX,
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
                window: u32::MAX,
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
                window: u32::MAX,
            },
            // Sliding windows (gemma3's local layers): a prompt with keys of two 64-key chunks,
            // decode after 100 cached positions, and a chunk continuing a cached prefix.
            AttentionShape {
                b: 2,
                t: 140,
                nh: 2,
                kvh: 1,
                hs: 8,
                pos0: 0,
                s: 140,
                window: 70,
            },
            AttentionShape {
                b: 1,
                t: 1,
                nh: 9,
                kvh: 3,
                hs: 64,
                pos0: 100,
                s: 128,
                window: 30,
            },
            AttentionShape {
                b: 1,
                t: 5,
                nh: 2,
                kvh: 1,
                hs: 256,
                pos0: 61,
                s: 66,
                window: 9,
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
            for portable in [false, true] {
                let (go, glse) = (upload(&vec![0.0; q.len()]), upload(&vec![0.0; b * t * nh]));
                run_with(portable, async |rec| {
                    attention(rec, &gq, &gk, &gv, &go, &glse, sh).await.unwrap()
                });
                let what = format!("{sh:?} portable {portable}");
                assert_close(&format!("o {what}"), &read(&go), &want_o, 1e-5, 1e-4);
                assert_close(&format!("lse {what}"), &read(&glse), &want_lse, 1e-5, 1e-4);
            }
        }
    }
}
