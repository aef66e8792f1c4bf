//! One training step on the GPU: forward over B sequences with every activation the backward
//! needs saved, the fused chunked cross-entropy, the explicit backward layer by layer (base
//! weights frozen, LoRA gradients accumulated), the global gradient norm and AdamW. Per step
//! the host reads back only the per-token statistics and the gradient norm.

use super::lora_gpu::{GpuLora, LoraSlot};
use super::{Result, TrainError};
use crate::gpu::{Gpu, GpuBuffer, Recorder, read_buffer_f32};
use crate::kernels::GpuWeight;
use crate::kernels::attention::{AttentionSaved, AttentionShape, attention, attention_backward};
use crate::kernels::elementwise::{Op, add_bias, dropout, elementwise, glu_backward};
use crate::kernels::embedding::embedding;
use crate::kernels::logits::{NO_TARGET, RowStats, cross_entropy_grad, logit_stats};
use crate::kernels::matmul::{MatView, matmul, matmul_weight, matmul_weight_t};
use crate::kernels::optim::{AdamW, NORM_PARTIALS, adamw_step, grad_norm};
use crate::kernels::rmsnorm::{rmsnorm, rmsnorm_backward};
use crate::kernels::rope::{RopeFreqs, RopeShape, rope};
use crate::lora::Module;
use crate::model::{Model, ModelConfig};

/// Activations of one layer saved by the forward pass for the backward pass.
#[derive(Debug)]
struct LayerActs {
    xn1: GpuBuffer,
    rstd1: GpuBuffer,
    q: GpuBuffer,
    k: GpuBuffer,
    v: GpuBuffer,
    att: GpuBuffer,
    lse: GpuBuffer,
    x_mid: GpuBuffer,
    xn2: GpuBuffer,
    rstd2: GpuBuffer,
    gate: GpuBuffer,
    up: GpuBuffer,
    hidden: GpuBuffer,
    /// x·Aᵀ of each adapted projection, by module.
    lora_u: Vec<(Module, GpuBuffer)>,
    /// Q and K before their per-head norms, and the norms' 1/rms (qwen3).
    head_norm: Option<HeadNormActs>,
    /// The attention and feed-forward outputs before their post norms, and the norms' 1/rms
    /// (gemma3).
    post: Option<PostNormActs>,
}

#[derive(Debug)]
struct PostNormActs {
    attn_out: GpuBuffer,
    attn_rstd: GpuBuffer,
    ffn_out: GpuBuffer,
    ffn_rstd: GpuBuffer,
}

#[derive(Debug)]
struct HeadNormActs {
    q_raw: GpuBuffer,
    k_raw: GpuBuffer,
    rstd_q: GpuBuffer,
    rstd_k: GpuBuffer,
}

/// Every buffer a step uses, sized once for B×T tokens.
#[derive(Debug)]
struct Arena {
    b: usize,
    t: usize,
    /// Token ids, targets and per-position statistics of each micro-batch of the step.
    ids: Vec<GpuBuffer>,
    targets: Vec<GpuBuffer>,
    stats: Vec<GpuBuffer>,
    /// Residual stream entering each layer, and after the last one (L + 1 of them).
    x: Vec<GpuBuffer>,
    layers: Vec<LayerActs>,
    xnf: GpuBuffer,
    rstdf: GpuBuffer,
    logits: GpuBuffer,
    logit_rows: usize,
    tmp: GpuBuffer,
    dx: GpuBuffer,
    dxn: GpuBuffer,
    datt: GpuBuffer,
    dq: GpuBuffer,
    dk: GpuBuffer,
    /// The gradient of a block's output before its post norm (gemma3).
    dpost: GpuBuffer,
    /// Gradients of Q and K before their per-head norms (qwen3).
    dq_raw: GpuBuffer,
    dk_raw: GpuBuffer,
    dv: GpuBuffer,
    delta: GpuBuffer,
    dh: GpuBuffer,
    dgate: GpuBuffer,
    dup: GpuBuffer,
    du: GpuBuffer,
    /// The dropped-out input of a LoRA projection, and its gradient (scratch).
    xdrop: GpuBuffer,
    xdrop2: GpuBuffer,
    norm_partials: GpuBuffer,
    norm: GpuBuffer,
}

