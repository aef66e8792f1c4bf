//! Element-wise kernels (`elementwise.wgsl`): SwiGLU, add, bias rows, dropout.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result, grid_1d};
pub use crate::model::Activation;

/// Mirrors `Params` in elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ElementwiseParams {
    pub n: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub out_off: u32,
    pub c_off: u32,
    pub seed: u32,
    pub p_drop: f32,
    pub accumulate: u32,
    pub width: u32,
    pub _pad: [u32; 3],
}
assert_params_size!(ElementwiseParams, 48);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Elementwise,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
};

/// The operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `out = act(a) · b`: the gated feed-forward (SwiGLU with `Activation::Silu`, GeGLU with
    /// `Activation::GeluTanh`).
    Glu(Activation),
    /// `out = a + b`
    Add,
}

impl Op {
    /// The shader flags of this operation (`elementwise.wgsl`).
    pub fn defines(self) -> Vec<&'static str> {
        match self {
            Op::Glu(act) => [&["OP_SWIGLU"], act.defines()].concat(),
            Op::Add => vec!["OP_ADD"],
        }
    }
}

impl Activation {
    /// The shader flags of this activation.
    fn defines(self) -> &'static [&'static str] {
        match self {
            Activation::Silu => &[],
            Activation::GeluTanh => &["ACT_GELU"],
        }
    }

    /// CPU reference (f64).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
        }
    }

    /// CPU reference of the derivative (f64).
    pub fn grad(self, x: f64) -> f64 {
        match self {
            Activation::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
            Activation::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let th = (c * (x + 0.044715 * x * x * x)).tanh();
                0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * x * x)
            }
        }
    }
}

/// A slice of a buffer: `n` values from element `off`.
pub type Slice<'a> = (&'a GpuBuffer, u32);

/// `out[i] = op(a[i], b[i])` for i < n (`=`; `out` may not alias `a` or `b`).
pub async fn elementwise(
    rec: &mut Recorder<'_>,
    op: Op,
    n: u32,
    a: Slice<'_>,
    b: Slice<'_>,
    out: Slice<'_>,
) -> Result<()> {
    let defines = op.defines();
    let params = ElementwiseParams {
        n,
        a_off: a.1,
        b_off: b.1,
        out_off: out.1,
        ..Default::default()
    };
    rec.dispatch(
        &LAYOUT,
        &defines,
        &params,
        &[a.0, b.0, out.0],
        grid_1d(n.div_ceil(256)),
    )
    .await
}

pub const LAYOUT_SWIGLU_BACKWARD: KernelLayout = KernelLayout {
    shader: Shader::Elementwise,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
        Binding::Read,
        Binding::ReadWrite,
    ],
};

/// Gradients of `h = act(gate)·up` given `dh`: `dgate = dh·up·act'(gate)`, `dup = dh·act(gate)`
/// (both `=`; dgate and dup share the offset `out.1`).
#[allow(clippy::too_many_arguments)]
pub async fn glu_backward(
    rec: &mut Recorder<'_>,
    act: Activation,
    n: u32,
    gate: Slice<'_>,
    up: Slice<'_>,
    dh: Slice<'_>,
    dgate: &GpuBuffer,
    dup: &GpuBuffer,
    out_off: u32,
) -> Result<()> {
    let params = ElementwiseParams {
        n,
        a_off: gate.1,
        b_off: up.1,
        out_off,
        c_off: dh.1,
        ..Default::default()
    };
    let buffers = [gate.0, up.0, dgate, dh.0, dup];
    let defines = [&["OP_SWIGLU_BWD"], act.defines()].concat();
    rec.dispatch(
        &LAYOUT_SWIGLU_BACKWARD,
        &defines,
        &params,
        &buffers,
        grid_1d(n.div_ceil(256)),
    )
    .await
}

