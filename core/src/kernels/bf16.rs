//! f32 values kept as bf16 pairs (`bf16.wgsl`): the training step's 16-bit saved residual
//! stream. bf16 rather than f16: a residual stream can leave f16's range (±65504) where bf16
//! keeps f32's, and rounding the top 16 bits of an f32 is integer arithmetic that every adapter
//! does alike, with no `shader-f16`.

use afinador_shaders::Shader;

use super::assert_params_size;
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result, grid_1d};

/// Mirrors `Params` in bf16.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Bf16Params {
    pub n: u32,
    pub _pad: [u32; 3],
}
assert_params_size!(Bf16Params, 16);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Bf16,
    bindings: &[Binding::Uniform, Binding::ReadWrite, Binding::ReadWrite],
};

/// Bytes of `values` f32 values packed as bf16 (`values` is even).
pub fn packed_bytes(values: usize) -> u64 {
    2 * values as u64
}

/// Pack `values` f32 values of `x` (even) into `packed` as bf16, rounding `x` in place to them.
pub async fn pack_bf16(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    packed: &GpuBuffer,
    values: u32,
) -> Result<()> {
    dispatch(rec, &[], x, packed, values).await
}

/// Unpack `values` bf16 values of `packed` into the f32 buffer `x`.
pub async fn unpack_bf16(
    rec: &mut Recorder<'_>,
    packed: &GpuBuffer,
    x: &GpuBuffer,
    values: u32,
) -> Result<()> {
    dispatch(rec, &["UNPACK"], x, packed, values).await
}

async fn dispatch(
    rec: &mut Recorder<'_>,
    defines: &[&'static str],
    x: &GpuBuffer,
    packed: &GpuBuffer,
    values: u32,
) -> Result<()> {
    debug_assert!(values.is_multiple_of(2), "bf16 pairs: an even count");
    let words = values / 2;
    let params = Bf16Params {
        n: words,
        ..Default::default()
    };
    rec.dispatch(
        &LAYOUT,
        defines,
        &params,
        &[x, packed],
        grid_1d(words.div_ceil(256)),
    )
    .await
}

/// CPU reference: `x` rounded to bf16 (nearest, ties to even; NaN a quiet NaN).
pub fn round_bf16_ref(x: f32) -> f32 {
    let bits = x.to_bits();
    let top = if bits & 0x7fff_ffff > 0x7f80_0000 {
        0x7fc0
    } else {
        (bits.wrapping_add(0x7fff + ((bits >> 16) & 1))) >> 16
    };
    f32::from_bits(top << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{gpu, read, run, upload};
    use crate::util::Rng;

    #[test]
    fn bf16_packing_rounds_like_the_cpu_and_unpacks_exactly() {
        // Random magnitudes over f32's range, values beyond f16's, ties (x.5 ulp of bf16, even
        // and odd), infinities, signed zeros and subnormals.
        let mut rng = Rng::new(31);
        let mut x: Vec<f32> = (0..1000)
            .map(|_| rng.uniform(-1.0, 1.0) * 10f32.powf(rng.uniform(-30.0, 30.0)))
            .collect();
        x.extend([
            1.0 + 1.0 / 256.0, // tie, rounds to even (down)
            1.0 + 3.0 / 256.0, // tie, rounds to even (up)
            70000.0,           // past f16's range
            -3.0e38,           // near f32's largest
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1.0e-40, // subnormal
        ]);
        let want: Vec<f32> = x.iter().map(|&v| round_bf16_ref(v)).collect();
        assert_eq!(round_bf16_ref(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16_ref(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        let n = x.len() as u32;
        let gx = upload(&x);
        let packed = GpuBuffer::zeroed(gpu(), "packed", packed_bytes(x.len())).unwrap();
        let restored = upload(&vec![7.0; x.len()]);
        run(async |rec| {
            pack_bf16(rec, &gx, &packed, n).await.unwrap();
            unpack_bf16(rec, &packed, &restored, n).await.unwrap();
        });
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&read(&gx)), bits(&want), "rounded in place");
        assert_eq!(bits(&read(&restored)), bits(&want), "unpacked");
    }
}
