//! The whole training step: the trainer's LoRA gradients on a tiny Q4_1 Llama against burn's
//! autodiff of the same model written in burn ops.

use super::*;
use crate::formats::{GgmlType, Gguf};
use crate::gpu::read_buffer_f32;
use crate::kernels::logits::NO_TARGET;
use crate::kernels::optim::AdamW;
use crate::kernels::testing::{assert_close, gpu};
use crate::lora::{LoraConfig, Module};
use crate::model::Model;
use crate::model::tiny::{TinySpec, make_tiny_gguf};
use crate::train::lora_gpu::LoraSlot;
use crate::train::reference::RefModel;
use crate::train::{GpuLora, MicroBatch, StepOptions, Trainer};
use crate::util::Rng;

/// The LoRA leaves of one adapted projection.
struct Pair {
    slot: LoraSlot,
    a: Tensor<2>,
    b: Tensor<2>,
}

/// The masked mean NLL of `ids` → `targets` (B sequences) of the tiny Llama in `m` with the
/// LoRA pairs (dequantized weights; embedding rows gathered on the host, as the embedding is
/// frozen; tied output).
fn burn_loss(
    m: &RefModel,
    pairs: &[Pair],
    scale: f32,
    ids: &[u32],
    targets: &[u32],
    b: usize,
) -> Tensor<1> {
    let c = &m.config;
    let (n, ce) = (ids.len(), c.n_embd);
    let heads = |l: usize| Heads {
        b,
        t: n / b,
        nh: c.n_head,
        kvh: c.n_head_kv,
        hs: c.head_dim,
        window: c.layer_window(l) as usize,
    };
    let rows: Vec<f32> = ids
        .iter()
        .flat_map(|&id| m.embd[id as usize * ce..(id as usize + 1) * ce].to_vec())
        .collect();
    let mut x = constant(&rows, [n, ce]).mul_scalar(c.embedding_scale() as f64);
    for (l, lw) in m.layers.iter().enumerate() {
        // A projection and its LoRA term: a fused module's (phi3) rows for it.
        let proj = |projection: Module, input: Tensor<2>| {
            let (out, inp) = c.module_shape(projection);
            let w = constant(&lw.w[projection as usize], [out, inp]);
            let y = linear(input.clone(), w);
            let (module, rows) = c.projection_rows(projection);
            match pairs
                .iter()
                .find(|p| p.slot.layer == l && p.slot.module == module)
            {
                Some(p) => {
                    let lora = linear(linear(input, p.a.clone()), p.b.clone());
                    y + lora.slice([0..n, rows]).mul_scalar(scale as f64)
                }
                None => y,
            }
        };
        // The q/k/v biases (where the architecture has them) broadcast over the rows.
        let biased = |module: Module, y: Tensor<2>| match &lw.qkv_bias {
            Some(b) => {
                let bias = &b[module as usize];
                y + constant(bias, [1, bias.len()])
            }
            None => y,
        };
        // The per-head q/k norms (where the architecture has them): rows of HS.
        let head_normed = |which: usize, y: Tensor<2>, heads: usize| match &lw.qk_norm {
            Some(w) => {
                let hs = c.head_dim;
                let rows = y.reshape([n * heads, hs]);
                rmsnorm(rows, constant(&w[which], [hs]), c.rms_eps).reshape([n, heads * hs])
            }
            None => y,
        };
        let xn = rmsnorm(x.clone(), constant(&lw.attn_norm, [ce]), c.rms_eps);
        let q_raw = biased(Module::QProj, proj(Module::QProj, xn.clone()));
        let k_raw = biased(Module::KProj, proj(Module::KProj, xn.clone()));
        let t = n / b;
        let q = rope(
            head_normed(0, q_raw, c.n_head),
            c.arch.rope,
            (c.n_head, c.head_dim, c.rope_dim),
            t,
            c.layer_rope(l, &m.rope_factors.for_context(t)[..]),
        );
        let k = rope(
            head_normed(1, k_raw, c.n_head_kv),
            c.arch.rope,
            (c.n_head_kv, c.head_dim, c.rope_dim),
            t,
            c.layer_rope(l, &m.rope_factors.for_context(t)[..]),
        );
        let v = biased(Module::VProj, proj(Module::VProj, xn));
        // The post norms (gemma3) of the attention and feed-forward outputs.
        let post = |which: usize, y: Tensor<2>| match &lw.post_norms {
            Some(w) => rmsnorm(y, constant(&w[which], [ce]), c.rms_eps),
            None => y,
        };
        let attended = attention(q, k, v, heads(l));
        let x_mid = x + post(0, proj(Module::OProj, attended));
        let xn2 = rmsnorm(x_mid.clone(), constant(&lw.ffn_norm, [ce]), c.rms_eps);
        let hidden = glu(
            c.arch.activation,
            proj(Module::GateProj, xn2.clone()),
            proj(Module::UpProj, xn2),
        );
        x = x_mid + post(1, proj(Module::DownProj, hidden));
    }
    let xn = rmsnorm(x, constant(&m.out_norm, [ce]), c.rms_eps);
    let logits = linear(xn, constant(&m.lm_head, [c.vocab_size, ce]));
    masked_cross_entropy(logits, targets).0
}