impl Arena {
    fn new(
        gpu: &Gpu,
        c: &ModelConfig,
        lora: &GpuLora,
        b: usize,
        t: usize,
        micro: usize,
    ) -> Result<Arena> {
        let n = b * t;
        let f = |name: &str, len: usize| GpuBuffer::zeroed(gpu, name, (len.max(1) * 4) as u64);
        let (ce, ff, qd, kvd, r) = (c.n_embd, c.n_ff, c.q_dim(), c.kv_dim(), lora.config.r);
        let mut layers = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let lora_u = lora
                .slots
                .iter()
                .filter(|s| s.layer == l)
                .map(|s| Ok((s.module, f("lora u", n * r)?)))
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
                .map(|_| f("x", n * ce))
                .collect::<std::result::Result<_, _>>()?,
            layers,
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
}

/// What one step measured.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StepStats {
    /// Mean NLL over the trained tokens (before the update).
    pub loss: f64,
    /// Fraction of trained tokens whose most likely prediction was the target.
    pub token_accuracy: f64,
    /// Mean predictive entropy over the trained tokens.
    pub entropy: f64,
    /// Global LoRA gradient norm before clipping.
    pub grad_norm: f64,
    pub trained_tokens: usize,
    /// The update was skipped because the gradient was not finite.
    pub skipped: bool,
}

/// Options of the optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOptions {
    pub adamw: AdamW,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f32,
}

/// Trains LoRA adapters on a frozen (quantized) model, one batch at a time.
#[derive(Debug)]
pub struct Trainer<'m> {
    pub model: &'m Model,
    pub lora: GpuLora,
    arena: Option<Arena>,
    /// Optimizer steps taken.
    pub step: u32,
    /// Seeds the LoRA dropout masks (with the step and the micro-batch).
    pub seed: u64,
}

