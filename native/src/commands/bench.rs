//! `afinador bench kernels`: the core's kernel suite ([`afinador_core::bench`]: every kernel
//! family at the real model's shapes and a larger reference shape) printed as a table or JSON,
//! GB/s or GFLOP/s beside the device's peak when known. The browser's `bench.html` runs the same
//! suite.

use std::sync::OnceLock;
use std::time::Instant;

use afinador_core::bench::{KernelBench, Peaks, Pick};
use anyhow::{Result, bail};

use crate::common::{GpuArgs, parse_matmul, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Time each kernel family at SmolLM2-135M shapes and at C 4096.
    Kernels(KernelArgs),
    /// Training throughput (tokens/s) and GPU memory of QLoRA steps.
    Train(super::bench_train::Args),
    /// Prefill and decode tokens/s of greedy generation (the real model or a --like shape).
    Decode(super::bench_decode::Args),
    /// Two `bench kernels --json` runs side by side, with B's rate over A's.
    Compare(super::bench_compare::Args),
    /// Time every tested matmul build on this adapter at training shapes and remember the
    /// fastest for it: every later command on this adapter runs it.
    Tune(super::bench_tune::Args),
}

#[derive(clap::Args, Debug)]
struct KernelArgs {
    #[command(flatten)]
    gpu: GpuArgs,
    /// Small shapes and few repeats (for CI).
    #[arg(long)]
    quick: bool,
    /// Only the cases whose "kernel shape" contains this (e.g. `matmul`, `matmul_f32 M512`).
    #[arg(long)]
    filter: Option<String>,
    /// The device's peak FP32 GFLOP/s (for % of peak), when it is not in the built-in table.
    #[arg(long)]
    peak_gflops: Option<f64>,
    /// The device's peak 16-bit tensor-core GFLOP/s (for the cooperative-matrix matmul).
    #[arg(long)]
    peak_tensor_gflops: Option<f64>,
    /// The device's peak memory bandwidth in GB/s.
    #[arg(long)]
    peak_gbps: Option<f64>,
    /// Time only the portable kernel variants (the ones every WebGPU device runs).
    #[arg(long)]
    portable: bool,
    /// Run the matmuls as `direct`, `coop` (cooperative matrices: f16 inputs, on devices that
    /// have them) or `tiled:TM,TN,WX,WY,BK` instead of the device's choice (TM×TN outputs per
    /// thread, WX×WY threads, K step BK), to tune the per-vendor table in
    /// core/src/kernels/matmul.rs. Example: `tiled:8,8,16,16,8`.
    #[arg(long, value_name = "direct|coop|tiled:TM,TN,WX,WY,BK")]
    matmul: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    match args.what {
        What::Kernels(k) => kernels(k),
        What::Train(t) => super::bench_train::run(t),
        What::Decode(d) => super::bench_decode::run(d),
        What::Compare(c) => super::bench_compare::run(c),
        What::Tune(t) => super::bench_tune::run(t),
    }
}

/// Seconds since the first call: the suite's clock.
pub(super) fn clock() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn kernels(args: KernelArgs) -> Result<()> {
    let pick = Pick {
        portable: args.portable,
        matmul: args.matmul.as_deref().map(parse_matmul).transpose()?,
    };
    let gpu = args.gpu.open()?;
    let known = Peaks::known(&gpu.adapter.name);
    let peaks = Peaks {
        gflops: args.peak_gflops.or(known.gflops),
        tensor_gflops: args.peak_tensor_gflops.or(known.tensor_gflops),
        gbps: args.peak_gbps.or(known.gbps),
    };
    let mut bench = KernelBench::new(args.quick, args.filter.as_deref(), pick, peaks, clock);
    while bench.upcoming().is_some() {
        pollster::block_on(bench.next(&gpu))?;
    }
    let (rows, skipped, timer) = (bench.rows(), bench.skipped(), bench.timer());
    if rows.is_empty() {
        bail!(
            "no kernel matches --filter {:?}",
            args.filter.unwrap_or_default()
        );
    }
    if args.json {
        return print_json(&bench.report(&gpu));
    }
    println!(
        "{} ({}, {}), timed with {timer}",
        gpu.adapter.name, gpu.adapter.backend, gpu.adapter.vendor
    );
    println!(
        "{:<14} {:<22} {:<20} {:>12} {:>14} {:>8}",
        "kernel", "shape", "variant", "time (µs)", "rate", "% peak"
    );
    for r in rows {
        let rate = match (r.gflops, r.gbps) {
            (Some(f), _) => format!("{f:.2} GFLOP/s"),
            (_, Some(b)) => format!("{b:.2} GB/s"),
            _ => "-".into(),
        };
        let peak = r.peak_pct.map_or("-".into(), |p| format!("{p:.1}"));
        println!(
            "{:<14} {:<22} {:<20} {:>12.1} {:>14} {:>8}",
            r.kernel, r.shape, r.variant, r.time_us, rate, peak
        );
    }
    for s in skipped {
        println!("skipped {s}");
    }
    Ok(())
}
