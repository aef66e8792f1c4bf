//! Element-wise kernels (`elementwise.wgsl`): SwiGLU and add.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result, grid_1d};

/// Mirrors `Params` in elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ElementwiseParams {
    pub n: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub out_off: u32,
}
assert_params_size!(ElementwiseParams, 16);

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
    /// `out = silu(a) · b`
    SwiGlu,
    /// `out = a + b`
    Add,
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
    let define = match op {
        Op::SwiGlu => "OP_SWIGLU",
        Op::Add => "OP_ADD",
    };
    let params = ElementwiseParams {
        n,
        a_off: a.1,
        b_off: b.1,
        out_off: out.1,
    };
    rec.dispatch(
        &LAYOUT,
        &[define],
        &params,
        &[a.0, b.0, out.0],
        grid_1d(n.div_ceil(256)),
    )
    .await
}

/// CPU reference.
pub fn elementwise_ref(op: Op, a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| match op {
            Op::SwiGlu => x / (1.0 + (-x).exp()) * y,
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
    fn elementwise_ops_match_cpu() {
        let mut rng = Rng::new(8);
        for op in [Op::SwiGlu, Op::Add] {
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
