//! A CPU reference of the QLoRA training step (tests only): the same model, loss and AdamW
//! computed on the host from the dequantized weights with the kernels' CPU references (each of
//! which is checked against finite differences), to compare whole loss curves with the GPU.

use crate::formats::Gguf;
use crate::kernels::attention::{AttentionShape, attention_backward_ref, attention_ref};
use crate::kernels::elementwise::{Op, add_bias_ref, elementwise_ref, glu_backward_ref};
use crate::kernels::logits::NO_TARGET;
use crate::kernels::optim::{AdamW, adamw_ref};
use crate::kernels::rmsnorm::{rmsnorm_backward_ref, rmsnorm_ref};
use crate::kernels::rope::{RopeShape, rope_ref};
use crate::lora::{LoraAdapter, Module};
use crate::model::{ModelConfig, RopeFactors};

/// Dequantized weights, W[rows, cols] row-major.
pub struct RefModel {
    pub config: ModelConfig,
    pub embd: Vec<f32>,
    /// The output projection: `output.weight`, or the embedding when tied.
    pub lm_head: Vec<f32>,
    pub out_norm: Vec<f32>,
    pub layers: Vec<RefLayer>,
    /// Rope frequency divisors per pair.
    pub rope_factors: RopeFactors<Vec<f32>>,
}

pub struct RefLayer {
    pub attn_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    /// By `Module` discriminant order: q, k, v, o, gate, up, down.
    pub w: Vec<Vec<f32>>,
    /// The q, k and v biases, where the architecture has them.
    pub qkv_bias: Option<[Vec<f32>; 3]>,
    /// The per-head q and k norm weights, where the architecture has them.
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// The post-attention and post-feed-forward norm weights (gemma3).
    pub post_norms: Option<[Vec<f32>; 2]>,
}

impl RefModel {
    pub fn load(gguf: &Gguf, file: &[u8]) -> RefModel {
        let config = ModelConfig::from_gguf(gguf).unwrap();
        let t = |name: &str| {
            gguf.tensor_f32(gguf.require_tensor(name).unwrap(), file)
                .unwrap()
        };
        let layers = (0..config.n_layer)
            .map(|i| RefLayer {
                attn_norm: t(&format!("blk.{i}.attn_norm.weight")),
                ffn_norm: t(&format!("blk.{i}.ffn_norm.weight")),
                w: Module::ALL
                    .iter()
                    .map(|&p| {
                        let (module, rows) = config.projection_rows(p);
                        let w = t(&format!("blk.{i}.{}.weight", module.gguf_name()));
                        let cols = config.module_shape(module).1;
                        w[rows.start * cols..rows.end * cols].to_vec()
                    })
                    .collect(),
                qkv_bias: config
                    .arch
                    .qkv_bias
                    .then(|| ["q", "k", "v"].map(|m| t(&format!("blk.{i}.attn_{m}.bias")))),
                post_norms: config.arch.post_norms.then(|| {
                    ["post_attention_norm", "post_ffw_norm"]
                        .map(|m| t(&format!("blk.{i}.{m}.weight")))
                }),
                qk_norm: config
                    .arch
                    .qk_norm
                    .then(|| ["q", "k"].map(|m| t(&format!("blk.{i}.attn_{m}_norm.weight")))),
            })
            .collect();
        let embd = t("token_embd.weight");
        RefModel {
            rope_factors: config
                .rope_factors(|tensor| {
                    Ok::<_, ()>(match tensor {
                        Some(name) => t(name),
                        None => vec![1.0; config.rope_dim / 2],
                    })
                })
                .unwrap(),
            lm_head: match config.tied_embeddings {
                true => embd.clone(),
                false => t("output.weight"),
            },
            embd,
            out_norm: t("output_norm.weight"),
            layers,
            config,
        }
    }
}

/// y[n, out] = x[n, in] · Wᵀ
fn linear(x: &[f32], w: &[f32], n: usize, inp: usize, out: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n * out];
    for i in 0..n {
        for o in 0..out {
            let s: f64 = (0..inp)
                .map(|k| x[i * inp + k] as f64 * w[o * inp + k] as f64)
                .sum();
            y[i * out + o] = s as f32;
        }
    }
    y
}

/// dx[n, in] = dy[n, out] · W
fn linear_t(dy: &[f32], w: &[f32], n: usize, inp: usize, out: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; n * inp];
    for i in 0..n {
        for k in 0..inp {
            let s: f64 = (0..out)
                .map(|o| dy[i * out + o] as f64 * w[o * inp + k] as f64)
                .sum();
            dx[i * inp + k] = s as f32;
        }
    }
    dx
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    elementwise_ref(Op::Add, a, b)
}