impl<'m> Trainer<'m> {
    pub fn new(model: &'m Model, lora: GpuLora) -> Trainer<'m> {
        Trainer {
            model,
            lora,
            arena: None,
            step: 0,
            seed: 0,
        }
    }

    /// Allocate every buffer a step of `micro` micro-batches of `b`×`t` tokens uses (a step
    /// does it on first use; calling this first makes a too-large run fail before any work).
    pub fn prepare(&mut self, gpu: &Gpu, b: usize, t: usize, micro: usize) -> Result<()> {
        self.arena(gpu, b, t, micro)
    }

    fn arena(&mut self, gpu: &Gpu, b: usize, t: usize, micro: usize) -> Result<()> {
        if self
            .arena
            .as_ref()
            .is_none_or(|a| a.b != b || a.t != t || a.ids.len() < micro)
        {
            self.arena = None;
            self.arena = Some(Arena::new(
                gpu,
                &self.model.config,
                &self.lora,
                b,
                t,
                micro,
            )?);
        }
        Ok(())
    }

    /// Loss statistics of a batch without updating anything (evaluation).
    pub async fn evaluate(
        &mut self,
        gpu: &Gpu,
        batch: MicroBatch<'_>,
        b: usize,
    ) -> Result<StepStats> {
        self.run(gpu, &[batch], b, None).await
    }

    /// One optimizer step over gradient-accumulation micro-batches of `b` sequences each (the
    /// loss is the mean over every trained token of all of them).
    pub async fn train_step(
        &mut self,
        gpu: &Gpu,
        batches: &[MicroBatch<'_>],
        b: usize,
        options: StepOptions,
    ) -> Result<StepStats> {
        self.run(gpu, batches, b, Some(options)).await
    }

    async fn run(
        &mut self,
        gpu: &Gpu,
        batches: &[MicroBatch<'_>],
        b: usize,
        update: Option<StepOptions>,
    ) -> Result<StepStats> {
        let n = batches.first().map_or(0, |m| m.ids.len());
        let vocab = self.model.config.vocab_size;
        for m in batches {
            if b == 0 || n == 0 || !n.is_multiple_of(b) || m.ids.len() != n || m.targets.len() != n
            {
                return Err(TrainError::Batch(format!(
                    "micro-batches must hold {b} sequences of one length: got {} ids and {} targets",
                    m.ids.len(),
                    m.targets.len()
                )));
            }
            if let Some(&id) = m.ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(TrainError::Batch(format!(
                    "token id {id} is outside the vocabulary of {vocab}"
                )));
            }
        }
        let t = n / b;
        let trained: usize = batches
            .iter()
            .map(|m| m.targets.iter().filter(|&&x| x != NO_TARGET).count())
            .sum();
        self.arena(gpu, b, t, batches.len())?;
        let arena = self.arena.as_ref().expect("allocated");
        let model = self.model;
        let lora = &self.lora;
        let grad_scale = if trained > 0 {
            1.0 / trained as f32
        } else {
            0.0
        };
        let mut rec = Recorder::new(gpu);
        if update.is_some() {
            rec.clear_first(&lora.grads);
        }
        for (g, m) in batches.iter().enumerate() {
            arena.ids[g].write(gpu, 0, m.ids);
            arena.targets[g].write(gpu, 0, m.targets);
            let p_drop = lora.config.dropout;
            let drop = (update.is_some() && p_drop > 0.0).then(|| Drop {
                p: p_drop,
                seed: crate::util::hash32(&[
                    self.seed as u32,
                    (self.seed >> 32) as u32,
                    self.step,
                    g as u32,
                ]),
            });
            forward(&mut rec, model, lora, arena, g, drop).await?;
            loss_and_head_backward(&mut rec, model, arena, g, update.map(|_| grad_scale)).await?;
            if update.is_some() {
                backward(&mut rec, model, lora, arena, drop).await?;
            }
        }
        if let Some(options) = update {
            let n_params = lora.n as u32;
            grad_norm(
                &mut rec,
                &lora.grads,
                n_params,
                &arena.norm_partials,
                &arena.norm,
                options.max_grad_norm,
            )
            .await?;
            let t_step = self.step + 1;
            adamw_step(
                &mut rec,
                options.adamw,
                t_step,
                &lora.params,
                &lora.grads,
                &lora.m,
                &lora.v,
                &arena.norm,
                n_params,
            )
            .await?;
        }
        rec.submit().await?;
        let mut stats = Vec::with_capacity(n * batches.len());
        let mut targets = Vec::with_capacity(n * batches.len());
        for (g, m) in batches.iter().enumerate() {
            stats.extend(RowStats::decode(
                &read_buffer_f32(gpu, &arena.stats[g], 0, n * 4).await?,
            ));
            targets.extend_from_slice(m.targets);
        }
        let mut out = summarize(&stats, &targets);
        if update.is_some() {
            let norm = read_buffer_f32(gpu, &arena.norm, 0, 3).await?;
            out.grad_norm = norm[0] as f64;
            out.skipped = norm[2] == 0.0;
            if !out.skipped {
                self.step += 1;
            }
        }
        Ok(out)
    }
}

/// One micro-batch: B sequences of T token ids and their targets (`u32::MAX`: not trained).
#[derive(Clone, Copy, Debug)]
pub struct MicroBatch<'a> {
    pub ids: &'a [u32],
    pub targets: &'a [u32],
}

/// Loss, accuracy and entropy over the trained positions.
fn summarize(stats: &[RowStats], targets: &[u32]) -> StepStats {
    let (mut loss, mut correct, mut entropy, mut count) = (0.0f64, 0usize, 0.0f64, 0usize);
    for (s, &t) in stats.iter().zip(targets) {
        if t != NO_TARGET {
            loss -= s.target_logprob as f64;
            entropy += s.entropy as f64;
            correct += (s.argmax == t) as usize;
            count += 1;
        }
    }
    let c = count.max(1) as f64;
    StepStats {
        loss: loss / c,
        token_accuracy: correct as f64 / c,
        entropy: entropy / c,
        grad_norm: 0.0,
        trained_tokens: count,
        skipped: false,
    }
}

/// LoRA dropout of one projection in one micro-batch of one step: the probability and the seed
/// of its mask (forward and backward use the same).
#[derive(Clone, Copy, Debug)]
pub(super) struct Drop {
    pub(super) p: f32,
    pub(super) seed: u32,
}

/// What the LoRA term of one projection needs: its slot, its saved `u = dropout(x)·Aᵀ`, and the
/// dropout of its input.
#[derive(Clone, Copy)]
pub(super) struct Adapted<'a> {
    pub(super) slot: &'a LoraSlot,
    pub(super) u: &'a GpuBuffer,
    pub(super) drop: Option<Drop>,
}

