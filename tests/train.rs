//! `afinador train` end to end on a tiny model that carries SmolLM2's tokenizer (fast on
//! lavapipe): outputs, checkpoints, exact resume, bad records; and a short real SmolLM2 run.

mod common;

use std::path::Path;
use std::process::Output;

use common::{ShortRun, afinador, model_path, ok, repo, scratch};

/// A tiny random model with the real tokenizer, and the first `n` ENEM records.
fn fixtures(dir: &Path, n: usize) -> (String, String) {
    let model = dir.join("tiny.gguf");
    let real = model_path();
    ok(afinador(&[
        "make-tiny-model",
        "--output",
        model.to_str().unwrap(),
        "--tokenizer-from",
        real.to_str().unwrap(),
    ]));
    let enem = std::fs::read_to_string(repo().join("examples/enem/train.jsonl")).unwrap();
    let data = dir.join("data.jsonl");
    std::fs::write(&data, enem.lines().take(n).collect::<Vec<_>>().join("\n")).unwrap();
    (
        model.to_str().unwrap().into(),
        data.to_str().unwrap().into(),
    )
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn train_args<'a>(model: &'a str, data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--model",
        model,
        "--data",
        data,
        "--output",
        out,
        "--batch-size",
        "2",
        "--seq-len",
        "320",
        "--lr",
        "2e-3",
        "--lr-schedule",
        "constant",
        "--warmup-ratio",
        "0",
        "--seed",
        "7",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_validation_set_smaller_than_one_batch_is_evaluated() {
    // One validation record, batches of 2: the evaluation fills the batch with a sequence that
    // has no targets (it used to skip the short batch and report a loss of 0 as the best).
    let dir = scratch("small-val");
    let (model, data) = fixtures(&dir, 8);
    let enem = std::fs::read_to_string(repo().join("examples/enem/train.jsonl")).unwrap();
    let val = dir.join("val.jsonl");
    std::fs::write(&val, enem.lines().nth(20).unwrap()).unwrap();
    let run = dir.join("run");
    let extra = [
        "--eval-data",
        val.to_str().unwrap(),
        "--eval-every",
        "1",
        "--max-steps",
        "1",
    ];
    ok(afinador(&train_args(
        &model,
        &data,
        run.to_str().unwrap(),
        &extra,
    )));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let line: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v.get("eval_loss").is_some())
        .expect("an evaluation line");
    // A random model over SmolLM2's 49152 tokens: near ln(49152) = 10.8.
    let loss = line["eval_loss"].as_f64().unwrap();
    assert!(loss > 5.0 && loss < 20.0, "{line}");
}

