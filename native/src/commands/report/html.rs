//! The self-contained HTML page: inline CSS, charts as `data:` PNGs, no scripts, no network.

use std::fmt::Write;

use base64::Engine;
use serde_json::Value;

use super::{Chart, Run};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JSON value as table text: numbers rounded for reading, strings unquoted.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => escape(s),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e6) => format!("{f:.3e}"),
            (_, _, Some(f)) => format!("{f:.4}"),
            _ => n.to_string(),
        },
        other => escape(&other.to_string()),
    }
}

fn key_value_table(out: &mut String, value: &Value) {
    out.push_str("<table class=\"kv\">\n");
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", escape(k), cell(v));
        }
    }
    out.push_str("</table>\n");
}

/// Base vs adapter (and the difference) of every metric of `eval/metrics.json`.
fn eval_table(out: &mut String, eval: &Value) {
    let adapter = &eval["adapter"];
    let base = eval.get("base").filter(|b| b.is_object());
    out.push_str("<table class=\"eval\">\n<tr><th>metric</th>");
    if base.is_some() {
        out.push_str("<th>base</th><th>adapter</th><th>Δ</th></tr>\n");
    } else {
        out.push_str("<th>value</th></tr>\n");
    }
    if let Some(map) = adapter.as_object() {
        for (k, v) in map {
            let _ = write!(out, "<tr><th>{}</th>", escape(k));
            match base.and_then(|b| b.get(k)) {
                Some(b) => {
                    let delta = match (v.as_f64(), b.as_f64()) {
                        (Some(a), Some(b)) => format!("{:+.4}", a - b),
                        _ => "—".into(),
                    };
                    let _ = writeln!(
                        out,
                        "<td>{}</td><td>{}</td><td>{delta}</td></tr>",
                        cell(b),
                        cell(v)
                    );
                }
                None => {
                    let _ = writeln!(out, "<td>{}</td></tr>", cell(v));
                }
            }
        }
    }
    out.push_str("</table>\n");
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;\
max-width:1000px;color:#222;padding:0 1rem}h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px \
solid #ddd}table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.25rem .8rem;border-bottom:1px \
solid #eee;text-align:left}td{font-variant-numeric:tabular-nums}.cards{display:flex;flex-wrap:wrap;\
gap:.8rem}.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:9rem}.card b{\
display:block;font-size:1.3rem}figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}\
figcaption{color:#666;font-size:.9rem}";

/// The report page. `charts` pairs each chart with its PNG bytes.
pub fn render(run: &Run, charts: &[(Chart, Vec<u8>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>afinador report: {name}</title><style>{STYLE}</style></head><body>\n\
         <h1>Training report: {name}</h1>",
        name = escape(&run.name)
    );

    let last_step = run.metrics.iter().rev().find(|m| m.get("loss").is_some());
    let last_eval = run
        .metrics
        .iter()
        .rev()
        .find(|m| m.get("eval_loss").is_some());
    let s = run.summary.clone().unwrap_or(Value::Null);
    let cards: [(&str, Value); 8] = [
        ("stopped", s["stop_reason"].clone()),
        ("steps", s["steps"].clone()),
        ("tokens", s["tokens"].clone()),
        ("tokens/s", s["tokens_per_s"].clone()),
        (
            "final loss",
            last_step.map_or(Value::Null, |m| m["loss"].clone()),
        ),
        (
            "final eval loss",
            last_eval.map_or(Value::Null, |m| m["eval_loss"].clone()),
        ),
        ("best step", s["best_step"].clone()),
        ("best eval loss", s["best_eval_loss"].clone()),
    ];
    out.push_str("<div class=\"cards\">\n");
    for (label, v) in cards {
        let _ = writeln!(out, "<div class=\"card\">{label}<b>{}</b></div>", cell(&v));
    }
    out.push_str("</div>\n<h2>Curves</h2>\n");
    let engine = base64::engine::general_purpose::STANDARD;
    for (chart, png) in charts {
        let _ = writeln!(
            out,
            "<figure id=\"chart-{id}\"><img alt=\"{title}\" src=\"data:image/png;base64,{data}\">\
             <figcaption>{title} over optimizer steps ({id}.png)</figcaption></figure>",
            id = chart.id,
            title = escape(chart.title),
            data = engine.encode(png)
        );
    }
    if let Some(eval) = &run.eval {
        out.push_str("<h2>Evaluation: base model vs adapter</h2>\n");
        eval_table(&mut out, eval);
    }
    out.push_str("<h2>Hardware</h2>\n");
    let hardware = serde_json::json!({
        "device": s["device"],
        "gpu_memory_bytes": s["gpu_memory_bytes"],
        "lora_parameters": s["lora_parameters"],
        "time_s": s["time_s"],
    });
    key_value_table(&mut out, &hardware);
    if let Some(config) = &run.config {
        out.push_str("<h2>Configuration</h2>\n");
        key_value_table(&mut out, config);
    }
    let _ = writeln!(
        out,
        "<p><small>Written by afinador {} from metrics.jsonl, training_summary.json and \
         config.json.</small></p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_escape_text_and_round_numbers() {
        assert_eq!(cell(&Value::from("<a&b>")), "&lt;a&amp;b&gt;");
        assert_eq!(cell(&Value::from(3)), "3");
        assert_eq!(cell(&Value::from(0.123456)), "0.1235");
        assert_eq!(cell(&Value::from(0.0002)), "2.000e-4");
        assert_eq!(cell(&Value::Null), "—");
    }
}
