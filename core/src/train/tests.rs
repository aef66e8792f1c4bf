//! The training step on a tiny random Llama: its LoRA gradients against finite differences of
//! the GPU loss, and a loss that falls.

use super::*;
use crate::formats::{GgmlType, Gguf};
use crate::kernels::optim::AdamW;
use crate::kernels::testing::gpu;
use crate::lora::{LoraConfig, Module};
use crate::model::Model;
use crate::model::tiny::{TinySpec, make_tiny_gguf};
use crate::train::memory::MemorySavings;
use crate::util::Rng;

fn tiny_model(ty: GgmlType) -> Model {
    tiny_model_of(&TinySpec::default(), ty)
}

fn tiny_model_of(spec: &TinySpec, ty: GgmlType) -> Model {
    let bytes = make_tiny_gguf(
        &TinySpec {
            weight_type: ty,
            ..spec.clone()
        },
        None,
    )
    .unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    Model::load(gpu(), &gguf, &bytes).unwrap()
}

fn batch(rng: &mut Rng, b: usize, t: usize, vocab: u32) -> (Vec<u32>, Vec<u32>) {
    let ids: Vec<u32> = (0..b * t).map(|_| rng.below(vocab as u64) as u32).collect();
    // Next-token targets within each sequence; the first half of each sequence is "prompt".
    let targets = (0..b * t)
        .map(|i| {
            if i % t + 1 < t && i % t >= t / 2 {
                ids[i + 1]
            } else {
                u32::MAX
            }
        })
        .collect();
    (ids, targets)
}

#[test]
fn lora_gradients_match_finite_differences_of_the_loss() {
    // Every block: llama's adjacent-pair rope (also with Llama 3's rope factors); qwen2's NEOX
    // rope and q/k/v biases.
    for spec in TinySpec::block_variants() {
        lora_gradients_match_finite_differences_in(&spec);
    }
}