/// Inverted dropout: `out[i] (+)= x[i] / (1 − p)` where the hash of `(seed, i)` keeps element
/// i, else 0 (`+=` when `accumulate`). The same seed gives the same mask, so a backward pass can
/// regenerate it (and apply it to the gradient with `accumulate`).
#[allow(clippy::too_many_arguments)]
pub async fn dropout(
    rec: &mut Recorder<'_>,
    n: u32,
    x: Slice<'_>,
    out: Slice<'_>,
    p_drop: f32,
    seed: u32,
    accumulate: bool,
) -> Result<()> {
    let params = ElementwiseParams {
        n,
        a_off: x.1,
        out_off: out.1,
        seed,
        p_drop,
        accumulate: accumulate as u32,
        ..Default::default()
    };
    rec.dispatch(
        &LAYOUT,
        &["OP_DROPOUT"],
        &params,
        &[x.0, x.0, out.0],
        grid_1d(n.div_ceil(256)),
    )
    .await
}

/// `y[r, j] += bias[j]` for `rows` rows of `width` values from element `y.1` (the q/k/v biases).
pub async fn add_bias(
    rec: &mut Recorder<'_>,
    bias: &GpuBuffer,
    y: Slice<'_>,
    rows: u32,
    width: u32,
) -> Result<()> {
    accumulate(rec, (bias, 0), y, rows * width, width).await
}

/// `out[i] += x[i]` for i < n (`out` may not alias `x`): a residual add in place.
pub async fn add_into(rec: &mut Recorder<'_>, x: Slice<'_>, out: Slice<'_>, n: u32) -> Result<()> {
    accumulate(rec, x, out, n, n).await
}

/// `out[i] += src[i mod width]` for i < n (`OP_BIAS`).
async fn accumulate(
    rec: &mut Recorder<'_>,
    src: Slice<'_>,
    out: Slice<'_>,
    n: u32,
    width: u32,
) -> Result<()> {
    let params = ElementwiseParams {
        n,
        a_off: src.1,
        out_off: out.1,
        width,
        ..Default::default()
    };
    let buffers = [src.0, src.0, out.0];
    rec.dispatch(
        &LAYOUT,
        &["OP_BIAS"],
        &params,
        &buffers,
        grid_1d(n.div_ceil(256)),
    )
    .await
}

/// CPU reference of [`add_bias`] over whole rows of `y`.
pub fn add_bias_ref(bias: &[f32], y: &mut [f32]) {
    for row in y.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
    }
}

/// CPU reference of [`glu_backward`]: (dgate, dup).
pub fn glu_backward_ref(
    act: Activation,
    gate: &[f32],
    up: &[f32],
    dh: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let dgate = (0..gate.len())
        .map(|i| (dh[i] as f64 * up[i] as f64 * act.grad(gate[i] as f64)) as f32)
        .collect();
    let dup = (0..gate.len())
        .map(|i| (dh[i] as f64 * act.apply(gate[i] as f64)) as f32)
        .collect();
    (dgate, dup)
}