#[test]
fn training_writes_metrics_checkpoints_best_and_a_peft_adapter() {
    let dir = scratch("outputs");
    let (model, data) = fixtures(&dir, 40);
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    let extra = [
        "--max-steps",
        "6",
        "--val-ratio",
        "0.2",
        "--eval-every",
        "3",
        "--save-every",
        "2",
        "--keep-checkpoints",
        "2",
    ];
    ok(afinador(&train_args(&model, &data, o, &extra)));
    // metrics.jsonl: one line per step with the contract keys; eval keys at eval steps.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for line in &lines {
        for key in [
            "step",
            "epoch",
            "loss",
            "token_accuracy",
            "entropy",
            "grad_norm",
            "lr",
            "tokens_per_s",
            "elapsed_s",
        ] {
            assert!(
                line.get(key).is_some(),
                "metrics line without {key}: {line}"
            );
        }
    }
    for key in ["eval_loss", "eval_ppl", "eval_token_accuracy"] {
        assert!(
            lines[2].get(key).is_some() && lines[5].get(key).is_some(),
            "no {key} at eval steps"
        );
    }
    // The newest two checkpoints, each complete.
    let names: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["step-4", "step-6"]);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(
            out.join("checkpoints/step-6").join(f).exists(),
            "checkpoint lacks {f}"
        );
    }
    // PEFT adapter: config keys and tensor names/shapes.
    for d in ["adapter", "best"] {
        assert!(
            out.join(d).join("adapter_model.safetensors").exists(),
            "{d}/ has no adapter"
        );
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], 16);
    assert_eq!(config["bias"], "none");
    assert_eq!(config["fan_in_fan_out"], false);
    assert_eq!(config["inference_mode"], true);
    let bytes = std::fs::read(out.join("adapter/adapter_model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["format"], "pt");
    let a = &header["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    assert_eq!(a["dtype"], "F32");
    assert_eq!(a["shape"], serde_json::json!([16, 64]));
    assert_eq!(
        header["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]["shape"],
        serde_json::json!([32, 16])
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training_summary.json")).unwrap())
            .unwrap();
    for key in [
        "best_step",
        "best_eval_loss",
        "steps",
        "tokens",
        "time_s",
        "tokens_per_s",
        "gpu_memory_bytes",
    ] {
        assert!(summary.get(key).is_some(), "summary without {key}");
    }
    assert_eq!(summary["steps"], 6);
    assert!(summary["gpu_memory_bytes"].as_u64().unwrap() > 0);
    check_report(
        &out,
        &[
            "loss",
            "token_accuracy",
            "entropy",
            "grad_norm",
            "lr",
            "tokens_per_s",
        ],
    );
    // The adapter loads back for scoring, and changes the model.
    let text = "Resposta: B. A água ferve a 100 °C ao nível do mar.";
    let base = ok(afinador(&[
        "score", "--model", &model, "--text", text, "--json",
    ]));
    let tuned = ok(afinador(&[
        "score",
        "--model",
        &model,
        "--adapter",
        out.join("adapter").to_str().unwrap(),
        "--text",
        text,
        "--json",
    ]));
    let nll = |o: &Output| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["nll"]
            .as_f64()
            .unwrap()
    };
    assert!(
        (nll(&base) - nll(&tuned)).abs() > 1e-4,
        "the adapter changed nothing"
    );
}

/// The report `train` wrote: every chart as a PNG file that decodes, and embedded in the HTML
/// page (which fetches nothing) as the same image.
fn check_report(run: &Path, charts: &[&str]) -> String {
    use base64::Engine;
    let html = std::fs::read_to_string(run.join("report/report.html")).expect("report.html");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    for id in charts {
        let file = std::fs::read(run.join(format!("report/{id}.png"))).expect("chart PNG");
        let img = image::load_from_memory(&file).unwrap_or_else(|e| panic!("{id}.png: {e}"));
        assert!(img.width() >= 400 && img.height() >= 200);
        let anchor = format!("<figure id=\"chart-{id}\"><img");
        let at = html
            .find(&anchor)
            .unwrap_or_else(|| panic!("no {id} chart in the report"));
        let src = &html[at..];
        let start = src.find("base64,").unwrap() + 7;
        let end = start + src[start..].find('"').unwrap();
        let embedded = base64::engine::general_purpose::STANDARD
            .decode(&src[start..end])
            .unwrap();
        assert_eq!(embedded, file, "{id}: the page embeds another image");
    }
    html
}

#[test]
fn a_resumed_run_continues_exactly() {
    // 6 steps in one go, and 3 steps + resume to 6: the same losses (dropout on, constant lr).
    let dir = scratch("resume");
    let (model, data) = fixtures(&dir, 30);
    let (a, b) = (dir.join("a"), dir.join("b"));
    ok(afinador(&train_args(
        &model,
        &data,
        a.to_str().unwrap(),
        &["--max-steps", "6"],
    )));
    ok(afinador(&train_args(
        &model,
        &data,
        b.to_str().unwrap(),
        &["--max-steps", "3"],
    )));
    ok(afinador(&[
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--max-steps",
        "6",
    ]));
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), 6);
    assert_eq!(
        lb.iter().map(|x| x.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    for ((sa, x), (_, y)) in la.iter().zip(&lb) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "step {sa}: {x} vs {y}");
    }
}

#[test]
fn bad_records_are_skipped_and_reported_or_stop_a_strict_run() {
    let dir = scratch("bad");
    let (model, data) = fixtures(&dir, 12);
    let mut lines: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.insert(2, "{\"messages\": [oops".into());
    lines.insert(5, "{\"messages\": 42}".into());
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    let run = ok(afinador(&train_args(
        &model,
        &data,
        o,
        &["--max-steps", "1"],
    )));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("2 bad") && err.contains("line 3") && err.contains("line 6"),
        "{err}"
    );
    let strict = afinador(&train_args(
        &model,
        &data,
        o,
        &["--max-steps", "1", "--strict"],
    ));
    assert!(!strict.status.success());
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
}