fn lora_gradients_match_finite_differences_in(spec: &TinySpec) {
    let gpu = gpu();
    let model = tiny_model_of(spec, GgmlType::F32);
    let config = LoraConfig::new(4, 8.0, model.config.arch.modules());
    let lora = GpuLora::init(gpu, &model.config, &config, 3).unwrap();
    // Non-zero B so gradients reach A as well.
    let mut rng = Rng::new(4);
    let mut values =
        pollster::block_on(crate::gpu::read_buffer_f32(gpu, &lora.params, 0, lora.n)).unwrap();
    for s in &lora.slots {
        let b = s.b_off as usize..s.b_off as usize + 4 * s.out_features as usize;
        values[b]
            .iter_mut()
            .for_each(|x| *x = rng.uniform(-0.2, 0.2));
    }
    lora.params.write(gpu, 0, &values);
    let (ids, targets) = batch(&mut rng, 2, 9, 256);
    let mut trainer = Trainer::new(&model, lora);
    // A step with lr 0 computes gradients without moving the parameters.
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
    pollster::block_on(trainer.train_step(gpu, &[batch], 2, zero)).unwrap();
    let grads = pollster::block_on(crate::gpu::read_buffer_f32(
        gpu,
        &trainer.lora.grads,
        0,
        trainer.lora.n,
    ))
    .unwrap();
    let loss_at = |trainer: &mut Trainer, values: &[f32]| -> f64 {
        trainer.lora.params.write(gpu, 0, values);
        pollster::block_on(trainer.evaluate(
            gpu,
            MicroBatch {
                ids: &ids,
                targets: &targets,
            },
            2,
        ))
        .unwrap()
        .loss
    };
    // Check parameters of A and of B in every module of both layers (B in each projection of
    // a fused module).
    let h = 1e-2f32;
    let mut checked = 0;
    for s in trainer.lora.slots.clone() {
        let b_rows = s.module.parts().iter().map(|&p| {
            let row0 = model.config.projection_rows(p).1.start;
            s.b_off + (row0 * 4) as u32 + 3
        });
        for off in std::iter::once(s.a_off + 5).chain(b_rows) {
            let i = off as usize;
            let mut p = values.clone();
            p[i] += h;
            let up = loss_at(&mut trainer, &p);
            p[i] -= 2.0 * h;
            let down = loss_at(&mut trainer, &p);
            let fd = (up - down) / (2.0 * h as f64);
            let g = grads[i] as f64;
            let tol = 2e-4 + 0.05 * fd.abs().max(g.abs());
            assert!(
                (fd - g).abs() <= tol,
                "{} {:?} layer {} param {i}: grad {g}, finite differences {fd}",
                spec.label(),
                s.module,
                s.layer
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * (model.config.arch.modules().len() + 7));
}

#[test]
fn training_lowers_the_loss_on_a_repeated_batch() {
    let gpu = gpu();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_1] {
        let model = tiny_model(ty);
        let config = LoraConfig::new(8, 16.0, model.config.arch.modules());
        let lora = GpuLora::init(gpu, &model.config, &config, 5).unwrap();
        let mut trainer = Trainer::new(&model, lora);
        let mut rng = Rng::new(6);
        let (ids, targets) = batch(&mut rng, 2, 16, 256);
        let options = StepOptions {
            adamw: AdamW {
                lr: 1e-2,
                ..AdamW::default()
            },
            max_grad_norm: 1.0,
        };
        let losses: Vec<f64> = (0..12)
            .map(|_| {
                pollster::block_on(trainer.train_step(
                    gpu,
                    &[MicroBatch {
                        ids: &ids,
                        targets: &targets,
                    }],
                    2,
                    options,
                ))
                .unwrap()
                .loss
            })
            .collect();
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(
            losses[11] < losses[0] * 0.8,
            "{ty:?}: loss did not fall: {losses:?}"
        );
        assert_eq!(trainer.step, 12);
    }
}

#[test]
fn gradient_accumulation_equals_one_big_batch() {
    // Two micro-batches of one sequence give the step that one batch of both sequences gives.
    let gpu = gpu();
    let model = tiny_model(GgmlType::Q8_0);
    let config = LoraConfig::new(4, 8.0, &[Module::QProj, Module::VProj, Module::DownProj]);
    let mut rng = Rng::new(8);
    let (ids, targets) = batch(&mut rng, 2, 12, 256);
    let options = StepOptions {
        adamw: AdamW {
            lr: 1e-2,
            ..AdamW::default()
        },
        max_grad_norm: 1.0,
    };
    let run = |micro: bool| -> Vec<f32> {
        let lora = GpuLora::init(gpu, &model.config, &config, 9).unwrap();
        let mut trainer = Trainer::new(&model, lora);
        for _ in 0..3 {
            let stats = if micro {
                let halves = [
                    MicroBatch {
                        ids: &ids[..12],
                        targets: &targets[..12],
                    },
                    MicroBatch {
                        ids: &ids[12..],
                        targets: &targets[12..],
                    },
                ];
                pollster::block_on(trainer.train_step(gpu, &halves, 1, options)).unwrap()
            } else {
                let whole = MicroBatch {
                    ids: &ids,
                    targets: &targets,
                };
                pollster::block_on(trainer.train_step(gpu, &[whole], 2, options)).unwrap()
            };
            assert!(stats.loss.is_finite());
        }
        pollster::block_on(crate::gpu::read_buffer_f32(
            gpu,
            &trainer.lora.params,
            0,
            trainer.lora.n,
        ))
        .unwrap()
    };
    let (a, b) = (run(true), run(false));
    crate::kernels::testing::assert_close("params after 3 steps", &a, &b, 1e-5, 1e-3);
}

#[test]
fn lora_gradients_with_dropout_match_finite_differences() {
    // With dropout the loss depends on the mask; a step with lr 0 at step 0 always draws the
    // same mask, so the training loss itself can be differentiated numerically.
    let gpu = gpu();
    let model = tiny_model(GgmlType::F32);
    let mut config = LoraConfig::new(4, 8.0, &[Module::QProj, Module::OProj, Module::DownProj]);
    config.dropout = 0.3;
    let lora = GpuLora::init(gpu, &model.config, &config, 3).unwrap();
    let mut rng = Rng::new(14);
    let mut values =
        pollster::block_on(crate::gpu::read_buffer_f32(gpu, &lora.params, 0, lora.n)).unwrap();
    for s in &lora.slots {
        let b = s.b_off as usize..s.b_off as usize + 4 * s.out_features as usize;
        values[b]
            .iter_mut()
            .for_each(|x| *x = rng.uniform(-0.2, 0.2));
    }
    lora.params.write(gpu, 0, &values);
    let (ids, targets) = batch(&mut rng, 2, 9, 256);
    let mut trainer = Trainer::new(&model, lora);
    trainer.seed = 77;
    let zero = StepOptions {
        adamw: AdamW {
            lr: 0.0,
            ..AdamW::default()
        },
        max_grad_norm: 0.0,
    };
    let loss_at = |trainer: &mut Trainer, values: &[f32]| -> (f64, Vec<f32>) {
        trainer.lora.params.write(gpu, 0, values);
        trainer.step = 0;
        let batch = MicroBatch {
            ids: &ids,
            targets: &targets,
        };
        let loss = pollster::block_on(trainer.train_step(gpu, &[batch], 2, zero))
            .unwrap()
            .loss;
        let grads = pollster::block_on(crate::gpu::read_buffer_f32(
            gpu,
            &trainer.lora.grads,
            0,
            trainer.lora.n,
        ))
        .unwrap();
        (loss, grads)
    };
    let (_, grads) = loss_at(&mut trainer, &values);
    let h = 1e-2f32;
    for s in trainer.lora.slots.clone() {
        for off in [s.a_off + 5, s.b_off + 3] {
            let i = off as usize;
            let mut p = values.clone();
            p[i] += h;
            let up = loss_at(&mut trainer, &p).0;
            p[i] -= 2.0 * h;
            let down = loss_at(&mut trainer, &p).0;
            let fd = (up - down) / (2.0 * h as f64);
            let g = grads[i] as f64;
            let tol = 2e-4 + 0.05 * fd.abs().max(g.abs());
            assert!(
                (fd - g).abs() <= tol,
                "{:?} layer {} param {i}: grad {g}, finite differences {fd}",
                s.module,
                s.layer
            );
        }
    }
    // And dropout changes the loss (the mask is really applied).
    let no_drop = pollster::block_on(trainer.evaluate(
        gpu,
        MicroBatch {
            ids: &ids,
            targets: &targets,
        },
        2,
    ))
    .unwrap()
    .loss;
    assert!((no_drop - loss_at(&mut trainer, &values).0).abs() > 1e-6);
}

#[test]
fn a_merged_adapter_scores_what_the_trainer_measured() {
    // Train a little, read the adapter back, merge it into the weights: scoring a sequence
    // gives the NLL the trainer's own forward (quantized W plus the LoRA path) gives.
    let gpu = gpu();
    let spec = TinySpec {
        weight_type: GgmlType::Q4_1,
        ..TinySpec::default()
    };
    let bytes = make_tiny_gguf(&spec, None).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::load(gpu, &gguf, &bytes).unwrap();
    let config = LoraConfig::new(8, 16.0, model.config.arch.modules());
    let lora = GpuLora::init(gpu, &model.config, &config, 11).unwrap();
    let mut trainer = Trainer::new(&model, lora);
    let mut rng = Rng::new(12);
    let (ids, targets) = batch(&mut rng, 1, 20, 256);
    let options = StepOptions {
        adamw: AdamW {
            lr: 2e-2,
            ..AdamW::default()
        },
        max_grad_norm: 1.0,
    };
    for _ in 0..5 {
        pollster::block_on(trainer.train_step(
            gpu,
            &[MicroBatch {
                ids: &ids,
                targets: &targets,
            }],
            1,
            options,
        ))
        .unwrap();
    }
    let all: Vec<u32> = (0..20)
        .map(|i| if i + 1 < 20 { ids[i + 1] } else { u32::MAX })
        .collect();
    let trained = pollster::block_on(trainer.evaluate(
        gpu,
        MicroBatch {
            ids: &ids,
            targets: &all,
        },
        1,
    ))
    .unwrap();
    let adapter = pollster::block_on(trainer.lora.download(gpu)).unwrap();
    let base = pollster::block_on(model.score(gpu, &ids)).unwrap();
    let merged = Model::load_with_adapter(gpu, &gguf, &bytes, Some(&adapter)).unwrap();
    let score = pollster::block_on(merged.score(gpu, &ids)).unwrap();
    assert!(
        (score.nll - trained.loss).abs() < 1e-4 * trained.loss,
        "merged {} vs trainer {}",
        score.nll,
        trained.loss
    );
    assert!(
        (base.nll - score.nll).abs() > 1e-3,
        "training changed nothing"
    );
}

/// `steps` losses of the GPU trainer and of the CPU reference (dequantized weights, the kernels'
/// CPU references, AdamW on the host) on the tiny model of `spec`, side by side (2×8 batches).
fn gpu_and_cpu_loss_curves(spec: &TinySpec, steps: u32) -> Vec<(f64, f64)> {
    gpu_and_cpu_loss_curves_of(spec, steps, (2, 8))
}

/// [`gpu_and_cpu_loss_curves`] on batches of `b` sequences of `t` tokens.
fn gpu_and_cpu_loss_curves_of(
    spec: &TinySpec,
    steps: u32,
    (b, t): (usize, usize),
) -> Vec<(f64, f64)> {
    use super::reference::{RefLora, RefModel, step};
    let gpu = gpu();
    let bytes = make_tiny_gguf(spec, None).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::load(gpu, &gguf, &bytes).unwrap();
    let reference = RefModel::load(&gguf, &bytes);
    let config = LoraConfig::new(4, 8.0, model.config.arch.modules());
    let lora = GpuLora::init(gpu, &model.config, &config, 21).unwrap();
    let mut ref_lora = RefLora::from_adapter(&pollster::block_on(lora.download(gpu)).unwrap());
    let mut trainer = Trainer::new(&model, lora);
    let mut rng = Rng::new(22);
    let (ids, targets) = batch(&mut rng, b, t, spec.vocab_size as u32);
    let opt = AdamW {
        lr: 1e-2,
        weight_decay: 0.01,
        ..AdamW::default()
    };
    let options = StepOptions {
        adamw: opt,
        max_grad_norm: 1.0,
    };
    let mut curve = Vec::new();
    for s in 1..=steps {
        let gpu_loss = pollster::block_on(trainer.train_step(
            gpu,
            &[MicroBatch {
                ids: &ids,
                targets: &targets,
            }],
            b,
            options,
        ))
        .unwrap()
        .loss;
        let cpu_loss = step(&reference, &mut ref_lora, &ids, &targets, b, opt, s, 1.0);
        curve.push((gpu_loss, cpu_loss));
    }
    for (i, (g, c)) in curve.iter().enumerate() {
        assert!(
            (g - c).abs() <= 1e-3 * c.abs(),
            "{} {}: step {}: GPU {g} vs CPU {c}\n{curve:?}",
            spec.label(),
            spec.weight_type,
            i + 1
        );
    }
    curve
}

#[test]
fn a_ten_step_loss_curve_equals_the_cpu_reference_trainer() {
    // The GPU trainer and the CPU reference follow the same loss curve over 10 steps on a tiny
    // Q8_0 Llama.
    let spec = TinySpec {
        weight_type: GgmlType::Q8_0,
        ..TinySpec::default()
    };
    let curve = gpu_and_cpu_loss_curves(&spec, 10);
    assert!(curve[9].1 < curve[0].1, "the loss fell: {curve:?}");
}

#[test]
fn long_sequences_train_like_the_cpu_reference() {
    // One sequence of 2048 and of 4096 tokens (the long sequences people train on): the flash
    // attention's key chunks, its backward and every saved tensor at that length, two steps of
    // a one-layer tiny Llama and of Gemma 3's block (local and global layers, its window far
    // shorter than the sequence) against the CPU reference. (Their memory: tests/cli.rs.)
    let gemma = TinySpec::block_variants()
        .into_iter()
        .find(|s| s.arch.name == "gemma3")
        .unwrap();
    for (spec, t) in [
        (TinySpec::default(), 2048),
        (TinySpec::default(), 4096),
        (gemma, 2048),
    ] {
        let spec = TinySpec {
            n_layer: spec.n_layer.min(2),
            context_length: t,
            ..spec
        };
        let curve = gpu_and_cpu_loss_curves_of(&spec, 2, (1, t));
        assert!(curve[1].0 < curve[0].0, "T {t}: {curve:?}");
    }
}

#[test]
fn every_architecture_trains_like_the_cpu_reference() {
    // The CPU reference reads the same architecture description (rope style, biases) and
    // implements it independently of the GPU block.
    for spec in TinySpec::block_variants() {
        gpu_and_cpu_loss_curves(&spec, 3);
    }
}

#[test]
fn every_weight_format_trains_like_the_cpu_reference() {
    // A tiny Llama with its projections in each GPU weight format (C and FF 256, so k-quant rows
    // hold whole super-blocks), loaded as a GGUF: the GPU trainer's first two losses equal the
    // CPU reference's, which reads the same blocks through the CPU decoders.
    for ty in TinySpec::weight_types() {
        let spec = TinySpec {
            n_embd: 256,
            n_ff: 256,
            weight_type: ty,
            ..TinySpec::default()
        };
        gpu_and_cpu_loss_curves(&spec, 2);
    }
}

#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    // Every block variant, LoRA dropout on (the recomputed forward must draw the same masks),
    // two micro-batches of gradient accumulation: the loss and every LoRA gradient with
    // checkpointing equal those without, to 1e-6 relative (the same kernels on the same inputs).
    let gpu = gpu();
    for spec in TinySpec::block_variants() {
        let model = tiny_model_of(&spec, GgmlType::Q8_0);
        let mut config = LoraConfig::new(4, 8.0, model.config.arch.modules());
        config.dropout = 0.2;
        let lora = GpuLora::init(gpu, &model.config, &config, 5).unwrap();
        let mut rng = Rng::new(6);
        let mut values =
            pollster::block_on(crate::gpu::read_buffer_f32(gpu, &lora.params, 0, lora.n)).unwrap();
        values.iter_mut().for_each(|x| *x += rng.uniform(-0.1, 0.1));
        lora.params.write(gpu, 0, &values);
        let (ids, targets) = batch(&mut rng, 4, 9, 256);
        let micro = [
            MicroBatch {
                ids: &ids[..18],
                targets: &targets[..18],
            },
            MicroBatch {
                ids: &ids[18..],
                targets: &targets[18..],
            },
        ];
        let zero = StepOptions {
            adamw: AdamW {
                lr: 0.0,
                ..AdamW::default()
            },
            max_grad_norm: 0.0,
        };
        let mut trainer = Trainer::new(&model, lora);
        trainer.seed = 77;
        let run = |trainer: &mut Trainer, checkpointing: bool, bf16_stream: bool| {
            trainer.set_memory_savings(MemorySavings {
                checkpointing,
                bf16_stream,
            });
            let stats = pollster::block_on(trainer.train_step(gpu, &micro, 2, zero)).unwrap();
            trainer.step = 0; // the same dropout masks for both runs
            let grads = pollster::block_on(crate::gpu::read_buffer_f32(
                gpu,
                &trainer.lora.grads,
                0,
                trainer.lora.n,
            ))
            .unwrap();
            (stats, grads)
        };
        let (plain, plain_grads) = run(&mut trainer, false, false);
        let (ckpt, ckpt_grads) = run(&mut trainer, true, false);
        assert!(trainer.memory_savings().checkpointing);
        assert_eq!(plain.loss, ckpt.loss, "{}", spec.label());
        // With the bf16 stream, checkpointing restores exactly the rounded inputs the forward
        // pass ran from: the same bits again.
        let (half, half_grads) = run(&mut trainer, false, true);
        let (half_ckpt, half_ckpt_grads) = run(&mut trainer, true, true);
        assert_eq!(half.loss, half_ckpt.loss, "{} bf16 stream", spec.label());
        assert_eq!(half_grads, half_ckpt_grads, "{} bf16 stream", spec.label());
        assert_ne!(
            half.loss,
            plain.loss,
            "{}: the stream was rounded",
            spec.label()
        );
        let big = plain_grads.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        assert!(big > 0.0);
        crate::kernels::testing::assert_close(
            &format!("{} gradients with checkpointing", spec.label()),
            &ckpt_grads,
            &plain_grads,
            1e-6 * big,
            1e-6,
        );
    }
}

