//! The suite's cases: each kernel family at SmolLM2-135M's shapes (and larger reference shapes
//! in the full suite), the buffers each runs on, what it moves or computes per dispatch.

use crate::gpu::{Gpu, GpuBuffer, Recorder, Result};
use crate::kernels::attention::{
    AttentionSaved, AttentionShape, attention, attention_backward, backward_variants,
    forward_variant,
};
use crate::kernels::gemv::{GemvVariant, gemv};
use crate::kernels::logits::{cross_entropy_grad, logit_stats};
use crate::kernels::matmul::{
    MatView, MatmulVariant, matmul, matmul_f16, matmul_weight, upload_f16,
};
use crate::kernels::optim::{AdamW, NORM_PARTIALS, adamw_step, grad_norm};
use crate::kernels::rmsnorm::rmsnorm;
use crate::kernels::{GpuWeight, WeightFormat};
use crate::util::Rng;

/// One benchmark case: what it runs and what it moves or computes per dispatch.
pub enum Case {
    Gemv {
        format: WeightFormat,
        n: usize,
        k: usize,
    },
    MatmulWeight {
        format: WeightFormat,
        m: usize,
        n: usize,
        k: usize,
    },
    MatmulF32 {
        m: usize,
        n: usize,
        k: usize,
    },
    /// f16 inputs, f32 sums and output (tensor cores where the device has them).
    MatmulF16 {
        m: usize,
        n: usize,
        k: usize,
    },
    Attention {
        t: usize,
    },
    AttentionBwd {
        t: usize,
    },
    /// Logit statistics, then the cross-entropy gradient in place (a training step's head).
    CrossEntropy {
        rows: usize,
        v: usize,
    },
    /// Global gradient norm, then AdamW over `n` parameters.
    AdamW {
        n: usize,
    },
    RmsNorm {
        rows: usize,
        c: usize,
    },
}

fn format_name(f: WeightFormat) -> String {
    f.name().to_ascii_lowercase()
}

/// K rounded up to whole blocks of `format` (576 → 768 for the k-quants' 256).
fn whole_blocks(format: WeightFormat, k: usize) -> usize {
    k.next_multiple_of(format.k_multiple())
}

/// The suite: `quick` for small shapes (CI, a browser tab).
pub fn cases(quick: bool) -> Vec<Case> {
    use WeightFormat::*;
    // Every quantized or 16-bit format the kernels read, at SmolLM2-135M's projection shapes.
    let formats: Vec<WeightFormat> = WeightFormat::ALL
        .iter()
        .copied()
        .filter(|&f| f != F32)
        .collect();
    let mut v = Vec::new();
    for &format in &formats {
        let mut shapes = vec![(1536, 576)];
        if !quick {
            shapes.extend([(576, 1536), (4096, 4096)]);
        }
        for (n, k) in shapes {
            let k = whole_blocks(format, k);
            v.push(Case::Gemv { format, n, k });
        }
    }
    let t = if quick { 64 } else { 512 };
    for &format in &formats {
        v.push(Case::MatmulWeight {
            format,
            m: t,
            n: 1536,
            k: whole_blocks(format, 576),
        });
    }
    if quick {
        v.push(Case::MatmulF32 {
            m: 128,
            n: 128,
            k: 128,
        });
        v.push(Case::MatmulF16 {
            m: 128,
            n: 128,
            k: 128,
        });
        v.push(Case::Attention { t: 64 });
        v.push(Case::AttentionBwd { t: 64 });
    } else {
        v.push(Case::MatmulWeight {
            format: Q4_1,
            m: 512,
            n: 4096,
            k: 4096,
        });
        for s in [512, 1024, 4096] {
            v.push(Case::MatmulF32 { m: s, n: s, k: s });
            v.push(Case::MatmulF16 { m: s, n: s, k: s });
        }
        for t in [256, 1024, 2048] {
            v.push(Case::Attention { t });
            v.push(Case::AttentionBwd { t });
        }
    }
    v.push(Case::CrossEntropy {
        rows: if quick { 16 } else { 512 },
        v: 49152,
    });
    // All-linear LoRA r 16 on SmolLM2-135M: 30 layers × 16 × 10,176 (in + out of 7 projections).
    v.push(Case::AdamW {
        n: if quick { 1 << 16 } else { 4_884_480 },
    });
    v.push(Case::RmsNorm { rows: t, c: 576 });
    v
}

