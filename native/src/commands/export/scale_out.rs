//! `afinador export --run DIR --to axolotl|trl`: a run's configuration as an Axolotl YAML or a
//! TRL script, for when the data outgrows one GPU. The same data files, record format, prompt
//! masking, sequence length, packing, LoRA, optimizer, schedule, batch × accumulation, length,
//! seed and validation split; QLoRA (4-bit NF4 base) on the Hugging Face checkpoint the GGUF was
//! converted from.
//!
//! The keys written are listed, with their sources, in `tests/data/scale_out_keys.json`, which
//! the tests hold every export to.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use afinador_core::formats::Gguf;
use afinador_core::train::data::{RawRecord, RecordFormat, RecordReader, SourceKind};
use afinador_core::train::{LrSchedule, TrainConfig};
use anyhow::{Context, Result, bail};

/// The Hugging Face repository of the base model, from the GGUF's metadata
/// (`general.base_model.0.repo_url`, `general.source.huggingface.repository`,
/// `general.source.url`), or `None`.
pub fn hf_repository(gguf: &Gguf) -> Option<String> {
    let meta = gguf.metadata();
    let keys = [
        "general.source.huggingface.repository",
        "general.base_model.0.repo_url",
        "general.source.url",
    ];
    keys.iter().find_map(|k| {
        let v = meta.get_str(k).ok()?;
        let id = v
            .trim_start_matches("https://huggingface.co/")
            .trim_end_matches('/');
        (id.split('/').count() == 2 && !id.contains(':')).then(|| id.to_string())
    })
}

/// What a run exports: its configuration and the facts read from its files.
pub struct Run<'a> {
    pub config: &'a TrainConfig,
    /// The record format of the training data (detected from its first record when the
    /// configuration does not name one).
    pub format: RecordFormat,
    /// The base model's Hugging Face repository, or `None` (a placeholder is written).
    pub base_model: Option<String>,
    /// The GGUF's `general.name`, for the placeholder's note.
    pub gguf_name: String,
    /// Where the exported configuration writes its own outputs.
    pub output_dir: String,
}

/// The placeholder written when the GGUF does not name its Hugging Face repository.
pub const PLACEHOLDER: &str = "REPLACE-WITH/hf-model-id";

impl Run<'_> {
    fn base_model(&self) -> &str {
        self.base_model.as_deref().unwrap_or(PLACEHOLDER)
    }

    fn base_model_note(&self) -> String {
        match &self.base_model {
            Some(_) => {
                "# base_model: the Hugging Face repository named in the GGUF's metadata.\n".into()
            }
            None => format!(
                "# base_model: the GGUF names no Hugging Face repository (general.base_model.*,\n\
                 # general.source.*): replace {PLACEHOLDER} with the checkpoint it was converted\n\
                 # from (the GGUF calls itself {:?}).\n",
                self.gguf_name
            ),
        }
    }

    fn targets(&self) -> Vec<String> {
        let t = self.config.target_modules.trim();
        if t == "all-linear" {
            [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec()
        } else {
            t.split(',').map(|s| s.trim().to_string()).collect()
        }
    }
}

/// The record format of `config`'s training data.
pub fn record_format(config: &TrainConfig) -> Result<RecordFormat> {
    if let Some(f) = RecordFormat::from_flags(
        config.format.as_deref(),
        config.prompt_field.as_deref(),
        config.completion_field.as_deref(),
    )? {
        return Ok(f);
    }
    // The first good record, streamed: a data set can be far larger than memory.
    let path = &config.data;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening the run's data file {path}"))?;
    let detect = |r: RawRecord| RecordFormat::detect(&r.value).unwrap_or_else(RecordFormat::text);
    let mut reader = RecordReader::new(SourceKind::Auto);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut chunk)
            .with_context(|| format!("reading {path}"))?;
        if n == 0 {
            break;
        }
        if let Some(record) = reader.push(&chunk[..n]).into_iter().find_map(Result::ok) {
            return Ok(detect(record));
        }
    }
    match reader.finish().into_iter().find_map(Result::ok) {
        Some(record) => Ok(detect(record)),
        None => bail!(
            "{path} holds no valid record to tell its format from: set `format` in the run's \
             config.json"
        ),
    }
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn scheduler(s: LrSchedule) -> &'static str {
    match s {
        LrSchedule::Cosine => "cosine",
        LrSchedule::Linear => "linear",
        LrSchedule::Constant => "constant_with_warmup",
    }
}

