//! Independent autodiff oracle (tests only): the GPU backward kernels, one LoRA projection and the
//! whole training step's LoRA gradients against burn's reverse-mode autodiff of the same
//! computation written in burn tensor ops (`burn` 0.22.1, CPU `flex` backend, in f64).
//!
//! The finite-difference checks in each kernel module test the kernels against themselves (the
//! GPU loss, perturbed); the CPU reference trainer shares the kernels' hand-derived CPU backward
//! formulas. burn derives every gradient from the forward ops alone, so an error in a
//! hand-derived formula that the GPU and the CPU references share would show up here.
//!
//! Tolerances are `atol + rtol·|oracle|` with the oracle in f64: what is left is the GPU's f32
//! rounding, which grows with the length of the sums (K terms of a matmul, the keys of an
//! attention row, the vocabulary of a softmax) — about √K·2⁻²⁴ relative to the terms' magnitude.
//! Each test states its figure.

use crate::kernels::rope::RopeFreqs;
use crate::model::{Activation, RopeStyle};
use burn::tensor::{DType, Device, Tensor, TensorCreationOptions, TensorData, activation};

mod kernels;
mod model;

/// The autodiff CPU device.
fn device() -> Device {
    Device::flex().autodiff()
}

/// An f64 tensor that needs no gradient.
fn constant<const D: usize>(data: &[f32], shape: [usize; D]) -> Tensor<D> {
    let values: Vec<f64> = data.iter().map(|&x| x as f64).collect();
    let options = TensorCreationOptions::new(device()).with_dtype(DType::F64);
    Tensor::from_data(TensorData::new(values, shape), options)
}

/// An f64 leaf whose gradient is kept.
fn leaf<const D: usize>(data: &[f32], shape: [usize; D]) -> Tensor<D> {
    constant(data, shape).require_grad()
}

/// The values of a tensor as f32.
fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.try_to_vec_as::<f64>()
        .expect("read a burn tensor")
        .into_iter()
        .map(|x| x as f32)
        .collect()
}

/// The gradient of `x` (a leaf) after `backward`.
fn grad<const D: usize>(x: &Tensor<D>, grads: &burn::tensor::Gradients) -> Vec<f32> {
    values(&x.grad(grads).expect("the leaf has a gradient"))
}

/// `Σ y ⊙ dy`: the scalar whose gradient is the vector–Jacobian product with upstream `dy`.
fn project<const D: usize>(y: Tensor<D>, dy: &[f32]) -> Tensor<1> {
    let dy = constant(dy, y.dims());
    (y * dy).sum()
}

/// `y[n, out] = x[n, in] · Wᵀ` for `w[out, in]`.
fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    x.matmul(w.transpose())
}

/// RMSNorm of the rows of `x[n, c]` times `w[c]`.
fn rmsnorm(x: Tensor<2>, w: Tensor<1>, eps: f32) -> Tensor<2> {
    let inv = x
        .clone()
        .square()
        .mean_dim(1)
        .add_scalar(eps as f64)
        .sqrt()
        .recip();
    x * inv * w.unsqueeze_dim::<2>(0)
}

/// `silu(gate) · up`.
/// The gated feed-forward `act(gate) ⊙ up` in burn ops (SiLU through `sigmoid`; the tanh GELU
/// written out).
fn glu(act: Activation, gate: Tensor<2>, up: Tensor<2>) -> Tensor<2> {
    let activated = match act {
        Activation::Silu => gate.clone() * activation::sigmoid(gate),
        Activation::GeluTanh => {
            let cube = gate.clone() * gate.clone() * gate.clone();
            let inner = (gate.clone() + cube.mul_scalar(0.044715))
                .mul_scalar((2.0 / std::f64::consts::PI).sqrt());
            gate.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
        }
    };
    activated * up
}

