//! Tiled GEMM (`matmul.wgsl`): `C[M, N] = α · A[M, K] · B[K, N] (+ C)`, with B either a strided
//! f32 matrix or a model weight `W[N, K]` (so `C = A · Wᵀ`, the linear layer).

use afinador_shaders::Shader;

use super::{GpuWeight, assert_params_size};
use crate::gpu::{Binding, Gpu, GpuBuffer, GpuError, KernelLayout, Recorder, Result};

/// Mirrors `Params` in matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub accumulate: u32,
    pub a_off: u32,
    pub a_sm: u32,
    pub a_sk: u32,
    pub b_off: u32,
    pub b_sk: u32,
    pub b_sn: u32,
    pub c_off: u32,
    pub c_sm: u32,
    pub alpha: f32,
    /// The sum runs over k in `k_begin..k_end`; the dispatch sets them
    /// ([`MatmulVariant::k_chunk`]).
    pub k_begin: u32,
    pub k_end: u32,
    pub _pad: u32,
}
assert_params_size!(MatmulParams, 64);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Matmul,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
};

pub use afinador_shaders::MatmulTiles;

/// The tiles of the tiled (workgroup-memory) kernel for a GPU, by vendor. These are the usual
/// starting points for those register files, not yet measured on the hardware (tune with
/// `afinador bench kernels --filter matmul --matmul tiled:…`); CPU adapters run the DIRECT
/// kernel instead (docs/PERFORMANCE.md).
pub fn tiles_for_adapter(vendor: &str) -> MatmulTiles {
    match vendor {
        "NVIDIA" | "AMD" => MatmulTiles::LARGE,
        "Intel" | "Apple" => MatmulTiles::MEDIUM,
        _ => MatmulTiles::PORTABLE,
    }
}

/// Which build of the kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// Register-blocked tiles through workgroup memory (GPUs).
    Tiled(MatmulTiles),
    /// 32×32 per workgroup, 8×8 per thread, read straight from memory: no workgroup memory,
    /// no barriers (CPU adapters).
    Direct,
    /// 32×32 per subgroup as 2×2 cooperative 16×16 matrices (tensor cores): f16 inputs (f32
    /// ones are rounded to f16), f32 sums. Only where the device has cooperative matrices; the
    /// engine picks it for f16 inputs ([`matmul_f16`]), never on its own for f32 ones.
    Coop,
}

impl MatmulVariant {
    /// The variant suited to the recorder's device for f32 inputs: the one the recorder asks
    /// for, the portable tiles when it must be portable, the device's chosen build
    /// ([`Gpu::set_matmul`]: tuned or asked for), DIRECT on CPU adapters, else the vendor's
    /// tiles.
    pub fn for_recorder(rec: &Recorder<'_>) -> MatmulVariant {
        let gpu = rec.gpu();
        if let Some(variant) = rec.matmul() {
            return variant;
        }
        if rec.is_portable() {
            MatmulVariant::Tiled(MatmulTiles::PORTABLE)
        } else if let Some(variant) = gpu.matmul() {
            variant
        } else if gpu.is_cpu() {
            MatmulVariant::Direct
        } else {
            MatmulVariant::Tiled(tiles_for_adapter(&gpu.adapter.vendor))
        }
    }

