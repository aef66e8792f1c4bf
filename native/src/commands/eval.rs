//! `afinador eval`: score generations against references (ROUGE, BLEU, EM/F1, multiple-choice
//! accuracy), either existing predictions or answers the model generates for a data set, with
//! the base model beside the adapter when asked.

use std::path::{Path, PathBuf};

use afinador_core::eval::{Evaluation, Metrics, Record, Scores, parse_predictions_jsonl};
use afinador_core::gpu::Gpu;
use afinador_core::model::{Generation, Model, SamplingConfig};
use afinador_core::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
use afinador_core::train::data::{Record as DataRecord, RecordFormat, RecordReader, SourceKind};
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::common::{GpuArgs, ModelArgs, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Score an existing JSONL of {"prediction", "reference", "id"?} (no model needed).
    #[arg(long)]
    predictions: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    /// A PEFT adapter directory to evaluate.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Records to answer: messages (the last assistant turn is the reference), prompt/completion
    /// or instruction/input/output.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Record format (default: detected).
    #[arg(long)]
    format: Option<String>,
    /// Comma list: rouge, bleu, f1, em, accuracy, all, or single metrics (rouge1, rougeL, …).
    #[arg(long, default_value = "all")]
    metrics: String,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Evaluate only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Also run the base model and print base, adapter and the difference.
    #[arg(long)]
    compare_base: bool,
    /// Write predictions.jsonl, metrics.json and metrics.md here.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let metrics = Metrics::parse(&args.metrics)?;
    if let Some(path) = &args.predictions {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let records = parse_predictions_jsonl(&text)?;
        let evaluation = metrics.evaluate(&records)?;
        write_outputs(&args, &records, &evaluation, None)?;
        return report(&args, &evaluation.scores, None);
    }
    let data = args
        .data
        .as_ref()
        .context("give --predictions FILE, or --data FILE to generate answers")?;
    let file = args.model.read()?;
    let tokenizer = args.model.tokenizer(&file)?;
    let template = file.gguf.metadata().get_str("tokenizer.chat_template").ok();
    let chat = ChatTemplate::for_model(template, &tokenizer)?;
    let mut items = read_items(data, args.format.as_deref(), &chat)?;
    if let Some(n) = args.limit {
        items.truncate(n);
    }
    if items.is_empty() {
        bail!("{} holds no records to evaluate", data.display());
    }
    let gpu = args.gpu.open()?;
    let tuned = file.load_with_adapter(&gpu, args.adapter.as_deref())?;
    let records = answer(&gpu, &tuned, &tokenizer, &items, &args)?;
    let evaluation = metrics.evaluate(&records)?;
    let base = if args.compare_base && args.adapter.is_some() {
        drop(tuned);
        let base_model = file.load(&gpu)?;
        let base_records = answer(&gpu, &base_model, &tokenizer, &items, &args)?;
        Some(metrics.evaluate(&base_records)?)
    } else {
        None
    };
    write_outputs(&args, &records, &evaluation, base.as_ref())?;
    report(&args, &evaluation.scores, base.as_ref().map(|b| &b.scores))
}

/// A prompt to answer and the reference answer.
struct Item {
    prompt: String,
    reference: String,
    id: serde_json::Value,
}

fn read_items(path: &Path, format: Option<&str>, chat: &ChatTemplate) -> Result<Vec<Item>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reader = RecordReader::new(SourceKind::Auto);
    let mut raws = reader.push(&bytes);
    raws.extend(reader.finish());
    let mut format = match format {
        Some(f) => Some(f.parse::<RecordFormat>().map_err(anyhow::Error::msg)?),
        None => None,
    };
    let mut items = Vec::new();
    for raw in raws {
        let raw = raw.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let f = match &format {
            Some(f) => f.clone(),
            None => {
                let detected = RecordFormat::detect(&raw.value).with_context(|| {
                    format!(
                        "{}: line {}: no known record format",
                        path.display(),
                        raw.line
                    )
                })?;
                format = Some(detected.clone());
                detected
            }
        };
        let record = f
            .parse(&raw.value)
            .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), raw.line))?;
        let id = raw.value.get("id").cloned().unwrap_or(json!(raw.index));
        let (prompt, reference) = match record {
            DataRecord::PromptCompletion { prompt, completion } => (prompt, completion),
            DataRecord::Messages(messages) => {
                let Some(last) = messages.iter().rposition(|(role, _)| role == "assistant") else {
                    bail!(
                        "{}: line {}: the conversation has no assistant turn to compare with",
                        path.display(),
                        raw.line
                    );
                };
                let context: Vec<ChatMessage> = messages[..last]
                    .iter()
                    .map(|(r, c)| ChatMessage::new(r.clone(), c.clone()))
                    .collect();
                (chat.render(&context, true)?, messages[last].1.clone())
            }
            DataRecord::Text(_) => bail!(
                "{}: text records have no reference answer to evaluate against",
                path.display()
            ),
        };
        items.push(Item {
            prompt,
            reference,
            id,
        });
    }
    Ok(items)
}