/// Rotary embedding of the first `rot` values of each head of `x[n, h·hs]` (the rest pass
/// through) in `style` (adjacent pairs as GGUF's llama layout, or NEOX halves; as `rope_ref`),
/// pair j's frequency divided by `factors[j]`; row i is at position `i % period`.
fn rope(
    x: Tensor<2>,
    style: RopeStyle,
    (h, hs, rot): (usize, usize, usize),
    period: usize,
    freqs: RopeFreqs<&[f32]>,
) -> Tensor<2> {
    let (base, factors) = (freqs.base, freqs.factors);
    let n = x.dims()[0];
    let heads = x.reshape([n, h, hs]);
    let pass = (rot < hs).then(|| heads.clone().narrow(2, rot, hs - rot));
    let x = heads.narrow(2, 0, rot);
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for i in 0..n {
        for (j, &factor) in factors[..rot / 2].iter().enumerate() {
            let theta = (i % period) as f64 * (base as f64).powf(-2.0 * j as f64 / rot as f64)
                / factor as f64;
            cos.push((theta.cos() * freqs.scale as f64) as f32);
            sin.push((theta.sin() * freqs.scale as f64) as f32);
        }
    }
    // Pairs along `dim` of a [n, h, …] view: adjacent pairs are [n, h, rot/2, 2] (dim 3), NEOX
    // halves [n, h, 2, rot/2] (dim 2).
    let (shape, trig, dim) = match style {
        RopeStyle::Adjacent => ([n, h, rot / 2, 2], [n, 1, rot / 2, 1], 3),
        RopeStyle::Neox => ([n, h, 2, rot / 2], [n, 1, 1, rot / 2], 2),
    };
    let (cos, sin) = (constant(&cos, trig), constant(&sin, trig));
    let x = x.reshape(shape);
    let (x0, x1) = (x.clone().narrow(dim, 0, 1), x.narrow(dim, 1, 1));
    let y0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
    let y1 = x0 * sin + x1 * cos;
    let rotated = Tensor::cat(vec![y0, y1], dim).reshape([n, h, rot]);
    match pass {
        Some(pass) => Tensor::cat(vec![rotated, pass], 2),
        None => rotated,
    }
    .reshape([n, h * hs])
}

/// Shape of a causal GQA attention over B sequences of T tokens.
#[derive(Clone, Copy, Debug)]
struct Heads {
    b: usize,
    t: usize,
    nh: usize,
    kvh: usize,
    hs: usize,
    /// Keys a query sees, itself included (`usize::MAX`: all earlier ones).
    window: usize,
}

/// Causal attention: `q[B·T, NH·HS]`, `k`, `v[B·T, KVH·HS]` → `o[B·T, NH·HS]`; query head h reads
/// kv head `h / (NH / KVH)`. Written the plain way: full score matrices, an additive causal mask
/// and a softmax (no online softmax, no saved statistics).
fn attention(q: Tensor<2>, k: Tensor<2>, v: Tensor<2>, s: Heads) -> Tensor<2> {
    let Heads {
        b,
        t,
        nh,
        kvh,
        hs,
        window,
    } = s;
    let rep = nh / kvh;
    let heads = |x: Tensor<2>| {
        x.reshape([b, t, kvh, 1, hs])
            .repeat_dim(3, rep)
            .reshape([b, t, nh, hs])
            .swap_dims(1, 2)
    };
    let q = q.reshape([b, t, nh, hs]).swap_dims(1, 2);
    let (k, v) = (heads(k), heads(v));
    let mask: Vec<f32> = (0..t * t)
        .map(|i| {
            let (query, key) = (i / t, i % t);
            if key > query || query - key >= window {
                -1e30
            } else {
                0.0
            }
        })
        .collect();
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (hs as f64).sqrt())
        + constant(&mask, [1, 1, t, t]);
    activation::softmax(scores, 3)
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([b * t, nh * hs])
}

/// Mean cross-entropy of the rows of `logits[n, v]` that have a target (`NO_TARGET` rows are
/// left out), and the number of rows counted.
fn masked_cross_entropy(logits: Tensor<2>, targets: &[u32]) -> (Tensor<1>, usize) {
    let [n, v] = logits.dims();
    let mut onehot = vec![0.0f32; n * v];
    let mut trained = 0;
    for (i, &t) in targets.iter().enumerate() {
        if t != crate::kernels::logits::NO_TARGET {
            onehot[i * v + t as usize] = 1.0;
            trained += 1;
        }
    }
    let logp = activation::log_softmax(logits, 1);
    let nll = (logp * constant(&onehot, [n, v])).sum().neg();
    (nll.div_scalar(trained.max(1) as f64), trained)
}
