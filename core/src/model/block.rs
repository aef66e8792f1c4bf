//! The transformer block's forward pass, written once for inference (`model/forward.rs`: the
//! residual stream updated in place, K and V into the cache, frozen projections) and training
//! (`train/step/block.rs`: every intermediate saved for the backward pass, projections with
//! their LoRA terms). What differs is passed in: where the buffers are ([`BlockBuffers`]), where
//! the tokens sit ([`Placement`]) and how a projection is computed ([`Project`]).

use super::{LayerWeights, ModelConfig, RopeFactors};
use crate::gpu::{GpuBuffer, Recorder, Result};
use crate::kernels::GpuWeight;
use crate::kernels::attention::{AttentionShape, attention};
use crate::kernels::elementwise::{Op, add_bias, add_into, elementwise};
use crate::kernels::gemv::gemv;
use crate::kernels::matmul::matmul_weight;
use crate::kernels::rmsnorm::{rmsnorm, rmsnorm_to};
use crate::kernels::rope::{RopeShape, rope};
use crate::lora::Module;

/// How one projection `y (+)= x·Wᵀ` of a block is computed (with or without a LoRA term).
pub(crate) trait Project {
    /// `y[off..] = x·Wᵀ` for `projection` (row stride `w.rows`), or `+=` with `accumulate`.
    async fn project(
        &self,
        rec: &mut Recorder<'_>,
        projection: Module,
        x: &GpuBuffer,
        w: &GpuWeight,
        y: (&GpuBuffer, u32),
        accumulate: bool,
    ) -> Result<()>;
}

/// The frozen base projections over `n` rows: GEMV for a few rows (decode), the tiled GEMM
/// otherwise.
pub(crate) struct Frozen {
    pub(crate) n: u32,
}

impl Project for Frozen {
    async fn project(
        &self,
        rec: &mut Recorder<'_>,
        _: Module,
        x: &GpuBuffer,
        w: &GpuWeight,
        y: (&GpuBuffer, u32),
        accumulate: bool,
    ) -> Result<()> {
        frozen_linear(rec, (x, 0), w, y, self.n, accumulate).await
    }
}

/// `y[n, W.rows] (+)= x[n, W.cols]·Wᵀ` from the given element offsets: GEMV for a few rows
/// (decode), the tiled GEMM otherwise.
pub(crate) async fn frozen_linear(
    rec: &mut Recorder<'_>,
    (x, x_off): (&GpuBuffer, u32),
    w: &GpuWeight,
    (y, y_off): (&GpuBuffer, u32),
    n: u32,
    accumulate: bool,
) -> Result<()> {
    let stride = w.rows as u32;
    match n <= 4 {
        true => gemv(rec, x, x_off, w, y, y_off, stride, n, 1.0, accumulate).await,
        false => matmul_weight(rec, x, x_off, w, y, y_off, stride, n, 1.0, accumulate).await,
    }
}

/// Where the block's tokens sit: `b` sequences of `t` tokens (`n = b·t` rows), the first at
/// position `pos0`, attending over `keys` cached positions per sequence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    pub(crate) b: u32,
    pub(crate) t: u32,
    pub(crate) pos0: u32,
    pub(crate) keys: u32,
}

impl Placement {
    /// One sequence of `t` new tokens after `pos0` cached ones, in a cache of `capacity`.
    pub(crate) fn decode(t: u32, pos0: u32, capacity: u32) -> Placement {
        Placement {
            b: 1,
            t,
            pos0,
            keys: capacity,
        }
    }

    /// `b` whole sequences of `t` tokens (training).
    pub(crate) fn batch(b: u32, t: u32) -> Placement {
        Placement {
            b,
            t,
            pos0: 0,
            keys: t,
        }
    }

    pub(crate) fn n(&self) -> u32 {
        self.b * self.t
    }

    /// The rope shapes of Q (`[n, NH·HS]`) and of K (`[keys, KVH·HS]` from row `pos0`).
    pub(crate) fn rope_shapes(&self, c: &ModelConfig) -> (RopeShape, RopeShape) {
        let (qd, kvd) = (c.q_dim() as u32, c.kv_dim() as u32);
        let q = RopeShape {
            style: c.arch.rope,
            // Each sequence's positions restart (row i is at pos0 + i mod t).
            period: self.t,
            t: self.n(),
            h: c.n_head as u32,
            hs: c.head_dim as u32,
            rot: c.rope_dim as u32,
            off: 0,
            row_stride: qd,
        };
        let k = RopeShape {
            h: c.n_head_kv as u32,
            off: self.pos0 * kvd,
            row_stride: kvd,
            ..q
        };
        (q, k)
    }