#[test]
fn training_step_lora_gradients_match_autodiff_of_the_whole_model() {
    // Every architecture: burn's autodiff of its own rope (adjacent pairs or NEOX halves) and
    // bias broadcast, from the same description.
    for spec in TinySpec::block_variants() {
        whole_model_gradients_match_autodiff(&spec);
    }
}

fn whole_model_gradients_match_autodiff(variant: &TinySpec) {
    // Two layers, C 64, 4 heads over 2 kv heads, V 256, Q4_1 projections and a Q8_0 tied
    // embedding; B 2 × T 9 with prompt tokens masked out; r 4 on every projection with random
    // non-zero B so gradients reach A. The GPU runs the whole step in f32 (GEMMs over C, FF and
    // V, flash attention, chunked cross-entropy); the loss agrees to 1e-5 relative and every
    // gradient to 2e-5 of the largest gradient of its matrix + 1e-3 relative (errors seen: at
    // most 2.3e-7 on gradients up to 0.44, about 1e-6 of the largest).
    let gpu = gpu();
    let spec = TinySpec {
        weight_type: GgmlType::Q4_1,
        ..variant.clone()
    };
    let bytes = make_tiny_gguf(&spec, None).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::load(gpu, &gguf, &bytes).unwrap();
    let reference = RefModel::load(&gguf, &bytes);
    let config = LoraConfig::new(4, 8.0, model.config.arch.modules());
    let lora = GpuLora::init(gpu, &model.config, &config, 41).unwrap();
    let mut rng = Rng::new(42);
    let mut params = pollster::block_on(read_buffer_f32(gpu, &lora.params, 0, lora.n)).unwrap();
    for s in &lora.slots {
        let b = s.b_off as usize..s.b_off as usize + 4 * s.out_features as usize;
        params[b]
            .iter_mut()
            .for_each(|x| *x = rng.uniform(-0.2, 0.2));
    }
    lora.params.write(gpu, 0, &params);
    let (b, t) = (2, 9);
    let ids: Vec<u32> = (0..b * t).map(|_| rng.below(256) as u32).collect();
    let targets: Vec<u32> = (0..b * t)
        .map(|i| {
            if i % t >= 3 && i % t + 1 < t {
                ids[i + 1]
            } else {
                NO_TARGET
            }
        })
        .collect();
    let mut trainer = Trainer::new(&model, lora);
    let zero = StepOptions {
        adamw: AdamW {
            lr: 0.0,
            ..AdamW::default()
        },
        max_grad_norm: 0.0,
    };
    let batch = MicroBatch {
        ids: &ids,
        targets: &targets,
    };
    let stats = pollster::block_on(trainer.train_step(gpu, &[batch], b, zero)).unwrap();
    let g =
        pollster::block_on(read_buffer_f32(gpu, &trainer.lora.grads, 0, trainer.lora.n)).unwrap();

    let r = config.r;
    let pairs: Vec<Pair> = trainer
        .lora
        .slots
        .iter()
        .map(|&slot| {
            let (a, b) = (slot.a_off as usize, slot.b_off as usize);
            let (inp, out) = (slot.in_features as usize, slot.out_features as usize);
            Pair {
                slot,
                a: leaf(&params[a..a + r * inp], [r, inp]),
                b: leaf(&params[b..b + out * r], [out, r]),
            }
        })
        .collect();
    let loss = burn_loss(&reference, &pairs, config.scale(), &ids, &targets, b);
    let want_loss = values(&loss)[0] as f64;
    assert!(
        (stats.loss - want_loss).abs() <= 1e-5 * want_loss,
        "loss: GPU {}, autodiff {want_loss}",
        stats.loss
    );
    let grads = loss.backward();
    for p in &pairs {
        let (s, (a, b)) = (p.slot, (p.slot.a_off as usize, p.slot.b_off as usize));
        let (inp, out) = (s.in_features as usize, s.out_features as usize);
        for (name, got, leaf) in [
            ("A", &g[a..a + r * inp], &p.a),
            ("B", &g[b..b + out * r], &p.b),
        ] {
            let want = grad(leaf, &grads);
            let big = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(
                big > 0.0,
                "{:?} layer {} d{name} is zero",
                s.module,
                s.layer
            );
            let what = format!("{} {:?} layer {} d{name}", spec.label(), s.module, s.layer);
            assert_close(&what, got, &want, 2e-5 * big, 1e-3);
        }
    }
}
