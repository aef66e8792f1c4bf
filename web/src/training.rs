//! A training run driven from JavaScript: configure, passes over streamed data, steps, export.
//!
//! The JS side owns the data source (a `File`'s or a `fetch` body's `ReadableStream`) and the
//! schedule of calls; it reads the source once per pass:
//!
//! ```text
//! configure(cfg)
//! beginPass() → "scan"; pushChunk(…)*; endPass() → plan          (count, validation set)
//! loop: beginPass() → "train"; { pushChunk(c); while (ev = await step()) … }*; endPass();
//!       while (ev = await step()) …; if (!(await endEpoch()).continue) break
//! await finish(interrupted) → summary; await exportAdapter()
//! ```

use std::collections::VecDeque;

use afinador_core::lora::{LoraAdapter, to_gguf_lora, to_peft};
use afinador_core::train::data::{DataPipeline, DataStats, Sequence};
use afinador_core::train::session;
use afinador_core::train::{Evaluation, FirstPass, LoraStart, Session, TrainConfig};
use wasm_bindgen::prelude::*;

use crate::engine::Afinador;
use crate::{err, now_ms, to_js};

/// Metrics columns of [`Afinador::metrics_csv`], in order.
const CSV_COLUMNS: [&str; 12] = [
    "step",
    "epoch",
    "loss",
    "token_accuracy",
    "entropy",
    "grad_norm",
    "lr",
    "tokens_per_s",
    "elapsed_s",
    "eval_loss",
    "eval_ppl",
    "eval_token_accuracy",
];

/// The state of one run between JS calls.
pub(crate) struct Run {
    /// `None` until the first (counting) pass has ended.
    pub(crate) session: Option<Session<'static>>,
    pipeline: Option<DataPipeline>,
    /// Sequences of the current pass not yet offered (`true`: validation).
    queue: VecDeque<(Sequence, bool)>,
    /// The first pass: validation sequences and the count of training ones.
    first: FirstPass,
    /// The last finished pass's counters.
    stats: Option<DataStats>,
    format: Option<String>,
    pub(crate) metrics: Vec<serde_json::Value>,
    best: Option<LoraAdapter>,
    summary: Option<serde_json::Value>,
}

/// An adapter's files, as the CLI's `adapter/` holds them: the PEFT pair and the GGUF LoRA.
#[wasm_bindgen]
pub struct AdapterFiles {
    config_json: String,
    safetensors: Vec<u8>,
    gguf: Vec<u8>,
}

#[wasm_bindgen]
impl AdapterFiles {
    /// `adapter_config.json`.
    #[wasm_bindgen(getter, js_name = configJson)]
    pub fn config_json(&self) -> String {
        self.config_json.clone()
    }

    /// `adapter_model.safetensors`.
    #[wasm_bindgen(getter)]
    pub fn safetensors(&self) -> Vec<u8> {
        self.safetensors.clone()
    }

    /// `adapter.gguf`: the GGUF LoRA for llama.cpp's `--lora` and Ollama's `ADAPTER`.
    #[wasm_bindgen(getter)]
    pub fn gguf(&self) -> Vec<u8> {
        self.gguf.clone()
    }
}

#[wasm_bindgen]
impl Afinador {
    /// Set the training configuration: an object with `afinador train`'s keys in snake_case
    /// (`lora_r`, `lr`, `batch_size`, `seq_len`, `max_steps`, `val_ratio`, …); missing keys keep
    /// the CLI's defaults. Returns the resolved configuration. Starts a new run.
    pub fn configure(&mut self, config: JsValue) -> Result<JsValue, JsError> {
        let text: String = js_sys::JSON::stringify(&config)
            .map_err(|_| JsError::new("the configuration is not a JSON object"))?
            .into();
        let mut c: TrainConfig =
            serde_json::from_str(&text).map_err(|e| err(format!("configuration: {e}")))?;
        if c.data.is_empty() {
            c.data = "browser".into();
        }
        c.validate().map_err(err)?;
        session::data_config(&c, c.val_ratio).map_err(err)?;
        self.config = c;
        self.run = None;
        to_js(&serde_json::to_value(&self.config).map_err(err)?)
    }