#[test]
fn the_bf16_stream_follows_the_f32_loss_curve() {
    // Ten AdamW steps (lr 1e-2) from the same LoRA init on every block variant, the residual
    // stream kept as f32 and as bf16 (with checkpointing, as a run that needs it goes): the
    // losses stay within BF16_STREAM_LOSS_TOL of each other, relative. bf16 keeps 8 significant
    // bits (relative rounding ≤ 2⁻⁹ ≈ 2e-3 per value) at each of the L + 1 layer boundaries;
    // the loss averages those errors over every position.
    const BF16_STREAM_LOSS_TOL: f64 = 5e-3;
    let gpu = gpu();
    for spec in TinySpec::block_variants() {
        let model = tiny_model_of(&spec, GgmlType::Q8_0);
        let config = LoraConfig::new(4, 8.0, model.config.arch.modules());
        let mut rng = Rng::new(23);
        let (ids, targets) = batch(&mut rng, 2, 16, 256);
        let options = StepOptions {
            adamw: AdamW {
                lr: 1e-2,
                weight_decay: 0.01,
                ..AdamW::default()
            },
            max_grad_norm: 1.0,
        };
        let curve = |bf16_stream: bool| -> Vec<f64> {
            let lora = GpuLora::init(gpu, &model.config, &config, 21).unwrap();
            let mut trainer = Trainer::new(&model, lora);
            trainer.set_memory_savings(MemorySavings {
                checkpointing: bf16_stream,
                bf16_stream,
            });
            (0..10)
                .map(|_| {
                    let batch = MicroBatch {
                        ids: &ids,
                        targets: &targets,
                    };
                    pollster::block_on(trainer.train_step(gpu, &[batch], 2, options))
                        .unwrap()
                        .loss
                })
                .collect()
        };
        let (f32_curve, bf16_curve) = (curve(false), curve(true));
        let worst = f32_curve
            .iter()
            .zip(&bf16_curve)
            .map(|(a, b)| ((a - b) / a).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{}: bf16 stream, largest relative loss difference {worst:.2e}",
            spec.label()
        );
        assert!(
            worst <= BF16_STREAM_LOSS_TOL,
            "{}: {worst:.2e}\nf32  {f32_curve:?}\nbf16 {bf16_curve:?}",
            spec.label()
        );
        assert!(
            bf16_curve[9] < bf16_curve[0],
            "{}: the loss fell",
            spec.label()
        );
    }
}
