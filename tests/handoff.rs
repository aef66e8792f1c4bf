//! Adapters out to other tools and back in (issue 16): every adapter directory holds a GGUF
//! LoRA beside the PEFT files, `export` writes each format, `--init-adapter` starts from one;
//! PEFT exports have the names and shapes PEFT expects and score as in transformers + PEFT.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{afinador, gemma3_path, model_path, ok, qwen2_path, repo, scratch, tiny_model};

/// A tiny random Llama with the real tokenizer, 16 ENEM records, and a 3-step run on them with
/// an evaluation and checkpoints: (model, data, run directory).
fn trained(dir: &Path, extra: &[&str]) -> (String, String, PathBuf) {
    let model = tiny_model(dir);
    let enem = std::fs::read_to_string(repo().join("examples/enem/train.jsonl")).unwrap();
    let data = dir.join("data.jsonl");
    std::fs::write(&data, enem.lines().take(16).collect::<Vec<_>>().join("\n")).unwrap();
    let run = dir.join("run");
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let mut args = vec![
        "train",
        "--model",
        m,
        "--data",
        d,
        "--output",
        run.to_str().unwrap(),
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--seq-len",
        "256",
        "--lr",
        "1e-2",
        "--val-ratio",
        "0.25",
        "--eval-every",
        "2",
        "--save-every",
        "2",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    ok(afinador(&args));
    (m.into(), d.into(), run)
}

/// The text the adapters are scored on.
const TEXT: &str = "Resposta: C. As hemácias contêm hemoglobina, que transporta oxigênio.";

/// Mean NLL of [`TEXT`] under `model` (+ `adapter`).
fn nll(model: &str, adapter: Option<&Path>) -> f64 {
    let (_, logprobs) = score(Path::new(model), adapter, TEXT);
    -mean(&logprobs)
}

/// The tensors of a safetensors file: name → (dtype, shape, bytes).
fn tensors(path: &Path) -> std::collections::BTreeMap<String, (String, String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let off = &v["data_offsets"];
            let (a, b) = (
                off[0].as_u64().unwrap() as usize,
                off[1].as_u64().unwrap() as usize,
            );
            (
                k.clone(),
                (
                    v["dtype"].to_string(),
                    v["shape"].to_string(),
                    data[a..b].to_vec(),
                ),
            )
        })
        .collect()
}

#[test]
fn every_adapter_directory_holds_a_gguf_lora_that_scores_like_its_peft_files() {
    let dir = scratch("gguf");
    let (model, _, run) = trained(&dir, &[]);
    for d in ["adapter", "best", "checkpoints/step-2"] {
        let gguf = run.join(d).join("adapter.gguf");
        assert!(gguf.exists(), "{d}/ has no adapter.gguf");
        let bytes = std::fs::read(&gguf).unwrap();
        assert_eq!(&bytes[..4], b"GGUF");
    }
    let peft = nll(&model, Some(&run.join("adapter")));
    let gguf = nll(&model, Some(&run.join("adapter/adapter.gguf")));
    assert!(
        (peft - gguf).abs() <= 1e-6 * peft.abs().max(1.0),
        "PEFT {peft} vs GGUF LoRA {gguf}"
    );
}

