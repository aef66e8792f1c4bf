//! Every buffer a training step uses, allocated once for B×T tokens: the activations each layer
//! saves for the backward pass, the backward pass's scratch, one chunk of logits rows.

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::bf16::{pack_bf16, packed_bytes, unpack_bf16};
use crate::kernels::optim::NORM_PARTIALS;
use crate::lora::Module;
use crate::model::ModelConfig;
use crate::train::Result;
use crate::train::lora_gpu::GpuLora;
use crate::train::memory::MemorySavings;

/// Activations of one layer saved by the forward pass for the backward pass.
#[derive(Debug)]
pub(super) struct LayerActs {
    pub(super) xn1: GpuBuffer,
    pub(super) rstd1: GpuBuffer,
    pub(super) q: GpuBuffer,
    pub(super) k: GpuBuffer,
    pub(super) v: GpuBuffer,
    pub(super) att: GpuBuffer,
    pub(super) lse: GpuBuffer,
    pub(super) x_mid: GpuBuffer,
    pub(super) xn2: GpuBuffer,
    pub(super) rstd2: GpuBuffer,
    pub(super) gate: GpuBuffer,
    pub(super) up: GpuBuffer,
    pub(super) hidden: GpuBuffer,
    /// x·Aᵀ of each adapted projection, by module.
    pub(super) lora_u: Vec<(Module, GpuBuffer)>,
    /// Q and K before their per-head norms, and the norms' 1/rms (qwen3).
    pub(super) head_norm: Option<HeadNormActs>,
    /// The attention and feed-forward outputs before their post norms, and the norms' 1/rms
    /// (gemma3).
    pub(super) post: Option<PostNormActs>,
}

#[derive(Debug)]
pub(super) struct PostNormActs {
    pub(super) attn_out: GpuBuffer,
    pub(super) attn_rstd: GpuBuffer,
    pub(super) ffn_out: GpuBuffer,
    pub(super) ffn_rstd: GpuBuffer,
}

#[derive(Debug)]
pub(super) struct HeadNormActs {
    pub(super) q_raw: GpuBuffer,
    pub(super) k_raw: GpuBuffer,
    pub(super) rstd_q: GpuBuffer,
    pub(super) rstd_k: GpuBuffer,
}

/// Every buffer a step uses, sized once for B×T tokens.
#[derive(Debug)]
pub(super) struct Arena {
    pub(super) b: usize,
    pub(super) t: usize,
    /// Token ids, targets and per-position statistics of each micro-batch of the step.
    pub(super) ids: Vec<GpuBuffer>,
    pub(super) targets: Vec<GpuBuffer>,
    pub(super) stats: Vec<GpuBuffer>,
    /// Residual stream entering each layer, and after the last one (L + 1 of them): f32, or
    /// with the bf16 stream packed bf16 pairs, run from `work` ([`Arena::stream`]).
    x: Vec<GpuBuffer>,
    /// With the bf16 stream: two f32 buffers, a layer's input and output in turn.
    work: Vec<GpuBuffer>,
    /// What each layer saves for the backward pass: one set per layer, or with gradient
    /// checkpointing one shared set that the backward pass refills layer by layer.
    pub(super) layers: Vec<LayerActs>,
    pub(super) checkpointing: bool,
    pub(super) xnf: GpuBuffer,
    pub(super) rstdf: GpuBuffer,
    pub(super) logits: GpuBuffer,
    pub(super) logit_rows: usize,
    pub(super) tmp: GpuBuffer,
    pub(super) dx: GpuBuffer,
    pub(super) dxn: GpuBuffer,
    pub(super) datt: GpuBuffer,
    pub(super) dq: GpuBuffer,
    pub(super) dk: GpuBuffer,
    /// The gradient of a block's output before its post norm (gemma3).
    pub(super) dpost: GpuBuffer,
    /// Gradients of Q and K before their per-head norms (qwen3).
    pub(super) dq_raw: GpuBuffer,
    pub(super) dk_raw: GpuBuffer,
    pub(super) dv: GpuBuffer,
    pub(super) delta: GpuBuffer,
    pub(super) dh: GpuBuffer,
    pub(super) dgate: GpuBuffer,
    pub(super) dup: GpuBuffer,
    pub(super) du: GpuBuffer,
    /// The dropped-out input of a LoRA projection, and its gradient (scratch).
    pub(super) xdrop: GpuBuffer,
    pub(super) xdrop2: GpuBuffer,
    pub(super) norm_partials: GpuBuffer,
    pub(super) norm: GpuBuffer,
}

