//! Each backward kernel (and one LoRA projection) against burn's autodiff of its forward.

use super::*;
use crate::formats::Gguf;
use crate::gpu::GpuBuffer;
use crate::kernels::attention::{
    AttentionSaved, AttentionShape, attention as gpu_attention, attention_backward,
};
use crate::kernels::elementwise::{dropout, glu_backward};
use crate::kernels::logits::{NO_TARGET, RowStats, cross_entropy_grad, logit_stats};
use crate::kernels::matmul::matmul_weight_t;
use crate::kernels::rmsnorm::{rmsnorm as gpu_rmsnorm, rmsnorm_backward};
use crate::kernels::testing::{
    assert_close, dequant, gpu, random_blocks, read, run, run_with, shapes_for, upload,
};
use crate::kernels::{GpuWeight, WeightFormat};
use crate::lora::{LoraConfig, Module};
use crate::model::Activation;
use crate::model::ModelConfig;
use crate::model::tiny::{TinySpec, make_tiny_gguf};
use crate::train::GpuLora;
use crate::train::step::linear::{Adapted, Drop, adapted_linear, adapted_linear_backward};
use crate::util::Rng;

#[test]
fn rmsnorm_backward_matches_autodiff() {
    // Sums of C products in f32 (errors seen ≤ 1.2e-7 on O(1) gradients): 1e-6 + 2e-5 relative.
    let mut rng = Rng::new(31);
    for &(rows, c) in &[(1, 3), (3, 7), (4, 576)] {
        let x = rng.vec_uniform(rows * c, -2.0, 2.0);
        let w = rng.vec_uniform(c, 0.5, 1.5);
        let dy = rng.vec_uniform(rows * c, -1.0, 1.0);
        let xt = leaf(&x, [rows, c]);
        let grads = project(rmsnorm(xt.clone(), constant(&w, [c]), 1e-5), &dy).backward();
        let want = grad(&xt, &grads);
        let (gx, gw, gdy) = (upload(&x), upload(&w), upload(&dy));
        let (out, rstd, dx) = (
            upload(&vec![0.0; rows * c]),
            upload(&vec![0.0; rows]),
            upload(&vec![9.0; rows * c]),
        );
        let shape = (rows as u32, c as u32);
        run(async |rec| {
            gpu_rmsnorm(rec, &gx, &gw, &out, &rstd, shape, 1e-5)
                .await
                .unwrap();
            rmsnorm_backward(rec, &gx, &gw, &gdy, &rstd, &dx, shape, false)
                .await
                .unwrap();
        });
        assert_close(
            &format!("rmsnorm dx {rows}x{c}"),
            &read(&dx),
            &want,
            1e-6,
            2e-5,
        );
    }
}

#[test]
fn glu_backward_matches_autodiff() {
    for act in [Activation::Silu, Activation::GeluTanh] {
        glu_backward_matches_autodiff_for(act);
    }
}

fn glu_backward_matches_autodiff_for(act: Activation) {
    // Element-wise: only the rounding of exp and a few products, 1e-6 + 1e-5 relative; the
    // GELU's f32 tanh differs a little more between the two (errors seen ≤ 1.1e-6 on values of
    // 0.003: 3e-6 + 1e-5 relative).
    let mut rng = Rng::new(32);
    let (rows, c) = (5, 61);
    let n = rows * c;
    let (gate, up, dh) = (
        rng.vec_uniform(n, -8.0, 8.0),
        rng.vec_uniform(n, -2.0, 2.0),
        rng.vec_uniform(n, -1.0, 1.0),
    );
    let (gt, ut) = (leaf(&gate, [rows, c]), leaf(&up, [rows, c]));
    let grads = project(glu(act, gt.clone(), ut.clone()), &dh).backward();
    let (gg, gu, gd) = (upload(&gate), upload(&up), upload(&dh));
    let (dgate, dup) = (upload(&vec![9.0; n]), upload(&vec![9.0; n]));
    run(async |rec| {
        let n = n as u32;
        glu_backward(rec, act, n, (&gg, 0), (&gu, 0), (&gd, 0), &dgate, &dup, 0)
            .await
            .unwrap()
    });
    let atol = match act {
        Activation::Silu => 1e-6,
        Activation::GeluTanh => 3e-6,
    };
    let what = format!("{act:?}");
    assert_close(&what, &read(&dgate), &grad(&gt, &grads), atol, 1e-5);
    assert_close(&what, &read(&dup), &grad(&ut, &grads), atol, 1e-5);
}