/// `y[n, out] = x·Wᵀ` plus the LoRA term `s·(dropout(x)·Aᵀ)·Bᵀ` when the projection is adapted
/// (saving `dropout(x)·Aᵀ` in `u`; `scratch` holds the dropped-out input).
#[allow(clippy::too_many_arguments)]
pub(super) async fn adapted_linear(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    w: &GpuWeight,
    y: &GpuBuffer,
    n: u32,
    lora: &GpuLora,
    adapted: Option<Adapted<'_>>,
    scratch: &GpuBuffer,
) -> Result<()> {
    let out = w.rows as u32;
    matmul_weight(rec, x, 0, w, y, 0, out, n, 1.0, false).await?;
    if let Some(Adapted { slot: s, u, drop }) = adapted {
        let (r, inp, p) = (lora.config.r as u32, s.in_features, &lora.params);
        let xin = match drop {
            Some(d) => {
                dropout(rec, n * inp, (x, 0), (scratch, 0), d.p, d.seed, false).await?;
                scratch
            }
            None => x,
        };
        // u[n, r] = dropout(x)[n, in] · Aᵀ   (A [r, in] read transposed)
        let (xv, av, uv) = (
            MatView::rows(xin, 0, inp),
            MatView::transposed(p, s.a_off, inp),
            MatView::rows(u, 0, r),
        );
        matmul(rec, xv, av, uv, (n, r, inp), 1.0, false).await?;
        // y += s · u · Bᵀ   (B [out, r] read transposed)
        let (bv, yv) = (MatView::transposed(p, s.b_off, r), MatView::rows(y, 0, out));
        matmul(
            rec,
            MatView::rows(u, 0, r),
            bv,
            yv,
            (n, out, r),
            lora.scale(),
            true,
        )
        .await?;
    }
    Ok(())
}

/// Backward of [`adapted_linear`] for the input and the LoRA matrices: `dx (+)= dy·W`
/// (+ `mask ⊙ s·(dy·B)·A`), `dB += s·dyᵀ·u`, `dA += (s·dy·B)ᵀ·dropout(x)`. `du` and the two
/// scratch buffers are temporaries.
#[allow(clippy::too_many_arguments)]
pub(super) async fn adapted_linear_backward(
    rec: &mut Recorder<'_>,
    dy: &GpuBuffer,
    w: &GpuWeight,
    x: &GpuBuffer,
    dx: &GpuBuffer,
    n: u32,
    lora: &GpuLora,
    adapted: Option<Adapted<'_>>,
    (du, scratch, scratch2): (&GpuBuffer, &GpuBuffer, &GpuBuffer),
    accumulate: bool,
) -> Result<()> {
    let inp = w.cols as u32;
    matmul_weight_t(rec, dy, 0, w, dx, 0, inp, n, 1.0, accumulate).await?;
    if let Some(Adapted { slot: s, u, drop }) = adapted {
        let (r, out, sc) = (lora.config.r as u32, s.out_features, lora.scale());
        let (p, g) = (&lora.params, &lora.grads);
        // dB[out, r] += s · dyᵀ · u
        let (dyt, uv, dbv) = (
            MatView::transposed(dy, 0, out),
            MatView::rows(u, 0, r),
            MatView::rows(g, s.b_off, r),
        );
        matmul(rec, dyt, uv, dbv, (out, r, n), sc, true).await?;
        // du[n, r] = s · dy · B
        let (dyv, bv, duv) = (
            MatView::rows(dy, 0, out),
            MatView::rows(p, s.b_off, r),
            MatView::rows(du, 0, r),
        );
        matmul(rec, dyv, bv, duv, (n, r, out), sc, false).await?;
        // dA[r, in] += duᵀ · dropout(x)   (the same mask as the forward pass)
        let xin = match drop {
            Some(d) => {
                dropout(rec, n * inp, (x, 0), (scratch, 0), d.p, d.seed, false).await?;
                scratch
            }
            None => x,
        };
        let (dut, xv, dav) = (
            MatView::transposed(du, 0, r),
            MatView::rows(xin, 0, inp),
            MatView::rows(g, s.a_off, inp),
        );
        matmul(rec, dut, xv, dav, (r, inp, n), 1.0, true).await?;
        // dx += mask ⊙ (du · A)
        let (duv, av) = (MatView::rows(du, 0, r), MatView::rows(p, s.a_off, inp));
        match drop {
            Some(d) => {
                matmul(
                    rec,
                    duv,
                    av,
                    MatView::rows(scratch2, 0, inp),
                    (n, inp, r),
                    1.0,
                    false,
                )
                .await?;
                dropout(rec, n * inp, (scratch2, 0), (dx, 0), d.p, d.seed, true).await?;
            }
            None => {
                matmul(
                    rec,
                    duv,
                    av,
                    MatView::rows(dx, 0, inp),
                    (n, inp, r),
                    1.0,
                    true,
                )
                .await?
            }
        }
    }
    Ok(())
}