    /// The attention shape of layer `l`.
    pub(crate) fn attention(&self, c: &ModelConfig, l: usize) -> AttentionShape {
        AttentionShape {
            b: self.b,
            t: self.t,
            nh: c.n_head as u32,
            kvh: c.n_head_kv as u32,
            hs: c.head_dim as u32,
            pos0: self.pos0,
            s: self.keys,
            window: c.layer_window(l),
        }
    }
}

/// The residual stream through a block.
pub(crate) enum Stream<'a> {
    /// Updated in place (inference).
    InPlace(&'a GpuBuffer),
    /// The block's input, its middle (after attention) and its output kept apart (training).
    Saved {
        input: &'a GpuBuffer,
        mid: &'a GpuBuffer,
        output: &'a GpuBuffer,
    },
}

impl<'a> Stream<'a> {
    fn attention_half(&self) -> (&'a GpuBuffer, &'a GpuBuffer) {
        match *self {
            Stream::InPlace(x) => (x, x),
            Stream::Saved { input, mid, .. } => (input, mid),
        }
    }

    fn ffn_half(&self) -> (&'a GpuBuffer, &'a GpuBuffer) {
        match *self {
            Stream::InPlace(x) => (x, x),
            Stream::Saved { mid, output, .. } => (mid, output),
        }
    }
}

/// A block output before its post norm and the norm's 1/rms (gemma3).
pub(crate) struct PostNormed<'a> {
    pub(crate) attn_out: &'a GpuBuffer,
    pub(crate) attn_rstd: &'a GpuBuffer,
    pub(crate) ffn_out: &'a GpuBuffer,
    pub(crate) ffn_rstd: &'a GpuBuffer,
}

/// Q and K before their per-head norms, and the norms' 1/rms (qwen3, gemma3).
pub(crate) struct HeadNormed<'a> {
    pub(crate) q_raw: &'a GpuBuffer,
    pub(crate) k_raw: &'a GpuBuffer,
    pub(crate) rstd_q: &'a GpuBuffer,
    pub(crate) rstd_k: &'a GpuBuffer,
}

/// Where a block reads and writes. Inference passes one scratch set (the two norms share `xn`
/// and `rstd`, K and V go to the cache at the new positions); training passes the layer's saved
/// activations.
pub(crate) struct BlockBuffers<'a> {
    pub(crate) stream: Stream<'a>,
    pub(crate) xn1: &'a GpuBuffer,
    pub(crate) rstd1: &'a GpuBuffer,
    pub(crate) q: &'a GpuBuffer,
    /// K and V buffers: the layer's cache (row `pos0` on) or the saved K and V.
    pub(crate) k: &'a GpuBuffer,
    pub(crate) v: &'a GpuBuffer,
    pub(crate) head_norm: Option<HeadNormed<'a>>,
    pub(crate) att: &'a GpuBuffer,
    pub(crate) lse: &'a GpuBuffer,
    pub(crate) xn2: &'a GpuBuffer,
    pub(crate) rstd2: &'a GpuBuffer,
    pub(crate) gate: &'a GpuBuffer,
    pub(crate) up: &'a GpuBuffer,
    pub(crate) hidden: &'a GpuBuffer,
    pub(crate) post: Option<PostNormed<'a>>,
    /// A block's (normed) output before it joins the stream, when it is not accumulated
    /// straight into it.
    pub(crate) sum: &'a GpuBuffer,
}