#[test]
fn input_gradient_through_a_frozen_quantized_weight_matches_autodiff() {
    // dX = dY·W with W dequantized on the GPU: sums of N products of O(0.1) weights, 2e-5 +
    // 1e-4 relative. Portable (tiled) and device-chosen variants both.
    let mut rng = Rng::new(33);
    for &format in WeightFormat::ALL {
        for (m, n, k) in shapes_for(format, &[(5, 33, 64), (70, 67, 96), (3, 17, 256)]) {
            let raw = random_blocks(format, n * k, &mut rng);
            let w = dequant(format, &raw, n * k);
            let x = rng.vec_uniform(m * k, -1.0, 1.0);
            let dy = rng.vec_uniform(m * n, -1.0, 1.0);
            let xt = leaf(&x, [m, k]);
            let grads = project(linear(xt.clone(), constant(&w, [n, k])), &dy).backward();
            let want = grad(&xt, &grads);
            let gw = GpuWeight::upload(gpu(), "w", format, &raw, n, k).unwrap();
            for portable in [false, true] {
                let (gdy, gdx) = (upload(&dy), upload(&vec![9.0; m * k]));
                run_with(portable, async |rec| {
                    let (m, k) = (m as u32, k as u32);
                    matmul_weight_t(rec, &gdy, 0, &gw, &gdx, 0, k, m, 1.0, false)
                        .await
                        .unwrap()
                });
                let what = format!("dX {format:?} {m}x{n}x{k} portable={portable}");
                assert_close(&what, &read(&gdx), &want, 2e-5, 1e-4);
            }
        }
    }
}

#[test]
fn attention_backward_matches_autodiff() {
    // Causal GQA (query heads sharing kv heads). The GPU recomputes the probabilities from the
    // saved log-sum-exp (flash style); burn differentiates full softmax matrices. Sums over up
    // to T keys and HS dims in f32 (errors seen ≤ 1.7e-6 on gradients up to 4): 5e-6 + 5e-4
    // relative.
    let mut rng = Rng::new(34);
    for s in [
        Heads {
            b: 2,
            t: 7,
            nh: 4,
            kvh: 2,
            hs: 16,
            window: usize::MAX,
        },
        Heads {
            b: 1,
            t: 67,
            nh: 9,
            kvh: 3,
            hs: 64,
            window: usize::MAX,
        },
        // A sliding window (gemma3's local layers), shorter than the sequence.
        Heads {
            b: 2,
            t: 23,
            nh: 4,
            kvh: 1,
            hs: 16,
            window: 6,
        },
    ] {
        let (nq, nkv) = (s.b * s.t * s.nh * s.hs, s.b * s.t * s.kvh * s.hs);
        let (q, k, v) = (
            rng.vec_uniform(nq, -1.5, 1.5),
            rng.vec_uniform(nkv, -1.5, 1.5),
            rng.vec_uniform(nkv, -1.0, 1.0),
        );
        let dout = rng.vec_uniform(nq, -1.0, 1.0);
        let rows = s.b * s.t;
        let (qt, kt, vt) = (
            leaf(&q, [rows, s.nh * s.hs]),
            leaf(&k, [rows, s.kvh * s.hs]),
            leaf(&v, [rows, s.kvh * s.hs]),
        );
        let o = attention(qt.clone(), kt.clone(), vt.clone(), s);
        let o_want = values(&o);
        let grads = project(o, &dout).backward();
        let sh = AttentionShape {
            b: s.b as u32,
            t: s.t as u32,
            nh: s.nh as u32,
            kvh: s.kvh as u32,
            hs: s.hs as u32,
            pos0: 0,
            s: s.t as u32,
            window: s.window.min(u32::MAX as usize) as u32,
        };
        let (gq, gk, gv, gdo) = (upload(&q), upload(&k), upload(&v), upload(&dout));
        let (go, lse, delta) = (
            upload(&vec![0.0; nq]),
            upload(&vec![0.0; rows * s.nh]),
            upload(&vec![0.0; rows * s.nh]),
        );
        let (dq, dk, dv) = (
            upload(&vec![9.0; nq]),
            upload(&vec![9.0; nkv]),
            upload(&vec![9.0; nkv]),
        );
        run(async |rec| {
            gpu_attention(rec, &gq, &gk, &gv, &go, &lse, sh)
                .await
                .unwrap();
            let saved = AttentionSaved {
                q: &gq,
                k: &gk,
                v: &gv,
                o: &go,
                lse: &lse,
                dout: &gdo,
            };
            attention_backward(rec, saved, &delta, (&dq, &dk, &dv), sh)
                .await
                .unwrap();
        });
        assert_close(&format!("o {s:?}"), &read(&go), &o_want, 1e-5, 1e-4);
        assert_close(
            &format!("dq {s:?}"),
            &read(&dq),
            &grad(&qt, &grads),
            5e-6,
            5e-4,
        );
        assert_close(
            &format!("dk {s:?}"),
            &read(&dk),
            &grad(&kt, &grads),
            5e-6,
            5e-4,
        );
        assert_close(
            &format!("dv {s:?}"),
            &read(&dv),
            &grad(&vt, &grads),
            5e-6,
            5e-4,
        );
    }
}

