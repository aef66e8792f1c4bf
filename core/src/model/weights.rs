//! The model's weights on the GPU, as named structs, uploaded from GGUF tensors.

use std::ops::Range;

use super::{ModelConfig, ModelError, Result, RopeFactors};
use crate::formats::{GgmlType, Gguf, TensorSource};
use crate::gpu::{Gpu, GpuBuffer};
use crate::kernels::{GpuWeight, WeightFormat};
use crate::lora::{LoraAdapter, Module};

/// One transformer block.
#[derive(Debug)]
pub struct LayerWeights {
    pub attn_norm: GpuBuffer,
    pub attn_q: GpuWeight,
    pub attn_k: GpuWeight,
    pub attn_v: GpuWeight,
    pub attn_output: GpuWeight,
    pub ffn_norm: GpuBuffer,
    pub ffn_gate: GpuWeight,
    pub ffn_up: GpuWeight,
    pub ffn_down: GpuWeight,
    /// The q, k and v biases, where the architecture has them.
    pub qkv_bias: Option<QkvBias>,
    /// The per-head q and k norm weights, where the architecture has them.
    pub qk_norm: Option<QkNorm>,
    /// The norms of the attention and feed-forward outputs, where the architecture has them.
    pub post_norms: Option<PostNorms>,
}

/// RMSNorm weights applied to the attention output and the feed-forward output before each is
/// added to the residual stream (gemma3).
#[derive(Debug)]
pub struct PostNorms {
    pub attn: GpuBuffer,
    pub ffn: GpuBuffer,
}

/// RMSNorm weights applied to every query and every key head (HS values each; qwen3).
#[derive(Debug)]
pub struct QkNorm {
    pub q: GpuBuffer,
    pub k: GpuBuffer,
}

/// Biases added after the q, k and v projections (qwen2).
#[derive(Debug)]
pub struct QkvBias {
    pub q: GpuBuffer,
    pub k: GpuBuffer,
    pub v: GpuBuffer,
}

/// Every weight of the model.
#[derive(Debug)]
pub struct ModelWeights {
    pub token_embd: GpuWeight,
    pub output_norm: GpuBuffer,
    /// `None` when the output projection is tied to `token_embd`.
    pub output: Option<GpuWeight>,
    pub layers: Vec<LayerWeights>,
    /// Per-pair rope frequency divisors (HS/2).
    pub rope_factors: RopeFactors<GpuBuffer>,
}

