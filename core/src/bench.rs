//! The kernel benchmark suite: every kernel family at the real model's shapes (and a larger
//! reference shape), timed with GPU timestamps where the device has them and a caller's clock
//! otherwise, reported as GB/s or GFLOP/s beside the device's peak when known. One suite for
//! `afinador bench kernels` and the browser's `bench.html`, so `afinador bench compare` pairs
//! their rows; the callers only print (a terminal table, JSON, a page).

use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, GpuBuffer, Recorder, Result, read_buffer_f32};
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

/// A clock in seconds from any fixed origin: the core has none of its own (`Instant` natively,
/// `performance.now()` in a browser).
pub type Clock = fn() -> f64;

/// Which builds to time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pick {
    pub portable: bool,
    pub matmul: Option<MatmulVariant>,
}

/// A recorder that runs `pick`'s builds.
pub fn recorder(gpu: &Gpu, pick: Pick) -> Recorder<'_> {
    let rec = if pick.portable {
        Recorder::portable(gpu)
    } else {
        Recorder::new(gpu)
    };
    match pick.matmul {
        Some(v) => rec.with_matmul(v),
        None => rec,
    }
}

/// Known peaks, matched on the adapter name: FP32 GFLOP/s, 16-bit tensor-core GFLOP/s (what
/// the cooperative-matrix matmul is measured against) and GB/s. H100: FP32, BF16 and HBM as
/// measured with cuBLAS/PyTorch on the lent H100 (../shared/FACTS.md); H200: the same chip.
pub const KNOWN_PEAKS: [(&str, f64, f64, f64); 2] = [
    ("H100", 51_600.0, 790_000.0, 3_000.0),
    ("H200", 51_600.0, 790_000.0, 4_000.0),
];

/// One measured case, as `bench kernels --json` writes it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Row {
    pub kernel: String,
    pub shape: String,
    pub variant: String,
    pub time_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    pub peak_pct: Option<f64>,
}

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
    bufs: Vec<GpuBuffer>,
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

/// One submission of `iters` dispatches: (seconds, whether GPU timestamps measured it).
async fn submit_once(
    gpu: &Gpu,
    pick: Pick,
    case: &Case,
    inputs: &Inputs,
    iters: usize,
    clock: Clock,
) -> Result<(f64, bool)> {
    let mut rec = recorder(gpu, pick);
    for _ in 0..iters {
        case.record(&mut rec, inputs).await?;
    }
    let start = clock();
    let gpu_time = rec.submit_timed().await?;
    // Wait for completion with a tiny readback, so wall-clock times are complete too.
    read_buffer_f32(gpu, &inputs.bufs[0], 0, 1).await?;
    let wall = clock() - start;
    // Browsers quantize timestamps (Chrome to 100 µs unless its developer features are on): a
    // batch that reads as zero is timed by the clock instead.
    match gpu_time.filter(|&t| t > 0.0) {
        Some(t) => Ok((t, true)),
        None => Ok((wall.max(1e-9), false)),
    }
}

/// Seconds per dispatch: a warm-up submission of one dispatch sizes the batches (about
/// `target_s` each, at most 100 dispatches), then the median of `repeats` timed batches.
/// Also whether every batch was timed with GPU timestamps.
pub async fn time_case(
    gpu: &Gpu,
    pick: Pick,
    case: &Case,
    inputs: &Inputs,
    (target_s, repeats): (f64, usize),
    clock: Clock,
) -> Result<(f64, bool)> {
    let (first, _) = submit_once(gpu, pick, case, inputs, 1, clock).await?;
    let iters = ((target_s / first.max(1e-9)) as usize).clamp(1, 100);
    let repeats = if first > 2.0 { 1 } else { repeats };
    let mut times = Vec::new();
    let mut used_timestamps = true;
    for _ in 0..repeats {
        let (secs, timestamps) = submit_once(gpu, pick, case, inputs, iters, clock).await?;
        used_timestamps &= timestamps;
        times.push(secs / iters as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], used_timestamps))
}

/// Batches of about this many seconds, the median of this many: `--quick`, then the full suite.
pub const QUICK_TIMING: (f64, usize) = (0.005, 2);
pub const FULL_TIMING: (f64, usize) = (0.05, 5);

/// The device's peaks, for the "% of peak" column: FP32 GFLOP/s, 16-bit tensor-core GFLOP/s
/// (what the cooperative-matrix matmul is measured against) and GB/s.
#[derive(Clone, Copy, Debug, Default)]
pub struct Peaks {
    pub gflops: Option<f64>,
    pub tensor_gflops: Option<f64>,
    pub gbps: Option<f64>,
}