/// One Axolotl dataset entry for `path` in `format`.
fn axolotl_dataset(path: &str, format: &RecordFormat) -> String {
    let mut s = format!("  - path: {}\n    ds_type: json\n", yaml_str(path));
    match format {
        RecordFormat::Messages => s.push_str(
            "    type: chat_template\n    field_messages: messages\n    roles_to_train: [\"assistant\"]\n",
        ),
        RecordFormat::Instruction => s.push_str("    type: alpaca\n"),
        RecordFormat::PromptCompletion {
            prompt_field,
            completion_field,
        } => {
            let _ = write!(
                s,
                "    type:\n      field_instruction: {}\n      field_output: {}\n      \
                 format: \"{{instruction}}\"\n      no_input_format: \"{{instruction}}\"\n",
                yaml_str(prompt_field),
                yaml_str(completion_field)
            );
        }
        RecordFormat::Text { field } => {
            let _ = write!(s, "    type: completion\n    field: {}\n", yaml_str(field));
        }
    }
    s
}

/// The run as an Axolotl YAML (QLoRA), with the launch lines in its header.
pub fn axolotl(run: &Run<'_>, run_dir: &Path) -> String {
    let c = run.config;
    let mut s = format!(
        "# Written by `afinador export --run {} --to axolotl` from its config.json: the same\n\
         # fine-tune as QLoRA on NVIDIA GPUs with Axolotl. Launch it with\n\
         #   axolotl train axolotl.yml                     # every GPU of this machine\n\
         #   axolotl train axolotl.yml --deepspeed deepspeed_configs/zero2.json   # ZeRO-2\n\
         # (or: accelerate launch -m axolotl.cli.train axolotl.yml). Bring the adapter back with\n\
         #   afinador eval --adapter {}/checkpoint-N … / afinador export --adapter … --to gguf-lora\n\
         # Data paths are as the run was given them (relative to where `afinador train` ran).\n",
        run_dir.display(),
        run.output_dir
    );
    s.push_str(&run.base_model_note());
    let _ = writeln!(s, "base_model: {}", yaml_str(run.base_model()));
    s.push_str("load_in_4bit: true\nadapter: qlora\n");
    let _ = writeln!(s, "lora_r: {}", c.lora_r);
    let _ = writeln!(s, "lora_alpha: {}", c.lora_alpha);
    let _ = writeln!(s, "lora_dropout: {}", c.lora_dropout);
    let _ = writeln!(s, "lora_target_modules: {:?}", run.targets());
    let _ = writeln!(s, "peft_use_rslora: {}", c.rslora);
    s.push_str("datasets:\n");
    s.push_str(&axolotl_dataset(&c.data, &run.format));
    match &c.eval_data {
        Some(eval) => {
            s.push_str("test_datasets:\n");
            s.push_str(&axolotl_dataset(eval, &run.format));
            s.push_str("val_set_size: 0.0\n");
        }
        None => {
            let _ = writeln!(s, "val_set_size: {}", c.val_ratio);
        }
    }
    let _ = writeln!(s, "sequence_len: {}", c.seq_len);
    let _ = writeln!(s, "sample_packing: {}", c.pack);
    let _ = writeln!(s, "pad_to_sequence_len: {}", c.pack);
    let _ = writeln!(s, "train_on_inputs: {}", c.train_on_prompt);
    let _ = writeln!(s, "micro_batch_size: {}", c.batch_size);
    let _ = writeln!(s, "gradient_accumulation_steps: {}", c.grad_accum);
    let _ = writeln!(s, "num_epochs: {}", c.epochs);
    if c.max_steps > 0 {
        let _ = writeln!(s, "max_steps: {}", c.max_steps);
    }
    s.push_str("optimizer: adamw_torch\n");
    let _ = writeln!(s, "lr_scheduler: {}", scheduler(c.lr_schedule));
    let _ = writeln!(s, "learning_rate: {}", c.lr);
    let _ = writeln!(s, "warmup_ratio: {}", c.warmup_ratio);
    let _ = writeln!(s, "weight_decay: {}", c.weight_decay);
    let _ = writeln!(s, "max_grad_norm: {}", c.max_grad_norm);
    let _ = writeln!(s, "seed: {}", c.seed);
    let _ = writeln!(s, "output_dir: {}", yaml_str(&run.output_dir));
    if c.eval_every > 0 {
        let _ = writeln!(s, "eval_steps: {}", c.eval_every);
    }
    if c.save_every > 0 {
        let _ = writeln!(s, "save_steps: {}", c.save_every);
    }
    let _ = writeln!(s, "save_total_limit: {}", c.keep_checkpoints);
    if c.early_stopping_patience > 0 {
        let _ = writeln!(s, "early_stopping_patience: {}", c.early_stopping_patience);
    }
    s.push_str("bf16: auto\ngradient_checkpointing: true\nlogging_steps: 1\n");
    s
}

