//! The transformer block of the training step, forward (saving what the backward needs) and
//! backward (base weights frozen, LoRA gradients accumulated), and the loss head (logits a
//! chunk of rows at a time, the fused cross-entropy gradient).

use super::arena::Arena;
use super::linear::{Drop, LayerProj};
use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::attention::{AttentionSaved, AttentionShape, attention, attention_backward};
use crate::kernels::elementwise::{Op, add_bias, elementwise, glu_backward};
use crate::kernels::embedding::embedding;
use crate::kernels::logits::{cross_entropy_grad, logit_stats};
use crate::kernels::matmul::{matmul_weight, matmul_weight_t};
use crate::kernels::rmsnorm::{rmsnorm, rmsnorm_backward};
use crate::kernels::rope::{RopeShape, rope};
use crate::lora::Module;
use crate::model::{Model, ModelConfig};
use crate::train::Result;
use crate::train::lora_gpu::GpuLora;

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

pub(super) async fn forward(
    rec: &mut Recorder<'_>,
    model: &Model,
    lora: &GpuLora,
    a: &Arena,
    g: usize,
    drop: Option<Drop>,
) -> Result<()> {
    let c = &model.config;
    let w = &model.weights;
    let (n, ce) = ((a.b * a.t) as u32, c.n_embd as u32);
    let x0 = (&a.x[0], 0);
    embedding(rec, &a.ids[g], n, &w.token_embd, x0, c.embedding_scale()).await?;
    for l in 0..c.n_layer {
        layer_forward(rec, model, lora, a, l, drop).await?;
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

/// Layer `l` of the forward pass: from `x[l]` to `x[l + 1]`, saving in `a.layer(l)` what the
/// backward needs. With gradient checkpointing the backward pass runs it again, just before the
/// layer's backward, into the one shared set of saved activations.
async fn layer_forward(
    rec: &mut Recorder<'_>,
    model: &Model,
    lora: &GpuLora,
    a: &Arena,
    l: usize,
    drop: Option<Drop>,
) -> Result<()> {
    let (c, w) = (&model.config, &model.weights);
    let (lw, acts) = (&w.layers[l], a.layer(l));
    let (n, t) = ((a.b * a.t) as u32, a.t as u32);
    let (ce, ff) = (c.n_embd as u32, c.n_ff as u32);
    let p = LayerProj {
        model: c,
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
    let freqs = c.layer_rope(l, &w.rope_factors);
    rope(rec, &acts.q, q_shape, 0, freqs, false).await?;
    rope(rec, &acts.k, k_shape, 0, freqs, false).await?;
    let shape = attention_shape(c, a.b as u32, t, l);
    attention(rec, &acts.q, &acts.k, &acts.v, &acts.att, &acts.lse, shape).await?;
    // With post norms (gemma3) the projection's output is saved and its norm added.
    let post = acts.post.as_ref().zip(lw.post_norms.as_ref());
    let attn = post.map(|(s, w)| (&s.attn_out, &w.attn, &s.attn_rstd));
    let out = (Module::OProj, &lw.attn_output);
    let norm = ((n, ce), c.rms_eps);
    project_through_post_norm(rec, &p, out, &acts.att, attn, norm).await?;
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
    let ffn = post.map(|(s, w)| (&s.ffn_out, &w.ffn, &s.ffn_rstd));
    let down = (Module::DownProj, &lw.ffn_down);
    project_through_post_norm(rec, &p, down, &acts.hidden, ffn, norm).await?;
    elementwise(
        rec,
        Op::Add,
        n * ce,
        (&acts.x_mid, 0),
        (&a.tmp, 0),
        (&a.x[l + 1], 0),
    )
    .await?;
    Ok(())
}

/// Logits a chunk of rows at a time: statistics, and with `grad_scale` the cross-entropy
/// gradient, taken back through the output projection and the final norm into `dx` (`=`).
pub(super) async fn loss_and_head_backward(
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

pub(super) async fn backward(
    rec: &mut Recorder<'_>,
    model: &Model,
    lora: &GpuLora,
    a: &Arena,
    drop: Option<Drop>,
) -> Result<()> {
    let c = &model.config;
    for l in (0..c.n_layer).rev() {
        if a.checkpointing {
            layer_forward(rec, model, lora, a, l, drop).await?;
        }
        layer_backward(rec, model, lora, a, l, drop).await?;
    }
    Ok(())
}

/// Layer `l` of the backward pass: `a.dx` holds dL/d(x[l + 1]) on entry and dL/d(x[l]) on exit.
async fn layer_backward(
    rec: &mut Recorder<'_>,
    model: &Model,
    lora: &GpuLora,
    a: &Arena,
    l: usize,
    drop: Option<Drop>,
) -> Result<()> {
    let c = &model.config;
    let (lw, acts) = (&model.weights.layers[l], a.layer(l));
    let (n, t) = ((a.b * a.t) as u32, a.t as u32);
    let (ce, ff) = (c.n_embd as u32, c.n_ff as u32);
    let p = LayerProj {
        model: c,
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
    let ffn = post.map(|(s, w)| (&s.ffn_out, &w.ffn, &s.ffn_rstd));
    let d_down = through_post_norm(rec, a, ffn, (n, ce)).await?;
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
    let attn = post.map(|(s, w)| (&s.attn_out, &w.attn, &s.attn_rstd));
    let d_out = through_post_norm(rec, a, attn, (n, ce)).await?;
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
    let freqs = c.layer_rope(l, &model.weights.rope_factors);
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
    Ok(())
}

/// dL/d(block output before its post norm) for a block whose normed output's gradient is in
/// `a.dx`: through the norm into `a.dpost` when there is one (`saved`: the output before the
/// norm, the norm's weight and 1/rms; gemma3), `a.dx` itself otherwise.
async fn through_post_norm<'a>(
    rec: &mut Recorder<'_>,
    a: &'a Arena,
    saved: Option<(&GpuBuffer, &GpuBuffer, &GpuBuffer)>,
    shape: (u32, u32),
) -> Result<&'a GpuBuffer> {
    match saved {
        Some((y, w, rstd)) => {
            rmsnorm_backward(rec, y, w, &a.dx, rstd, &a.dpost, shape, false).await?;
            Ok(&a.dpost)
        }
        None => Ok(&a.dx),
    }
}

/// `a.tmp = W·x (+ LoRA)` for a block's output projection, or with a post norm (gemma3)
/// `a.tmp = norm(W·x)`, saving `W·x` and the norm's 1/rms (`saved`: the output before the
/// norm, the norm's weight and 1/rms, as [`through_post_norm`] reads them back).
async fn project_through_post_norm(
    rec: &mut Recorder<'_>,
    p: &LayerProj<'_>,
    (module, w): (Module, &crate::kernels::GpuWeight),
    x: &GpuBuffer,
    saved: Option<(&GpuBuffer, &GpuBuffer, &GpuBuffer)>,
    (shape, eps): ((u32, u32), f32),
) -> Result<()> {
    let tmp = &p.arena.tmp;
    match saved {
        Some((y, norm, rstd)) => {
            p.forward(rec, module, x, w, y).await?;
            rmsnorm(rec, y, norm, tmp, rstd, shape, eps).await?;
            Ok(())
        }
        None => p.forward(rec, module, x, w, tmp).await,
    }
}