    /// Start a pass over the data: `"scan"` for the first one (counting), then `"train"`.
    #[wasm_bindgen(js_name = beginPass)]
    pub fn begin_pass(&mut self) -> Result<String, JsError> {
        self.loaded()?;
        let config = self.config.clone();
        let run = self.run.get_or_insert_with(|| Run {
            session: None,
            pipeline: None,
            queue: VecDeque::new(),
            first: FirstPass::default(),
            stats: None,
            format: None,
            metrics: Vec::new(),
            best: None,
            summary: None,
        });
        if run.summary.is_some() {
            return Err(JsError::new("the run is over: configure a new one"));
        }
        run.queue.clear();
        let epoch = match &mut run.session {
            Some(s) => {
                s.begin_pass();
                s.state.epoch as u64
            }
            None => 0,
        };
        let data = session::data_config(&config, config.val_ratio).map_err(err)?;
        run.pipeline = Some(DataPipeline::new(&data, epoch).map_err(err)?);
        Ok(if run.session.is_some() {
            "train"
        } else {
            "scan"
        }
        .into())
    }

    /// Feed the next chunk of the data (any size, split anywhere).
    #[wasm_bindgen(js_name = pushChunk)]
    pub fn push_chunk(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        let (run, encoder) = self.run_and_encoder()?;
        let pipeline = run
            .pipeline
            .as_mut()
            .ok_or_else(|| JsError::new("no pass in progress: call beginPass first"))?;
        let batches = pipeline.push(chunk, encoder).map_err(err)?;
        run.format = pipeline.format().map(|f| f.name().to_string());
        run.take(batches.val, batches.train);
        Ok(())
    }

    /// End the pass (the last records come out). After the first pass, sets the run up and
    /// returns `{ plan, data, validation_sequences, format }`; after a training pass, `{ data }`.
    #[wasm_bindgen(js_name = endPass)]
    pub fn end_pass(&mut self) -> Result<JsValue, JsError> {
        let (run, encoder) = self.run_and_encoder()?;
        let pipeline = run
            .pipeline
            .take()
            .ok_or_else(|| JsError::new("no pass in progress: call beginPass first"))?;
        run.format = pipeline.format().map(|f| f.name().to_string());
        let (batches, stats) = pipeline.finish(encoder).map_err(err)?;
        run.take(batches.val, batches.train);
        run.stats = Some(stats.clone());
        if run.session.is_some() {
            return to_js(&serde_json::json!({ "data": stats }));
        }
        let first = std::mem::take(&mut run.first);
        let plan = first.plan(&self.config, &stats).map_err(err)?;
        let val = first.val;
        let loaded = self.loaded()?;
        let name = loaded.model.config.name.clone();
        let session = Session::start(
            &self.gpu,
            &loaded.model,
            self.config.clone(),
            plan,
            val,
            LoraStart::Fresh,
            name,
        )
        .map_err(err)?;
        let run = self.run.as_mut().expect("checked above");
        let out = serde_json::json!({
            "plan": plan,
            "data": stats,
            "validation_sequences": session.val.len(),
            "format": run.format,
            "lora_parameters": session.trainer.lora.n,
        });
        run.session = Some(session);
        to_js(&out)
    }

    /// Counters of the pass in progress (records, bad records with line numbers, tokens) and
    /// the record format detected.
    #[wasm_bindgen(js_name = dataStats)]
    pub fn data_stats(&self) -> Result<JsValue, JsError> {
        let run = self.run()?;
        let stats = match &run.pipeline {
            Some(p) => p.stats(),
            None => run.stats.clone().unwrap_or_default(),
        };
        to_js(&serde_json::json!({ "data": stats, "format": run.format }))
    }