    /// The variant for f16 inputs: as [`for_recorder`](Self::for_recorder), but the
    /// cooperative-matrix build where the device has it (and the recorder is not portable).
    pub fn for_f16(rec: &Recorder<'_>) -> MatmulVariant {
        let gpu = rec.gpu();
        let coop = gpu.has(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        if rec.matmul().is_none() && !rec.is_portable() && coop {
            MatmulVariant::Coop
        } else {
            Self::for_recorder(rec)
        }
    }

    /// (rows, columns) of C per workgroup.
    fn block(self) -> (u32, u32) {
        match self {
            MatmulVariant::Tiled(t) => (t.bm(), t.bn()),
            MatmulVariant::Direct | MatmulVariant::Coop => (32, 32),
        }
    }

    /// The workgroup grid for an M × N result.
    fn groups(self, m: u32, n: u32) -> [u32; 3] {
        let (bm, bn) = self.block();
        [n.div_ceil(bn), m.div_ceil(bm), 1]
    }

    /// The preprocessor flags of this variant for the B source flag `b`.
    pub fn defines(self, b: &'static str) -> Vec<&'static str> {
        match self {
            MatmulVariant::Tiled(_) => vec![b],
            MatmulVariant::Direct => vec![b, "DIRECT"],
            MatmulVariant::Coop => vec![b, "COOP"],
        }
    }

    /// The pipeline constants of this variant on `gpu` (COOP: one subgroup per workgroup).
    pub fn constants(self, gpu: &Gpu) -> Vec<(&'static str, u32)> {
        match self {
            MatmulVariant::Tiled(t) => t.constants(),
            MatmulVariant::Direct => Vec::new(),
            MatmulVariant::Coop => vec![("SG", gpu.subgroup_size.1.clamp(1, 256))],
        }
    }

    /// A short name: `direct`, `coop`, or `tiled` with its workgroup block, thread block and K
    /// step.
    pub fn label(self) -> String {
        match self {
            MatmulVariant::Tiled(t) => {
                format!("tiled{}x{}/{}x{}/k{}", t.bm(), t.bn(), t.tm, t.tn, t.bk)
            }
            MatmulVariant::Direct => "direct".into(),
            MatmulVariant::Coop => "coop".into(),
        }
    }

    /// The longest sum one dispatch may compute on `gpu`. llvmpipe (lavapipe, the adapter CI
    /// runs on) ends all loops of an invocation once they have run 65535 iterations in all
    /// (gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`), without an error: a 49152-long sum (the input
    /// gradient of SmolLM2's logits) silently lost its tail. So on CPU adapters a dispatch
    /// covers at most the K that keeps an invocation under 60000 iterations, counting every loop
    /// of the kernel as if none were unrolled; GPUs take any K in one dispatch. A multiple of 32.
    pub fn k_chunk(self, gpu: &Gpu) -> u32 {
        if !gpu.is_cpu() {
            return u32::MAX;
        }
        // (loop iterations per step of K, the step) in the worst case, from matmul.wgsl.
        let (per_step, step) = match self {
            // per four k: A rows 8 × (1 + 4), B columns 8 × (1 + 4) or WT 4 × (1 + 8), outer 1
            MatmulVariant::Direct => (81, 4),
            MatmulVariant::Tiled(t) => {
                let threads = t.wx * t.wy;
                let a_loads = (t.bm() * t.bk).div_ceil(threads);
                let b_loads = (t.bn() * t.bk / 4).div_ceil(threads) * (1 + 4 + 4);
                let inner = t.bk * (1 + t.tm + t.tn + t.tm * (1 + t.tn));
                (1 + a_loads + b_loads + inner, t.bk)
            }
            // staging loops of 1024 / SG and 256 / SG × (1 + 4 + 4), two k steps of 16
            MatmulVariant::Coop => (1 + 1024 + 256 * 9 + 2, 32),
        };
        ((60_000 / per_step * step) / 32 * 32).max(32)
    }

    /// Queue this build with the extra flags `extra` (B source first), failing with a clear
    /// error when the device lacks a feature the build needs.
    async fn dispatch(
        self,
        rec: &mut Recorder<'_>,
        extra: &[&'static str],
        params: &MatmulParams,
        bufs: &[&GpuBuffer],
    ) -> Result<()> {
        let gpu = rec.gpu();
        let mut defines = self.defines(extra[0]);
        defines.extend_from_slice(&extra[1..]);
        let needs = [
            (
                self == MatmulVariant::Coop,
                "the cooperative-matrix matmul",
                wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
                "EXPERIMENTAL_COOPERATIVE_MATRIX",
            ),
            (
                defines.contains(&"F16"),
                "the f16 matmul",
                wgpu::Features::SHADER_F16,
                "SHADER_F16",
            ),
        ];
        for (needed, what, feature, name) in needs {
            if needed && !gpu.has(feature) {
                return Err(GpuError::Unsupported {
                    what,
                    feature: name,
                    adapter: gpu.adapter.name.clone(),
                });
            }
        }
        let constants = self.constants(gpu);
        let groups = self.groups(params.m, params.n);
        // Long sums go in pieces, each after the first adding to C.
        let k_chunk = self.k_chunk(gpu);
        let mut k_begin = 0u32;
        loop {
            let k_end = params.k.min(k_begin.saturating_add(k_chunk));
            let chunk = MatmulParams {
                k_begin,
                k_end,
                accumulate: (params.accumulate != 0 || k_begin > 0) as u32,
                ..*params
            };
            rec.dispatch_with(&LAYOUT, (&defines, &constants), &chunk, bufs, groups)
                .await?;
            if k_end >= params.k {
                return Ok(());
            }
            k_begin = k_end;
        }
    }
}

/// A strided view of an f32 matrix: element (i, j) at `off + i·s0 + j·s1`.
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a> {
    pub buf: &'a GpuBuffer,
    pub off: u32,
    pub s0: u32,
    pub s1: u32,
}

impl<'a> MatView<'a> {
    /// A row-major matrix with `cols` columns starting at `off`.
    pub fn rows(buf: &'a GpuBuffer, off: u32, cols: u32) -> Self {
        MatView {
            buf,
            off,
            s0: cols,
            s1: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(buf: &'a GpuBuffer, off: u32, cols: u32) -> Self {
        MatView {
            buf,
            off,
            s0: 1,
            s1: cols,
        }
    }
}

/// `c[M, N] (+)= α · a[M, K] · b[K, N]`, all f32 with any strides (`c` row-major, row stride
/// `c.s0`). `=` when `accumulate` is false, `+=` otherwise.
pub async fn matmul(
    rec: &mut Recorder<'_>,
    a: MatView<'_>,
    b: MatView<'_>,
    c: MatView<'_>,
    shape: (u32, u32, u32),
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    let params = strided_params(&a, &b, &c, shape, alpha, accumulate);
    MatmulVariant::for_recorder(rec)
        .dispatch(rec, &["B_STRIDED"], &params, &[a.buf, b.buf, b.buf, c.buf])
        .await
}

/// [`matmul`] with `a` and `b` stored as f16 (views in f16 elements; buffers padded to whole
/// 32-bit words) and f32 sums into the f32 `c`. Needs `SHADER_F16`; runs on tensor cores
/// (`MatmulVariant::Coop`) where the device has cooperative matrices.
pub async fn matmul_f16(
    rec: &mut Recorder<'_>,
    a: MatView<'_>,
    b: MatView<'_>,
    c: MatView<'_>,
    shape: (u32, u32, u32),
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    let params = strided_params(&a, &b, &c, shape, alpha, accumulate);
    MatmulVariant::for_f16(rec)
        .dispatch(
            rec,
            &["B_STRIDED", "F16"],
            &params,
            &[a.buf, b.buf, b.buf, c.buf],
        )
        .await
}

/// Upload `values` as f16 (rounded to nearest), padded to a whole number of 32-bit words, for
/// [`matmul_f16`].
pub fn upload_f16(gpu: &Gpu, label: &str, values: &[f32]) -> Result<GpuBuffer> {
    let mut halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    halves.resize(values.len().next_multiple_of(2), half::f16::ZERO);
    GpuBuffer::from_slice(gpu, label, &halves)
}

fn strided_params(
    a: &MatView<'_>,
    b: &MatView<'_>,
    c: &MatView<'_>,
    (m, n, k): (u32, u32, u32),
    alpha: f32,
    accumulate: bool,
) -> MatmulParams {
    debug_assert_eq!(c.s1, 1, "c must be row-major");
    MatmulParams {
        m,
        n,
        k,
        accumulate: accumulate as u32,
        a_off: a.off,
        a_sm: a.s0,
        a_sk: a.s1,
        b_off: b.off,
        b_sk: b.s0,
        b_sn: b.s1,
        c_off: c.off,
        c_sm: c.s0,
        alpha,
        ..Default::default()
    }
}

/// `y[M, N] (+)= α · x[M, K] · Wᵀ` for a weight `W[N, K]` (x and y row-major at offsets).
#[allow(clippy::too_many_arguments)]
pub async fn matmul_weight(
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
    let k = w.cols as u32;
    debug_assert_eq!(k as usize % w.format.k_multiple(), 0);
    let variant = MatmulVariant::for_recorder(rec);
    // Each part of W gives its own columns of y.
    for part in &w.parts {
        let params = MatmulParams {
            m,
            n: part.rows as u32,
            k,
            accumulate: accumulate as u32,
            a_off: x_off,
            a_sm: k,
            a_sk: 1,
            c_off: y_off + part.row0 as u32,
            c_sm: y_stride,
            alpha,
            ..Default::default()
        };
        let buffers = [x, &part.q, &part.s, y];
        variant
            .dispatch(rec, &[w.format.define()], &params, &buffers)
            .await?;
    }
    Ok(())
}

/// `dx[M, K] (+)= α · dy[M, N] · W` for a weight `W[N, K]`: the input gradient of
/// [`matmul_weight`] (the weight itself is frozen: no dW). dy and dx row-major at offsets.
#[allow(clippy::too_many_arguments)]
pub async fn matmul_weight_t(
    rec: &mut Recorder<'_>,
    dy: &GpuBuffer,
    dy_off: u32,
    w: &GpuWeight,
    dx: &GpuBuffer,
    dx_off: u32,
    dx_stride: u32,
    m: u32,
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    // C[M, N'] = A[M, K'] · B with N' = W's row length, K' = W's rows, B(k, n) = W[k, n]; each
    // part of W adds the product of its columns of dy.
    let variant = MatmulVariant::for_recorder(rec);
    for (i, part) in w.parts.iter().enumerate() {
        let params = MatmulParams {
            m,
            n: w.cols as u32,
            k: part.rows as u32,
            accumulate: (accumulate || i > 0) as u32,
            a_off: dy_off + part.row0 as u32,
            a_sm: w.rows as u32,
            a_sk: 1,
            c_off: dx_off,
            c_sm: dx_stride,
            alpha,
            ..Default::default()
        };
        let buffers = [dy, &part.q, &part.s, dx];
        variant
            .dispatch(rec, &[w.format.define(), "WT"], &params, &buffers)
            .await?;
    }
    Ok(())
}

/// CPU reference: `c = α · a · b (+ c)` with a [m, k], b [k, n], c [m, n], all row-major.
pub fn matmul_ref(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for l in 0..k {
                s += a[i * k + l] as f64 * b[l * n + j] as f64;
            }
            let v = alpha * s as f32;
            c[i * n + j] = if accumulate { c[i * n + j] + v } else { v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::read_buffer_f32;
    use crate::kernels::WeightFormat;
    use crate::kernels::testing::{assert_close, gpu, random_blocks, recorder, upload};
    use crate::kernels::testing::{dequant, shapes_for};

    /// (M, N, K) for the weight matmuls: odd and round, K a multiple of 32 or of 256 (k-quant
    /// rows), each format taking those its blocks divide.
    const WEIGHT_SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 32),
        (5, 33, 64),
        (70, 67, 96),
        (64, 128, 576),
        (3, 33, 256),
        (9, 7, 768),
    ];
    use crate::util::Rng;

    /// A build the tests compare with the CPU reference.
    #[derive(Clone, Copy, Debug)]
    enum Build {
        /// What the device picks.
        Device,
        /// The portable tiles (what every WebGPU device runs).
        Portable,
        /// A given kernel and tiles.
        Forced(MatmulVariant),
    }

    /// The device's choice, the portable build, every tile configuration of the tiled kernel,
    /// and the DIRECT kernel.
    fn builds() -> Vec<Build> {
        let mut v = vec![Build::Device, Build::Portable];
        v.extend(MatmulTiles::ALL.map(|t| Build::Forced(MatmulVariant::Tiled(t))));
        v.push(Build::Forced(MatmulVariant::Direct));
        v
    }

    impl Build {
        /// Whether to run shape (m, n, k): the forced tile configurations run the odd and the
        /// round shapes that span several workgroups and K steps, the others every shape.
        fn runs(self, shape: (usize, usize, usize)) -> bool {
            !matches!(self, Build::Forced(_)) || shape.0 > 32 || shape.1 > 128
        }
    }

    fn rec_for(build: Build) -> Recorder<'static> {
        match build {
            Build::Device => recorder(false),
            Build::Portable => recorder(true),
            Build::Forced(v) => recorder(false).with_matmul(v),
        }
    }

    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; x.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = x[r * cols + c];
            }
        }
        t
    }