fn answer(
    gpu: &Gpu,
    model: &Model,
    tokenizer: &Tokenizer,
    items: &[Item],
    args: &Args,
) -> Result<Vec<Record>> {
    let sampling = SamplingConfig {
        temperature: args.temperature,
        ..SamplingConfig::default()
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let ids = tokenizer.encode(&item.prompt, true)?;
        let mut generation = Generation::new(
            gpu,
            model,
            ids.len() + args.max_new_tokens,
            sampling.clone(),
        )?;
        let mut next = pollster::block_on(generation.feed(gpu, &ids))?;
        let mut new_ids = Vec::new();
        while new_ids.len() < args.max_new_tokens && !tokenizer.is_eog(next) {
            new_ids.push(next);
            if new_ids.len() == args.max_new_tokens || generation.remaining() == 0 {
                break;
            }
            next = pollster::block_on(generation.feed(gpu, &[next]))?;
        }
        if !args.json {
            eprintln!("[{}/{}] answered", i + 1, items.len());
        }
        out.push(Record {
            id: Some(item.id.clone()),
            prediction: tokenizer.decode(&new_ids),
            reference: item.reference.clone(),
        });
    }
    Ok(out)
}

fn write_outputs(
    args: &Args,
    records: &[Record],
    evaluation: &Evaluation,
    base: Option<&Evaluation>,
) -> Result<()> {
    let Some(dir) = &args.output else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut lines = String::new();
    for (r, s) in records.iter().zip(&evaluation.records) {
        let mut v = serde_json::to_value(r)?;
        v["scores"] = serde_json::to_value(s)?;
        lines.push_str(&v.to_string());
        lines.push('\n');
    }
    std::fs::write(dir.join("predictions.jsonl"), lines)?;
    let summary = json!({ "adapter": evaluation.scores, "base": base.map(|b| b.scores) });
    std::fs::write(
        dir.join("metrics.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(
        dir.join("metrics.md"),
        table(&evaluation.scores, base.map(|b| &b.scores), true),
    )?;
    Ok(())
}

fn rows(scores: &Scores) -> Vec<(String, f64)> {
    let v = serde_json::to_value(scores).unwrap_or_default();
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A Markdown table of the scores (with base and delta columns when given).
fn table(scores: &Scores, base: Option<&Scores>, markdown: bool) -> String {
    let base_rows: Vec<(String, f64)> = base.map(rows).unwrap_or_default();
    let mut out = String::new();
    if markdown {
        out.push_str(if base.is_some() {
            "| metric | base | adapter | delta |\n|---|---|---|---|\n"
        } else {
            "| metric | value |\n|---|---|\n"
        });
    }
    for (k, v) in rows(scores) {
        let b = base_rows.iter().find(|(bk, _)| *bk == k).map(|(_, b)| *b);
        let line = match (b, markdown) {
            (Some(b), true) => format!("| {k} | {b:.4} | {v:.4} | {:+.4} |\n", v - b),
            (None, true) => format!("| {k} | {v:.4} |\n"),
            (Some(b), false) => format!(
                "{k:<12} base {b:>9.4}  adapter {v:>9.4}  delta {:+.4}\n",
                v - b
            ),
            (None, false) => format!("{k:<12} {v:>9.4}\n"),
        };
        out.push_str(&line);
    }
    out
}

fn report(args: &Args, scores: &Scores, base: Option<&Scores>) -> Result<()> {
    if args.json {
        let mut v = serde_json::to_value(scores)?;
        if let Some(b) = base {
            v["base"] = serde_json::to_value(b)?;
        }
        return print_json(&v);
    }
    print!("{}", table(scores, base, false));
    Ok(())
}