#[test]
fn export_writes_each_format_and_peft_round_trips_bit_exactly() {
    let dir = scratch("export");
    let (model, _, run) = trained(&dir, &[]);
    let adapter = run.join("adapter");
    let a = adapter.to_str().unwrap();
    let base_nll = nll(&model, None);
    let tuned = nll(&model, Some(&adapter));
    assert!(
        (tuned - base_nll).abs() > 1e-4,
        "the adapter changes the model"
    );

    // GGUF LoRA to a chosen path, then back to PEFT: the same tensors, bit for bit.
    let gguf = dir.join("out/lora.gguf");
    ok(afinador(&[
        "export",
        "--model",
        &model,
        "--adapter",
        a,
        "--to",
        "gguf-lora",
        "--output",
        gguf.to_str().unwrap(),
    ]));
    let peft = dir.join("out/peft");
    ok(afinador(&[
        "export",
        "--model",
        &model,
        "--adapter",
        gguf.to_str().unwrap(),
        "--to",
        "peft",
        "--output",
        peft.to_str().unwrap(),
    ]));
    let name = "adapter_model.safetensors";
    assert_eq!(tensors(&adapter.join(name)), tensors(&peft.join(name)));
    // PEFT → afinador → PEFT as well.
    let again = dir.join("out/peft-again");
    ok(afinador(&[
        "export",
        "--model",
        &model,
        "--adapter",
        a,
        "--to",
        "peft",
        "--output",
        again.to_str().unwrap(),
    ]));
    assert_eq!(tensors(&adapter.join(name)), tensors(&again.join(name)));
    let config = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("adapter_config.json")).unwrap())
            .unwrap()
    };
    for key in ["r", "lora_alpha", "target_modules", "use_rslora"] {
        assert_eq!(config(&adapter)[key], config(&again)[key], "{key}");
    }

    // Ollama: the GGUF LoRA and a Modelfile naming the base model, and the line to run.
    let out = ok(afinador(&[
        "export",
        "--model",
        &model,
        "--adapter",
        a,
        "--to",
        "ollama",
        "--name",
        "enem",
        "--system",
        "Responda com a letra.",
    ]));
    let folder = adapter.join("ollama");
    let modelfile = std::fs::read_to_string(folder.join("Modelfile")).unwrap();
    let abs_model = std::fs::canonicalize(repo().join(&model)).unwrap();
    assert!(
        modelfile.contains(&format!("FROM {}\n", abs_model.display())),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("ADAPTER ./adapter.gguf\n"),
        "{modelfile}"
    );
    assert!(modelfile.contains("TEMPLATE \"\"\"") && modelfile.contains("<|im_start|>assistant"));
    assert!(
        modelfile.contains("PARAMETER stop \"<|im_end|>\""),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("SYSTEM \"\"\"Responda com a letra.\"\"\""),
        "{modelfile}"
    );
    assert_eq!(
        std::fs::read(folder.join("adapter.gguf")).unwrap(),
        std::fs::read(adapter.join("adapter.gguf")).unwrap()
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with("ollama create enem -f "), "{line}");

    // Merged (f32 projections): scores what the adapter scores.
    let merged = dir.join("out/merged.gguf");
    ok(afinador(&[
        "export",
        "--model",
        &model,
        "--adapter",
        a,
        "--to",
        "merged",
        "--merged-type",
        "f32",
        "--output",
        merged.to_str().unwrap(),
    ]));
    let merged_nll = nll(merged.to_str().unwrap(), None);
    assert!(
        (merged_nll - tuned).abs() <= 1e-3 * tuned.abs().max(1.0),
        "merged {merged_nll} vs adapter {tuned}"
    );
}