fn slot_of<'a>(
    lora: &'a GpuLora,
    acts: &'a LayerActs,
    layer: usize,
    module: Module,
    drop: Option<Drop>,
) -> Option<Adapted<'a>> {
    let slot = lora.slot(layer, module)?;
    let u = acts
        .lora_u
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, u)| u)?;
    // A distinct mask per layer and projection, from the step's seed.
    let drop = drop.map(|d| Drop {
        p: d.p,
        seed: crate::util::hash32(&[d.seed, layer as u32, module as u32]),
    });
    Some(Adapted { slot, u, drop })
}

fn rope_shapes(c: &ModelConfig, n: u32, t: u32) -> (RopeShape, RopeShape) {
    let hs = c.head_dim as u32;
    let (qd, kvd) = (c.q_dim() as u32, c.kv_dim() as u32);
    (
        RopeShape {
            style: c.arch.rope,
            period: t,
            t: n,
            h: c.n_head as u32,
            hs,
            off: 0,
            row_stride: qd,
        },
        RopeShape {
            style: c.arch.rope,
            period: t,
            t: n,
            h: c.n_head_kv as u32,
            hs,
            off: 0,
            row_stride: kvd,
        },
    )
}

fn attention_shape(c: &ModelConfig, b: u32, t: u32, layer: usize) -> AttentionShape {
    AttentionShape {
        b,
        t,
        nh: c.n_head as u32,
        kvh: c.n_head_kv as u32,
        hs: c.head_dim as u32,
        pos0: 0,
        s: t,
        window: c.layer_window(layer),
    }
}

/// The projections of one layer in one micro-batch: each is the base weight plus, when the
/// layer adapts it, its LoRA term (with the step's dropout and the arena's scratch buffers).
struct LayerProj<'a> {
    lora: &'a GpuLora,
    acts: &'a LayerActs,
    arena: &'a Arena,
    layer: usize,
    drop: Option<Drop>,
    n: u32,
}

impl LayerProj<'_> {
    fn adapted(&self, module: Module) -> Option<Adapted<'_>> {
        slot_of(self.lora, self.acts, self.layer, module, self.drop)
    }

    /// `y = x·Wᵀ (+ LoRA)` for `module`.
    async fn forward(
        &self,
        rec: &mut Recorder<'_>,
        module: Module,
        x: &GpuBuffer,
        w: &GpuWeight,
        y: &GpuBuffer,
    ) -> Result<()> {
        adapted_linear(
            rec,
            x,
            w,
            y,
            self.n,
            self.lora,
            self.adapted(module),
            &self.arena.xdrop,
        )
        .await
    }

    /// `dx (+)= dy·W (+ LoRA)` for `module`, accumulating its LoRA gradients.
    #[allow(clippy::too_many_arguments)]
    async fn backward(
        &self,
        rec: &mut Recorder<'_>,
        module: Module,
        dy: &GpuBuffer,
        w: &GpuWeight,
        x: &GpuBuffer,
        dx: &GpuBuffer,
        accumulate: bool,
    ) -> Result<()> {
        let a = self.arena;
        let scratch = (&a.du, &a.xdrop, &a.xdrop2);
        adapted_linear_backward(
            rec,
            dy,
            w,
            x,
            dx,
            self.n,
            self.lora,
            self.adapted(module),
            scratch,
            accumulate,
        )
        .await
    }
}