/// Layer `l`: attention, then the gated feed-forward block, each added to the residual stream.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn block_forward(
    rec: &mut Recorder<'_>,
    c: &ModelConfig,
    lw: &LayerWeights,
    rope_factors: &RopeFactors<GpuBuffer>,
    l: usize,
    at: Placement,
    io: &BlockBuffers<'_>,
    proj: &impl Project,
) -> Result<()> {
    let (n, ce, ff) = (at.n(), c.n_embd as u32, c.n_ff as u32);
    let (qd, kvd, eps) = (c.q_dim() as u32, c.kv_dim() as u32, c.rms_eps);
    let kv_off = at.pos0 * kvd;
    let (x_in, x_mid) = io.stream.attention_half();
    rmsnorm(rec, x_in, &lw.attn_norm, io.xn1, io.rstd1, (n, ce), eps).await?;
    // With per-head norms, Q and K are projected into their raw buffers first.
    let (q_out, k_out) = match &io.head_norm {
        Some(h) => ((h.q_raw, 0), (h.k_raw, 0)),
        None => ((io.q, 0), (io.k, kv_off)),
    };
    proj.project(rec, Module::QProj, io.xn1, &lw.attn_q, q_out, false)
        .await?;
    proj.project(rec, Module::KProj, io.xn1, &lw.attn_k, k_out, false)
        .await?;
    proj.project(
        rec,
        Module::VProj,
        io.xn1,
        &lw.attn_v,
        (io.v, kv_off),
        false,
    )
    .await?;
    if let Some(bias) = &lw.qkv_bias {
        add_bias(rec, &bias.q, q_out, n, qd).await?;
        add_bias(rec, &bias.k, k_out, n, kvd).await?;
        add_bias(rec, &bias.v, (io.v, kv_off), n, kvd).await?;
    }
    if let (Some(h), Some(norm)) = (&io.head_norm, &lw.qk_norm) {
        let (nh, kvh, hs) = (c.n_head as u32, c.n_head_kv as u32, c.head_dim as u32);
        let q_rows = (n * nh, hs);
        rmsnorm_to(rec, h.q_raw, &norm.q, (io.q, 0), h.rstd_q, q_rows, eps).await?;
        let k_rows = (n * kvh, hs);
        rmsnorm_to(rec, h.k_raw, &norm.k, (io.k, kv_off), h.rstd_k, k_rows, eps).await?;
    }
    let (q_shape, k_shape) = at.rope_shapes(c);
    let freqs = c.layer_rope(l, rope_factors.for_context(at.keys as usize));
    rope(rec, io.q, q_shape, at.pos0, freqs, false).await?;
    rope(rec, io.k, k_shape, at.pos0, freqs, false).await?;
    let shape = at.attention(c, l);
    attention(rec, io.q, io.k, io.v, io.att, io.lse, shape).await?;
    let post = lw.post_norms.as_ref().zip(io.post.as_ref());
    let attn_post = post.map(|(w, s)| (&w.attn, s.attn_out, s.attn_rstd));
    let out = (Module::OProj, &lw.attn_output);
    let streams = (x_in, x_mid);
    residual(
        rec,
        proj,
        out,
        io.att,
        attn_post,
        io.sum,
        streams,
        (n, ce),
        eps,
    )
    .await?;

    let (x_mid, x_out) = io.stream.ffn_half();
    rmsnorm(rec, x_mid, &lw.ffn_norm, io.xn2, io.rstd2, (n, ce), eps).await?;
    proj.project(
        rec,
        Module::GateProj,
        io.xn2,
        &lw.ffn_gate,
        (io.gate, 0),
        false,
    )
    .await?;
    proj.project(rec, Module::UpProj, io.xn2, &lw.ffn_up, (io.up, 0), false)
        .await?;
    let glu = Op::Glu(c.arch.activation);
    let (gate, up, hidden) = ((io.gate, 0), (io.up, 0), (io.hidden, 0));
    elementwise(rec, glu, n * ff, gate, up, hidden).await?;
    let ffn_post = post.map(|(w, s)| (&w.ffn, s.ffn_out, s.ffn_rstd));
    let down = (Module::DownProj, &lw.ffn_down);
    let streams = (x_mid, x_out);
    residual(
        rec,
        proj,
        down,
        io.hidden,
        ffn_post,
        io.sum,
        streams,
        (n, ce),
        eps,
    )
    .await
}

/// `to = from + W·x`, or with a post norm `(norm weight, saved output, saved 1/rms)` (gemma3)
/// `to = from + norm(W·x)`; in place (`from` = `to`) without a post norm the projection
/// accumulates straight into the stream.
#[allow(clippy::too_many_arguments)]
async fn residual(
    rec: &mut Recorder<'_>,
    proj: &impl Project,
    (module, w): (Module, &GpuWeight),
    x: &GpuBuffer,
    post: Option<(&GpuBuffer, &GpuBuffer, &GpuBuffer)>,
    sum: &GpuBuffer,
    (from, to): (&GpuBuffer, &GpuBuffer),
    shape: (u32, u32),
    eps: f32,
) -> Result<()> {
    let in_place = std::ptr::eq(from, to);
    match post {
        None if in_place => return proj.project(rec, module, x, w, (to, 0), true).await,
        None => proj.project(rec, module, x, w, (sum, 0), false).await?,
        Some((norm, y, rstd)) => {
            proj.project(rec, module, x, w, (y, 0), false).await?;
            rmsnorm(rec, y, norm, sum, rstd, shape, eps).await?;
        }
    }
    let len = shape.0 * shape.1;
    match in_place {
        true => add_into(rec, (sum, 0), (to, 0), len).await,
        false => elementwise(rec, Op::Add, len, (from, 0), (sum, 0), (to, 0)).await,
    }
}