#[test]
fn init_adapter_starts_from_an_existing_adapter() {
    let dir = scratch("init");
    let (model, data, run) = trained(&dir, &[]);
    let start = run.join("adapter");
    // A second run from that adapter with a vanishing learning rate ends where it started,
    // and takes the adapter's rank even when the flags say otherwise.
    let next = dir.join("next");
    let out = ok(afinador(&[
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--output",
        next.to_str().unwrap(),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--seq-len",
        "256",
        "--lr",
        "1e-12",
        "--lora-r",
        "4",
        "--init-adapter",
        start.join("adapter.gguf").to_str().unwrap(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--init-adapter sets --lora-r 16 (was 4)"),
        "{err}"
    );
    let (a, b) = (
        tensors(&start.join("adapter_model.safetensors")),
        tensors(&next.join("adapter/adapter_model.safetensors")),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let f32s = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut largest = 0.0f32;
    for (name, (_, _, x)) in &a {
        for (p, q) in f32s(x).iter().zip(f32s(&b[name].2)) {
            assert!((p - q).abs() <= 1e-6 + 1e-6 * p.abs(), "{name}: {p} vs {q}");
            largest = largest.max(p.abs());
        }
    }
    assert!(largest > 0.0);
    // It trained: a finite first loss, and the configuration it saved is the adapter's.
    let first_loss = |run: &Path| -> f64 {
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        v["loss"].as_f64().unwrap()
    };
    assert!(first_loss(&next).is_finite());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(next.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["lora_r"], 16);
    assert!(
        config["init_adapter"]
            .as_str()
            .unwrap()
            .ends_with("adapter.gguf")
    );
}

/// The names a list holds in `tests/data/scale_out_keys.json`.
fn documented(keys: &serde_json::Value, list: &str) -> Vec<String> {
    keys[list]
        .as_array()
        .unwrap_or_else(|| panic!("scale_out_keys.json has no {list}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// The `name=` arguments of the Python call that starts with `call(` (one per line).
fn call_kwargs(script: &str, call: &str) -> Vec<String> {
    let start = script
        .find(&format!("{call}(\n"))
        .unwrap_or_else(|| panic!("no {call}( in the script"));
    script[start..]
        .lines()
        .skip(1)
        .take_while(|l| *l != ")")
        .filter_map(|l| l.trim().split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn a_run_exports_to_axolotl_and_trl_with_documented_keys_only() {
    let dir = scratch("scale-out");
    let (_, _, run) = trained(&dir, &["--early-stopping-patience", "2", "--rslora"]);
    let keys = common::data("scale_out_keys.json");
    let r = run.to_str().unwrap();

    ok(afinador(&["export", "--run", r, "--to", "axolotl"]));
    let text = std::fs::read_to_string(run.join("axolotl.yml")).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("the YAML loads");
    let top = documented(&keys, "axolotl");
    let map = yaml.as_mapping().unwrap();
    for k in map.keys() {
        let k = k.as_str().unwrap();
        assert!(
            top.iter().any(|t| t == k),
            "axolotl key {k} is not documented"
        );
    }
    let entry_keys = documented(&keys, "axolotl_dataset");
    for entry in yaml["datasets"].as_sequence().unwrap() {
        for k in entry.as_mapping().unwrap().keys() {
            let k = k.as_str().unwrap();
            assert!(entry_keys.iter().any(|t| t == k), "dataset key {k}");
        }
    }
    // The run's settings, carried over.
    assert_eq!(yaml["adapter"], "qlora");
    assert_eq!(yaml["load_in_4bit"], true);
    assert_eq!(yaml["lora_r"], 16);
    assert_eq!(yaml["peft_use_rslora"], true);
    assert_eq!(yaml["sequence_len"], 256);
    assert_eq!(yaml["micro_batch_size"], 2);
    assert_eq!(yaml["max_steps"], 3);
    assert_eq!(yaml["val_set_size"], 0.25);
    assert_eq!(yaml["train_on_inputs"], false);
    assert_eq!(yaml["early_stopping_patience"], 2);
    assert_eq!(yaml["datasets"][0]["type"], "chat_template");
    assert_eq!(yaml["base_model"], "REPLACE-WITH/hf-model-id");

    ok(afinador(&["export", "--run", r, "--to", "trl"]));
    let script = run.join("train_trl.py");
    let compiled = Command::new("python3")
        .args(["-m", "py_compile", script.to_str().unwrap()])
        .output()
        .expect("python3");
    assert!(
        compiled.status.success(),
        "the TRL script does not compile: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    for (call, list) in [
        ("SFTConfig", "sft_config"),
        ("LoraConfig", "lora_config"),
        ("SFTTrainer", "sft_trainer"),
    ] {
        let allowed = documented(&keys, list);
        let used = call_kwargs(&text, call);
        assert!(!used.is_empty(), "{call} has no arguments");
        for k in used {
            assert!(allowed.contains(&k), "{call}({k}=…) is not documented");
        }
    }
    assert!(text.contains("use_rslora=True"), "{text}");
    assert!(text.contains("early_stopping_patience=2"), "{text}");
    assert!(text.contains("test_size=0.25"), "{text}");
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One recorded command of a `llama_cpp_lora*.json` file with its placeholders filled in.
fn recorded_command(v: &serde_json::Value, fill: &[(&str, &str)]) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            fill.iter()
                .find(|(k, _)| *k == a)
                .map_or(a.to_string(), |(_, v)| v.to_string())
        })
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// afinador's token ids and per-token log-probs of `text` under `model` (+ `adapter`).
fn score(model: &Path, adapter: Option<&Path>, text: &str) -> (Vec<u64>, Vec<f64>) {
    let mut args = vec![
        "score".to_string(),
        "--model".into(),
        model.to_str().unwrap().into(),
        "--text".into(),
        text.into(),
        "--json".into(),
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter".into(), a.to_str().unwrap().into()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let v: serde_json::Value = serde_json::from_slice(&ok(afinador(&refs)).stdout).unwrap();
    let m = model.to_str().unwrap();
    let out = ok(afinador(&[
        "tokenize", "--model", m, "--text", text, "--json",
    ]));
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = t["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    (ids, floats(&v["token_logprobs"]))
}

/// How much of a `llama_cpp_lora*.json` file's merged model to check.
struct Merged {
    /// The cases (first ones) whose merged-model scores are compared.
    cases: usize,
    /// Mean NLL, relative to llama.cpp's on the same merged file.
    of_llama_cpp: f64,
    /// Mean NLL, relative to the adapter's on the quantized model.
    of_adapter: f64,
}

/// The comparison with llama.cpp recorded in `tests/data/FILE` (written by
/// scripts/reference/llama_cpp_lora.py): remakes the adapter and the merged model with the
/// recorded commands (same sha256 as the files llama.cpp loaded), scores each text with afinador
/// on `model` (whose shipped log-probs the file keys as `quant`, `quant_lora`) and compares.
fn agrees_with_llama_cpp(file: &str, model: &Path, quant: &str, merged_check: Merged) {
    agrees_with_llama_cpp_within(file, model, quant, merged_check, 2e-3);
}

/// `agrees_with_llama_cpp`, with per-token log-probs within `f32_tol` nats of llama.cpp's F32
/// runs.
fn agrees_with_llama_cpp_within(
    file: &str,
    model: &Path,
    quant: &str,
    merged_check: Merged,
    f32_tol: f64,
) {
    let reference = common::data(file);
    let dir = scratch(&format!("llama-cpp-{quant}"));
    let (adapter, merged) = (dir.join("adapter"), dir.join("merged.gguf"));
    let fill = [
        ("ADAPTER", adapter.to_str().unwrap()),
        ("MERGED", merged.to_str().unwrap()),
    ];
    for (command, file, key) in [
        (
            "adapter_command",
            adapter.join("adapter.gguf"),
            "adapter_gguf_sha256",
        ),
        ("merged_command", merged.clone(), "merged_sha256"),
    ] {
        let args = recorded_command(&reference[command], &fill);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(afinador(&refs));
        assert_eq!(
            sha256(&file),
            reference[key].as_str().unwrap(),
            "{} is not the file llama.cpp loaded",
            file.display()
        );
    }
    let lora = adapter.join("adapter.gguf");
    let within = |ours: &[f64], theirs: &[f64], tol: f64, what: &str| {
        assert_eq!(ours.len(), theirs.len(), "{what}: token counts");
        let worst = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= tol,
            "{what}: largest |Δ log p| {worst:.2e} > {tol}"
        );
        eprintln!("{what}: largest |Δ log p| against llama.cpp {worst:.2e}");
    };
    let quant_lora = format!("{quant}_lora");
    for (i, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let (our_ids, base) = score(model, None, text);
        assert_eq!(our_ids, ids, "{text:?}: token ids, afinador and llama.cpp");
        let (_, adapted) = score(model, Some(&lora), text);
        // llama.cpp on the F32 conversion computes what our kernels compute on the quantized file.
        within(
            &base,
            &floats(&case["f32"]),
            f32_tol,
            &format!("{text:?} base"),
        );
        within(
            &adapted,
            &floats(&case["f32_lora"]),
            f32_tol,
            &format!("{text:?} LoRA"),
        );
        // On the quantized model llama.cpp quantizes activations: compare the LoRA's effect.
        let ours = mean(&base) - mean(&adapted);
        let theirs = mean(&floats(&case[quant])) - mean(&floats(&case[&quant_lora]));
        assert!(
            (ours - theirs).abs() <= 0.1 * theirs.abs() + 0.003,
            "{text:?}: the adapter's effect is {ours:.4} nats here, {theirs:.4} in llama.cpp"
        );
        eprintln!("{text:?}: LoRA effect {ours:.4} nats here, {theirs:.4} in llama.cpp ({quant})");
        if i >= merged_check.cases {
            continue;
        }
        // The merged model, as llama.cpp scores it.
        let (_, merged_lp) = score(&merged, None, text);
        let (ours, theirs) = (-mean(&merged_lp), -mean(&floats(&case["merged"])));
        assert!(
            (ours - theirs).abs() <= merged_check.of_llama_cpp * theirs,
            "{text:?}: merged model NLL {ours:.4} here, {theirs:.4} in llama.cpp"
        );
        eprintln!("{text:?}: merged model NLL {ours:.4} here, {theirs:.4} in llama.cpp");
        assert!(
            (ours + mean(&adapted)).abs() <= merged_check.of_adapter * ours,
            "{text:?}: the merged model scores {ours:.4}, the adapter {:.4}",
            -mean(&adapted)
        );
    }
    // Qwen2.5's merged model is 637 MB: leave it behind only when something failed.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn llama_cpp_loads_our_gguf_lora_and_merged_model_and_agrees() {
    // Reference data from llama.cpp itself (scripts/reference/llama_cpp_lora.py).
    agrees_with_llama_cpp(
        "llama_cpp_lora.json",
        &model_path(),
        "q4_1",
        // An f32 merge: the adapter's scores, and within 3% of llama.cpp's.
        Merged {
            cases: usize::MAX,
            of_llama_cpp: 0.03,
            of_adapter: 1e-3,
        },
    );
}

#[test]
fn llama_cpp_loads_our_qwen2_gguf_lora_and_merged_model_and_agrees() {
    // The same for qwen2: Qwen2.5-Coder-0.5B-Instruct Q4_K_M (q/k/v biases, NEOX rope, GGUF Q/K
    // rows not permuted, so neither are the LoRA's B rows), two texts of 30 tokens.
    agrees_with_llama_cpp(
        "llama_cpp_lora_qwen2.json",
        &qwen2_path(),
        "q4_k_m",
        // The merged model (f32 q/k/v/o, 637 MB) costs a model load per text on lavapipe: one.
        Merged {
            cases: 1,
            of_llama_cpp: 0.03,
            of_adapter: 1e-3,
        },
    );
}

#[test]
fn llama_cpp_loads_our_gemma3_gguf_lora_and_merged_model_and_agrees() {
    // The same for gemma3: Gemma 3 270M Q4_K_M (a base model: ids start with <bos>; per-head
    // q/k RMSNorm, GGUF Q/K rows not permuted), a Portuguese sentence and a Python function.
    agrees_with_llama_cpp_within(
        "llama_cpp_lora_gemma3.json",
        &gemma3_path(),
        "q4_k_m",
        // llama.cpp scores the merged model with an f16 KV cache and Q8 activations for the
        // quantized matmuls: its NLLs are 2-3% above the adapter's F32 ones.
        Merged {
            cases: usize::MAX,
            of_llama_cpp: 0.03,
            of_adapter: 1e-3,
        },
        // llama.cpp's own F32 run is the less exact one here: it is up to 2.7e-3 nats off a
        // float64 forward of the same weights (reference_forward.py) where afinador is within
        // 1.2e-5 (most likely ggml's f16 GELU table in the GEGLU). Up to 4e-3 apart, as recorded.
        6e-3,
    );
}

// ---------------------------------------------------------------------------------------------
// PEFT exports as transformers and PEFT see them (tests/data/peft_names.json, written by
// scripts/reference/peft_names.py with transformers 5.25 and PEFT 0.21).

/// Largest |afinador − transformers + PEFT (float64)| per-token log-prob on the tiny models,
/// nats. Measured on lavapipe: ≤ 1.6e-6 without the adapter and ≤ 2.6e-6 with it (phi3); the
/// export with its rows in a wrong order (q/k `lora_B` in llama.cpp's permuted order, phi3's
/// gate/up or k/v swapped) moves them by 0.48–1.9 (the JSON's `sensitivity`).
const PEFT_LOGPROB_TOL: f64 = 2e-4;

/// A safetensors file's header: its `__metadata__` and name → (dtype, shape).
fn safetensors_header(
    path: &Path,
) -> (
    serde_json::Value,
    std::collections::BTreeMap<String, (String, Vec<u64>)>,
) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header.remove("__metadata__").unwrap_or_default();
    let tensors = header
        .into_iter()
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            (k, (v["dtype"].as_str().unwrap().to_string(), shape))
        })
        .collect();
    (meta, tensors)
}

/// One case of `peft_names.json` remade under `dir` with its recorded commands: the tiny model
/// (sha256 checked), `make-random-adapter`'s directory (PEFT files and adapter.gguf) and
/// `export --to peft` of its adapter.gguf. Returns (model, adapter, PEFT export).
fn remake_peft_case(dir: &Path, case: &serde_json::Value) -> (PathBuf, PathBuf, PathBuf) {
    let arch = case["name"].as_str().unwrap();
    let dir = dir.join(arch);
    std::fs::create_dir_all(&dir).unwrap();
    let (model, adapter, peft) = (
        dir.join("model.gguf"),
        dir.join("adapter"),
        dir.join("peft"),
    );
    let gguf = adapter.join("adapter.gguf");
    let fill = [
        ("MODEL", model.to_str().unwrap()),
        ("ADAPTER", adapter.to_str().unwrap()),
        ("PEFT", peft.to_str().unwrap()),
        ("ADAPTER/adapter.gguf", gguf.to_str().unwrap()),
    ];
    for key in ["command", "adapter_command", "export_command"] {
        let args = recorded_command(&case[key], &fill);
        ok(afinador(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        if key == "command" {
            assert_eq!(
                sha256(&model),
                case["model_sha256"].as_str().unwrap(),
                "{arch}: make-tiny-model no longer writes the model peft_names.py used: rerun \
                 scripts/reference/peft_names.py"
            );
        }
    }
    (model, adapter, peft)
}

/// The value after `flag` in a recorded command.
fn recorded_flag<'a>(command: &'a serde_json::Value, flag: &str) -> &'a str {
    let args = command.as_array().unwrap();
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1].as_str().unwrap()
}

/// How the PEFT directory `dir` differs from what transformers + PEFT expect for the case's
/// model (its `expected` names and shapes, `target_modules`, the adapter's r and alpha).
fn peft_differences(label: &str, dir: &Path, case: &serde_json::Value) -> Vec<String> {
    let arch = case["name"].as_str().unwrap();
    let mut out = Vec::new();
    let want: std::collections::BTreeMap<String, Vec<u64>> = case["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let shape = e[1].as_array().unwrap().iter();
            (
                e[0].as_str().unwrap().to_string(),
                shape.map(|d| d.as_u64().unwrap()).collect(),
            )
        })
        .collect();
    let (meta, got) = safetensors_header(&dir.join("adapter_model.safetensors"));
    if meta != serde_json::json!({ "format": "pt" }) {
        out.push(format!("{arch} {label}: safetensors metadata {meta}"));
    }
    let names: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    for name in names {
        let (w, g) = (want.get(name), got.get(name).map(|(_, s)| s));
        if w != g {
            out.push(format!(
                "{arch} {label}: {name}: PEFT expects {w:?}, afinador wrote {g:?}"
            ));
        }
    }
    for (name, (dtype, _)) in &got {
        if dtype != "F32" {
            out.push(format!("{arch} {label}: {name} is {dtype}, not F32"));
        }
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
            .unwrap();
    // A list of names, or one pattern (a multimodal model's decoder).
    let modules = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        match v.as_str() {
            Some(pattern) => [pattern.to_string()].into(),
            None => v
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
                .collect(),
        }
    };
    let (targets, expected) = (
        modules(&config["target_modules"]),
        modules(&case["target_modules"]),
    );
    if targets != expected {
        out.push(format!(
            "{arch} {label}: adapter_config.json target_modules {targets:?}, PEFT matches \
             {expected:?}"
        ));
    }
    let command = &case["adapter_command"];
    let (r, alpha) = (
        recorded_flag(command, "--lora-r"),
        recorded_flag(command, "--lora-alpha"),
    );
    let number = |v: &serde_json::Value| v.as_f64().map(|x| x.to_string());
    if number(&config["r"]).as_deref() != Some(r)
        || number(&config["lora_alpha"]).as_deref() != Some(alpha)
        || config["peft_type"] != "LORA"
        || config["task_type"] != "CAUSAL_LM"
    {
        out.push(format!(
            "{arch} {label}: adapter_config.json r {}, lora_alpha {}, peft_type {}, task_type {} \
             (expected {r}, {alpha}, LORA, CAUSAL_LM)",
            config["r"], config["lora_alpha"], config["peft_type"], config["task_type"]
        ));
    }
    out
}

#[test]
fn peft_exports_have_the_tensor_names_and_shapes_peft_expects_for_every_architecture() {
    let data = common::data("peft_names.json");
    let cases = data["cases"].as_array().unwrap();
    for arch in afinador_core::model::ARCHITECTURES {
        assert!(
            cases.iter().any(|c| c["arch"] == arch.name),
            "{}: add it to CASES in scripts/reference/peft_names.py",
            arch.name
        );
    }
    let dir = scratch("peft-names");
    let mut differences = Vec::new();
    for case in cases {
        let (_, adapter, peft) = remake_peft_case(&dir, case);
        differences.extend(peft_differences("make-random-adapter", &adapter, case));
        differences.extend(peft_differences("export --to peft", &peft, case));
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// afinador's per-token log-probs of `text` under `model` (+ `adapter`) with `tokenizer`.
fn token_logprobs(model: &Path, tokenizer: &Path, adapter: Option<&Path>, text: &str) -> Vec<f64> {
    let mut args = vec![
        "score",
        "--model",
        model.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--text",
        text,
        "--json",
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter", a.to_str().unwrap()]);
    }
    let v: serde_json::Value = serde_json::from_slice(&ok(afinador(&args)).stdout).unwrap();
    floats(&v["token_logprobs"])
}

#[test]
fn peft_exports_score_in_afinador_as_in_transformers_with_peft() {
    // transformers loaded each tiny GGUF (its own GGUF loader: q/k rows un-permuted for llama)
    // and PEFT loaded afinador's export; their log-probs are recorded per text. The tiny models
    // have no tokenizer: the JSON's is one token per byte.
    let data = common::data("peft_names.json");
    let dir = scratch("peft-scores");
    let tokenizer = dir.join("tokenizer.json");
    std::fs::write(&tokenizer, data["tokenizer"].to_string()).unwrap();
    let mut report = Vec::new();
    let mut worst = 0.0f64;
    for case in data["cases"].as_array().unwrap() {
        let arch = case["name"].as_str().unwrap();
        let (model, adapter, peft) = remake_peft_case(&dir, case);
        assert_eq!(
            sha256(&adapter.join("adapter_model.safetensors")),
            case["adapter_sha256"].as_str().unwrap(),
            "{arch}: make-random-adapter no longer writes the adapter peft_names.py used: rerun \
             scripts/reference/peft_names.py"
        );
        for t in case["texts"].as_array().unwrap() {
            let text = t["text"].as_str().unwrap();
            for (key, with) in [
                ("logprobs_base", None),
                ("logprobs_adapter", Some(peft.as_path())),
            ] {
                let want = floats(&t[key]);
                let got = token_logprobs(&model, &tokenizer, with, text);
                assert_eq!(got.len(), want.len(), "{arch} {text:?}: token count");
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0, f64::max);
                worst = worst.max(d);
                report.push(format!("{arch} {key} {text:?}: max |Δ log p| {d:.2e}"));
            }
            // The comparison can tell a wrong row order apart.
            let sensitivity = t["sensitivity"].as_object().unwrap();
            assert!(
                sensitivity
                    .values()
                    .all(|s| s.as_f64().unwrap() > 100.0 * PEFT_LOGPROB_TOL),
                "{arch}: {sensitivity:?}"
            );
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        worst <= PEFT_LOGPROB_TOL,
        "afinador differs from transformers + PEFT by up to {worst:.2e} nats:\n{}",
        report.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
