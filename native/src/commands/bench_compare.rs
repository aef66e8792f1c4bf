//! `afinador bench compare A.json B.json`: two `bench kernels --json` runs side by side (the
//! machines, backends and variants), with the ratio of B's rate over A's per kernel and shape.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::common::print_json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The baseline run (`afinador bench kernels --json > A.json`).
    a: PathBuf,
    /// The run compared with it.
    b: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What `bench kernels --json` writes (the fields compared).
#[derive(Deserialize, Debug)]
struct Run {
    adapter: serde_json::Value,
    #[serde(default)]
    timer: Option<String>,
    results: Vec<Result_>,
}

#[derive(Deserialize, Debug, Clone)]
struct Result_ {
    kernel: String,
    shape: String,
    variant: String,
    time_us: f64,
    gflops: Option<f64>,
    gbps: Option<f64>,
}

impl Result_ {
    /// (rate, unit).
    fn rate(&self) -> Option<(f64, &'static str)> {
        match (self.gflops, self.gbps) {
            (Some(f), _) => Some((f, "GFLOP/s")),
            (_, Some(b)) => Some((b, "GB/s")),
            _ => None,
        }
    }
}

/// The machine of one run, as the comparison reports it.
#[derive(Serialize, Debug)]
struct Machine {
    file: String,
    name: String,
    backend: String,
    vendor: String,
    timer: Option<String>,
}

/// One (kernel, shape) measured in both runs.
#[derive(Serialize, Debug)]
struct Pair {
    kernel: String,
    shape: String,
    variant_a: String,
    variant_b: String,
    time_us_a: f64,
    time_us_b: f64,
    rate_a: Option<f64>,
    rate_b: Option<f64>,
    unit: Option<&'static str>,
    /// B's rate over A's (A's time over B's): above 1, B is faster.
    ratio: f64,
}

#[derive(Serialize, Debug)]
struct Comparison {
    a: Machine,
    b: Machine,
    results: Vec<Pair>,
    /// Geometric mean of the ratios.
    geomean_ratio: Option<f64>,
    /// "kernel shape variant" of the rows only one run has.
    only_in_a: Vec<String>,
    only_in_b: Vec<String>,
}

fn load(path: &Path) -> Result<Run> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let run: Run = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not the output of `afinador bench kernels --json`",
            path.display()
        )
    })?;
    if let Some(bad) = run
        .results
        .iter()
        .find(|r| !(r.time_us.is_finite() && r.time_us > 0.0))
    {
        bail!(
            "{}: {} {} has time_us {}, not a positive number",
            path.display(),
            bad.kernel,
            bad.shape,
            bad.time_us
        );
    }
    Ok(run)
}

fn machine(path: &Path, run: &Run) -> Machine {
    let s = |key: &str| run.adapter[key].as_str().unwrap_or("?").to_owned();
    Machine {
        file: path.display().to_string(),
        name: s("name"),
        backend: s("backend"),
        vendor: s("vendor"),
        timer: run.timer.clone(),
    }
}

fn label(r: &Result_) -> String {
    format!("{} {} {}", r.kernel, r.shape, r.variant)
}

/// Pair the rows of two runs: the same kernel, shape and variant first; then a row left alone
/// with the same kernel and shape (the machines picked different variants).
fn compare(a: &Run, b: &Run) -> (Vec<Pair>, Vec<String>, Vec<String>) {
    let mut b_left: Vec<Option<&Result_>> = b.results.iter().map(Some).collect();
    let mut a_match: Vec<Option<&Result_>> = vec![None; a.results.len()];
    for same_variant in [true, false] {
        for (ra, m) in a.results.iter().zip(a_match.iter_mut()) {
            if m.is_some() {
                continue;
            }
            let found = b_left.iter_mut().find(|rb| {
                rb.is_some_and(|rb| {
                    rb.kernel == ra.kernel
                        && rb.shape == ra.shape
                        && (!same_variant || rb.variant == ra.variant)
                })
            });
            if let Some(slot) = found {
                *m = slot.take();
            }
        }
    }
    let mut pairs = Vec::new();
    let mut only_in_a = Vec::new();
    for (ra, rb) in a.results.iter().zip(a_match) {
        let Some(rb) = rb else {
            only_in_a.push(label(ra));
            continue;
        };
        let (rate_a, rate_b) = (ra.rate(), rb.rate());
        let unit = rate_a.or(rate_b).map(|r| r.1);
        pairs.push(Pair {
            kernel: ra.kernel.clone(),
            shape: ra.shape.clone(),
            variant_a: ra.variant.clone(),
            variant_b: rb.variant.clone(),
            time_us_a: ra.time_us,
            time_us_b: rb.time_us,
            rate_a: rate_a.map(|r| r.0),
            rate_b: rate_b.map(|r| r.0),
            unit,
            ratio: ra.time_us / rb.time_us,
        });
    }
    let only_in_b = b_left.into_iter().flatten().map(label).collect();
    (pairs, only_in_a, only_in_b)
}

pub fn run(args: Args) -> Result<()> {
    let (a, b) = (load(&args.a)?, load(&args.b)?);
    let (results, only_in_a, only_in_b) = compare(&a, &b);
    let geomean_ratio = (!results.is_empty()).then(|| {
        let logs: f64 = results.iter().map(|p| p.ratio.ln()).sum();
        (logs / results.len() as f64).exp()
    });
    let cmp = Comparison {
        a: machine(&args.a, &a),
        b: machine(&args.b, &b),
        results,
        geomean_ratio,
        only_in_a,
        only_in_b,
    };
    if args.json {
        return print_json(&cmp);
    }
    for (tag, m) in [("A", &cmp.a), ("B", &cmp.b)] {
        let timer = m.timer.as_deref().unwrap_or("timer not recorded");
        println!(
            "{tag}: {} ({}, {}), {timer} — {}",
            m.name, m.backend, m.vendor, m.file
        );
    }
    println!(
        "{:<14} {:<20} {:<20} {:<20} {:>12} {:>12} {:>10} {:>10} {:<7} {:>7}",
        "kernel", "shape", "var A", "var B", "A (µs)", "B (µs)", "A rate", "B rate", "unit", "B/A"
    );
    let rate = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}"));
    for p in &cmp.results {
        println!(
            "{:<14} {:<20} {:<20} {:<20} {:>12.1} {:>12.1} {:>10} {:>10} {:<7} {:>7.2}",
            p.kernel,
            p.shape,
            p.variant_a,
            p.variant_b,
            p.time_us_a,
            p.time_us_b,
            rate(p.rate_a),
            rate(p.rate_b),
            p.unit.unwrap_or("-"),
            p.ratio
        );
    }
    if let Some(g) = cmp.geomean_ratio {
        println!("geometric mean of B/A (rate): {g:.2}");
    }
    for (tag, rows) in [("A", &cmp.only_in_a), ("B", &cmp.only_in_b)] {
        for r in rows {
            println!("only in {tag}: {r}");
        }
    }
    Ok(())
}