impl ModelWeights {
    /// The output projection (the token embedding when tied).
    pub fn output(&self) -> &GpuWeight {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Bytes the weights occupy on the device.
    pub fn device_bytes(&self) -> u64 {
        let l: u64 = self
            .layers
            .iter()
            .map(|l| {
                l.attn_norm.size
                    + l.ffn_norm.size
                    + l.qkv_bias
                        .as_ref()
                        .map_or(0, |b| b.q.size + b.k.size + b.v.size)
                    + l.qk_norm.as_ref().map_or(0, |b| b.q.size + b.k.size)
                    + l.post_norms
                        .as_ref()
                        .map_or(0, |b| b.attn.size + b.ffn.size)
                    + [
                        &l.attn_q,
                        &l.attn_k,
                        &l.attn_v,
                        &l.attn_output,
                        &l.ffn_gate,
                        &l.ffn_up,
                        &l.ffn_down,
                    ]
                    .iter()
                    .map(|w| w.device_bytes())
                    .sum::<u64>()
            })
            .sum();
        l + self.token_embd.device_bytes()
            + self.output_norm.size
            + self.output.as_ref().map_or(0, GpuWeight::device_bytes)
            + self.rope_factors.base.size
            + self.rope_factors.long.as_ref().map_or(0, |(_, b)| b.size)
    }

    /// Upload every weight `config` names, tensor by tensor from `file`; projections that
    /// `adapter` adapts are merged (`W + s·B·A`, in f32) on the way.
    pub fn upload(
        gpu: &Gpu,
        config: &ModelConfig,
        gguf: &Gguf,
        file: &dyn TensorSource,
        adapter: Option<&LoraAdapter>,
    ) -> Result<ModelWeights> {
        let (c, v) = (config.n_embd, config.vocab_size);
        let (q, kv) = (config.q_dim(), config.kv_dim());
        let matrix = |name: &str, rows: usize, cols: usize| {
            upload_matrix(gpu, gguf, file, name, (rows, cols), 0..rows)
        };
        let vector = |name: &str, len: usize| upload_vector(gpu, gguf, file, name, len);
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let bias = |s: &str, len: usize| vector(&format!("blk.{i}.{s}.bias"), len);
            // A projection: its rows of the tensor that holds it (fused or not), merged with
            // the adapter's pair when there is one.
            let proj = |p: Module| -> Result<GpuWeight> {
                let (module, rows) = config.projection_rows(p);
                let (name, shape) = (n(module.gguf_name()), config.module_shape(module));
                match adapter.and_then(|a| a.pair(i, module).map(|p| (a.config.scale(), p))) {
                    Some((scale, pair)) => {
                        upload_merged(gpu, gguf, file, &name, shape, rows, scale, pair)
                    }
                    None => upload_matrix(gpu, gguf, file, &name, shape, rows),
                }
            };
            layers.push(LayerWeights {
                attn_norm: vector(&n("attn_norm"), c)?,
                attn_q: proj(Module::QProj)?,
                attn_k: proj(Module::KProj)?,
                attn_v: proj(Module::VProj)?,
                attn_output: proj(Module::OProj)?,
                ffn_norm: vector(&n("ffn_norm"), c)?,
                ffn_gate: proj(Module::GateProj)?,
                ffn_up: proj(Module::UpProj)?,
                ffn_down: proj(Module::DownProj)?,
                qkv_bias: match config.arch.qkv_bias {
                    true => Some(QkvBias {
                        q: bias("attn_q", q)?,
                        k: bias("attn_k", kv)?,
                        v: bias("attn_v", kv)?,
                    }),
                    false => None,
                },
                post_norms: match config.arch.post_norms {
                    true => Some(PostNorms {
                        attn: vector(&n("post_attention_norm"), c)?,
                        ffn: vector(&n("post_ffw_norm"), c)?,
                    }),
                    false => None,
                },
                qk_norm: match config.arch.qk_norm {
                    true => Some(QkNorm {
                        q: vector(&n("attn_q_norm"), config.head_dim)?,
                        k: vector(&n("attn_k_norm"), config.head_dim)?,
                    }),
                    false => None,
                },
            });
        }
        Ok(ModelWeights {
            token_embd: matrix("token_embd.weight", v, c)?,
            output_norm: vector("output_norm.weight", c)?,
            output: if config.tied_embeddings {
                None
            } else {
                Some(matrix("output.weight", v, c)?)
            },
            layers,
            rope_factors: config.rope_factors(|tensor| match tensor {
                Some(name) => vector(name, config.rope_dim / 2),
                None => {
                    GpuBuffer::from_slice(gpu, "rope factors", &vec![1.0f32; config.rope_dim / 2])
                        .map_err(Into::into)
                }
            })?,
        })
    }
}

fn check_dims(name: &str, dims: &[u64], want: &[usize]) -> Result<()> {
    let got: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    if got != want {
        return Err(ModelError::BadConfig(format!(
            "tensor '{name}' has dims {got:?}, the config implies {want:?}"
        )));
    }
    Ok(())
}

/// Upload rows `part` of `name`, a weight W[rows, cols] (GGUF dims [cols, rows]), in its own
/// encoding (the formats of [`WeightFormat::ALL`]); any other type is an error naming the
/// tensor, never a silent conversion.
fn upload_matrix(
    gpu: &Gpu,
    gguf: &Gguf,
    file: &dyn TensorSource,
    name: &str,
    (rows, cols): (usize, usize),
    part: Range<usize>,
) -> Result<GpuWeight> {
    let info = gguf.require_tensor(name)?;
    check_dims(name, &info.dims, &[cols, rows])?;
    let format = weight_format(name, info.ty)?;
    if !cols.is_multiple_of(format.k_multiple()) {
        return Err(ModelError::BadConfig(format!(
            "tensor '{name}' ({}) has rows of {cols} values, not a multiple of {}",
            info.ty,
            format.k_multiple()
        )));
    }
    let raw = file.tensor(gguf, info)?;
    // Quantized blocks never cross a row (cols is a multiple of the block), so rows are
    // byte ranges.
    let row_bytes = raw.len() / rows;
    let raw = &raw[part.start * row_bytes..part.end * row_bytes];
    Ok(GpuWeight::upload(gpu, name, format, raw, part.len(), cols)?)
}