impl Arena {
    pub(super) fn new(
        gpu: &Gpu,
        c: &ModelConfig,
        lora: &GpuLora,
        (b, t, micro): (usize, usize, usize),
        savings: MemorySavings,
    ) -> Result<Arena> {
        let checkpointing = savings.checkpointing;
        let n = b * t;
        let f = |name: &str, len: usize| GpuBuffer::zeroed(gpu, name, (len.max(1) * 4) as u64);
        let (ce, ff, qd, kvd, r) = (c.n_embd, c.n_ff, c.q_dim(), c.kv_dim(), lora.config.r);
        let sets = if checkpointing { 1 } else { c.n_layer };
        let mut layers = Vec::with_capacity(sets);
        for l in 0..sets {
            // x·Aᵀ of each module the set's layers adapt (a shared set: any layer's).
            let mut modules: Vec<Module> = lora
                .slots
                .iter()
                .filter(|s| checkpointing || s.layer == l)
                .map(|s| s.module)
                .collect();
            modules.sort_by_key(|&m| m as usize);
            modules.dedup();
            let lora_u = modules
                .into_iter()
                .map(|m| Ok((m, f("lora u", n * r)?)))
                .collect::<Result<Vec<_>>>()?;
            layers.push(LayerActs {
                xn1: f("xn1", n * ce)?,
                rstd1: f("rstd1", n)?,
                q: f("q", n * qd)?,
                k: f("k", n * kvd)?,
                v: f("v", n * kvd)?,
                att: f("att", n * qd)?,
                lse: f("lse", n * c.n_head)?,
                x_mid: f("x_mid", n * ce)?,
                xn2: f("xn2", n * ce)?,
                rstd2: f("rstd2", n)?,
                gate: f("gate", n * ff)?,
                up: f("up", n * ff)?,
                hidden: f("hidden", n * ff)?,
                lora_u,
                post: match c.arch.post_norms {
                    true => Some(PostNormActs {
                        attn_out: f("attention output", n * ce)?,
                        attn_rstd: f("attention output rstd", n)?,
                        ffn_out: f("feed-forward output", n * ce)?,
                        ffn_rstd: f("feed-forward output rstd", n)?,
                    }),
                    false => None,
                },
                head_norm: match c.arch.qk_norm {
                    true => Some(HeadNormActs {
                        q_raw: f("q before norm", n * qd)?,
                        k_raw: f("k before norm", n * kvd)?,
                        rstd_q: f("q head rstd", n * c.n_head)?,
                        rstd_k: f("k head rstd", n * c.n_head_kv)?,
                    }),
                    false => None,
                },
            });
        }
        let max_rows =
            (gpu.limits.max_storage_buffer_binding_size as usize / (c.vocab_size * 4)).max(1);
        let logit_rows = n.min(max_rows).min(512);
        Ok(Arena {
            b,
            t,
            ids: (0..micro)
                .map(|_| f("ids", n))
                .collect::<std::result::Result<_, _>>()?,
            targets: (0..micro)
                .map(|_| f("targets", n))
                .collect::<std::result::Result<_, _>>()?,
            stats: (0..micro)
                .map(|_| f("stats", n * 4))
                .collect::<std::result::Result<_, _>>()?,
            x: (0..=c.n_layer)
                .map(|_| match savings.bf16_stream {
                    false => f("x", n * ce),
                    true => GpuBuffer::zeroed(gpu, "x bf16", packed_bytes(n * ce)),
                })
                .collect::<std::result::Result<_, _>>()?,
            work: (0..if savings.bf16_stream { 2 } else { 0 })
                .map(|_| f("x f32", n * ce))
                .collect::<std::result::Result<_, _>>()?,
            layers,
            checkpointing,
            xnf: f("xnf", n * ce)?,
            rstdf: f("rstdf", n)?,
            logits: f("logits", logit_rows * c.vocab_size)?,
            logit_rows,
            tmp: f("tmp", n * ce)?,
            dx: f("dx", n * ce)?,
            dxn: f("dxn", n * ce)?,
            datt: f("datt", n * qd)?,
            dq: f("dq", n * qd)?,
            dk: f("dk", n * kvd)?,
            dpost: f("d block output", if c.arch.post_norms { n * ce } else { 1 })?,
            dq_raw: f("dq before norm", if c.arch.qk_norm { n * qd } else { 1 })?,
            dk_raw: f("dk before norm", if c.arch.qk_norm { n * kvd } else { 1 })?,
            dv: f("dv", n * kvd)?,
            delta: f("delta", n * c.n_head)?,
            dh: f("dh", n * ff)?,
            dgate: f("dgate", n * ff)?,
            dup: f("dup", n * ff)?,
            du: f("du", n * r)?,
            xdrop: f("lora dropout", n * ce.max(ff).max(qd))?,
            xdrop2: f("lora dropout grad", n * ce.max(ff).max(qd))?,
            norm_partials: f("norm partials", NORM_PARTIALS as usize)?,
            norm: f("norm", 4)?,
        })
    }

    /// The saved activations of layer `l`.
    pub(super) fn layer(&self, l: usize) -> &LayerActs {
        &self.layers[if self.checkpointing { 0 } else { l }]
    }

    /// The f32 residual stream entering layer `l` (`l` = L: leaving the last).
    pub(super) fn stream(&self, l: usize) -> &GpuBuffer {
        match self.work.is_empty() {
            true => &self.x[l],
            false => &self.work[l % 2],
        }
    }

    /// After the forward pass wrote [`Arena::stream`]`(l)`: keep it for the backward pass (the
    /// bf16 stream packs it, rounding the f32 copy the forward pass goes on from).
    pub(super) async fn keep_stream(&self, rec: &mut Recorder<'_>, l: usize) -> Result<()> {
        if !self.work.is_empty() {
            pack_bf16(rec, &self.work[l % 2], &self.x[l], self.stream_values()).await?;
        }
        Ok(())
    }

    /// Before layer `l`'s backward pass (and its recomputed forward pass): [`Arena::stream`]`(l)`
    /// as the forward pass left it.
    pub(super) async fn restore_stream(&self, rec: &mut Recorder<'_>, l: usize) -> Result<()> {
        if !self.work.is_empty() {
            unpack_bf16(rec, &self.x[l], &self.work[l % 2], self.stream_values()).await?;
        }
        Ok(())
    }

    fn stream_values(&self) -> u32 {
        (self.work[0].size / 4) as u32
    }
}