/// The reference trainer's LoRA state: flat params, gradients and moments in the adapter's pair
/// order (A then B of each pair), as `GpuLora` lays them out.
pub struct RefLora {
    pub r: usize,
    pub scale: f32,
    /// (layer, module, offset of A, offset of B) of each pair.
    pub pairs: Vec<(usize, Module, usize, usize)>,
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl RefLora {
    pub fn from_adapter(adapter: &LoraAdapter) -> RefLora {
        let r = adapter.config.r;
        let (mut pairs, mut params) = (Vec::new(), Vec::new());
        for p in &adapter.tensors {
            let a_off = params.len();
            params.extend_from_slice(&p.a);
            let b_off = params.len();
            params.extend_from_slice(&p.b);
            pairs.push((p.layer, p.module, a_off, b_off));
        }
        let n = params.len();
        RefLora {
            r,
            scale: adapter.config.scale(),
            pairs,
            params,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// The offsets of A and of projection `p`'s rows of B (a fused module's pair holds several
    /// projections).
    fn find(&self, config: &ModelConfig, layer: usize, p: Module) -> Option<(usize, usize)> {
        let (module, rows) = config.projection_rows(p);
        self.pairs
            .iter()
            .find(|e| e.0 == layer && e.1 == module)
            .map(|e| (e.2, e.3 + rows.start * self.r))
    }
}

/// Projection with its LoRA term; returns (y, u = x·Aᵀ).
fn adapted(
    m: &RefModel,
    lora: &RefLora,
    l: usize,
    module: Module,
    x: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (out, inp) = m.config.module_shape(module);
    let mut y = linear(x, &m.layers[l].w[module as usize], n, inp, out);
    let Some((a_off, b_off)) = lora.find(&m.config, l, module) else {
        return (y, Vec::new());
    };
    let r = lora.r;
    let u = linear(x, &lora.params[a_off..a_off + r * inp], n, inp, r);
    let lo = linear(&u, &lora.params[b_off..b_off + out * r], n, r, out);
    y.iter_mut()
        .zip(&lo)
        .for_each(|(y, l)| *y += lora.scale * l);
    (y, u)
}

/// Backward of [`adapted`]: returns dx and adds dA, dB into `grads`.
#[allow(clippy::too_many_arguments)]
fn adapted_backward(
    m: &RefModel,
    lora: &RefLora,
    grads: &mut [f32],
    l: usize,
    module: Module,
    x: &[f32],
    u: &[f32],
    dy: &[f32],
    n: usize,
) -> Vec<f32> {
    let (out, inp) = m.config.module_shape(module);
    let mut dx = linear_t(dy, &m.layers[l].w[module as usize], n, inp, out);
    let Some((a_off, b_off)) = lora.find(&m.config, l, module) else {
        return dx;
    };
    let (r, s) = (lora.r, lora.scale as f64);
    let b = &lora.params[b_off..b_off + out * r];
    let a = &lora.params[a_off..a_off + r * inp];
    // du = s·dy·B [n, r]
    let du: Vec<f64> = (0..n * r)
        .map(|i| {
            let (t, j) = (i / r, i % r);
            s * (0..out)
                .map(|o| dy[t * out + o] as f64 * b[o * r + j] as f64)
                .sum::<f64>()
        })
        .collect();
    for o in 0..out {
        for j in 0..r {
            let g: f64 = (0..n)
                .map(|t| dy[t * out + o] as f64 * u[t * r + j] as f64)
                .sum();
            grads[b_off + o * r + j] += (s * g) as f32;
        }
    }
    for j in 0..r {
        for k in 0..inp {
            let g: f64 = (0..n).map(|t| du[t * r + j] * x[t * inp + k] as f64).sum();
            grads[a_off + j * inp + k] += g as f32;
        }
    }
    for t in 0..n {
        for k in 0..inp {
            let g: f64 = (0..r).map(|j| du[t * r + j] * a[j * inp + k] as f64).sum();
            dx[t * inp + k] += g as f32;
        }
    }
    dx
}

/// One training step (no dropout): returns the mean loss over trained tokens and updates the
/// LoRA parameters with AdamW after clipping.
#[allow(clippy::too_many_arguments)]
pub fn step(
    m: &RefModel,
    lora: &mut RefLora,
    ids: &[u32],
    targets: &[u32],
    b: usize,
    opt: AdamW,
    t_step: u32,
    max_norm: f32,
) -> f64 {
    let c = &m.config;
    let (n, t) = (ids.len(), ids.len() / b);
    let (ce, eps) = (c.n_embd, c.rms_eps);
    let rope_q = RopeShape {
        style: c.arch.rope,
        period: t as u32,
        t: n as u32,
        h: c.n_head as u32,
        hs: c.head_dim as u32,
        rot: c.rope_dim as u32,
        off: 0,
        row_stride: c.q_dim() as u32,
    };
    let rope_k = RopeShape {
        h: c.n_head_kv as u32,
        row_stride: c.kv_dim() as u32,
        ..rope_q
    };
    let shape = |l: usize| AttentionShape {
        b: b as u32,
        t: t as u32,
        nh: c.n_head as u32,
        kvh: c.n_head_kv as u32,
        hs: c.head_dim as u32,
        pos0: 0,
        s: t as u32,
        window: c.layer_window(l),
    };
    let embd_scale = c.embedding_scale();
    let rope_factors = &m.rope_factors.for_context(t)[..];
    let mut x: Vec<f32> = ids
        .iter()
        .flat_map(|&id| m.embd[id as usize * ce..(id as usize + 1) * ce].to_vec())
        .map(|v| v * embd_scale)
        .collect();
    struct Saved {
        x: Vec<f32>,
        xn1: Vec<f32>,
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        att: Vec<f32>,
        x_mid: Vec<f32>,
        xn2: Vec<f32>,
        gate: Vec<f32>,
        up: Vec<f32>,
        hidden: Vec<f32>,
        u: Vec<(Module, Vec<f32>)>,
        /// Q and K before the per-head norms (qwen3).
        qk_raw: Option<(Vec<f32>, Vec<f32>)>,
        /// The attention and feed-forward outputs before their post norms (gemma3).
        post_raw: Option<(Vec<f32>, Vec<f32>)>,
    }
    let mut saved = Vec::new();
    for (l, lw) in m.layers.iter().enumerate() {
        let mut u = Vec::new();
        let xn1 = rmsnorm_ref(&x, &lw.attn_norm, ce, eps).0;
        let mut proj = |module: Module, input: &[f32]| {
            let (y, uu) = adapted(m, lora, l, module, input, n);
            u.push((module, uu));
            y
        };
        let mut q = proj(Module::QProj, &xn1);
        let mut k = proj(Module::KProj, &xn1);
        let mut v = proj(Module::VProj, &xn1);
        if let Some([bq, bk, bv]) = &lw.qkv_bias {
            add_bias_ref(bq, &mut q);
            add_bias_ref(bk, &mut k);
            add_bias_ref(bv, &mut v);
        }
        let hs = c.head_dim;
        let qk_raw = lw.qk_norm.as_ref().map(|[wq, wk]| {
            let raw = (q.clone(), k.clone());
            q = rmsnorm_ref(&raw.0, wq, hs, eps).0;
            k = rmsnorm_ref(&raw.1, wk, hs, eps).0;
            raw
        });
        let freqs = c.layer_rope(l, rope_factors);
        rope_ref(&mut q, rope_q, 0, freqs, false);
        rope_ref(&mut k, rope_k, 0, freqs, false);
        let att = attention_ref(&q, &k, &v, shape(l)).0;
        let attn_out = proj(Module::OProj, &att);
        let post = |i: usize, y: &[f32]| match &lw.post_norms {
            Some(w) => rmsnorm_ref(y, &w[i], ce, eps).0,
            None => y.to_vec(),
        };
        let x_mid = add(&x, &post(0, &attn_out));
        let xn2 = rmsnorm_ref(&x_mid, &lw.ffn_norm, ce, eps).0;
        let gate = proj(Module::GateProj, &xn2);
        let up = proj(Module::UpProj, &xn2);
        let hidden = elementwise_ref(Op::Glu(c.arch.activation), &gate, &up);
        let ffn_out = proj(Module::DownProj, &hidden);
        let x_out = add(&x_mid, &post(1, &ffn_out));
        let post_raw = lw.post_norms.is_some().then_some((attn_out, ffn_out));
        saved.push(Saved {
            x: x.clone(),
            xn1,
            q,
            k,
            v,
            att,
            x_mid,
            xn2,
            gate,
            up,
            hidden,
            u,
            qk_raw,
            post_raw,
        });
        x = x_out;
    }
    let xnf = rmsnorm_ref(&x, &m.out_norm, ce, eps).0;
    let vocab = c.vocab_size;
    let logits = linear(&xnf, &m.lm_head, n, ce, vocab);
    let trained = targets.iter().filter(|&&t| t != NO_TARGET).count().max(1) as f64;
    let mut loss = 0.0;
    let mut dlogits = vec![0.0f32; n * vocab];
    for i in 0..n {
        if targets[i] == NO_TARGET {
            continue;
        }
        let row = &logits[i * vocab..(i + 1) * vocab];
        let mx = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
        let lse = mx + z.ln();
        loss += lse - row[targets[i] as usize] as f64;
        for (j, &v) in row.iter().enumerate() {
            let p = (v as f64 - lse).exp() - if j == targets[i] as usize { 1.0 } else { 0.0 };
            dlogits[i * vocab + j] = (p / trained) as f32;
        }
    }
    let dxnf = linear_t(&dlogits, &m.lm_head, n, ce, vocab);
    let mut dx = rmsnorm_backward_ref(&x, &m.out_norm, &dxnf, ce, eps);
    let mut grads = vec![0.0f32; lora.params.len()];
    for (l, lw) in m.layers.iter().enumerate().rev() {
        let s = &saved[l];
        let u = |module: Module| {
            s.u.iter()
                .find(|(mm, _)| *mm == module)
                .map(|(_, u)| u.as_slice())
                .unwrap_or(&[])
        };
        // Through a post norm (gemma3): the gradient of the block output before it.
        let through_post = |i: usize, dy: &[f32]| match (&s.post_raw, &lw.post_norms) {
            (Some(raw), Some(w)) => {
                let y = if i == 0 { &raw.0 } else { &raw.1 };
                rmsnorm_backward_ref(y, &w[i], dy, ce, eps)
            }
            _ => dy.to_vec(),
        };
        let dh = adapted_backward(
            m,
            lora,
            &mut grads,
            l,
            Module::DownProj,
            &s.hidden,
            u(Module::DownProj),
            &through_post(1, &dx),
            n,
        );
        let (dgate, dup) = glu_backward_ref(c.arch.activation, &s.gate, &s.up, &dh);
        let dxn2 = add(
            &adapted_backward(
                m,
                lora,
                &mut grads,
                l,
                Module::GateProj,
                &s.xn2,
                u(Module::GateProj),
                &dgate,
                n,
            ),
            &adapted_backward(
                m,
                lora,
                &mut grads,
                l,
                Module::UpProj,
                &s.xn2,
                u(Module::UpProj),
                &dup,
                n,
            ),
        );
        dx = add(
            &dx,
            &rmsnorm_backward_ref(&s.x_mid, &lw.ffn_norm, &dxn2, ce, eps),
        );
        let datt = adapted_backward(
            m,
            lora,
            &mut grads,
            l,
            Module::OProj,
            &s.att,
            u(Module::OProj),
            &through_post(0, &dx),
            n,
        );
        let (mut dq, mut dk, dv) = attention_backward_ref(&s.q, &s.k, &s.v, &datt, shape(l));
        rope_ref(&mut dq, rope_q, 0, c.layer_rope(l, rope_factors), true);
        rope_ref(&mut dk, rope_k, 0, c.layer_rope(l, rope_factors), true);
        if let (Some((q_raw, k_raw)), Some([wq, wk])) = (&s.qk_raw, &lw.qk_norm) {
            dq = rmsnorm_backward_ref(q_raw, wq, &dq, c.head_dim, eps);
            dk = rmsnorm_backward_ref(k_raw, wk, &dk, c.head_dim, eps);
        }
        let dxn1 = add(
            &add(
                &adapted_backward(
                    m,
                    lora,
                    &mut grads,
                    l,
                    Module::QProj,
                    &s.xn1,
                    u(Module::QProj),
                    &dq,
                    n,
                ),
                &adapted_backward(
                    m,
                    lora,
                    &mut grads,
                    l,
                    Module::KProj,
                    &s.xn1,
                    u(Module::KProj),
                    &dk,
                    n,
                ),
            ),
            &adapted_backward(
                m,
                lora,
                &mut grads,
                l,
                Module::VProj,
                &s.xn1,
                u(Module::VProj),
                &dv,
                n,
            ),
        );
        dx = add(
            &dx,
            &rmsnorm_backward_ref(&s.x, &lw.attn_norm, &dxn1, ce, eps),
        );
    }
    adamw_ref(
        opt,
        t_step,
        max_norm,
        &mut lora.params,
        &grads,
        &mut lora.m,
        &mut lora.v,
    );
    loss / trained
}