impl Peaks {
    /// The built-in table's entry for an adapter of this name, if any.
    pub fn known(adapter_name: &str) -> Peaks {
        match KNOWN_PEAKS.iter().find(|(n, ..)| adapter_name.contains(n)) {
            Some(&(_, gflops, tensor, gbps)) => Peaks {
                gflops: Some(gflops),
                tensor_gflops: Some(tensor),
                gbps: Some(gbps),
            },
            None => Peaks::default(),
        }
    }
}

/// A run of the suite, one case at a time (a page shows each row as it comes).
pub struct KernelBench {
    cases: Vec<Case>,
    next: usize,
    pick: Pick,
    peaks: Peaks,
    timing: (f64, usize),
    clock: Clock,
    rng: Rng,
    rows: Vec<Row>,
    skipped: Vec<String>,
    wall_clock: bool,
}

impl KernelBench {
    /// The suite (`quick`: small shapes, short batches), only the cases whose "kernel shape"
    /// contains `filter` when given.
    pub fn new(quick: bool, filter: Option<&str>, pick: Pick, peaks: Peaks, clock: Clock) -> Self {
        let cases = cases(quick)
            .into_iter()
            .filter(|c| filter.is_none_or(|f| format!("{} {}", c.kernel(), c.shape()).contains(f)))
            .collect();
        KernelBench {
            cases,
            next: 0,
            pick,
            peaks,
            timing: if quick { QUICK_TIMING } else { FULL_TIMING },
            clock,
            rng: Rng::new(1),
            rows: Vec::new(),
            skipped: Vec::new(),
            wall_clock: false,
        }
    }

    /// The cases in the run, measured or not.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// No case matched the filter.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Every case's "kernel shape", in the order they run.
    pub fn names(&self) -> Vec<String> {
        self.cases
            .iter()
            .map(|c| format!("{} {}", c.kernel(), c.shape()))
            .collect()
    }

    /// The next case's "kernel shape", before it runs.
    pub fn upcoming(&self) -> Option<String> {
        let c = self.cases.get(self.next)?;
        Some(format!("{} {}", c.kernel(), c.shape()))
    }

    /// Run the next case: its row, or `None` when it was skipped (the device lacks what it
    /// needs; see [`KernelBench::skipped`]) — `Ok(None)` also once every case has run
    /// ([`KernelBench::upcoming`] is then `None`).
    pub async fn next(&mut self, gpu: &Gpu) -> Result<Option<Row>> {
        let Some(case) = self.cases.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let kernel = case.kernel();
        if matches!(case, Case::MatmulF16 { .. }) && !gpu.has_f16() {
            let shape = case.shape();
            self.skipped
                .push(format!("{kernel} {shape}: the adapter has no SHADER_F16"));
            return Ok(None);
        }
        let variant = case.variant(&recorder(gpu, self.pick));
        let inputs = case.inputs(gpu, &mut self.rng)?;
        let (secs, timestamps) =
            time_case(gpu, self.pick, case, &inputs, self.timing, self.clock).await?;
        self.wall_clock |= !timestamps;
        let (flops, bytes) = case.work(&inputs);
        let (gflops, gbps, peak_pct) = if case.memory_bound() {
            let gbps = bytes / secs / 1e9;
            (None, Some(gbps), self.peaks.gbps.map(|p| 100.0 * gbps / p))
        } else {
            let gflops = flops / secs / 1e9;
            let peak = match variant.as_str() {
                "coop" => self.peaks.tensor_gflops,
                _ => self.peaks.gflops,
            };
            (Some(gflops), None, peak.map(|p| 100.0 * gflops / p))
        };
        let row = Row {
            kernel,
            shape: case.shape(),
            variant,
            time_us: secs * 1e6,
            gflops,
            gbps,
            peak_pct,
        };
        self.rows.push(row.clone());
        Ok(Some(row))
    }

    /// "gpu timestamps" when every batch was timed by the GPU, "wall clock" otherwise.
    pub fn timer(&self) -> &'static str {
        match self.wall_clock {
            false => "gpu timestamps",
            true => "wall clock",
        }
    }

    /// The rows so far.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The cases skipped, with why.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The `bench kernels --json` document: `adapter`, `timer`, `results`, `skipped`.
    pub fn report(&self, gpu: &Gpu) -> serde_json::Value {
        serde_json::json!({
            "adapter": gpu.adapter, "timer": self.timer(), "results": self.rows,
            "skipped": self.skipped,
        })
    }
}