/// Buffers a case runs on.
pub struct Inputs {
    w: Option<GpuWeight>,
    pub(super) bufs: Vec<GpuBuffer>,
}

fn random_weight(
    gpu: &Gpu,
    format: WeightFormat,
    n: usize,
    k: usize,
    rng: &mut Rng,
) -> Result<GpuWeight> {
    let raw = crate::kernels::random_blocks(format, n * k, rng);
    GpuWeight::upload(gpu, "bench weight", format, &raw, n, k)
}

fn buf(gpu: &Gpu, n: usize, rng: &mut Rng) -> Result<GpuBuffer> {
    GpuBuffer::from_slice(gpu, "bench", &rng.vec_uniform(n, -1.0, 1.0))
}

/// SmolLM2-135M's attention (9 query heads, 3 kv heads of 64) over a `t`-token prompt.
fn attention_shape(t: usize) -> AttentionShape {
    AttentionShape {
        b: 1,
        t: t as u32,
        nh: 9,
        kvh: 3,
        hs: 64,
        pos0: 0,
        s: t as u32,
        window: u32::MAX,
    }
}

impl Case {
    pub fn kernel(&self) -> String {
        match self {
            Case::Gemv { format, .. } => format!("gemv_{}", format_name(*format)),
            Case::MatmulWeight { format, .. } => format!("matmul_{}", format_name(*format)),
            Case::MatmulF32 { .. } => "matmul_f32".into(),
            Case::MatmulF16 { .. } => "matmul_f16".into(),
            Case::Attention { .. } => "attention_fwd".into(),
            Case::AttentionBwd { .. } => "attention_bwd".into(),
            Case::CrossEntropy { .. } => "cross_entropy".into(),
            Case::AdamW { .. } => "adamw".into(),
            Case::RmsNorm { .. } => "rmsnorm".into(),
        }
    }

    pub fn shape(&self) -> String {
        match self {
            Case::Gemv { n, k, .. } => format!("N{n} K{k}"),
            Case::MatmulWeight { m, n, k, .. }
            | Case::MatmulF32 { m, n, k }
            | Case::MatmulF16 { m, n, k } => format!("M{m} N{n} K{k}"),
            Case::Attention { t } | Case::AttentionBwd { t } => format!("T{t} NH9 KVH3 HS64"),
            Case::CrossEntropy { rows, v } => format!("R{rows} V{v}"),
            Case::AdamW { n } => format!("N{n}"),
            Case::RmsNorm { rows, c } => format!("R{rows} C{c}"),
        }
    }

    /// (flops, bytes) per dispatch; the figure reported is GB/s for memory-bound kernels.
    pub fn work(&self, inputs: &Inputs) -> (f64, f64) {
        match self {
            Case::Gemv { n, k, .. } => {
                let w = inputs.w.as_ref().map_or(0, GpuWeight::device_bytes) as f64;
                (2.0 * (*n * *k) as f64, w + 4.0 * (*n + *k) as f64)
            }
            Case::MatmulWeight { m, n, k, .. }
            | Case::MatmulF32 { m, n, k }
            | Case::MatmulF16 { m, n, k } => (2.0 * (*m * *n * *k) as f64, 0.0),
            Case::Attention { t } => {
                // causal: about half of the T² scores, QK and PV both, 9 heads of 64
                let t = *t as f64;
                (2.0 * 2.0 * 9.0 * 64.0 * t * (t + 1.0) / 2.0, 0.0)
            }
            Case::AttentionBwd { t } => {
                // QKᵀ recomputed, then dV = PᵀdO, dP = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q
                let t = *t as f64;
                (5.0 * 2.0 * 9.0 * 64.0 * t * (t + 1.0) / 2.0, 0.0)
            }
            // statistics read the logits; the gradient reads and writes them
            Case::CrossEntropy { rows, v } => (0.0, 12.0 * (*rows * *v) as f64),
            // the norm reads the gradient; AdamW reads 4 arrays and writes 3
            Case::AdamW { n } => (0.0, 32.0 * *n as f64),
            Case::RmsNorm { rows, c } => (0.0, 8.0 * (*rows * *c) as f64),
        }
    }