    /// Take one optimizer step when the pass has a batch ready (evaluating when `eval_every`
    /// says so). Returns the step's metrics line plus `total_steps` (and `skipped` for a step
    /// skipped on a non-finite gradient), or `undefined` when the pass needs more data or the
    /// run is over.
    pub async fn step(&mut self) -> Result<JsValue, JsError> {
        let Afinador { gpu, run, .. } = self;
        let run = run.as_mut().ok_or_else(no_run)?;
        let Some(session) = run.session.as_mut() else {
            return Err(JsError::new("the first pass has not ended: call endPass"));
        };
        if run.summary.is_some() || session.stop_reason().is_some() {
            return Ok(JsValue::UNDEFINED);
        }
        loop {
            let Some((seq, is_val)) = run.queue.pop_front() else {
                return Ok(JsValue::UNDEFINED);
            };
            if session.offer(seq, is_val) {
                break;
            }
        }
        let done = session.train_step(gpu, &clock).await.map_err(err)?;
        let total_steps = session.plan.total_steps;
        if let Some(eval) = &done.eval {
            keep_best(run, gpu, eval).await?;
        }
        let Some(mut line) = done.line else {
            return to_js(&serde_json::json!({
                "step": done.report.step,
                "skipped": true,
                "grad_norm": done.report.stats.grad_norm,
                "total_steps": total_steps,
            }));
        };
        run.metrics.push(line.clone());
        line["total_steps"] = total_steps.into();
        line["skipped"] = false.into();
        to_js(&line)
    }

    /// Why the run stops (`"completed"`, `"early stopping"`, `"non-finite gradients"`), or
    /// `undefined` while it goes on.
    #[wasm_bindgen(js_name = stopReason)]
    pub fn stop_reason(&self) -> Option<String> {
        let session = self.run.as_ref()?.session.as_ref()?;
        session.stop_reason().map(|r| r.as_str().to_string())
    }

    /// After a training pass: the end-of-epoch evaluation (when `eval_every` is 0) and the next
    /// epoch. Returns `{ continue, eval }` (`eval`: the metrics line, or null).
    #[wasm_bindgen(js_name = endEpoch)]
    pub async fn end_epoch(&mut self) -> Result<JsValue, JsError> {
        let Afinador { gpu, run, .. } = self;
        let run = run.as_mut().ok_or_else(no_run)?;
        let session = run.session.as_mut().ok_or_else(no_run)?;
        let end = session.end_pass(gpu, &clock).await.map_err(err)?;
        let eval = record(run, gpu, end.eval).await?;
        to_js(&serde_json::json!({ "continue": end.stop.is_none(), "eval": eval }))
    }

    /// End the run (`interrupted`: the user stopped it): the final evaluation when it completed,
    /// then a summary like the CLI's `training_summary.json`.
    pub async fn finish(&mut self, interrupted: bool) -> Result<JsValue, JsError> {
        let Afinador { gpu, run, .. } = self;
        let run = run.as_mut().ok_or_else(no_run)?;
        if let Some(summary) = &run.summary {
            return to_js(summary);
        }
        let session = run.session.as_mut().ok_or_else(no_run)?;
        let finish = session
            .finish(gpu, &clock, interrupted)
            .await
            .map_err(err)?;
        let mut summary = finish.summary;
        summary["device"] = crate::engine::adapter_name(gpu).into();
        summary["final_eval"] = record(run, gpu, finish.eval).await?;
        run.summary = Some(summary.clone());
        to_js(&summary)
    }

    /// The adapter as PEFT files (`best`: the one with the best evaluation loss, when there
    /// was an evaluation; else the current one).
    #[wasm_bindgen(js_name = exportAdapter)]
    pub async fn export_adapter(&self, best: bool) -> Result<AdapterFiles, JsError> {
        let adapter = match self.run.as_ref().and_then(|r| r.best.as_ref()) {
            Some(b) if best => b.clone(),
            _ => self.current_adapter().await?,
        };
        let c = &self.loaded()?.model.config;
        let files = to_peft(&adapter, c.hf_model()).map_err(err)?;
        Ok(AdapterFiles {
            config_json: files.adapter_config_json,
            safetensors: files.adapter_model_safetensors,
            gguf: to_gguf_lora(&adapter, c.arch.name).map_err(err)?,
        })
    }

    /// The run as one ZIP file, laid out as `afinador train` writes its output directory:
    /// `adapter/` (PEFT files and `adapter.gguf`; the best adapter when `best` and there is
    /// one), `metrics.jsonl`, `config.json` and, once the run is over, `training_summary.json`.
    #[wasm_bindgen(js_name = exportZip)]
    pub async fn export_zip(&self, best: bool) -> Result<Vec<u8>, JsError> {
        let files = self.export_adapter(best).await?;
        let metrics = self.metrics_jsonl();
        let config = serde_json::to_string_pretty(&self.config).map_err(err)?;
        let summary = match self.run.as_ref().and_then(|r| r.summary.as_ref()) {
            Some(s) => Some(serde_json::to_string_pretty(s).map_err(err)?),
            None => None,
        };
        let mut entries: Vec<(&str, &[u8])> = vec![
            ("adapter/adapter_config.json", files.config_json.as_bytes()),
            ("adapter/adapter_model.safetensors", &files.safetensors),
            ("adapter/adapter.gguf", &files.gguf),
            ("metrics.jsonl", metrics.as_bytes()),
            ("config.json", config.as_bytes()),
        ];
        if let Some(s) = &summary {
            entries.push(("training_summary.json", s.as_bytes()));
        }
        crate::zip::stored_zip(&entries).map_err(err)
    }

