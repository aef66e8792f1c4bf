//! `afinador eval`: score generations against references (ROUGE, BLEU, EM/F1, multiple-choice
//! accuracy), either existing predictions or answers the model generates for a data set, with
//! the base model beside the adapter when asked.

use std::path::{Path, PathBuf};

use afinador_core::eval::{
    Evaluation, Likelihood, Metrics, Record, RecordScores, Scores, SkippedMetric,
    parse_predictions_jsonl,
};
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
    /// Comma list: rouge, bleu, f1, em, accuracy, ppl (eval loss, perplexity and token
    /// accuracy of the references; needs --data), all, or single metrics (rouge1, rougeL, …).
    /// Default (and `all`): every metric that applies to the references; accuracy applies
    /// only when each reference names a choice letter A–E. A metric named here is strict: its
    /// error stops the evaluation.
    #[arg(long)]
    metrics: Option<String>,
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
    /// Write predictions.jsonl, metrics.json and metrics.md here (RUN_DIR/eval puts the table in
    /// `afinador report RUN_DIR`).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Names that select the likelihood of the references (computed with the model).
const LIKELIHOOD: [&str; 4] = ["ppl", "eval_loss", "token_accuracy", "likelihood"];

/// `--metrics` read: the text metrics (if any), whether to compute the likelihood (which needs
/// a model: `all` selects it only when there is one), and whether the text metrics were named
/// one by one (strict) or are the default or `all` (only those that apply are computed).
struct Selection {
    metrics: Option<Metrics>,
    likelihood: bool,
    strict: bool,
}

fn parse_metrics(list: Option<&str>, has_model: bool) -> Result<Selection> {
    let list = list.unwrap_or("all");
    let items: Vec<&str> = list.split(',').map(str::trim).collect();
    let is_likelihood = |i: &&str| LIKELIHOOD.iter().any(|l| l.eq_ignore_ascii_case(i));
    let named = items.iter().any(is_likelihood);
    if named && !has_model {
        bail!(
            "ppl, eval_loss and token_accuracy need a model: use --data FILE instead of --predictions"
        );
    }
    let likelihood = has_model && (named || items.iter().any(|i| i.eq_ignore_ascii_case("all")));
    let text: Vec<&str> = items
        .iter()
        .filter(|i| !is_likelihood(i) && !i.is_empty())
        .copied()
        .collect();
    let metrics = if text.is_empty() {
        None
    } else {
        Some(Metrics::parse(&text.join(","))?)
    };
    if metrics.is_none() && !likelihood {
        bail!("--metrics selects nothing: use e.g. all, rouge, bleu, f1, em, accuracy or ppl");
    }
    let strict = text.iter().any(|i| !i.eq_ignore_ascii_case("all"));
    Ok(Selection {
        metrics,
        likelihood,
        strict,
    })
}

impl Selection {
    /// Leaves out, unless strict, the text metrics that do not apply to `references`, saying
    /// which on stderr (and returning them for the JSON).
    fn restrict<'a>(
        &mut self,
        references: impl IntoIterator<Item = &'a str>,
        quiet: bool,
    ) -> Result<Vec<SkippedMetric>> {
        let Some(metrics) = &self.metrics else {
            return Ok(Vec::new());
        };
        if self.strict {
            return Ok(Vec::new());
        }
        let (kept, skipped) = metrics.applicable(references);
        for s in &skipped {
            if !quiet {
                eprintln!(
                    "eval: skipped {}: {} (ask for it with --metrics {} to make this an error)",
                    s.metric, s.reason, s.metric
                );
            }
        }
        if kept.is_none() && !self.likelihood {
            bail!("no selected metric applies to these references");
        }
        self.metrics = kept;
        Ok(skipped)
    }
}

/// The selected text metrics of `records` (per-record entries without scores when none is
/// selected).
fn evaluate(metrics: Option<&Metrics>, records: &[Record]) -> Result<Evaluation> {
    Ok(match metrics {
        Some(m) => m.evaluate(records)?,
        None => Evaluation {
            scores: Scores::default(),
            records: records
                .iter()
                .map(|r| RecordScores {
                    id: r.id.clone(),
                    scores: Scores::default(),
                    choice: None,
                })
                .collect(),
        },
    })
}