    /// The build the engine picks for this case on `gpu`.
    pub fn variant(&self, rec: &Recorder<'_>) -> String {
        let v = match self {
            Case::Gemv { .. } => format!("{:?}", GemvVariant::for_recorder(rec)),
            Case::MatmulWeight { .. } | Case::MatmulF32 { .. } => {
                MatmulVariant::for_recorder(rec).label()
            }
            Case::MatmulF16 { .. } => MatmulVariant::for_f16(rec).label(),
            Case::Attention { t } => format!("{:?}", forward_variant(rec, attention_shape(*t))),
            Case::AttentionBwd { t } => match backward_variants(rec, attention_shape(*t)) {
                (dq, dkv) if dq == dkv => format!("{dq:?}"),
                (dq, dkv) => format!("{dq:?} dq, {dkv:?} dkv"),
            },
            _ => "portable".into(),
        };
        v.to_lowercase()
    }

    /// Reported in GB/s rather than GFLOP/s.
    pub fn memory_bound(&self) -> bool {
        matches!(
            self,
            Case::Gemv { .. }
                | Case::RmsNorm { .. }
                | Case::CrossEntropy { .. }
                | Case::AdamW { .. }
        )
    }

    pub fn inputs(&self, gpu: &Gpu, rng: &mut Rng) -> Result<Inputs> {
        Ok(match *self {
            Case::Gemv { format, n, k } => Inputs {
                w: Some(random_weight(gpu, format, n, k, rng)?),
                bufs: vec![buf(gpu, k, rng)?, buf(gpu, n, rng)?],
            },
            Case::MatmulWeight { format, m, n, k } => Inputs {
                w: Some(random_weight(gpu, format, n, k, rng)?),
                bufs: vec![buf(gpu, m * k, rng)?, buf(gpu, m * n, rng)?],
            },
            Case::MatmulF32 { m, n, k } => Inputs {
                w: None,
                bufs: vec![
                    buf(gpu, m * k, rng)?,
                    buf(gpu, k * n, rng)?,
                    buf(gpu, m * n, rng)?,
                ],
            },
            Case::MatmulF16 { m, n, k } => {
                let mut half = |n: usize| upload_f16(gpu, "bench", &rng.vec_uniform(n, -1.0, 1.0));
                Inputs {
                    w: None,
                    bufs: vec![half(m * k)?, half(k * n)?, buf(gpu, m * n, rng)?],
                }
            }
            Case::Attention { t } => Inputs {
                w: None,
                bufs: vec![
                    buf(gpu, t * 576, rng)?,
                    buf(gpu, t * 192, rng)?,
                    buf(gpu, t * 192, rng)?,
                    buf(gpu, t * 576, rng)?,
                    buf(gpu, t * 9, rng)?,
                ],
            },
            Case::AttentionBwd { t } => {
                let (q, kv, heads) = (t * 576, t * 192, t * 9);
                Inputs {
                    w: None,
                    // q, k, v, o, lse, dout, delta, dq, dk, dv
                    bufs: [q, kv, kv, q, heads, q, heads, q, kv, kv]
                        .into_iter()
                        .map(|n| buf(gpu, n, rng))
                        .collect::<Result<_>>()?,
                }
            }
            Case::CrossEntropy { rows, v } => {
                let targets: Vec<u32> = (0..rows).map(|_| rng.below(v as u64) as u32).collect();
                Inputs {
                    w: None,
                    bufs: vec![
                        buf(gpu, rows * v, rng)?,
                        GpuBuffer::from_slice(gpu, "bench targets", &targets)?,
                        buf(gpu, rows * 4, rng)?,
                    ],
                }
            }
            Case::AdamW { n } => Inputs {
                w: None,
                // params, grads, m, v (the second moment must not be negative), partials, norm
                bufs: vec![
                    buf(gpu, n, rng)?,
                    buf(gpu, n, rng)?,
                    buf(gpu, n, rng)?,
                    GpuBuffer::zeroed(gpu, "bench v", (n * 4) as u64)?,
                    buf(gpu, NORM_PARTIALS as usize, rng)?,
                    buf(gpu, 4, rng)?,
                ],
            },
            Case::RmsNorm { rows, c } => Inputs {
                w: None,
                bufs: vec![
                    buf(gpu, rows * c, rng)?,
                    buf(gpu, c, rng)?,
                    buf(gpu, rows * c, rng)?,
                    buf(gpu, rows, rng)?,
                ],
            },
        })
    }

