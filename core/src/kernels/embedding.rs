//! Row gather from an embedding table (`embedding.wgsl`): `out[t, :] = W[ids[t], :]`.

use afinador_shaders::Shader;

use super::{GpuWeight, assert_params_size};
use crate::gpu::{Binding, GpuBuffer, KernelLayout, Recorder, Result};

/// Mirrors `Params` in embedding.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbeddingParams {
    pub c: u32,
    pub t: u32,
    pub v: u32,
    pub out_off: u32,
    pub row0: u32,
    pub rows: u32,
    pub scale: f32,
    pub _pad: u32,
}
assert_params_size!(EmbeddingParams, 32);

pub const LAYOUT: KernelLayout = KernelLayout {
    shader: Shader::Embedding,
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
};

/// Gather the rows `ids[0..t]` of `table`, times `scale` (gemma: √C; 1 otherwise), into `out`
/// (t rows of C values from element `out_off`).
pub async fn embedding(
    rec: &mut Recorder<'_>,
    ids: &GpuBuffer,
    t: u32,
    table: &GpuWeight,
    (out, out_off): (&GpuBuffer, u32),
    scale: f32,
) -> Result<()> {
    let c = table.cols as u32;
    // Tokens over y and z: a batch may hold more than the 65535 workgroups of one dimension.
    const TOKENS_PER_Z: u32 = 32768;
    let groups = [
        c.div_ceil(256),
        t.min(TOKENS_PER_Z),
        t.div_ceil(TOKENS_PER_Z).max(1),
    ];
    // Each part writes the tokens whose rows it holds.
    for part in &table.parts {
        let params = EmbeddingParams {
            c,
            t,
            v: table.rows as u32,
            out_off,
            row0: part.row0 as u32,
            rows: part.rows as u32,
            scale,
            _pad: 0,
        };
        let buffers = [ids, &part.q, &part.s, out];
        rec.dispatch(&LAYOUT, &[table.format.define()], &params, &buffers, groups)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::WeightFormat;
    use crate::kernels::testing::{dequant, gpu, random_blocks, read};
    use crate::util::Rng;

    #[test]
    fn embedding_gathers_dequantized_rows() {
        let mut rng = Rng::new(4);
        for &format in WeightFormat::ALL {
            // C: whole blocks, not a whole number of 256-channel workgroups where possible.
            let (v, c) = (37, if format.k_multiple() > 64 { 768 } else { 320 });
            let raw = random_blocks(format, v * c, &mut rng);
            let table = dequant(format, &raw, v * c);
            let ids: Vec<u32> = vec![0, 36, 5, 5, 17];
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&i| table[i as usize * c..(i as usize + 1) * c].to_vec())
                .collect();
            let gw = GpuWeight::upload(gpu(), "table", format, &raw, v, c).unwrap();
            let gids = GpuBuffer::from_slice(gpu(), "ids", &ids).unwrap();
            let out = GpuBuffer::zeroed(gpu(), "out", (ids.len() * c * 4) as u64).unwrap();
            crate::kernels::testing::run(async |rec| {
                embedding(rec, &gids, ids.len() as u32, &gw, (&out, 0), 1.0)
                    .await
                    .unwrap()
            });
            assert_eq!(read(&out), want, "{format:?}");
        }
    }

    #[test]
    fn embedding_gathers_more_tokens_than_one_grid_dimension_holds() {
        // 16 × 4096 tokens and more: past the 65535 workgroups of one dispatch dimension.
        let (v, c, t) = (11, 32, 70_001);
        let format = WeightFormat::ALL[0];
        let mut rng = Rng::new(5);
        let raw = random_blocks(format, v * c, &mut rng);
        let table = dequant(format, &raw, v * c);
        let ids: Vec<u32> = (0..t as u32).map(|i| (i * 7 + i / 3) % v as u32).collect();
        let gw = GpuWeight::upload(gpu(), "table", format, &raw, v, c).unwrap();
        let gids = GpuBuffer::from_slice(gpu(), "ids", &ids).unwrap();
        let out = GpuBuffer::zeroed(gpu(), "out", (t * c * 4) as u64).unwrap();
        crate::kernels::testing::run(async |rec| {
            embedding(rec, &gids, t as u32, &gw, (&out, 0), 1.0)
                .await
                .unwrap()
        });
        let got = read(&out);
        for (k, &i) in ids
            .iter()
            .enumerate()
            .step_by(997)
            .chain([(t - 1, &ids[t - 1])])
        {
            let i = i as usize;
            assert_eq!(
                got[k * c..(k + 1) * c],
                table[i * c..(i + 1) * c],
                "token {k}"
            );
        }
    }

    #[test]
    fn a_grid_past_the_device_limit_is_refused_naming_the_kernel() {
        let format = WeightFormat::ALL[0];
        let raw = random_blocks(format, 32, &mut Rng::new(6));
        let gw = GpuWeight::upload(gpu(), "table", format, &raw, 1, 32).unwrap();
        let gids = GpuBuffer::from_slice(gpu(), "ids", &[0u32]).unwrap();
        let out = GpuBuffer::zeroed(gpu(), "out", 128).unwrap();
        let params = EmbeddingParams {
            c: 32,
            t: 1,
            v: 1,
            out_off: 0,
            row0: 0,
            rows: 1,
            scale: 1.0,
            _pad: 0,
        };
        let part = &gw.parts[0];
        let buffers = [&gids, &part.q, &part.s, &out];
        let too_many = gpu().limits.max_compute_workgroups_per_dimension + 1;
        crate::kernels::testing::run(async |rec| {
            let e = rec
                .dispatch(
                    &LAYOUT,
                    &[format.define()],
                    &params,
                    &buffers,
                    [1, too_many, 1],
                )
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("Embedding") && e.contains("per dimension"),
                "{e}"
            );
        });
    }
}