pub fn run(args: Args) -> Result<()> {
    let mut selection = parse_metrics(args.metrics.as_deref(), args.predictions.is_none())?;
    if let Some(path) = &args.predictions {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let records = parse_predictions_jsonl(&text)?;
        let skipped =
            selection.restrict(records.iter().map(|r| r.reference.as_str()), args.json)?;
        let evaluation = evaluate(selection.metrics.as_ref(), &records)?;
        write_outputs(&args, (&records, &evaluation), None, &skipped)?;
        return report(&args, &evaluation.scores, None, &skipped);
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
    let skipped = selection.restrict(items.iter().map(|i| i.reference.as_str()), args.json)?;
    let Selection {
        metrics,
        likelihood,
        ..
    } = selection;
    let gpu = args.gpu.open()?;
    let generate = metrics.is_some();
    let run_model = |model: &Model| -> Result<(Vec<Record>, Evaluation)> {
        let answers = answer(&gpu, model, &tokenizer, &items, &args, generate, likelihood)?;
        let records: Vec<Record> = answers.iter().map(|a| a.0.clone()).collect();
        let mut evaluation = evaluate(metrics.as_ref(), &records)?;
        if likelihood {
            let mut corpus = Likelihood::default();
            for ((_, l), scores) in answers.iter().zip(&mut evaluation.records) {
                scores.scores.set_likelihood(l);
                corpus.merge(l);
            }
            evaluation.scores.set_likelihood(&corpus);
        }
        Ok((records, evaluation))
    };
    let tuned = file.load_with_adapter(&gpu, args.adapter.as_deref())?;
    let (records, evaluation) = run_model(&tuned)?;
    let base = if args.compare_base && args.adapter.is_some() {
        drop(tuned);
        Some(run_model(&file.load(&gpu)?)?)
    } else {
        None
    };
    let base = base.as_ref().map(|(r, e)| (r.as_slice(), e));
    write_outputs(&args, (&records, &evaluation), base, &skipped)?;
    report(
        &args,
        &evaluation.scores,
        base.map(|b| &b.1.scores),
        &skipped,
    )
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

/// For each item, the model's answer (when `generate`) and the likelihood of the reference
/// (when `likelihood`; zero otherwise). With both, one forward pass scores prompt + reference
/// and generation continues from the prompt's cached keys and values.
fn answer(
    gpu: &Gpu,
    model: &Model,
    tokenizer: &Tokenizer,
    items: &[Item],
    args: &Args,
    generate: bool,
    likelihood: bool,
) -> Result<Vec<(Record, Likelihood)>> {
    let sampling = SamplingConfig {
        temperature: args.temperature,
        ..SamplingConfig::default()
    };
    let max_new = if generate { args.max_new_tokens } else { 0 };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prompt = tokenizer.encode(&item.prompt, true)?;
        let reference = if likelihood {
            tokenizer.encode(&item.reference, false)?
        } else {
            Vec::new()
        };
        let capacity = prompt.len() + reference.len().max(max_new);
        let mut generation = Generation::new(gpu, model, capacity, sampling.clone())?;
        let mut l = Likelihood::default();
        // The prompt's last token is fed again below, so that generation samples from its row.
        let mut feed = prompt.clone();
        if likelihood {
            let ids = [prompt.as_slice(), &reference].concat();
            let keep = prompt.len().saturating_sub(1);
            let score = pollster::block_on(generation.score_and_keep(gpu, &ids, keep))?;
            l = Likelihood::of_reference(&ids, prompt.len(), &score.token_logprobs, &score.argmax);
            feed = prompt[keep..].to_vec();
        }
        let mut new_ids = Vec::new();
        if max_new > 0 {
            let mut next = pollster::block_on(generation.feed(gpu, &feed))?;
            while !tokenizer.is_eog(next) {
                new_ids.push(next);
                if new_ids.len() == max_new || generation.remaining() == 0 {
                    break;
                }
                next = pollster::block_on(generation.feed(gpu, &[next]))?;
            }
        }
        if !args.json {
            eprintln!("[{}/{}] done", i + 1, items.len());
        }
        let record = Record {
            id: Some(item.id.clone()),
            prediction: tokenizer.decode(&new_ids),
            reference: item.reference.clone(),
        };
        out.push((record, l));
    }
    Ok(out)
}

/// Records and their evaluation.
type Evaluated<'a> = (&'a [Record], &'a Evaluation);

fn write_outputs(
    args: &Args,
    tuned: Evaluated<'_>,
    base: Option<Evaluated<'_>>,
    skipped: &[SkippedMetric],
) -> Result<()> {
    let Some(dir) = &args.output else {
        return Ok(());
    };
    let (records, evaluation) = tuned;
    let base_scores = base.map(|b| &b.1.scores);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut lines = String::new();
    for (i, (r, s)) in records.iter().zip(&evaluation.records).enumerate() {
        let mut v = serde_json::to_value(r)?;
        v["scores"] = serde_json::to_value(s)?;
        if let Some((base_records, base_eval)) = base {
            v["base_prediction"] = json!(base_records[i].prediction);
            v["base_scores"] = serde_json::to_value(&base_eval.records[i])?;
        }
        lines.push_str(&v.to_string());
        lines.push('\n');
    }
    std::fs::write(dir.join("predictions.jsonl"), lines)?;
    let summary = json!({ "adapter": evaluation.scores, "base": base_scores, "skipped": skipped });
    std::fs::write(
        dir.join("metrics.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(
        dir.join("metrics.md"),
        table(&evaluation.scores, base_scores, true),
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

fn report(
    args: &Args,
    scores: &Scores,
    base: Option<&Scores>,
    skipped: &[SkippedMetric],
) -> Result<()> {
    if args.json {
        let mut v = serde_json::to_value(scores)?;
        if let Some(b) = base {
            v["base"] = serde_json::to_value(b)?;
        }
        if !skipped.is_empty() {
            v["skipped"] = serde_json::to_value(skipped)?;
        }
        return print_json(&v);
    }
    print!("{}", table(scores, base, false));
    Ok(())
}
