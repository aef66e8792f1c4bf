//! `afinador report DIR`: PNG charts and a self-contained `report.html` (charts embedded, no
//! network) from a training run's directory: the curves of `metrics.jsonl`, the run summary,
//! the resolved configuration and hardware, and the base-vs-adapter table of an
//! `afinador eval --output DIR/eval` run when there is one. `afinador train` writes it at the
//! end of every run.

mod chart;
mod html;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use chart::{Chart, Series};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A training output directory (with metrics.jsonl).
    dir: PathBuf,
    /// Where to write report.html and the PNG charts [default: DIR/report].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print the paths written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let out = args.output.unwrap_or_else(|| args.dir.join("report"));
    let written = write(&args.dir, &out)?;
    if args.json {
        return crate::common::print_json(&serde_json::json!({
            "html": written.html,
            "charts": written.charts,
        }));
    }
    eprintln!(
        "report: {} ({} charts)",
        written.html.display(),
        written.charts.len()
    );
    Ok(())
}

/// What [`write`] produced.
#[derive(Debug)]
pub struct Written {
    pub html: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// A run directory's contents that the report shows.
pub struct Run {
    pub name: String,
    /// Lines of metrics.jsonl (step lines and evaluation lines).
    pub metrics: Vec<Value>,
    pub summary: Option<Value>,
    pub config: Option<Value>,
    /// `eval/metrics.json`: `{"adapter": {...}, "base": {...} | null}`.
    pub eval: Option<Value>,
}

impl Run {
    pub fn read(dir: &Path) -> Result<Run> {
        let metrics_path = dir.join("metrics.jsonl");
        let text = std::fs::read_to_string(&metrics_path).with_context(|| {
            format!(
                "reading {}: is {} a training output directory?",
                metrics_path.display(),
                dir.display()
            )
        })?;
        let mut metrics = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}", metrics_path.display(), i + 1))?;
            metrics.push(v);
        }
        if metrics.is_empty() {
            bail!(
                "{} has no steps yet: nothing to report",
                metrics_path.display()
            );
        }
        let json = |name: &str| -> Result<Option<Value>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(t) => Ok(Some(
                    serde_json::from_str(&t).with_context(|| format!("{}", path.display()))?,
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            }
        };
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Run {
            name,
            metrics,
            summary: json("training_summary.json")?,
            config: json("config.json")?,
            eval: json("eval/metrics.json")?,
        })
    }

    /// `(step, value)` of every line that has `key`.
    fn series(&self, name: &str, key: &str) -> Series {
        Series {
            name: name.into(),
            points: self
                .metrics
                .iter()
                .filter_map(|m| Some((m.get("step")?.as_f64()?, m.get(key)?.as_f64()?)))
                .collect(),
        }
    }

    /// The charts of the run; those without data are left out.
    pub fn charts(&self) -> Vec<Chart> {
        let chart = |id, title, y_label, series: Vec<Series>| Chart {
            id,
            title,
            y_label,
            series: series
                .into_iter()
                .filter(|s| !s.points.is_empty())
                .collect(),
        };
        [
            chart(
                "loss",
                "Loss",
                "cross-entropy (nats)",
                vec![
                    self.series("train", "loss"),
                    self.series("eval", "eval_loss"),
                ],
            ),
            chart(
                "token_accuracy",
                "Token accuracy",
                "fraction",
                vec![
                    self.series("train", "token_accuracy"),
                    self.series("eval", "eval_token_accuracy"),
                ],
            ),
            chart(
                "entropy",
                "Predictive entropy",
                "nats",
                vec![self.series("train", "entropy")],
            ),
            chart(
                "grad_norm",
                "Gradient norm (before clipping)",
                "L2 norm",
                vec![self.series("train", "grad_norm")],
            ),
            chart(
                "lr",
                "Learning rate",
                "lr",
                vec![self.series("train", "lr")],
            ),
            chart(
                "tokens_per_s",
                "Throughput",
                "tokens/s",
                vec![self.series("train", "tokens_per_s")],
            ),
        ]
        .into_iter()
        .filter(Chart::has_data)
        .collect()
    }
}

/// Write the PNG charts and report.html of the run in `dir` into `out`.
pub fn write(dir: &Path, out: &Path) -> Result<Written> {
    let run = Run::read(dir)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut images = Vec::new();
    let mut charts = Vec::new();
    for chart in run.charts() {
        let png = chart.png(900, 420)?;
        let path = out.join(format!("{}.png", chart.id));
        std::fs::write(&path, &png).with_context(|| format!("writing {}", path.display()))?;
        charts.push(path);
        images.push((chart, png));
    }
    let html_path = out.join("report.html");
    std::fs::write(&html_path, html::render(&run, &images))
        .with_context(|| format!("writing {}", html_path.display()))?;
    Ok(Written {
        html: html_path,
        charts,
    })
}
