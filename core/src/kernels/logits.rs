//! Log-softmax statistics of logit rows (`logits.wgsl`): log-sum-exp, argmax, the target's
//! log-probability and the entropy — what scoring, greedy decoding and metrics need, without
//! reading the logits back.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result};

/// Mirrors `Params` in logits.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LogitsParams {
    pub v: u32,
    pub r: u32,
    pub row_off: u32,
    pub grad_scale: f32,
}
assert_params_size!(LogitsParams, 16);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Logits,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
};

/// Target id meaning "no target" for a row.
pub const NO_TARGET: u32 = u32::MAX;

/// Statistics of one row, as read back from the `stats` buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowStats {
    pub lse: f32,
    pub argmax: u32,
    pub target_logprob: f32,
    pub entropy: f32,
}

impl RowStats {
    /// Decode `rows` rows from the 4 floats per row the kernel writes.
    pub fn decode(stats: &[f32]) -> Vec<RowStats> {
        stats
            .chunks_exact(4)
            .map(|s| RowStats {
                lse: s[0],
                argmax: s[1].to_bits(),
                target_logprob: s[2],
                entropy: s[3],
            })
            .collect()
    }
}

/// Statistics of `rows` rows of `v` logits into `stats` (4 floats per row, `=`). Rows are
/// numbered from `row_off` in `targets` and `stats` (so logits can be processed in chunks).
pub async fn logit_stats(
    rec: &mut Recorder<'_>,
    logits: &GpuBuffer,
    targets: &GpuBuffer,
    stats: &GpuBuffer,
    (rows, v): (u32, u32),
    row_off: u32,
) -> Result<()> {
    let params = LogitsParams {
        v,
        r: rows,
        row_off,
        grad_scale: 0.0,
    };
    rec.dispatch(
        &LAYOUT,
        &[],
        &params,
        &[logits, targets, stats],
        [rows, 1, 1],
    )
    .await
}

pub const LAYOUT_GRAD: KernelLayout = KernelLayout {
    shader: Shader::Logits,
    bindings: &[
        Binding::Uniform,
        Binding::ReadWrite,
        Binding::Read,
        Binding::Read,
    ],
};

/// The cross-entropy gradient with respect to the logits, in place (`=`):
/// `z[r, v] = (softmax(z[r])_v − [v = target_r]) · grad_scale`, using the `lse` that
/// [`logit_stats`] wrote for the same rows; rows without a target become 0. With
/// `grad_scale = 1 / trained tokens` this is the gradient of the mean NLL.
pub async fn cross_entropy_grad(
    rec: &mut Recorder<'_>,
    logits: &GpuBuffer,
    targets: &GpuBuffer,
    stats: &GpuBuffer,
    (rows, v): (u32, u32),
    row_off: u32,
    grad_scale: f32,
) -> Result<()> {
    let params = LogitsParams {
        v,
        r: rows,
        row_off,
        grad_scale,
    };
    rec.dispatch(
        &LAYOUT_GRAD,
        &["GRAD"],
        &params,
        &[logits, targets, stats],
        [rows, 1, 1],
    )
    .await
}

/// CPU reference.
pub fn logit_stats_ref(logits: &[f32], targets: &[u32], v: usize) -> Vec<RowStats> {
    logits
        .chunks(v)
        .zip(targets)
        .map(|(row, &tgt)| {
            let (mut argmax, mut m) = (0usize, f32::MIN);
            for (i, &x) in row.iter().enumerate() {
                if x > m {
                    m = x;
                    argmax = i;
                }
            }
            let sum: f64 = row.iter().map(|&x| ((x - m) as f64).exp()).sum();
            let lse = m as f64 + sum.ln();
            let mean_z: f64 = row
                .iter()
                .map(|&x| ((x - m) as f64).exp() * x as f64)
                .sum::<f64>()
                / sum;
            let target_logprob = if (tgt as usize) < v {
                row[tgt as usize] as f64 - lse
            } else {
                0.0
            };
            RowStats {
                lse: lse as f32,
                argmax: argmax as u32,
                target_logprob: target_logprob as f32,
                entropy: (lse - mean_z) as f32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, gpu, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn cross_entropy_grad_matches_finite_differences() {
        let mut rng = Rng::new(17);
        let (rows, v) = (3usize, 37usize);
        let logits = rng.vec_uniform(rows * v, -4.0, 4.0);
        let targets = vec![5u32, NO_TARGET, 36];
        let scale = 0.5; // mean over the two rows with a target
        // L = scale · Σ_r −log softmax(z_r)[t_r]
        let loss = |z: &[f32]| -> f64 {
            -logit_stats_ref(z, &targets, v)
                .iter()
                .map(|s| s.target_logprob as f64)
                .sum::<f64>()
                * scale
        };
        let fd = crate::kernels::testing::finite_differences(&loss, &logits, 1e-2);
        let gl = upload(&logits);
        let gt = GpuBuffer::from_slice(gpu(), "targets", &targets).unwrap();
        let gs = upload(&vec![0.0; rows * 4]);
        run(async |rec| {
            let shape = (rows as u32, v as u32);
            logit_stats(rec, &gl, &gt, &gs, shape, 0).await.unwrap();
            cross_entropy_grad(rec, &gl, &gt, &gs, shape, 0, scale as f32)
                .await
                .unwrap();
        });
        assert_close("dlogits vs finite differences", &read(&gl), &fd, 2e-4, 1e-2);
    }

    #[test]
    fn logit_stats_match_cpu() {
        let mut rng = Rng::new(9);
        for &(rows, v) in &[(1usize, 1usize), (3, 100), (4, 49152), (2, 1001)] {
            let mut logits = rng.vec_uniform(rows * v, -10.0, 10.0);
            if v > 10 {
                logits[7] = 30.0; // a clear maximum in row 0
                logits[9] = 30.0; // tie: the first index wins
            }
            let targets: Vec<u32> = (0..rows)
                .map(|r| {
                    if r == 1 {
                        NO_TARGET
                    } else {
                        (r * 7 % v) as u32
                    }
                })
                .collect();
            let want = logit_stats_ref(&logits, &targets, v);
            let gl = upload(&logits);
            // Stats land after one unused row: row_off = 1 with targets shifted to match.
            let mut shifted = vec![NO_TARGET];
            shifted.extend(&targets);
            let gt = GpuBuffer::from_slice(gpu(), "targets", &shifted).unwrap();
            let gs = upload(&vec![0.0; (rows + 1) * 4]);
            run(async |rec| {
                logit_stats(rec, &gl, &gt, &gs, (rows as u32, v as u32), 1)
                    .await
                    .unwrap()
            });
            let got = RowStats::decode(&read(&gs)[4..]);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.argmax, w.argmax, "argmax {rows}x{v}");
                let f = |s: &RowStats| [s.lse, s.target_logprob, s.entropy];
                assert_close(&format!("stats {rows}x{v}"), &f(g), &f(w), 1e-4, 1e-5);
            }
        }
    }
}
