//! The kernel benchmark suite: every kernel family at the real model's shapes (and a larger
//! reference shape), timed with GPU timestamps where the device has them and a caller's clock
//! otherwise, reported as GB/s or GFLOP/s beside the device's peak when known. One suite for
//! `afinador bench kernels` and the browser's `bench.html`, so `afinador bench compare` pairs
//! their rows; the callers only print (a terminal table, JSON, a page).

mod cases;

use serde::{Deserialize, Serialize};

pub use cases::{Case, Inputs, cases};

use crate::gpu::{Gpu, Recorder, Result, read_buffer_f32};
use crate::kernels::matmul::MatmulVariant;
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