#[test]
fn cross_entropy_gradient_matches_autodiff() {
    // The masked mean NLL and its logit gradient (softmax − one-hot)/trained rows, computed in
    // place from the row statistics. Probabilities are ≤ 1 and sums run over V: 1e-6 absolute,
    // 1e-4 relative on the gradient; the loss to 1e-5 relative.
    let mut rng = Rng::new(35);
    for &(rows, v) in &[(4usize, 37usize), (6, 1001)] {
        let logits = rng.vec_uniform(rows * v, -6.0, 6.0);
        let targets: Vec<u32> = (0..rows)
            .map(|r| {
                if r % 3 == 1 {
                    NO_TARGET
                } else {
                    rng.below(v as u64) as u32
                }
            })
            .collect();
        let lt = leaf(&logits, [rows, v]);
        let (loss, trained) = masked_cross_entropy(lt.clone(), &targets);
        let loss_want = values(&loss)[0] as f64;
        let grads = loss.backward();
        let gl = upload(&logits);
        let gt = GpuBuffer::from_slice(gpu(), "targets", &targets).unwrap();
        let gs = upload(&vec![0.0; rows * 4]);
        run(async |rec| {
            let shape = (rows as u32, v as u32);
            logit_stats(rec, &gl, &gt, &gs, shape, 0).await.unwrap();
            cross_entropy_grad(rec, &gl, &gt, &gs, shape, 0, 1.0 / trained as f32)
                .await
                .unwrap();
        });
        let nll: f64 = RowStats::decode(&read(&gs))
            .iter()
            .map(|s| -s.target_logprob as f64)
            .sum::<f64>()
            / trained as f64;
        assert!(
            (nll - loss_want).abs() <= 1e-5 * loss_want,
            "loss {rows}x{v}: GPU {nll}, autodiff {loss_want}"
        );
        let what = format!("dlogits {rows}x{v}");
        assert_close(&what, &read(&gl), &grad(&lt, &grads), 1e-6, 1e-4);
    }
}