#[test]
fn a_short_real_smollm2_run_lowers_the_loss_and_its_adapter_scores_what_the_trainer_reported() {
    // One short text trained three times (one sequence per step); see the helper.
    let text =
        "O ENEM avalia o desempenho escolar dos estudantes ao fim da educação básica no Brasil.";
    let run = ShortRun {
        steps: 3,
        seq_len: 48,
        lr: 2e-3,
    };
    run.lowers_the_loss_and_scores_like_the_trainer(&model_path(), "real", text, "<|im_end|>");
}

/// The `n` ENEM records of `file` with the shortest conversations (fast on lavapipe).
fn shortest_enem(file: &str, n: usize, out: &Path) -> String {
    let text = std::fs::read_to_string(repo().join("examples/enem").join(file)).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_by_key(|l| l.len());
    std::fs::write(out, lines[..n].join("\n")).unwrap();
    out.to_str().unwrap().into()
}

#[test]
fn an_enem_eval_compares_the_base_model_with_a_short_trained_adapter() {
    let dir = scratch("enem-eval");
    let train = shortest_enem("train.jsonl", 2, &dir.join("train.jsonl"));
    let eval = shortest_enem("validation.jsonl", 2, &dir.join("eval.jsonl"));
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    ok(afinador(&[
        "train",
        "--data",
        &train,
        "--output",
        r,
        "--max-steps",
        "1",
        "--batch-size",
        "1",
        "--seq-len",
        "64",
        "--train-on-prompt",
        "--lr",
        "5e-3",
        "--warmup-ratio",
        "0",
    ]));
    let out = ok(afinador(&[
        "eval",
        "--data",
        &eval,
        "--adapter",
        run.join("adapter").to_str().unwrap(),
        "--compare-base",
        "--max-new-tokens",
        "3",
        "--output",
        run.join("eval").to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = [
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "exact_match",
        "f1",
        "precision",
        "recall",
        "accuracy",
        "token_accuracy",
    ];
    for scores in [&v, &v["base"]] {
        for key in keys {
            let x = scores[key]
                .as_f64()
                .unwrap_or_else(|| panic!("no {key}: {v}"));
            assert!((0.0..=1.0).contains(&x), "{key} = {x}");
        }
        let bleu = scores["bleu"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&bleu));
        let (loss, ppl) = (
            scores["eval_loss"].as_f64().unwrap(),
            scores["ppl"].as_f64().unwrap(),
        );
        assert!(loss > 0.0 && (ppl - loss.exp()).abs() < 1e-9 * ppl);
    }
    assert_ne!(
        v["eval_loss"], v["base"]["eval_loss"],
        "the adapter changed nothing"
    );
    // The output directory: predictions of both models, the metrics and a Markdown table.
    let predictions = std::fs::read_to_string(run.join("eval/predictions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = predictions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        for key in [
            "prediction",
            "base_prediction",
            "reference",
            "scores",
            "base_scores",
        ] {
            assert!(l.get(key).is_some(), "predictions line without {key}: {l}");
        }
    }
    let md = std::fs::read_to_string(run.join("eval/metrics.md")).unwrap();
    assert!(
        md.starts_with("| metric | base | adapter | delta |"),
        "{md}"
    );
    // `report` puts the comparison beside the curves.
    ok(afinador(&["report", r]));
    let html = check_report(&run, &["loss", "token_accuracy", "lr"]);
    let table = &html[html
        .find("Evaluation: base model vs adapter")
        .expect("no eval table")..];
    assert!(table.contains("<th>ppl</th>") && table.contains("<th>accuracy</th>"));
}

#[test]
fn preflight_plans_within_15_percent_of_what_the_trainer_allocates() {
    let dir = scratch("preflight");
    // 20 ENEM records with a broken one on line 5.
    let enem = std::fs::read_to_string(repo().join("examples/enem/train.jsonl")).unwrap();
    let mut lines: Vec<&str> = enem.lines().take(20).collect();
    lines.insert(4, "{\"messages\": [oops");
    let data = dir.join("data.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let d = data.to_str().unwrap();
    let small: &[&str] = &[
        "--batch-size",
        "1",
        "--seq-len",
        "64",
        "--train-on-prompt",
        "--target-modules",
        "q_proj,v_proj",
        "--time-steps",
        "1",
    ];
    let big: &[&str] = &[
        "--batch-size",
        "2",
        "--seq-len",
        "256",
        "--target-modules",
        "all-linear",
        "--lora-r",
        "8",
        "--grad-accum",
        "2",
        "--time-steps",
        "0",
    ];
    // The third is the second with gradient checkpointing: one layer's activations.
    let checkpointed = [big, &["--gradient-checkpointing", "on"]].concat();
    let configs: [&[&str]; 3] = [small, big, &checkpointed];
    let mut activations = Vec::new();
    for (i, extra) in configs.iter().enumerate() {
        let mut args = vec!["preflight", "--data", d, "--max-steps", "10", "--json"];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_slice(&ok(afinador(&args)).stdout).unwrap();
        let m = &v["memory"];
        let (plan, measured) = (
            m["total_bytes"].as_f64().unwrap(),
            m["measured_bytes"].as_f64().unwrap(),
        );
        assert!(
            (plan - measured).abs() <= 0.15 * measured,
            "config {i}: plan {plan} vs allocated {measured}"
        );
        assert_eq!(m["fits"], true);
        assert_eq!(m["gradient_checkpointing"], i == 2, "config {i}");
        activations.push(m["plan"]["activations"].as_u64().unwrap());
        assert!(m["largest_batch_at_seq_len"].as_u64().unwrap() >= 1);
        let data = &v["data"];
        assert_eq!(data["records"], 20, "good records");
        assert_eq!(data["bad_records"], 1);
        assert_eq!(data["first_bad"][0]["line"], 5);
        assert!(data["token_lengths"]["max"].as_u64().unwrap() > 100);
        let advice = v["recommendations"].to_string();
        assert!(advice.contains("lines 5"), "{advice}");
        match i {
            0 => {
                let t = &v["time"];
                for key in ["first_step_s", "step_s", "tokens_per_s", "epoch_s", "run_s"] {
                    let x = t[key]
                        .as_f64()
                        .unwrap_or_else(|| panic!("no time.{key}: {t}"));
                    assert!(x.is_finite() && x > 0.0, "time.{key} = {x}");
                }
                assert_eq!(v["schedule"]["steps_per_epoch"], 20);
            }
            _ => assert!(v["time"].is_null()),
        }
    }
    // SmolLM2's 30 layers: checkpointing keeps one layer's activations and the residual
    // stream, so the saved activations shrink almost tenfold (measured: 501 → 52 MiB).
    assert!(
        activations[2] * 8 < activations[1],
        "activations {activations:?}"
    );
    // auto: on exactly when the budget lies between the two plans.
    let mut args = vec!["preflight", "--data", d, "--max-steps", "10", "--json"];
    args.extend_from_slice(configs[1]);
    let v: serde_json::Value = serde_json::from_slice(&ok(afinador(&args)).stdout).unwrap();
    let (off, on) = (
        v["memory"]["total_bytes"].as_f64().unwrap(),
        v["memory"]["total_bytes_with_checkpointing_toggled"]
            .as_f64()
            .unwrap(),
    );
    let between = format!("{}", (off + on) / 2.0 / (1u64 << 30) as f64);
    args.extend_from_slice(&["--memory-budget", &between]);
    let v: serde_json::Value = serde_json::from_slice(&ok(afinador(&args)).stdout).unwrap();
    assert_eq!(
        v["memory"]["gradient_checkpointing"], true,
        "{}",
        v["memory"]
    );
    assert_eq!(v["memory"]["fits"], true);
}