    /// Every metrics line so far, as `metrics.jsonl` (the CLI's format).
    #[wasm_bindgen(js_name = metricsJsonl)]
    pub fn metrics_jsonl(&self) -> String {
        let lines = self
            .run
            .as_ref()
            .map(|r| r.metrics.as_slice())
            .unwrap_or(&[]);
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// Every metrics line so far as CSV (one column per key, empty where a line lacks it).
    #[wasm_bindgen(js_name = metricsCsv)]
    pub fn metrics_csv(&self) -> String {
        let mut out = CSV_COLUMNS.join(",") + "\n";
        for line in self
            .run
            .as_ref()
            .map(|r| r.metrics.as_slice())
            .unwrap_or(&[])
        {
            let cells: Vec<String> = CSV_COLUMNS
                .iter()
                .map(|k| line.get(*k).map(|v| v.to_string()).unwrap_or_default())
                .collect();
            out += &cells.join(",");
            out.push('\n');
        }
        out
    }
}

impl Afinador {
    fn run(&self) -> Result<&Run, JsError> {
        self.run.as_ref().ok_or_else(no_run)
    }

    fn run_and_encoder(
        &mut self,
    ) -> Result<(&mut Run, &afinador_core::train::ModelTextEncoder<'static>), JsError> {
        let encoder = self
            .encoder
            .as_ref()
            .ok_or_else(|| JsError::new("no model loaded: call loadModel first"))?;
        let run = self.run.as_mut().ok_or_else(no_run)?;
        Ok((run, encoder))
    }

    /// The adapter trained so far, read back from the GPU.
    pub(crate) async fn current_adapter(&self) -> Result<LoraAdapter, JsError> {
        let session = self
            .run
            .as_ref()
            .and_then(|r| r.session.as_ref())
            .ok_or_else(|| JsError::new("no adapter yet: train first"))?;
        session.trainer.lora.download(&self.gpu).await.map_err(err)
    }
}

impl Run {
    fn take(&mut self, val: Vec<Sequence>, train: Vec<Sequence>) {
        if self.session.is_some() {
            self.queue.extend(val.into_iter().map(|s| (s, true)));
            self.queue.extend(train.into_iter().map(|s| (s, false)));
        } else {
            for seq in val {
                self.first.take(seq, true);
            }
            for seq in train {
                self.first.take(seq, false);
            }
        }
    }
}

/// The session's clock: seconds by the page's clock (between calls the session's clock does not
/// run, so a paused tab's time is not the run's).
fn clock() -> f64 {
    now_ms() / 1000.0
}

/// After an evaluation: keep the adapter in memory when it is the best so far.
async fn keep_best(
    run: &mut Run,
    gpu: &afinador_core::gpu::Gpu,
    eval: &Evaluation,
) -> Result<(), JsError> {
    if eval.best {
        let session = run.session.as_ref().ok_or_else(no_run)?;
        run.best = Some(session.trainer.lora.download(gpu).await.map_err(err)?);
    }
    Ok(())
}

/// An evaluation outside a step (epoch end, final): the best adapter kept, its metrics line
/// added to the run's and returned (null when there was none).
async fn record(
    run: &mut Run,
    gpu: &afinador_core::gpu::Gpu,
    eval: Option<Evaluation>,
) -> Result<serde_json::Value, JsError> {
    let Some(eval) = eval else {
        return Ok(serde_json::Value::Null);
    };
    keep_best(run, gpu, &eval).await?;
    run.metrics.push(eval.line.clone());
    Ok(eval.line)
}

pub(crate) fn no_run() -> JsError {
    JsError::new("no training run: call configure, then beginPass")
}