    #[test]
    fn strided_matmul_matches_cpu_for_odd_and_round_shapes_and_transposes() {
        let gpu = gpu();
        let mut rng = Rng::new(1);
        for build in builds() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (7, 13, 5),
                (64, 64, 64),
                (65, 130, 33),
                (3, 200, 127),
            ] {
                if !build.runs((m, n, k)) {
                    continue;
                }
                for (ta, tb, acc) in [
                    (false, false, false),
                    (true, false, true),
                    (false, true, false),
                    (true, true, true),
                ] {
                    let a = rng.vec_uniform(m * k, -1.0, 1.0);
                    let b = rng.vec_uniform(k * n, -1.0, 1.0);
                    let c0 = rng.vec_uniform(m * n, -1.0, 1.0);
                    let mut want = c0.clone();
                    matmul_ref(&a, &b, &mut want, (m, n, k), 0.5, acc);
                    // Store A (and B) transposed in memory when asked, and read them through strides.
                    let a_mem = if ta { transpose(&a, m, k) } else { a.clone() };
                    let b_mem = if tb { transpose(&b, k, n) } else { b.clone() };
                    let ga = GpuBuffer::from_slice(gpu, "a", &a_mem).unwrap();
                    let gb = GpuBuffer::from_slice(gpu, "b", &b_mem).unwrap();
                    let gc = GpuBuffer::from_slice(gpu, "c", &c0).unwrap();
                    let av = if ta {
                        MatView::transposed(&ga, 0, m as u32)
                    } else {
                        MatView::rows(&ga, 0, k as u32)
                    };
                    let bv = if tb {
                        MatView::transposed(&gb, 0, k as u32)
                    } else {
                        MatView::rows(&gb, 0, n as u32)
                    };
                    pollster::block_on(async {
                        let mut rec = rec_for(build);
                        let cv = MatView::rows(&gc, 0, n as u32);
                        matmul(
                            &mut rec,
                            av,
                            bv,
                            cv,
                            (m as u32, n as u32, k as u32),
                            0.5,
                            acc,
                        )
                        .await
                        .unwrap();
                        rec.submit().await.unwrap();
                    });
                    let got = pollster::block_on(read_buffer_f32(gpu, &gc, 0, m * n)).unwrap();
                    assert_close(
                        &format!("matmul {m}x{n}x{k} ta={ta} tb={tb} {build:?}"),
                        &got,
                        &want,
                        1e-4,
                        1e-4,
                    );
                }
            }
        }
    }

    /// Round to f16 and back: what the f16 kernels see of an f32 value.
    fn f16_round(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
    }

    #[test]
    fn f16_matmul_matches_cpu_on_the_same_rounded_inputs() {
        // Every f32 build with F16 storage, and the cooperative-matrix build where the device
        // has it (elsewhere forcing it must fail with a clear error). The reference multiplies
        // the f16-rounded inputs in f64, so only the f32 summation order differs.
        let gpu = gpu();
        let coop = gpu.has(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        let mut rng = Rng::new(16);
        let mut builds = builds();
        if coop {
            builds.push(Build::Forced(MatmulVariant::Coop));
        }
        for build in builds {
            for &(m, n, k) in &[
                (1, 1, 1),
                (7, 13, 5),
                (65, 130, 33),
                (3, 200, 127),
                (96, 64, 256),
            ] {
                if !build.runs((m, n, k)) {
                    continue;
                }
                for (tb, acc) in [(false, false), (true, true)] {
                    let a = f16_round(&rng.vec_uniform(m * k, -2.0, 2.0));
                    let b = f16_round(&rng.vec_uniform(k * n, -2.0, 2.0));
                    let c0 = rng.vec_uniform(m * n, -1.0, 1.0);
                    let mut want = c0.clone();
                    matmul_ref(&a, &b, &mut want, (m, n, k), 0.5, acc);
                    let b_mem = if tb { transpose(&b, k, n) } else { b.clone() };
                    let ga = upload_f16(gpu, "a", &a).unwrap();
                    let gb = upload_f16(gpu, "b", &b_mem).unwrap();
                    let gc = GpuBuffer::from_slice(gpu, "c", &c0).unwrap();
                    let bv = if tb {
                        MatView::transposed(&gb, 0, k as u32)
                    } else {
                        MatView::rows(&gb, 0, n as u32)
                    };
                    pollster::block_on(async {
                        let mut rec = rec_for(build);
                        let (av, cv) = (
                            MatView::rows(&ga, 0, k as u32),
                            MatView::rows(&gc, 0, n as u32),
                        );
                        let shape = (m as u32, n as u32, k as u32);
                        matmul_f16(&mut rec, av, bv, cv, shape, 0.5, acc)
                            .await
                            .unwrap();
                        rec.submit().await.unwrap();
                    });
                    let got = pollster::block_on(read_buffer_f32(gpu, &gc, 0, m * n)).unwrap();
                    let what = format!("f16 matmul {m}x{n}x{k} tb={tb} {build:?}");
                    assert_close(&what, &got, &want, 1e-4, 1e-4);
                }
            }
        }
        if !coop {
            let (a, c) = (upload_f16(gpu, "a", &[1.0]).unwrap(), upload(&[0.0]));
            let err = pollster::block_on(async {
                let mut rec = recorder(false).with_matmul(MatmulVariant::Coop);
                let (av, cv) = (MatView::rows(&a, 0, 1), MatView::rows(&c, 0, 1));
                matmul_f16(&mut rec, av, av, cv, (1, 1, 1), 1.0, false).await
            })
            .unwrap_err();
            assert!(
                err.to_string().contains("EXPERIMENTAL_COOPERATIVE_MATRIX"),
                "{err}"
            );
        }
    }

    #[test]
    fn every_build_repeats_bit_for_bit_at_a_training_shape() {
        // Many workgroups in flight at once (M 640 × N 1536 × K 576, Q4_1, W and WT): each build
        // gives the same bits twice, and agrees with DIRECT.
        let gpu = gpu();
        let mut rng = Rng::new(40);
        let (m, n, k) = (640usize, 1536usize, 576usize);
        let raw = random_blocks(WeightFormat::Q4_1, n * k, &mut rng);
        let gw = GpuWeight::upload(gpu, "w", WeightFormat::Q4_1, &raw, n, k).unwrap();
        let x = GpuBuffer::from_slice(gpu, "x", &rng.vec_uniform(m * k, -1.0, 1.0)).unwrap();
        let dy = GpuBuffer::from_slice(gpu, "dy", &rng.vec_uniform(m * n, -1.0, 1.0)).unwrap();
        let (y, dx) = (
            GpuBuffer::zeroed(gpu, "y", (m * n * 4) as u64).unwrap(),
            GpuBuffer::zeroed(gpu, "dx", (m * k * 4) as u64).unwrap(),
        );
        let run = |build: Build| -> (Vec<f32>, Vec<f32>) {
            pollster::block_on(async {
                let mut rec = rec_for(build);
                let (m32, n32, k32) = (m as u32, n as u32, k as u32);
                matmul_weight(&mut rec, &x, 0, &gw, &y, 0, n32, m32, 1.0, false)
                    .await
                    .unwrap();
                matmul_weight_t(&mut rec, &dy, 0, &gw, &dx, 0, k32, m32, 1.0, false)
                    .await
                    .unwrap();
                rec.submit().await.unwrap();
                (
                    read_buffer_f32(gpu, &y, 0, m * n).await.unwrap(),
                    read_buffer_f32(gpu, &dx, 0, m * k).await.unwrap(),
                )
            })
        };
        let direct = run(Build::Forced(MatmulVariant::Direct));
        for build in [
            Build::Portable,
            Build::Forced(MatmulVariant::Tiled(MatmulTiles::LARGE)),
        ] {
            let (first, second) = (run(build), run(build));
            assert!(first == second, "{build:?} is not reproducible");
            assert_close(&format!("y {build:?}"), &first.0, &direct.0, 1e-4, 1e-4);
            assert_close(&format!("dx {build:?}"), &first.1, &direct.1, 1e-4, 1e-4);
        }
        assert!(
            run(Build::Forced(MatmulVariant::Direct)) == direct,
            "DIRECT"
        );
    }

    #[test]
    fn weight_input_gradient_matches_cpu_for_every_format() {
        let gpu = gpu();
        let mut rng = Rng::new(12);
        for build in builds() {
            for &format in WeightFormat::ALL {
                for (m, n, k) in shapes_for(format, WEIGHT_SHAPES) {
                    if !build.runs((m, n, k)) {
                        continue;
                    }
                    let raw = random_blocks(format, n * k, &mut rng);
                    let w = dequant(format, &raw, n * k);
                    let dy = rng.vec_uniform(m * n, -1.0, 1.0);
                    let dx0 = rng.vec_uniform(m * k, -1.0, 1.0);
                    let mut want = dx0.clone();
                    matmul_ref(&dy, &w, &mut want, (m, k, n), 0.5, true);
                    let gw = GpuWeight::upload(gpu, "w", format, &raw, n, k).unwrap();
                    let gdy = GpuBuffer::from_slice(gpu, "dy", &dy).unwrap();
                    let gdx = GpuBuffer::from_slice(gpu, "dx", &dx0).unwrap();
                    pollster::block_on(async {
                        let mut rec = rec_for(build);
                        let (m, k) = (m as u32, k as u32);
                        matmul_weight_t(&mut rec, &gdy, 0, &gw, &gdx, 0, k, m, 0.5, true)
                            .await
                            .unwrap();
                        rec.submit().await.unwrap();
                    });
                    let got = pollster::block_on(read_buffer_f32(gpu, &gdx, 0, m * k)).unwrap();
                    let what = format!("dX {format:?} {m}x{n}x{k} {build:?}");
                    assert_close(&what, &got, &want, 1e-4, 1e-4);
                }
            }
        }
    }

    #[test]
    fn sums_longer_than_one_dispatch_are_complete() {
        // Longer than one dispatch's sum on a CPU adapter (`k_chunk`): the logits' input
        // gradient (K = SmolLM2's 49152-token vocabulary) lost its tail on llvmpipe before sums
        // were split; a weight row and a strided sum that end mid-chunk.
        let gpu = gpu();
        let mut rng = Rng::new(49);
        let (m, c, v) = (8usize, 64usize, 49152usize);
        let raw = random_blocks(WeightFormat::Q8_0, v * c, &mut rng);
        let w = dequant(WeightFormat::Q8_0, &raw, v * c);
        let gw = GpuWeight::upload(gpu, "embd", WeightFormat::Q8_0, &raw, v, c).unwrap();
        let dy = rng.vec_uniform(m * v, -1.0, 1.0);
        let mut want_dx = vec![0.0; m * c];
        matmul_ref(&dy, &w, &mut want_dx, (m, c, v), 1.0, false);
        let (kw, ks) = (16480, 9000);
        let raw_w = random_blocks(WeightFormat::Q4_1, 16 * kw, &mut rng);
        let w2 = dequant(WeightFormat::Q4_1, &raw_w, 16 * kw);
        let gw2 = GpuWeight::upload(gpu, "w", WeightFormat::Q4_1, &raw_w, 16, kw).unwrap();
        let x = rng.vec_uniform(m * kw, -1.0, 1.0);
        let mut want_y = vec![0.0; m * 16];
        matmul_ref(
            &x,
            &transpose(&w2, 16, kw),
            &mut want_y,
            (m, 16, kw),
            1.0,
            false,
        );
        let (sa, sb) = (
            rng.vec_uniform(m * ks, -1.0, 1.0),
            rng.vec_uniform(ks * 24, -1.0, 1.0),
        );
        let mut want_s = vec![0.0; m * 24];
        matmul_ref(&sa, &sb, &mut want_s, (m, 24, ks), 1.0, false);
        let gdy = GpuBuffer::from_slice(gpu, "dy", &dy).unwrap();
        let gx = GpuBuffer::from_slice(gpu, "x", &x).unwrap();
        let (ga, gb) = (upload(&sa), upload(&transpose(&sb, ks, 24)));
        for build in builds() {
            let out: Vec<GpuBuffer> = [m * c, m * 16, m * 24]
                .iter()
                .map(|&n| GpuBuffer::zeroed(gpu, "out", (n * 4) as u64).unwrap())
                .collect();
            pollster::block_on(async {
                let mut rec = rec_for(build);
                let m32 = m as u32;
                matmul_weight_t(
                    &mut rec, &gdy, 0, &gw, &out[0], 0, c as u32, m32, 1.0, false,
                )
                .await
                .unwrap();
                matmul_weight(&mut rec, &gx, 0, &gw2, &out[1], 0, 16, m32, 1.0, false)
                    .await
                    .unwrap();
                let (av, bv) = (
                    MatView::rows(&ga, 0, ks as u32),
                    MatView::transposed(&gb, 0, ks as u32),
                );
                let cv = MatView::rows(&out[2], 0, 24);
                matmul(&mut rec, av, bv, cv, (m32, 24, ks as u32), 1.0, false)
                    .await
                    .unwrap();
                rec.submit().await.unwrap();
            });
            for (what, buf, want) in [
                ("dX through the embedding, K 49152", &out[0], &want_dx),
                ("x·Wᵀ, K 16480", &out[1], &want_y),
                ("strided, K 9000", &out[2], &want_s),
            ] {
                let got = pollster::block_on(read_buffer_f32(gpu, buf, 0, want.len())).unwrap();
                assert_close(&format!("{what} {build:?}"), &got, want, 1e-3, 1e-4);
            }
        }
    }

    #[test]
    fn weight_matmul_matches_cpu_for_every_format() {
        let gpu = gpu();
        let mut rng = Rng::new(2);
        for build in builds() {
            for &format in WeightFormat::ALL {
                for (m, n, k) in shapes_for(format, WEIGHT_SHAPES) {
                    if !build.runs((m, n, k)) {
                        continue;
                    }
                    let raw = random_blocks(format, n * k, &mut rng);
                    let w = dequant(format, &raw, n * k);
                    let x = rng.vec_uniform(m * k, -1.0, 1.0);
                    let mut want = vec![0.0; m * n];
                    matmul_ref(&x, &transpose(&w, n, k), &mut want, (m, n, k), 1.0, false);
                    let gw = GpuWeight::upload(gpu, "w", format, &raw, n, k).unwrap();
                    let gx = GpuBuffer::from_slice(gpu, "x", &x).unwrap();
                    let gy = GpuBuffer::zeroed(gpu, "y", (m * n * 4) as u64).unwrap();
                    pollster::block_on(async {
                        let mut rec = rec_for(build);
                        matmul_weight(
                            &mut rec, &gx, 0, &gw, &gy, 0, n as u32, m as u32, 1.0, false,
                        )
                        .await
                        .unwrap();
                        rec.submit().await.unwrap();
                    });
                    let got = pollster::block_on(read_buffer_f32(gpu, &gy, 0, m * n)).unwrap();
                    assert_close(
                        &format!("{format:?} {m}x{n}x{k} {build:?}"),
                        &got,
                        &want,
                        1e-4,
                        1e-4,
                    );
                }
            }
        }
    }
}