/// `name=value` lines of a Python call, one per line (the tests read them back).
fn kwargs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("    {k}={v},\n"))
        .collect()
}

fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

/// The run as a TRL script (`SFTTrainer` + `LoraConfig`, QLoRA).
pub fn trl(run: &Run<'_>, run_dir: &Path) -> String {
    let c = run.config;
    let mut s = format!(
        "# Written by `afinador export --run {} --to trl` from its config.json: the same\n\
         # fine-tune as QLoRA with TRL's SFTTrainer. Run it with\n\
         #   accelerate launch train_trl.py                 # every GPU of this machine\n\
         #   accelerate launch --use_deepspeed --zero_stage 2 train_trl.py   # DeepSpeed ZeRO-2\n\
         # Needs: pip install torch transformers datasets peft trl bitsandbytes accelerate\n\
         # Data paths are as the run was given them (relative to where `afinador train` ran).\n",
        run_dir.display()
    );
    s.push_str(&run.base_model_note());
    s.push_str(
        "import torch\n\
         from datasets import load_dataset\n\
         from peft import LoraConfig\n\
         from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig\n\
         from transformers import EarlyStoppingCallback\n\
         from trl import SFTConfig, SFTTrainer\n\n",
    );
    let _ = writeln!(s, "BASE_MODEL = {}", py_str(run.base_model()));
    let mut files = format!("{{\"train\": {}", py_str(&c.data));
    if let Some(eval) = &c.eval_data {
        let _ = write!(files, ", \"validation\": {}", py_str(eval));
    }
    files.push('}');
    let _ = writeln!(s, "data = load_dataset(\"json\", data_files={files})");
    if c.eval_data.is_none() && c.val_ratio > 0.0 {
        let _ = writeln!(
            s,
            "data = data[\"train\"].train_test_split(test_size={}, seed={})\n\
             data[\"validation\"] = data.pop(\"test\")",
            c.val_ratio, c.seed
        );
    }
    // Records into the formats SFTTrainer reads natively.
    match &run.format {
        RecordFormat::Messages => s.push_str(
            "\n# Conversations become conversational prompt/completion pairs: the last assistant\n\
             # turn is the completion (afinador trains every assistant turn; for multi-turn data\n\
             # use assistant_only_loss=True with a chat template that marks generation).\n\
             def to_pair(record):\n\
             \x20   messages = record[\"messages\"]\n\
             \x20   last = max(i for i, m in enumerate(messages) if m[\"role\"] == \"assistant\")\n\
             \x20   return {\"prompt\": messages[:last], \"completion\": [messages[last]]}\n\n\
             data = data.map(to_pair, remove_columns=data[\"train\"].column_names)\n",
        ),
        RecordFormat::Instruction => s.push_str(
            "\n# Alpaca records become prompt/completion pairs.\n\
             def to_pair(record):\n\
             \x20   prompt = record[\"instruction\"]\n\
             \x20   if record.get(\"input\"):\n\
             \x20       prompt += \"\\n\\n\" + record[\"input\"]\n\
             \x20   return {\"prompt\": prompt, \"completion\": record[\"output\"]}\n\n\
             data = data.map(to_pair, remove_columns=data[\"train\"].column_names)\n",
        ),
        RecordFormat::PromptCompletion {
            prompt_field,
            completion_field,
        } => {
            if prompt_field != "prompt" || completion_field != "completion" {
                let _ = writeln!(
                    s,
                    "data = data.rename_columns({{{}: \"prompt\", {}: \"completion\"}})",
                    py_str(prompt_field),
                    py_str(completion_field)
                );
            }
        }
        RecordFormat::Text { field } => {
            if field != "text" {
                let _ = writeln!(s, "data = data.rename_column({}, \"text\")", py_str(field));
            }
        }
    }
    let has_eval = c.eval_data.is_some() || c.val_ratio > 0.0;
    let (eval_strategy, eval_steps) = match (has_eval, c.eval_every) {
        (false, _) => ("no", None),
        (true, 0) => ("epoch", None),
        (true, n) => ("steps", Some(n)),
    };
    let mut config = vec![
        ("output_dir", py_str(&run.output_dir)),
        ("max_length", c.seq_len.to_string()),
        ("packing", py_bool(c.pack)),
        ("completion_only_loss", py_bool(!c.train_on_prompt)),
        ("per_device_train_batch_size", c.batch_size.to_string()),
        ("gradient_accumulation_steps", c.grad_accum.to_string()),
        ("num_train_epochs", c.epochs.to_string()),
        (
            "max_steps",
            if c.max_steps > 0 {
                c.max_steps.to_string()
            } else {
                "-1".into()
            },
        ),
        ("learning_rate", c.lr.to_string()),
        ("lr_scheduler_type", py_str(scheduler(c.lr_schedule))),
        // transformers 5 removed warmup_ratio: a warmup_steps below 1 is the ratio.
        ("warmup_steps", c.warmup_ratio.to_string()),
        ("weight_decay", c.weight_decay.to_string()),
        ("max_grad_norm", c.max_grad_norm.to_string()),
        ("optim", py_str("adamw_torch")),
        ("seed", c.seed.to_string()),
        ("eval_strategy", py_str(eval_strategy)),
        ("logging_steps", "1".into()),
        ("save_total_limit", c.keep_checkpoints.to_string()),
        ("bf16", "True".into()),
        ("gradient_checkpointing", "True".into()),
    ];
    if let Some(n) = eval_steps {
        config.push(("eval_steps", n.to_string()));
    }
    // Early stopping keeps the best checkpoint, which needs saves where evaluations are.
    let early = has_eval && c.early_stopping_patience > 0;
    if early {
        config.push(("load_best_model_at_end", "True".into()));
        config.push(("metric_for_best_model", py_str("eval_loss")));
        config.push(("save_strategy", py_str(eval_strategy)));
        if let Some(n) = eval_steps {
            config.push(("save_steps", n.to_string()));
        }
    } else if c.save_every > 0 {
        config.push(("save_steps", c.save_every.to_string()));
    }
    let lora = vec![
        ("r", c.lora_r.to_string()),
        ("lora_alpha", c.lora_alpha.to_string()),
        ("lora_dropout", c.lora_dropout.to_string()),
        ("target_modules", format!("{:?}", run.targets())),
        ("use_rslora", py_bool(c.rslora)),
        ("bias", py_str("none")),
        ("task_type", py_str("CAUSAL_LM")),
    ];
    s.push_str(
        "\ntokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)\n\
         model = AutoModelForCausalLM.from_pretrained(\n\
         \x20   BASE_MODEL,\n\
         \x20   quantization_config=BitsAndBytesConfig(\n\
         \x20       load_in_4bit=True,\n\
         \x20       bnb_4bit_quant_type=\"nf4\",\n\
         \x20       bnb_4bit_compute_dtype=torch.bfloat16,\n\
         \x20       bnb_4bit_use_double_quant=True,\n\
         \x20   ),\n\
         )\n",
    );
    let _ = write!(s, "peft_config = LoraConfig(\n{})\n", kwargs(&lora));
    let _ = write!(s, "args = SFTConfig(\n{})\n", kwargs(&config));
    let callbacks = if early {
        format!(
            "[EarlyStoppingCallback(early_stopping_patience={}, early_stopping_threshold={})]",
            c.early_stopping_patience, c.early_stopping_min_delta
        )
    } else {
        "[]".into()
    };
    let eval_dataset = if has_eval {
        "data[\"validation\"]"
    } else {
        "None"
    };
    let _ = write!(
        s,
        "trainer = SFTTrainer(\n\
         \x20   model=model,\n\
         \x20   args=args,\n\
         \x20   train_dataset=data[\"train\"],\n\
         \x20   eval_dataset={eval_dataset},\n\
         \x20   processing_class=tokenizer,\n\
         \x20   peft_config=peft_config,\n\
         \x20   callbacks={callbacks},\n\
         )\n\
         trainer.train()\n\
         trainer.save_model(args.output_dir)  # a PEFT adapter: afinador eval/export --adapter\n"
    );
    s
}
