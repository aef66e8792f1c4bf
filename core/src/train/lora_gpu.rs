//! LoRA weights on the GPU: every A and B matrix in one flat f32 buffer (and gradients and
//! AdamW moments in buffers of the same layout), so the optimizer and the gradient norm are one
//! dispatch each.

use crate::gpu::{Gpu, GpuBuffer, Result, read_buffer_f32};
use crate::lora::{LoraAdapter, LoraConfig, LoraPair, Module};
use crate::model::ModelConfig;
use crate::util::Rng;

/// Where one adapted projection's matrices live in the flat buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraSlot {
    pub layer: usize,
    pub module: Module,
    /// Offset of A [r, in] (elements).
    pub a_off: u32,
    /// Offset of B [out, r] (elements).
    pub b_off: u32,
    pub in_features: u32,
    pub out_features: u32,
}

/// All LoRA parameters of a model on the GPU, with gradients and optimizer state.
#[derive(Debug)]
pub struct GpuLora {
    pub config: LoraConfig,
    pub slots: Vec<LoraSlot>,
    /// Total parameters.
    pub n: usize,
    pub params: GpuBuffer,
    pub grads: GpuBuffer,
    pub m: GpuBuffer,
    pub v: GpuBuffer,
}

impl GpuLora {
    /// Lay out the slots of `config`'s target modules for every layer.
    fn layout(
        model: &ModelConfig,
        config: &LoraConfig,
    ) -> crate::train::Result<(Vec<LoraSlot>, usize)> {
        let r = config.r;
        let modules = config.modules()?;
        if let Some(m) = modules.iter().find(|m| !model.arch.modules().contains(m)) {
            return Err(crate::train::TrainError::Adapter(format!(
                "{} has no {m}: target {} or a part of them",
                model.arch.name,
                model
                    .arch
                    .modules()
                    .iter()
                    .map(|m| m.hf_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut slots = Vec::new();
        let mut off = 0usize;
        for layer in 0..model.n_layer {
            for &module in &modules {
                let (out, inp) = model.module_shape(module);
                slots.push(LoraSlot {
                    layer,
                    module,
                    a_off: off as u32,
                    b_off: (off + r * inp) as u32,
                    in_features: inp as u32,
                    out_features: out as u32,
                });
                off += r * (inp + out);
            }
        }
        Ok((slots, off))
    }

    /// Fresh adapters: A kaiming-uniform(a = √5), i.e. uniform in ±1/√in as PEFT initializes
    /// it, and B zero, so the adapted model starts equal to the base model.
    pub fn init(
        gpu: &Gpu,
        model: &ModelConfig,
        config: &LoraConfig,
        seed: u64,
    ) -> crate::train::Result<GpuLora> {
        let (slots, n) = Self::layout(model, config)?;
        let mut values = vec![0.0f32; n];
        let mut rng = Rng::new(seed);
        for s in &slots {
            let bound = 1.0 / (s.in_features as f32).sqrt();
            let a = s.a_off as usize..s.a_off as usize + config.r * s.in_features as usize;
            values[a]
                .iter_mut()
                .for_each(|x| *x = rng.uniform(-bound, bound));
        }
        Self::from_values(gpu, config.clone(), slots, &values)
    }

    /// Upload an existing adapter (for example one read from PEFT files).
    pub fn from_adapter(
        gpu: &Gpu,
        model: &ModelConfig,
        adapter: &LoraAdapter,
    ) -> crate::train::Result<GpuLora> {
        let (slots, n) = Self::layout(model, &adapter.config)?;
        let mut values = vec![0.0f32; n];
        for s in &slots {
            let pair = adapter.pair(s.layer, s.module).ok_or_else(|| {
                crate::train::TrainError::Adapter(format!(
                    "the adapter has no {} for layer {}",
                    s.module.hf_name(),
                    s.layer
                ))
            })?;
            let (a, b) = (s.a_off as usize, s.b_off as usize);
            values[a..a + pair.a.len()].copy_from_slice(&pair.a);
            values[b..b + pair.b.len()].copy_from_slice(&pair.b);
        }
        Self::from_values(gpu, adapter.config.clone(), slots, &values)
    }

    fn from_values(
        gpu: &Gpu,
        config: LoraConfig,
        slots: Vec<LoraSlot>,
        values: &[f32],
    ) -> crate::train::Result<GpuLora> {
        let n = values.len();
        let zeros = vec![0.0f32; n];
        Ok(GpuLora {
            config,
            slots,
            n,
            params: GpuBuffer::from_slice(gpu, "lora params", values)?,
            grads: GpuBuffer::from_slice(gpu, "lora grads", &zeros)?,
            m: GpuBuffer::from_slice(gpu, "lora adam m", &zeros)?,
            v: GpuBuffer::from_slice(gpu, "lora adam v", &zeros)?,
        })
    }

    /// The slot adapting `module` of `layer`, if any.
    pub fn slot(&self, layer: usize, module: Module) -> Option<&LoraSlot> {
        self.slots
            .iter()
            .find(|s| s.layer == layer && s.module == module)
    }

    /// The LoRA term of projection `p` of `layer`, if adapted: its module's slot, or where the
    /// architecture fuses `p` with others, the fused module's A and `p`'s rows of its B (the
    /// fused module's `u = x·Aᵀ` is shared, its dA sums the parts' contributions).
    pub fn projection_slot(
        &self,
        model: &ModelConfig,
        layer: usize,
        p: Module,
    ) -> Option<LoraSlot> {
        let (module, rows) = model.projection_rows(p);
        let s = *self.slot(layer, module)?;
        Some(LoraSlot {
            b_off: s.b_off + (rows.start * self.config.r) as u32,
            out_features: rows.len() as u32,
            ..s
        })
    }

    /// The scale s of `y += s·B·A·x`.
    pub fn scale(&self) -> f32 {
        self.config.scale()
    }

    /// Read the adapter back (one readback).
    pub async fn download(&self, gpu: &Gpu) -> Result<LoraAdapter> {
        Ok(self.adapter_from(&read_buffer_f32(gpu, &self.params, 0, self.n).await?))
    }

    /// The adapter whose flat parameters (this layout's `params`) are `values`.
    pub fn adapter_from(&self, values: &[f32]) -> LoraAdapter {
        let r = self.config.r;
        let tensors = self
            .slots
            .iter()
            .map(|s| {
                let (a, b) = (s.a_off as usize, s.b_off as usize);
                LoraPair {
                    layer: s.layer,
                    module: s.module,
                    a: values[a..a + r * s.in_features as usize].to_vec(),
                    b: values[b..b + r * s.out_features as usize].to_vec(),
                    in_features: s.in_features as usize,
                    out_features: s.out_features as usize,
                }
            })
            .collect();
        LoraAdapter {
            config: self.config.clone(),
            tensors,
        }
    }
}