async fn forward(
    rec: &mut Recorder<'_>,
    model: &Model,
    lora: &GpuLora,
    a: &Arena,
    g: usize,
    drop: Option<Drop>,
) -> Result<()> {
    let c = &model.config;
    let w = &model.weights;
    let (n, t) = ((a.b * a.t) as u32, a.t as u32);
    let (ce, ff) = (c.n_embd as u32, c.n_ff as u32);
    let embd_scale = match c.arch.scale_embeddings {
        true => (c.n_embd as f32).sqrt(),
        false => 1.0,
    };
    embedding(rec, &a.ids[g], n, &w.token_embd, (&a.x[0], 0), embd_scale).await?;
    for (l, (lw, acts)) in w.layers.iter().zip(&a.layers).enumerate() {
        let p = LayerProj {
            lora,
            acts,
            arena: a,
            layer: l,
            drop,
            n,
        };
        rmsnorm(
            rec,
            &a.x[l],
            &lw.attn_norm,
            &acts.xn1,
            &acts.rstd1,
            (n, ce),
            c.rms_eps,
        )
        .await?;
        // With per-head norms, Q and K are projected into their saved raw buffers first.
        let (q_out, k_out) = match &acts.head_norm {
            Some(h) => (&h.q_raw, &h.k_raw),
            None => (&acts.q, &acts.k),
        };
        p.forward(rec, Module::QProj, &acts.xn1, &lw.attn_q, q_out)
            .await?;
        p.forward(rec, Module::KProj, &acts.xn1, &lw.attn_k, k_out)
            .await?;
        p.forward(rec, Module::VProj, &acts.xn1, &lw.attn_v, &acts.v)
            .await?;
        if let Some(bias) = &lw.qkv_bias {
            let (qd, kvd) = (c.q_dim() as u32, c.kv_dim() as u32);
            add_bias(rec, &bias.q, (q_out, 0), n, qd).await?;
            add_bias(rec, &bias.k, (k_out, 0), n, kvd).await?;
            add_bias(rec, &bias.v, (&acts.v, 0), n, kvd).await?;
        }
        if let (Some(h), Some(norm)) = (&acts.head_norm, &lw.qk_norm) {
            let (nh, kvh, hs) = (c.n_head as u32, c.n_head_kv as u32, c.head_dim as u32);
            let eps = c.rms_eps;
            rmsnorm(
                rec,
                &h.q_raw,
                &norm.q,
                &acts.q,
                &h.rstd_q,
                (n * nh, hs),
                eps,
            )
            .await?;
            rmsnorm(
                rec,
                &h.k_raw,
                &norm.k,
                &acts.k,
                &h.rstd_k,
                (n * kvh, hs),
                eps,
            )
            .await?;
        }
        let (q_shape, k_shape) = rope_shapes(c, n, t);
        let freqs = RopeFreqs {
            base: c.layer_rope_base(l),
            factors: &w.rope_factors,
        };
        rope(rec, &acts.q, q_shape, 0, freqs, false).await?;
        rope(rec, &acts.k, k_shape, 0, freqs, false).await?;
        let shape = attention_shape(c, a.b as u32, t, l);
        attention(rec, &acts.q, &acts.k, &acts.v, &acts.att, &acts.lse, shape).await?;
        // With post norms (gemma3) the projection's output is saved and its norm added.
        let (post, eps) = (acts.post.as_ref().zip(lw.post_norms.as_ref()), c.rms_eps);
        match post {
            Some((s, w)) => {
                p.forward(rec, Module::OProj, &acts.att, &lw.attn_output, &s.attn_out)
                    .await?;
                rmsnorm(
                    rec,
                    &s.attn_out,
                    &w.attn,
                    &a.tmp,
                    &s.attn_rstd,
                    (n, ce),
                    eps,
                )
                .await?;
            }
            None => {
                p.forward(rec, Module::OProj, &acts.att, &lw.attn_output, &a.tmp)
                    .await?
            }
        }
        elementwise(
            rec,
            Op::Add,
            n * ce,
            (&a.x[l], 0),
            (&a.tmp, 0),
            (&acts.x_mid, 0),
        )
        .await?;
        rmsnorm(
            rec,
            &acts.x_mid,
            &lw.ffn_norm,
            &acts.xn2,
            &acts.rstd2,
            (n, ce),
            c.rms_eps,
        )
        .await?;
        p.forward(rec, Module::GateProj, &acts.xn2, &lw.ffn_gate, &acts.gate)
            .await?;
        p.forward(rec, Module::UpProj, &acts.xn2, &lw.ffn_up, &acts.up)
            .await?;
        elementwise(
            rec,
            Op::Glu(c.arch.activation),
            n * ff,
            (&acts.gate, 0),
            (&acts.up, 0),
            (&acts.hidden, 0),
        )
        .await?;
        match post {
            Some((s, w)) => {
                p.forward(
                    rec,
                    Module::DownProj,
                    &acts.hidden,
                    &lw.ffn_down,
                    &s.ffn_out,
                )
                .await?;
                rmsnorm(rec, &s.ffn_out, &w.ffn, &a.tmp, &s.ffn_rstd, (n, ce), eps).await?;
            }
            None => {
                p.forward(rec, Module::DownProj, &acts.hidden, &lw.ffn_down, &a.tmp)
                    .await?
            }
        }
        elementwise(
            rec,
            Op::Add,
            n * ce,
            (&acts.x_mid, 0),
            (&a.tmp, 0),
            (&a.x[l + 1], 0),
        )
        .await?;
    }
    let last = &a.x[c.n_layer];
    rmsnorm(
        rec,
        last,
        &w.output_norm,
        &a.xnf,
        &a.rstdf,
        (n, ce),
        c.rms_eps,
    )
    .await?;
    Ok(())
}