/// CPU reference.
pub fn elementwise_ref(op: Op, a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| match op {
            Op::Glu(act) => (act.apply(x as f64) * y as f64) as f32,
            Op::Add => x + y,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn glu_backward_matches_finite_differences_and_gpu() {
        for act in [Activation::Silu, Activation::GeluTanh] {
            glu_backward_matches_finite_differences_and_gpu_for(act);
        }
    }

    fn glu_backward_matches_finite_differences_and_gpu_for(act: Activation) {
        let mut rng = Rng::new(16);
        let n = 300;
        let (gate, up, dh) = (
            rng.vec_uniform(n, -6.0, 6.0),
            rng.vec_uniform(n, -2.0, 2.0),
            rng.vec_uniform(n, -1.0, 1.0),
        );
        let (dgate, dup) = glu_backward_ref(act, &gate, &up, &dh);
        // L = Σ dh·act(gate)·up, differentiated numerically in gate and in up.
        let loss = |g: &[f32], u: &[f32]| -> f64 {
            elementwise_ref(Op::Glu(act), g, u)
                .iter()
                .zip(&dh)
                .map(|(h, d)| *h as f64 * *d as f64)
                .sum()
        };
        let fd_gate = crate::kernels::testing::finite_differences(&|g| loss(g, &up), &gate, 1e-3);
        let fd_up = crate::kernels::testing::finite_differences(&|u| loss(&gate, u), &up, 1e-3);
        assert_close("dgate vs finite differences", &dgate, &fd_gate, 1e-3, 1e-2);
        assert_close("dup vs finite differences", &dup, &fd_up, 1e-3, 1e-2);
        let (gg, gu, gdh) = (upload(&gate), upload(&up), upload(&dh));
        let (gdg, gdu) = (upload(&vec![9.0; n]), upload(&vec![9.0; n]));
        run(async |rec| {
            glu_backward(
                rec,
                act,
                n as u32,
                (&gg, 0),
                (&gu, 0),
                (&gdh, 0),
                &gdg,
                &gdu,
                0,
            )
            .await
            .unwrap()
        });
        assert_close(
            &format!("{act:?} dgate gpu"),
            &read(&gdg),
            &dgate,
            1e-5,
            1e-4,
        );
        assert_close(&format!("{act:?} dup gpu"), &read(&gdu), &dup, 1e-5, 1e-4);
    }

    #[test]
    fn add_into_adds_a_slice_in_place() {
        let mut rng = Rng::new(18);
        let (x, out) = (
            rng.vec_uniform(300, -1.0, 1.0),
            rng.vec_uniform(305, -1.0, 1.0),
        );
        let mut want = out.clone();
        want[5..]
            .iter_mut()
            .zip(&x[..300])
            .for_each(|(o, x)| *o += x);
        let (gx, gout) = (upload(&x), upload(&out));
        run(async |rec| add_into(rec, (&gx, 0), (&gout, 5), 300).await.unwrap());
        assert_close("add_into", &read(&gout), &want, 0.0, 1e-6);
    }

    #[test]
    fn bias_rows_add_to_every_row_and_nothing_else() {
        let mut rng = Rng::new(17);
        // 7 rows of 37 from element 5 of a longer buffer: the values around stay as they were.
        let (rows, width, off) = (7usize, 37usize, 5usize);
        let bias = rng.vec_uniform(width, -150.0, 150.0);
        let y = rng.vec_uniform(off + rows * width + 3, -1.0, 1.0);
        let mut want = y.clone();
        add_bias_ref(&bias, &mut want[off..off + rows * width]);
        let (gb, gy) = (upload(&bias), upload(&y));
        run(async |rec| {
            add_bias(rec, &gb, (&gy, off as u32), rows as u32, width as u32)
                .await
                .unwrap()
        });
        assert_close("bias", &read(&gy), &want, 0.0, 1e-6);
    }

    #[test]
    fn dropout_keeps_the_right_fraction_scaled_and_repeats_with_the_seed() {
        let n = 100_000;
        let x = vec![1.0f32; n];
        let gx = upload(&x);
        let (a, b, c) = (
            upload(&vec![0.0; n]),
            upload(&vec![0.0; n]),
            upload(&vec![0.0; n]),
        );
        run(async |rec| {
            dropout(rec, n as u32, (&gx, 0), (&a, 0), 0.25, 7, false)
                .await
                .unwrap();
            dropout(rec, n as u32, (&gx, 0), (&b, 0), 0.25, 7, false)
                .await
                .unwrap();
            dropout(rec, n as u32, (&gx, 0), (&c, 0), 0.25, 8, false)
                .await
                .unwrap();
        });
        let (a, b, c) = (read(&a), read(&b), read(&c));
        assert_eq!(a, b, "same seed, same mask");
        assert_ne!(a, c, "another seed, another mask");
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    }

    #[test]
    fn elementwise_ops_match_cpu() {
        let mut rng = Rng::new(8);
        for op in [
            Op::Glu(Activation::Silu),
            Op::Glu(Activation::GeluTanh),
            Op::Add,
        ] {
            for n in [1usize, 255, 257, 10_000] {
                let a = rng.vec_uniform(n + 3, -8.0, 8.0);
                let b = rng.vec_uniform(n, -2.0, 2.0);
                let want = elementwise_ref(op, &a[3..], &b);
                let (ga, gb, out) = (upload(&a), upload(&b), upload(&vec![0.0; n + 1]));
                run(async |rec| {
                    elementwise(rec, op, n as u32, (&ga, 3), (&gb, 0), (&out, 1))
                        .await
                        .unwrap()
                });
                assert_close(&format!("{op:?} {n}"), &read(&out)[1..], &want, 1e-5, 1e-5);
            }
        }
    }
}
