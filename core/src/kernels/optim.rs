//! The optimizer step (`reduce.wgsl`, `adamw.wgsl`): the global gradient norm in two passes
//! (no atomics), clipping, and AdamW over flat parameter arrays.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result, grid_1d};

/// Mirrors `Params` in reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub n: u32,
    pub n_partials: u32,
    pub max_norm: f32,
    pub _pad: u32,
}
assert_params_size!(ReduceParams, 16);

/// Mirrors `Params` in adamw.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamWParams {
    pub n: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub bc1: f32,
    pub bc2: f32,
}
assert_params_size!(AdamWParams, 32);

pub const LAYOUT_REDUCE: KernelLayout = KernelLayout {
    shader: Shader::Reduce,
    bindings: &[Binding::Uniform, Binding::Read, Binding::ReadWrite],
};

pub const LAYOUT_ADAMW: KernelLayout = KernelLayout {
    shader: Shader::AdamW,
    bindings: &[
        Binding::Uniform,
        Binding::ReadWrite,
        Binding::Read,
        Binding::ReadWrite,
        Binding::ReadWrite,
        Binding::Read,
    ],
};

/// Workgroups of the first pass (and so the partial sums the second pass adds).
pub const NORM_PARTIALS: u32 = 256;

/// `norm_out = [‖grad‖, clip, finite]` (`=`) for the first `n` values of `grad`; `partials`
/// holds [`NORM_PARTIALS`] floats of scratch. `clip` scales the gradient to `max_norm` when it is
/// larger (`max_norm` ≤ 0: no clipping); `finite` is 0 when the norm is NaN or infinite.
pub async fn grad_norm(
    rec: &mut Recorder<'_>,
    grad: &GpuBuffer,
    n: u32,
    partials: &GpuBuffer,
    norm_out: &GpuBuffer,
    max_norm: f32,
) -> Result<()> {
    let params = ReduceParams {
        n,
        n_partials: NORM_PARTIALS,
        max_norm,
        _pad: 0,
    };
    rec.dispatch(
        &LAYOUT_REDUCE,
        &["SUMSQ_PARTIAL"],
        &params,
        &[grad, partials],
        [NORM_PARTIALS, 1, 1],
    )
    .await?;
    rec.dispatch(
        &LAYOUT_REDUCE,
        &["NORM_FINISH"],
        &params,
        &[partials, norm_out],
        [1, 1, 1],
    )
    .await
}

/// AdamW hyper-parameters for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// PyTorch's defaults (lr 2e-4, the usual LoRA learning rate; weight decay 0).
    fn default() -> Self {
        AdamW {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One AdamW step `t` (1-based) over the first `n` values, the gradient scaled by the clip factor
/// in `norm` (from [`grad_norm`]); skipped entirely when that norm is not finite.
#[allow(clippy::too_many_arguments)]
pub async fn adamw_step(
    rec: &mut Recorder<'_>,
    opt: AdamW,
    t: u32,
    param: &GpuBuffer,
    grad: &GpuBuffer,
    m: &GpuBuffer,
    v: &GpuBuffer,
    norm: &GpuBuffer,
    n: u32,
) -> Result<()> {
    let params = AdamWParams {
        n,
        lr: opt.lr,
        beta1: opt.beta1,
        beta2: opt.beta2,
        eps: opt.eps,
        weight_decay: opt.weight_decay,
        bc1: 1.0 - opt.beta1.powi(t as i32),
        bc2: 1.0 - opt.beta2.powi(t as i32),
    };
    rec.dispatch(
        &LAYOUT_ADAMW,
        &[],
        &params,
        &[param, grad, m, v, norm],
        grid_1d(n.div_ceil(256)),
    )
    .await
}

/// CPU reference of one AdamW step with clipping (in place); returns the gradient norm.
#[allow(clippy::too_many_arguments)]
pub fn adamw_ref(
    opt: AdamW,
    t: u32,
    max_norm: f32,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> f32 {
    let norm = grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt() as f32;
    if !norm.is_finite() {
        return norm;
    }
    let clip = if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    };
    let (bc1, bc2) = (
        1.0 - opt.beta1.powi(t as i32),
        1.0 - opt.beta2.powi(t as i32),
    );
    for i in 0..param.len() {
        let g = grad[i] * clip;
        m[i] = opt.beta1 * m[i] + (1.0 - opt.beta1) * g;
        v[i] = opt.beta2 * v[i] + (1.0 - opt.beta2) * g * g;
        let update = (m[i] / bc1) / ((v[i] / bc2).sqrt() + opt.eps);
        param[i] -= opt.lr * (update + opt.weight_decay * param[i]);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn grad_norm_and_adamw_match_cpu_over_several_steps() {
        let mut rng = Rng::new(18);
        let n = 70_001; // more than one pass of the 256 partial workgroups
        let opt = AdamW {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut param = rng.vec_uniform(n, -1.0, 1.0);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let (gp, gm, gv) = (upload(&param), upload(&m), upload(&v));
        let (partials, norm) = (
            upload(&vec![0.0; NORM_PARTIALS as usize]),
            upload(&[0.0; 3]),
        );
        for (t, max_norm) in [(1, 1.0), (2, 0.0), (3, 1e6)] {
            let grad = rng.vec_uniform(n, -0.01, 0.01);
            let gg = upload(&grad);
            let want_norm = adamw_ref(opt, t, max_norm, &mut param, &grad, &mut m, &mut v);
            run(async |rec| {
                grad_norm(rec, &gg, n as u32, &partials, &norm, max_norm)
                    .await
                    .unwrap();
                adamw_step(rec, opt, t, &gp, &gg, &gm, &gv, &norm, n as u32)
                    .await
                    .unwrap();
            });
            let got = read(&norm);
            assert_close("norm", &got[..1], &[want_norm], 1e-6, 1e-5);
            assert_eq!(got[2], 1.0, "finite");
            assert_close(&format!("param step {t}"), &read(&gp), &param, 1e-6, 1e-4);
            assert_close(&format!("m step {t}"), &read(&gm), &m, 1e-8, 1e-4);
        }
    }

    #[test]
    fn a_non_finite_gradient_skips_the_step() {
        let param = vec![0.5f32; 1000];
        let mut grad = vec![0.01f32; 1000];
        grad[123] = f32::NAN;
        let (gp, gg, gm, gv) = (
            upload(&param),
            upload(&grad),
            upload(&[0.0; 1000]),
            upload(&[0.0; 1000]),
        );
        let (partials, norm) = (
            upload(&vec![0.0; NORM_PARTIALS as usize]),
            upload(&[0.0; 3]),
        );
        run(async |rec| {
            grad_norm(rec, &gg, 1000, &partials, &norm, 1.0)
                .await
                .unwrap();
            adamw_step(rec, AdamW::default(), 1, &gp, &gg, &gm, &gv, &norm, 1000)
                .await
                .unwrap();
        });
        assert_eq!(read(&norm)[2], 0.0, "NaN gradient flagged");
        assert_eq!(read(&gp), param, "parameters untouched");
        grad[123] = f32::INFINITY;
        let gg = upload(&grad);
        run(async |rec| {
            grad_norm(rec, &gg, 1000, &partials, &norm, 1.0)
                .await
                .unwrap()
        });
        assert_eq!(read(&norm)[2], 0.0, "infinite gradient flagged");
    }
}