/// Logits a chunk of rows at a time: statistics, and with `grad_scale` the cross-entropy
/// gradient, taken back through the output projection and the final norm into `dx` (`=`).
async fn loss_and_head_backward(
    rec: &mut Recorder<'_>,
    model: &Model,
    a: &Arena,
    g: usize,
    grad_scale: Option<f32>,
) -> Result<()> {
    let c = &model.config;
    let out = model.weights.output();
    let (n, v, ce) = (a.b * a.t, c.vocab_size as u32, c.n_embd as u32);
    let mut row = 0;
    while row < n {
        let rows = (n - row).min(a.logit_rows) as u32;
        let x_off = (row * c.n_embd) as u32;
        matmul_weight(rec, &a.xnf, x_off, out, &a.logits, 0, v, rows, 1.0, false).await?;
        logit_stats(
            rec,
            &a.logits,
            &a.targets[g],
            &a.stats[g],
            (rows, v),
            row as u32,
        )
        .await?;
        if let Some(scale) = grad_scale {
            cross_entropy_grad(
                rec,
                &a.logits,
                &a.targets[g],
                &a.stats[g],
                (rows, v),
                row as u32,
                scale,
            )
            .await?;
            matmul_weight_t(rec, &a.logits, 0, out, &a.dxn, x_off, ce, rows, 1.0, false).await?;
        }
        row += rows as usize;
    }
    if grad_scale.is_some() {
        rmsnorm_backward(
            rec,
            &a.x[c.n_layer],
            &model.weights.output_norm,
            &a.dxn,
            &a.rstdf,
            &a.dx,
            (n as u32, ce),
            false,
        )
        .await?;
    }
    Ok(())
}