    /// Record one run of the case.
    pub async fn record(&self, rec: &mut Recorder<'_>, i: &Inputs) -> Result<()> {
        let b = &i.bufs;
        match *self {
            Case::Gemv { n, .. } => {
                gemv(
                    rec,
                    &b[0],
                    0,
                    i.w.as_ref().expect("weight"),
                    &b[1],
                    0,
                    n as u32,
                    1,
                    1.0,
                    false,
                )
                .await?
            }
            Case::MatmulWeight { m, n, .. } => {
                let w = i.w.as_ref().expect("weight");
                matmul_weight(rec, &b[0], 0, w, &b[1], 0, n as u32, m as u32, 1.0, false).await?
            }
            Case::MatmulF32 { m, n, k } | Case::MatmulF16 { m, n, k } => {
                let (m, n, k) = (m as u32, n as u32, k as u32);
                let (a, bb, c) = (
                    MatView::rows(&b[0], 0, k),
                    MatView::rows(&b[1], 0, n),
                    MatView::rows(&b[2], 0, n),
                );
                if matches!(self, Case::MatmulF16 { .. }) {
                    matmul_f16(rec, a, bb, c, (m, n, k), 1.0, false).await?
                } else {
                    matmul(rec, a, bb, c, (m, n, k), 1.0, false).await?
                }
            }
            Case::Attention { t } => {
                let shape = attention_shape(t);
                attention(rec, &b[0], &b[1], &b[2], &b[3], &b[4], shape).await?
            }
            Case::AttentionBwd { t } => {
                let shape = attention_shape(t);
                let saved = AttentionSaved {
                    q: &b[0],
                    k: &b[1],
                    v: &b[2],
                    o: &b[3],
                    lse: &b[4],
                    dout: &b[5],
                };
                attention_backward(rec, saved, &b[6], (&b[7], &b[8], &b[9]), shape).await?
            }
            Case::CrossEntropy { rows, v } => {
                let dims = (rows as u32, v as u32);
                logit_stats(rec, &b[0], &b[1], &b[2], dims, 0).await?;
                cross_entropy_grad(rec, &b[0], &b[1], &b[2], dims, 0, 1.0 / rows as f32).await?
            }
            Case::AdamW { n } => {
                grad_norm(rec, &b[1], n as u32, &b[4], &b[5], 1.0).await?;
                let (p, g, m, v, norm) = (&b[0], &b[1], &b[2], &b[3], &b[5]);
                adamw_step(rec, AdamW::default(), 1, p, g, m, v, norm, n as u32).await?
            }
            Case::RmsNorm { rows, c } => {
                rmsnorm(
                    rec,
                    &b[0],
                    &b[1],
                    &b[2],
                    &b[3],
                    (rows as u32, c as u32),
                    1e-5,
                )
                .await?
            }
        }
        Ok(())
    }
}