/// The GPU format of tensor `name` of type `ty`, or an error naming the tensor and the types
/// the kernels read.
fn weight_format(name: &str, ty: GgmlType) -> Result<WeightFormat> {
    ty.weight_format()
        .ok_or_else(|| ModelError::UnsupportedWeightType {
            tensor: name.to_owned(),
            ty: ty.name(),
        })
}

/// Rows `part` of `W + scale·B·A` in f32 for a LoRA pair (A [r, cols], B [rows, r], both in
/// GGUF row order).
#[allow(clippy::too_many_arguments)]
fn upload_merged(
    gpu: &Gpu,
    gguf: &Gguf,
    file: &dyn TensorSource,
    name: &str,
    (rows, cols): (usize, usize),
    part: Range<usize>,
    scale: f32,
    pair: &crate::lora::LoraPair,
) -> Result<GpuWeight> {
    let info = gguf.require_tensor(name)?;
    check_dims(name, &info.dims, &[cols, rows])?;
    if pair.in_features != cols || pair.out_features != rows {
        return Err(ModelError::BadConfig(format!(
            "the adapter's {name} is [{}, {}], the model's is [{rows}, {cols}]",
            pair.out_features, pair.in_features
        )));
    }
    let mut w = gguf.decode_f32(info, &file.tensor(gguf, info)?)?;
    crate::lora::merge::add_scaled_product(&mut w, cols, scale, pair);
    Ok(GpuWeight::upload(
        gpu,
        name,
        WeightFormat::F32,
        bytemuck::cast_slice(&w[part.start * cols..part.end * cols]),
        part.len(),
        cols,
    )?)
}

fn upload_vector(
    gpu: &Gpu,
    gguf: &Gguf,
    file: &dyn TensorSource,
    name: &str,
    len: usize,
) -> Result<GpuBuffer> {
    let info = gguf.require_tensor(name)?;
    check_dims(name, &info.dims, &[len])?;
    Ok(GpuBuffer::from_slice(
        gpu,
        name,
        &gguf.decode_f32(info, &file.tensor(gguf, info)?)?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{GgufWriter, WholeFile};
    use crate::kernels::random_blocks;
    use crate::kernels::testing::gpu;
    use crate::util::Rng;

    #[test]
    fn matrices_stay_in_their_own_format_and_other_types_are_named() {
        // Every GPU format is uploaded as itself (F16/BF16 included, never widened); other types
        // (IQ4_NL, IQ2_XS) are errors naming the tensor.
        let mut rng = Rng::new(5);
        let (rows, cols) = (3usize, 256usize);
        let mut w = GgufWriter::new();
        for &f in WeightFormat::ALL {
            let raw = random_blocks(f, rows * cols, &mut rng);
            let dims = [cols as u64, rows as u64];
            w.add_tensor(format!("w.{f}"), &dims, f.into(), raw)
                .unwrap();
        }
        for (ty, bytes) in [(GgmlType::IQ4_NL, 8 * 18), (GgmlType::IQ2_XS, 74)] {
            w.add_tensor(format!("w.{ty}"), &[256, 3], ty, vec![0; 3 * bytes])
                .unwrap();
        }
        let bytes = w.to_bytes();
        let (gguf, file) = (Gguf::parse(&bytes).unwrap(), WholeFile(&bytes));
        for &f in WeightFormat::ALL {
            let name = format!("w.{f}");
            let gw = upload_matrix(gpu(), &gguf, &file, &name, (rows, cols), 0..rows).unwrap();
            assert_eq!((gw.format, gw.rows, gw.cols), (f, rows, cols));
        }
        for ty in ["IQ4_NL", "IQ2_XS"] {
            let err = upload_matrix(
                gpu(),
                &gguf,
                &file,
                &format!("w.{ty}"),
                (rows, cols),
                0..rows,
            )
            .unwrap_err()
            .to_string();
            assert_eq!(
                err,
                format!(
                    "tensor 'w.{ty}' has type {ty}, which afinador cannot read on the GPU yet \
                     (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, \
                     Q5_K, Q6_K, BF16; re-quantize the model with llama-quantize to one of them)"
                )
            );
        }
    }
}