#[test]
fn lora_projection_gradients_match_autodiff() {
    // y = x·Wᵀ + s·(dropout(x)·Aᵀ)·Bᵀ with a frozen Q4_1 W: dX, dA, dB from the trainer's own
    // forward/backward helpers, with and without dropout (the mask is the kernel's, read back
    // and used as a constant in burn). Sums of up to N·in products: 2e-5 + 1e-4 relative.
    let bytes = make_tiny_gguf(&TinySpec::default(), None).unwrap();
    let config = ModelConfig::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
    let mut rng = Rng::new(36);
    for p_drop in [0.0f32, 0.25] {
        let lcfg = LoraConfig::new(4, 8.0, &[Module::DownProj]);
        let lora = GpuLora::init(gpu(), &config, &lcfg, 37).unwrap();
        let slot = *lora.slot(0, Module::DownProj).unwrap();
        let (r, inp, out, n) = (4, slot.in_features as usize, slot.out_features as usize, 11);
        let a = rng.vec_uniform(r * inp, -0.3, 0.3);
        let b = rng.vec_uniform(out * r, -0.3, 0.3);
        lora.params.write(gpu(), slot.a_off as u64 * 4, &a);
        lora.params.write(gpu(), slot.b_off as u64 * 4, &b);
        let raw = random_blocks(WeightFormat::Q4_1, out * inp, &mut rng);
        let w = dequant(WeightFormat::Q4_1, &raw, out * inp);
        let gw = GpuWeight::upload(gpu(), "w", WeightFormat::Q4_1, &raw, out, inp).unwrap();
        let x = rng.vec_uniform(n * inp, -1.0, 1.0);
        let dy = rng.vec_uniform(n * out, -1.0, 1.0);
        let drop = (p_drop > 0.0).then_some(Drop {
            p: p_drop,
            seed: 1234,
        });
        let (gx, gdy, y, dx) = (
            upload(&x),
            upload(&dy),
            upload(&vec![0.0; n * out]),
            upload(&vec![9.0; n * inp]),
        );
        let (u, du, mask) = (
            upload(&vec![0.0; n * r]),
            upload(&vec![0.0; n * r]),
            upload(&vec![0.0; n * inp]),
        );
        let (s1, s2) = (upload(&vec![0.0; n * inp]), upload(&vec![0.0; n * inp]));
        let ones = upload(&vec![1.0; n * inp]);
        run(async |rec| {
            let adapted = Some(Adapted { slot, u: &u, drop });
            let n = n as u32;
            adapted_linear(rec, &gx, &gw, (&y, 0), n, false, &lora, adapted, &s1)
                .await
                .unwrap();
            adapted_linear_backward(
                rec,
                &gdy,
                &gw,
                &gx,
                &dx,
                n,
                &lora,
                adapted,
                (&du, &s1, &s2),
                false,
            )
            .await
            .unwrap();
            if let Some(d) = drop {
                dropout(
                    rec,
                    n * inp as u32,
                    (&ones, 0),
                    (&mask, 0),
                    d.p,
                    d.seed,
                    false,
                )
                .await
                .unwrap();
            }
        });
        let mask = if drop.is_some() {
            read(&mask)
        } else {
            vec![1.0; n * inp]
        };
        if drop.is_some() {
            let kept = mask.iter().filter(|&&m| m > 0.0).count() as f32 / mask.len() as f32;
            assert!((kept - 0.75).abs() < 0.1, "dropout kept {kept}");
        }
        let (xt, at, bt) = (leaf(&x, [n, inp]), leaf(&a, [r, inp]), leaf(&b, [out, r]));
        let xin = xt.clone() * constant(&mask, [n, inp]);
        let yt = linear(xt.clone(), constant(&w, [out, inp]))
            + linear(linear(xin, at.clone()), bt.clone()).mul_scalar(lcfg.scale() as f64);
        assert_close(
            &format!("y p={p_drop}"),
            &read(&y),
            &values(&yt),
            2e-5,
            1e-4,
        );
        let grads = project(yt, &dy).backward();
        let g = read(&lora.grads);
        let (ao, bo) = (slot.a_off as usize, slot.b_off as usize);
        let what = |t: &str| format!("{t} p={p_drop}");
        assert_close(&what("dx"), &read(&dx), &grad(&xt, &grads), 2e-5, 1e-4);
        assert_close(
            &what("dA"),
            &g[ao..ao + r * inp],
            &grad(&at, &grads),
            2e-5,
            1e-4,
        );
        assert_close(
            &what("dB"),
            &g[bo..bo + out * r],
            &grad(&bt, &grads),
            2e-5,
            1e-4,
        );
    }
}
