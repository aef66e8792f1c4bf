//! The transformer block of the training step, forward (saving what the backward needs) and
//! backward (base weights frozen, LoRA gradients accumulated), and the loss head (logits a
//! chunk of rows at a time, the fused cross-entropy gradient).

use super::arena::Arena;
use super::linear::{Drop, LayerProj};
use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::attention::{AttentionSaved, attention_backward};
use crate::kernels::elementwise::glu_backward;
use crate::kernels::embedding::embedding;
use crate::kernels::logits::{cross_entropy_grad, logit_stats};
use crate::kernels::matmul::{matmul_weight, matmul_weight_t};
use crate::kernels::rmsnorm::{rmsnorm, rmsnorm_backward};
use crate::kernels::rope::rope;
use crate::lora::Module;
use crate::model::Model;
use crate::model::block::{BlockBuffers, HeadNormed, Placement, PostNormed, Stream, block_forward};
use crate::train::Result;
use crate::train::lora_gpu::GpuLora;

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
    let x0 = (a.stream(0), 0);
    embedding(rec, &a.ids[g], n, &w.token_embd, x0, c.embedding_scale()).await?;
    a.keep_stream(rec, 0).await?;
    for l in 0..c.n_layer {
        layer_forward(rec, model, lora, a, l, drop).await?;
        a.keep_stream(rec, l + 1).await?;
    }
    let last = a.stream(c.n_layer);
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

/// Layer `l` of the forward pass: from `a.stream(l)` to `a.stream(l + 1)`, saving in `a.layer(l)` what the
/// backward needs (the shared block, with LoRA terms). With gradient checkpointing the backward
/// pass runs it again, just before the layer's backward, into the one shared set of saved
/// activations.
async fn layer_forward(
    rec: &mut Recorder<'_>,
    model: &Model,
    lora: &GpuLora,
    a: &Arena,
    l: usize,
    drop: Option<Drop>,
) -> Result<()> {
    let (c, w) = (&model.config, &model.weights);
    let acts = a.layer(l);
    let p = LayerProj {
        model: c,
        lora,
        acts,
        arena: a,
        layer: l,
        drop,
        n: (a.b * a.t) as u32,
    };
    let io = BlockBuffers {
        stream: Stream::Saved {
            input: a.stream(l),
            mid: &acts.x_mid,
            output: a.stream(l + 1),
        },
        xn1: &acts.xn1,
        rstd1: &acts.rstd1,
        q: &acts.q,
        k: &acts.k,
        v: &acts.v,
        head_norm: acts.head_norm.as_ref().map(|h| HeadNormed {
            q_raw: &h.q_raw,
            k_raw: &h.k_raw,
            rstd_q: &h.rstd_q,
            rstd_k: &h.rstd_k,
        }),
        att: &acts.att,
        lse: &acts.lse,
        xn2: &acts.xn2,
        rstd2: &acts.rstd2,
        gate: &acts.gate,
        up: &acts.up,
        hidden: &acts.hidden,
        post: acts.post.as_ref().map(|s| PostNormed {
            attn_out: &s.attn_out,
            attn_rstd: &s.attn_rstd,
            ffn_out: &s.ffn_out,
            ffn_rstd: &s.ffn_rstd,
        }),
        sum: &a.tmp,
    };
    let at = Placement::batch(a.b as u32, a.t as u32);
    block_forward(rec, c, &w.layers[l], &w.rope_factors, l, at, &io, &p).await?;
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
            a.stream(c.n_layer),
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
        a.restore_stream(rec, l).await?;
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
        Placement::batch(a.b as u32, t).attention(c, l),
    )
    .await?;
    let (q_shape, k_shape) = Placement::batch(a.b as u32, t).rope_shapes(c);
    let factors = model.weights.rope_factors.for_context(t as usize);
    let freqs = c.layer_rope(l, factors);
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
        a.stream(l),
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
