//! `afinador bench tune`: time every tested matmul build (DIRECT and each tile preset of
//! `MatmulTiles::ALL`, all run against the CPU reference by the kernel tests) on this adapter
//! at training shapes, and remember the fastest for it in the user's cache. `GpuArgs::open`
//! reads it back, so every later command on this adapter (same name, backend and driver) runs
//! the winner. The cooperative-matrix build is not a candidate: it rounds f32 inputs to f16.

use std::path::PathBuf;

use afinador_core::gpu::Gpu;
use afinador_core::kernels::WeightFormat;
use afinador_core::kernels::matmul::{MatmulTiles, MatmulVariant};
use afinador_core::util::Rng;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::common::{GpuArgs, matmul_spec, parse_matmul, print_json};
use afinador_core::bench::{Case, Pick, time_case};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    gpu: GpuArgs,
    /// Small shapes and few repeats (for CI).
    #[arg(long)]
    quick: bool,
    /// Time and report, but do not remember the winner.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Where the choices live: `$XDG_CACHE_HOME/afinador/matmul-tuning.json` (else `~/.cache/…`),
/// one entry per adapter key.
fn cache_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("afinador").join("matmul-tuning.json"))
}

/// The adapter as the cache knows it: a driver update retunes.
fn adapter_key(gpu: &Gpu) -> String {
    let a = &gpu.adapter;
    format!("{} | {} | {}", a.name, a.backend, a.driver)
}

fn read_cache(path: &PathBuf) -> Result<serde_json::Map<String, serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a tuning file (delete it, or run `afinador bench tune` again)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The build `bench tune` chose for this adapter, if it ran here. A broken cache is reported
/// and ignored: the adapter's default runs.
pub fn tuned(gpu: &Gpu) -> Option<MatmulVariant> {
    let path = cache_file()?;
    let entry = match read_cache(&path) {
        Ok(mut map) => map.remove(&adapter_key(gpu))?,
        Err(e) => {
            eprintln!("warning: {e:#}");
            return None;
        }
    };
    let spec = entry.get("matmul")?.as_str()?;
    match parse_matmul(spec) {
        Ok(v) if v != MatmulVariant::Coop => Some(v),
        _ => {
            eprintln!(
                "warning: {} holds an unknown matmul build {spec:?} for this adapter; \
                 ignoring it (run `afinador bench tune` again)",
                path.display()
            );
            None
        }
    }
}

#[derive(Serialize, Debug)]
struct Candidate {
    matmul: String,
    label: String,
    /// Microseconds per case, in the order of `cases`.
    time_us: Vec<f64>,
    /// Geometric mean of the times over the adapter's default build's (lower is faster).
    relative: f64,
}

/// A training step's matmul shapes on SmolLM2-135M: the gate/up projection, the down projection
/// (x·Wᵀ through Q4_1 weights) and a square f32 product (the LoRA and attention shapes).
fn cases(quick: bool) -> Vec<Case> {
    let m = if quick { 64 } else { 512 };
    let format = WeightFormat::Q4_1;
    vec![
        Case::MatmulWeight {
            format,
            m,
            n: 1536,
            k: 576,
        },
        Case::MatmulWeight {
            format,
            m,
            n: 576,
            k: 1536,
        },
        Case::MatmulF32 { m, n: m, k: m },
    ]
}

pub fn run(args: Args) -> Result<()> {
    let gpu = args.gpu.open()?;
    // Time against the adapter's own default, not an earlier tuning result.
    gpu.set_matmul(None);
    let default = MatmulVariant::for_recorder(&afinador_core::gpu::Recorder::new(&gpu));
    let mut candidates = vec![MatmulVariant::Direct];
    candidates.extend(MatmulTiles::ALL.map(MatmulVariant::Tiled));
    let (target_s, repeats) = if args.quick { (0.005, 2) } else { (0.05, 5) };
    let cases = cases(args.quick);
    let mut rng = Rng::new(1);
    let inputs: Vec<_> = cases
        .iter()
        .map(|c| c.inputs(&gpu, &mut rng))
        .collect::<Result<_, _>>()?;
    let progress = indicatif::ProgressBar::new((candidates.len() * cases.len()) as u64);
    if args.json {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut times: Vec<Vec<f64>> = Vec::new();
    for &variant in &candidates {
        let pick = Pick {
            portable: false,
            matmul: Some(variant),
        };
        let mut row = Vec::new();
        for (case, input) in cases.iter().zip(&inputs) {
            progress.set_message(format!("{} {}", variant.label(), case.shape()));
            let timing = (target_s, repeats);
            let (secs, _) = pollster::block_on(time_case(
                &gpu,
                pick,
                case,
                input,
                timing,
                super::bench::clock,
            ))?;
            row.push(secs * 1e6);
            progress.inc(1);
        }
        times.push(row);
    }
    progress.finish_and_clear();
    let base = &times[candidates.iter().position(|&v| v == default).unwrap_or(0)];
    let mut results: Vec<Candidate> = candidates
        .iter()
        .zip(&times)
        .map(|(&v, t)| {
            let log_sum: f64 = t.iter().zip(base).map(|(a, b)| (a / b).ln()).sum();
            Candidate {
                matmul: matmul_spec(v),
                label: v.label(),
                time_us: t.clone(),
                relative: (log_sum / t.len() as f64).exp(),
            }
        })
        .collect();
    results.sort_by(|a, b| a.relative.total_cmp(&b.relative));
    let best = &results[0];
    let saved = if args.dry_run {
        None
    } else {
        let path = cache_file().context("no cache directory: set XDG_CACHE_HOME or HOME")?;
        let mut map = read_cache(&path).unwrap_or_default();
        map.insert(
            adapter_key(&gpu),
            serde_json::json!({ "matmul": best.matmul, "relative_to_default": best.relative }),
        );
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&map)?)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Some(path)
    };
    if args.json {
        return print_json(&serde_json::json!({
            "adapter": gpu.adapter,
            "default": matmul_spec(default),
            "cases": cases.iter().map(|c| format!("{} {}", c.kernel(), c.shape())).collect::<Vec<_>>(),
            "results": results,
            "chosen": best.matmul,
            "saved": saved,
        }));
    }
    println!(
        "{} ({}, {}); default build {}",
        gpu.adapter.name,
        gpu.adapter.backend,
        gpu.adapter.vendor,
        default.label()
    );
    let names: Vec<String> = cases
        .iter()
        .map(|c| format!("{} {}", c.kernel(), c.shape()))
        .collect();
    println!(
        "{:<24} {:>10}  {}",
        "build",
        "vs default",
        names.join(" | ")
    );
    for r in &results {
        let t: Vec<String> = r.time_us.iter().map(|t| format!("{t:.0} µs")).collect();
        println!("{:<24} {:>9.2}×  {}", r.label, r.relative, t.join(" | "));
    }
    match saved {
        Some(path) => println!(
            "chosen: {} (remembered for this adapter in {})",
            best.label,
            path.display()
        ),
        None => println!("fastest: {} (not saved: --dry-run)", best.label),
    }
    Ok(())
}