async fn backward(
    rec: &mut Recorder<'_>,
    model: &Model,
    lora: &GpuLora,
    a: &Arena,
    drop: Option<Drop>,
) -> Result<()> {
    let c = &model.config;
    let (n, t) = ((a.b * a.t) as u32, a.t as u32);
    let (ce, ff) = (c.n_embd as u32, c.n_ff as u32);
    for (l, (lw, acts)) in model.weights.layers.iter().zip(&a.layers).enumerate().rev() {
        let p = LayerProj {
            lora,
            acts,
            arena: a,
            layer: l,
            drop,
            n,
        };
        // Feed-forward block; dx holds dL/d(layer output). With a post norm, the gradient of
        // the projection's output goes through it first (into dpost).
        let post = acts.post.as_ref().zip(lw.post_norms.as_ref());
        let d_down = match post {
            Some((s, w)) => {
                let shape = (n, ce);
                rmsnorm_backward(
                    rec,
                    &s.ffn_out,
                    &w.ffn,
                    &a.dx,
                    &s.ffn_rstd,
                    &a.dpost,
                    shape,
                    false,
                )
                .await?;
                &a.dpost
            }
            None => &a.dx,
        };
        p.backward(
            rec,
            Module::DownProj,
            d_down,
            &lw.ffn_down,
            &acts.hidden,
            &a.dh,
            false,
        )
        .await?;
        let (gate, up, dh) = ((&acts.gate, 0), (&acts.up, 0), (&a.dh, 0));
        let act = c.arch.activation;
        glu_backward(rec, act, n * ff, gate, up, dh, &a.dgate, &a.dup, 0).await?;
        p.backward(
            rec,
            Module::GateProj,
            &a.dgate,
            &lw.ffn_gate,
            &acts.xn2,
            &a.dxn,
            false,
        )
        .await?;
        p.backward(
            rec,
            Module::UpProj,
            &a.dup,
            &lw.ffn_up,
            &acts.xn2,
            &a.dxn,
            true,
        )
        .await?;
        rmsnorm_backward(
            rec,
            &acts.x_mid,
            &lw.ffn_norm,
            &a.dxn,
            &acts.rstd2,
            &a.dx,
            (n, ce),
            true,
        )
        .await?;
        // Attention block; dx holds dL/d(x_mid).
        let d_out = match post {
            Some((s, w)) => {
                let shape = (n, ce);
                rmsnorm_backward(
                    rec,
                    &s.attn_out,
                    &w.attn,
                    &a.dx,
                    &s.attn_rstd,
                    &a.dpost,
                    shape,
                    false,
                )
                .await?;
                &a.dpost
            }
            None => &a.dx,
        };
        p.backward(
            rec,
            Module::OProj,
            d_out,
            &lw.attn_output,
            &acts.att,
            &a.datt,
            false,
        )
        .await?;
        let saved = AttentionSaved {
            q: &acts.q,
            k: &acts.k,
            v: &acts.v,
            o: &acts.att,
            lse: &acts.lse,
            dout: &a.datt,
        };
        let grads = (&a.dq, &a.dk, &a.dv);
        attention_backward(
            rec,
            saved,
            &a.delta,
            grads,
            attention_shape(c, a.b as u32, t, l),
        )
        .await?;
        let (q_shape, k_shape) = rope_shapes(c, n, t);
        let freqs = RopeFreqs {
            base: c.layer_rope_base(l),
            factors: &model.weights.rope_factors,
        };
        rope(rec, &a.dq, q_shape, 0, freqs, true).await?;
        rope(rec, &a.dk, k_shape, 0, freqs, true).await?;
        // Back through the per-head norms (weights frozen) to the projections' outputs.
        let (dq, dk) = match (&acts.head_norm, &lw.qk_norm) {
            (Some(h), Some(norm)) => {
                let (nh, kvh, hs) = (c.n_head as u32, c.n_head_kv as u32, c.head_dim as u32);
                let (qs, ks) = ((n * nh, hs), (n * kvh, hs));
                rmsnorm_backward(
                    rec, &h.q_raw, &norm.q, &a.dq, &h.rstd_q, &a.dq_raw, qs, false,
                )
                .await?;
                rmsnorm_backward(
                    rec, &h.k_raw, &norm.k, &a.dk, &h.rstd_k, &a.dk_raw, ks, false,
                )
                .await?;
                (&a.dq_raw, &a.dk_raw)
            }
            _ => (&a.dq, &a.dk),
        };
        p.backward(rec, Module::QProj, dq, &lw.attn_q, &acts.xn1, &a.dxn, false)
            .await?;
        p.backward(rec, Module::KProj, dk, &lw.attn_k, &acts.xn1, &a.dxn, true)
            .await?;
        p.backward(
            rec,
            Module::VProj,
            &a.dv,
            &lw.attn_v,
            &acts.xn1,
            &a.dxn,
            true,
        )
        .await?;
        rmsnorm_backward(
            rec,
            &a.x[l],
            &lw.attn_norm,
            &a.dxn,
            &acts.rstd1,
            &a.dx,
            (n, ce),
            true,
        )
        .await?;
    }
    Ok(())
}
