//! The command-line contract: flags, JSON keys, exit codes and one-line errors.

mod common;

use std::process::{Command, Output};

use common::{afinador, model_path, ok, one_line_error, repo, scratch};

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "devices", "inspect", "tokenize", "score", "generate", "bench",
    ] {
        let out = afinador(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{cmd} --help"
        );
    }
}

#[test]
fn devices_lists_at_least_one_adapter() {
    let v = json(&afinador(&["devices", "--json"]));
    let adapters = v["adapters"].as_array().expect("adapters");
    assert!(
        !adapters.is_empty(),
        "no GPU adapter: install mesa-vulkan-drivers"
    );
    for key in [
        "name",
        "backend",
        "vendor",
        "features",
        "max_storage_buffer_binding_size",
    ] {
        assert!(adapters[0].get(key).is_some(), "adapter has no {key}");
    }
}

#[test]
fn inspect_reports_the_architecture() {
    let model = model_path();
    let v = json(&afinador(&[
        "inspect",
        "--model",
        model.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["config"]["n_layer"], 30);
    assert_eq!(v["config"]["n_head_kv"], 3);
    assert_eq!(v["tensor_types"]["Q4_1"], 210);
    assert_eq!(v["tokenizer"]["model"], "gpt2");
    assert!(
        v["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
}

#[test]
fn tokenize_prints_ids_and_tokens() {
    let v = json(&afinador(&[
        "tokenize",
        "--text",
        "<|im_start|>user\nOlá, mundo!",
        "--json",
    ]));
    let ids = v["ids"].as_array().unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is parsed as a special token");
    assert_eq!(ids.len(), v["tokens"].as_array().unwrap().len());
}

#[test]
fn score_and_generate_report_the_contract_keys() {
    let v = json(&afinador(&[
        "score",
        "--text",
        "The capital of France is Paris.",
        "--json",
    ]));
    let n = v["tokens"].as_u64().unwrap() as usize;
    assert_eq!(v["argmax"].as_array().unwrap().len(), n);
    let (nll, ppl) = (v["nll"].as_f64().unwrap(), v["ppl"].as_f64().unwrap());
    assert!(nll > 0.0 && (ppl - nll.exp()).abs() < 1e-6 * ppl);

    let args = [
        "generate",
        "--prompt",
        "The capital of France is",
        "--max-new-tokens",
        "3",
        "--json",
    ];
    let v = json(&afinador(&args));
    assert!(v["text"].as_str().unwrap().starts_with(" Paris"), "{v}");
    assert_eq!(v["ids"].as_array().unwrap().len(), 3);
    assert!(v["prompt_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_gives_one_line_errors() {
    let e = one_line_error(&afinador(&["inspect", "--model", "no/such/file.gguf"]));
    assert!(e.contains("does not exist"), "{e}");
    let junk = std::env::temp_dir().join("afinador-not-a-gguf.gguf");
    std::fs::write(&junk, b"PK\x03\x04 this is a zip file, not a model").unwrap();
    let e = one_line_error(&afinador(&["inspect", "--model", junk.to_str().unwrap()]));
    assert!(e.contains("not a GGUF file"), "{e}");
    let e = one_line_error(&afinador(&["tokenize"]));
    assert!(e.contains("--text"), "{e}");
    let e = one_line_error(&afinador(&["devices", "--backend", "directx9"]));
    assert!(e.contains("unknown backend"), "{e}");
}

#[test]
fn quick_kernel_bench_reports_every_family_with_positive_figures() {
    let v = json(&afinador(&["bench", "kernels", "--quick", "--json"]));
    assert!(v["adapter"]["name"].is_string());
    let results = v["results"].as_array().expect("results");
    // lavapipe has SHADER_F16: nothing may be skipped here.
    assert_eq!(v["skipped"], serde_json::json!([]), "{v}");
    for family in [
        "gemv_q4_0",
        "gemv_q4_1",
        "gemv_q8_0",
        "matmul_q4",
        "matmul_f32",
        "matmul_f16",
        "attention_fwd",
        "attention_bwd",
        "cross_entropy",
        "adamw",
        "rmsnorm",
    ] {
        assert!(
            results
                .iter()
                .any(|r| r["kernel"].as_str().unwrap().contains(family)),
            "no {family} row"
        );
    }
    for r in results {
        let time = r["time_us"].as_f64().unwrap();
        let rate = r["gflops"].as_f64().or(r["gbps"].as_f64()).expect("a rate");
        assert!(
            time.is_finite() && time > 0.0 && rate.is_finite() && rate > 0.0,
            "{r}"
        );
        assert!(r.get("peak_pct").is_some(), "{r}");
    }
}

#[test]
fn bench_tune_remembers_the_fastest_matmul_and_later_commands_run_it() {
    let cache = std::env::temp_dir().join(format!("afinador-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let with_cache = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_afinador"))
            .args(args)
            .env("XDG_CACHE_HOME", &cache)
            .current_dir(repo())
            .output()
            .expect("run afinador")
    };
    let v = json(&with_cache(&["bench", "tune", "--quick", "--json"]));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "DIRECT and the three tile presets: {v}");
    for r in results {
        let times = r["time_us"].as_array().unwrap();
        assert_eq!(times.len(), v["cases"].as_array().unwrap().len());
        assert!(times.iter().all(|t| t.as_f64().unwrap() > 0.0), "{r}");
    }
    let relative: Vec<f64> = results
        .iter()
        .map(|r| r["relative"].as_f64().unwrap())
        .collect();
    assert!(
        relative.windows(2).all(|w| w[0] <= w[1]),
        "sorted: {relative:?}"
    );
    assert_eq!(v["chosen"], results[0]["matmul"]);
    let file = cache.join("afinador/matmul-tuning.json");
    assert_eq!(v["saved"].as_str().unwrap(), file.to_str().unwrap());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let (key, entry) = saved.as_object().unwrap().iter().next().unwrap();
    assert!(
        key.starts_with(v["adapter"]["name"].as_str().unwrap()),
        "{key}"
    );
    assert_eq!(entry["matmul"], v["chosen"]);
    let default = results
        .iter()
        .find(|r| r["matmul"] == v["default"])
        .unwrap()["label"]
        .clone();

    // Whatever the cache holds for this adapter is what every command then runs.
    let forced = serde_json::json!({ key.clone(): { "matmul": "tiled:8,4,16,8,16" } });
    std::fs::write(&file, forced.to_string()).unwrap();
    let kernels = [
        "bench",
        "kernels",
        "--quick",
        "--filter",
        "matmul_f32",
        "--json",
    ];
    let v = json(&with_cache(&kernels));
    assert_eq!(v["results"][0]["variant"], "tiled64x64/8x4/k16", "{v}");
    // A broken cache is reported and ignored.
    std::fs::write(&file, "{ not json").unwrap();
    let out = with_cache(&kernels);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a tuning file"));
    assert_eq!(json(&out)["results"][0]["variant"], default);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn bench_compare_pairs_two_runs_and_reports_ratios() {
    // Two real `bench kernels --quick --json` runs on lavapipe (tests/data/bench_*.json): the
    // portable build of every kernel, and the device's choice for the matmuls only.
    let (a, b) = (
        "tests/data/bench_portable.json",
        "tests/data/bench_matmul.json",
    );
    let v = json(&afinador(&["bench", "compare", a, b, "--json"]));
    let load = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(common::repo().join(p)).unwrap()).unwrap()
    };
    let (ra, rb) = (load(a), load(b));
    assert_eq!(v["a"]["name"], ra["adapter"]["name"]);
    assert_eq!(v["b"]["backend"], rb["adapter"]["backend"]);
    let rows = v["results"].as_array().unwrap();
    let b_rows = rb["results"].as_array().unwrap();
    assert_eq!(rows.len(), b_rows.len(), "every row of B has its twin in A");
    for r in rows {
        let want = r["time_us_a"].as_f64().unwrap() / r["time_us_b"].as_f64().unwrap();
        assert!(
            (r["ratio"].as_f64().unwrap() - want).abs() < 1e-9 * want,
            "{r}"
        );
        assert!(r["kernel"].as_str().unwrap().starts_with("matmul"));
        let twin = b_rows
            .iter()
            .find(|x| x["kernel"] == r["kernel"] && x["shape"] == r["shape"])
            .unwrap();
        assert_eq!(r["time_us_b"], twin["time_us"]);
        assert_eq!(r["variant_b"], twin["variant"]);
    }
    let only_a = v["only_in_a"].as_array().unwrap();
    assert_eq!(
        only_a.len(),
        ra["results"].as_array().unwrap().len() - rows.len()
    );
    assert!(
        only_a
            .iter()
            .any(|x| x.as_str().unwrap().starts_with("gemv_q4_1"))
    );
    assert!(v["only_in_b"].as_array().unwrap().is_empty());
    assert!(v["geomean_ratio"].as_f64().unwrap() > 0.0);
    // The table names both machines and has one line per pair.
    let out = afinador(&["bench", "compare", a, b]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("A: "), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("matmul")).count(),
        rows.len()
    );
    let err = one_line_error(&afinador(&["bench", "compare", a, "Cargo.toml"]));
    assert!(
        err.contains("not the output of `afinador bench kernels --json`"),
        "{err}"
    );
}

#[test]
fn bench_train_reports_throughput_and_memory() {
    let dir = std::env::temp_dir().join(format!("afinador-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    assert!(
        afinador(&["make-tiny-model", "--output", model.to_str().unwrap()])
            .status
            .success()
    );
    let v = json(&afinador(&[
        "bench",
        "train",
        "--model",
        model.to_str().unwrap(),
        "--shapes",
        "2x32",
        "--steps",
        "1",
        "--json",
    ]));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "attention and all-linear");
    for r in results {
        for key in ["tokens_per_s", "gpu_memory_bytes", "step_s"] {
            let x = r[key].as_f64().unwrap();
            assert!(x.is_finite() && x > 0.0, "{key} in {r}");
        }
    }
    assert!(results[1]["gpu_memory_bytes"].as_f64() > results[0]["gpu_memory_bytes"].as_f64());
}

#[test]
fn eval_scores_predictions_like_the_reference_packages_and_writes_its_outputs() {
    let expected = common::data("eval_expected.json");
    let out = std::env::temp_dir().join(format!("afinador-eval-{}", std::process::id()));
    let v = json(&afinador(&[
        "eval",
        "--predictions",
        "tests/data/eval_cases.jsonl",
        "--metrics",
        "bleu,rouge",
        "--json",
        "--output",
        out.to_str().unwrap(),
    ]));
    let want = expected["corpus_bleu"]["all"]["score"].as_f64().unwrap();
    assert!(
        (v["bleu"].as_f64().unwrap() - want).abs() < 1e-4,
        "bleu {} vs sacrebleu {want}",
        v["bleu"]
    );
    for key in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        let x = v[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    }
    assert!(v.get("f1").is_none(), "only the selected metrics");
    let lines = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    let cases = std::fs::read_to_string(repo().join("tests/data/eval_cases.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        cases.lines().filter(|l| !l.trim().is_empty()).count()
    );
    assert!(
        std::fs::read_to_string(out.join("metrics.md"))
            .unwrap()
            .contains("| rougeL |")
    );
    assert!(out.join("metrics.json").exists());
}

#[test]
fn eval_generates_answers_for_chat_records() {
    // A tiny random model answers two ENEM questions: the path runs end to end and the
    // accuracy is a fraction.
    let dir = std::env::temp_dir().join(format!("afinador-eval-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    let real = model_path();
    let made = afinador(&[
        "make-tiny-model",
        "--output",
        model.to_str().unwrap(),
        "--tokenizer-from",
        real.to_str().unwrap(),
    ]);
    assert!(made.status.success());
    let v = json(&afinador(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "examples/enem/validation.jsonl",
        "--limit",
        "2",
        "--metrics",
        "accuracy,f1",
        "--max-new-tokens",
        "8",
        "--json",
    ]));
    let acc = v["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(v["f1"].as_f64().is_some());
}

#[test]
fn bench_decode_and_train_time_a_named_shape_with_random_weights() {
    let v = json(&afinador(&[
        "bench",
        "decode",
        "--like",
        "smollm2-135m",
        "--layers",
        "2",
        "--prompt-tokens",
        "16",
        "--new-tokens",
        "4",
        "--json",
    ]));
    assert_eq!(v["layers"], 2);
    assert_eq!(v["prompt_tokens"], 16);
    assert_eq!(v["decoded_tokens"], 3);
    for key in ["prefill_tokens_per_s", "decode_tokens_per_s"] {
        let x = v[key].as_f64().unwrap();
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    // SmolLM2's shape: a 49152 × 576 Q8_0 embedding and Q4_1 projections.
    let weights = v["weight_bytes"].as_u64().unwrap();
    assert!(weights > 30_000_000 && weights < 40_000_000, "{weights}");
    // bench train takes the same shapes.
    let t = json(&afinador(&[
        "bench",
        "train",
        "--like",
        "smollm2-135m",
        "--layers",
        "2",
        "--shapes",
        "1x16",
        "--targets",
        "attention",
        "--steps",
        "1",
        "--json",
    ]));
    assert_eq!(t["model"], "smollm2-135m (random weights)");
    assert!(
        t["results"][0]["tokens_per_s"].as_f64().unwrap() > 0.0,
        "{t}"
    );
    let e = one_line_error(&afinador(&["bench", "decode", "--like", "gpt-5"]));
    assert!(
        e.contains("unknown --like 'gpt-5'") && e.contains("llama-3.1-8b"),
        "{e}"
    );
    let e = one_line_error(&afinador(&[
        "make-tiny-model",
        "--like",
        "gpt-5",
        "--output",
        "/dev/null",
    ]));
    assert!(e.contains("smollm2-135m"), "{e}");
}

#[test]
fn training_memory_is_linear_in_the_sequence_length_and_planned_exactly() {
    // What a step allocates (`--steps 0`: every buffer of the step, no work) at 1×512 … 1×4096
    // on SmolLM2's shape (2 layers, LoRA r 16 on every linear layer): the flash attention saves
    // O(T), every other saved tensor and scratch is O(T) or bounded (the logits chunk stops
    // growing at 256 rows), so each doubling adds the same bytes per token, and the plan
    // (`preflight`'s) is what is allocated.
    let measure = |like: &str, shapes: &str, extra: &[&str]| -> Vec<(f64, f64, f64)> {
        let mut args = vec![
            "bench",
            "train",
            "--like",
            like,
            "--layers",
            "2",
            "--shapes",
            shapes,
            "--targets",
            "all-linear",
            "--steps",
            "0",
            "--json",
        ];
        args.extend_from_slice(extra);
        let v = json(&afinador(&args));
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_f64().unwrap();
                (f("seq_len"), f("plan_bytes"), f("gpu_memory_bytes"))
            })
            .collect()
    };
    let rows = measure("smollm2-135m", "1x512,1x1024,1x2048,1x4096", &[]);
    let slope = |a: &(f64, f64, f64), b: &(f64, f64, f64)| (b.2 - a.2) / (b.0 - a.0);
    let first = slope(&rows[0], &rows[1]);
    for w in rows.windows(2) {
        let s = slope(&w[0], &w[1]);
        assert!(
            (s - first).abs() <= 1e-3 * first,
            "bytes per token {s} vs {first}: {rows:?}"
        );
    }
    for (t, plan, measured) in &rows {
        assert!(
            (plan - measured).abs() <= 0.01 * measured,
            "T {t}: {plan} vs {measured}"
        );
    }
    // Llama-3.1-8B's shape at 2 layers, 1×1024 and 1×2048, with and without checkpointing, and
    // with the bf16 stream too: the plan within 15% (the bound; measured: within a few
    // KiB) and its per-token slope the allocation's.
    let mut allocated = Vec::new();
    for extra in [
        &[][..],
        &["--gradient-checkpointing"][..],
        &["--gradient-checkpointing", "--bf16-stream"][..],
    ] {
        let rows = measure("llama-3.1-8b", "1x1024,1x2048", extra);
        allocated.push(rows[1].2);
        for (t, plan, measured) in &rows {
            assert!(
                (plan - measured).abs() <= 0.15 * measured,
                "8B T {t}: {plan} vs {measured}"
            );
        }
        let plan_slope = (rows[1].1 - rows[0].1) / 1024.0;
        let measured_slope = slope(&rows[0], &rows[1]);
        assert!(
            (plan_slope - measured_slope).abs() <= 0.05 * measured_slope,
            "{extra:?}: plan {plan_slope} vs allocated {measured_slope} bytes per token"
        );
    }
    // The bf16 stream holds the L + 1 layer inputs at 2 bytes a value, plus two f32 buffers to
    // run a layer from, instead of 4 bytes a value: at 2 layers that is 2 bytes a value more
    // (auto would not choose it), at 32 layers 58 bytes less (0.46 GiB at 1×2048).
    let per_value = 2048.0 * 4096.0;
    assert_eq!(
        allocated[2] - allocated[1],
        per_value * (3.0 * 2.0 + 2.0 * 4.0 - 3.0 * 4.0),
        "{allocated:?}"
    );
}

#[test]
fn long_training_steps_take_the_memory_planned() {
    // Real steps (not only their allocation) on one sequence of 2048 and of 4096 tokens: a
    // narrow one-layer model with a wide feed-forward (T × FF = 9.4M values at 4096, past one
    // grid row of elementwise workgroups). Every step's peak of GPU buffers is the plan, and
    // the bytes a token adds are the same from 1024 to 2048 as from 2048 to 4096 (memory linear
    // in T, as planned). The numerics
    // at these lengths: core's long_sequences_train_like_the_cpu_reference.
    let dir = scratch("long-steps");
    let model = dir.join("narrow.gguf");
    let model = model.to_str().unwrap();
    let shape = [
        "--embd", "64", "--ff", "2304", "--layers", "1", "--vocab", "512",
    ];
    ok(afinador(
        &[&["make-tiny-model", "--output", model][..], &shape[..]].concat(),
    ));
    let v = json(&afinador(&[
        "bench",
        "train",
        "--model",
        model,
        "--shapes",
        "1x1024,1x2048,1x4096",
        "--targets",
        "all-linear",
        "--steps",
        "1",
        "--json",
    ]));
    let rows: Vec<(f64, f64, f64)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_f64().unwrap();
            assert!(f("step_s") > 0.0 && f("tokens_per_s").is_finite(), "{r}");
            (f("seq_len"), f("plan_bytes"), f("gpu_memory_bytes"))
        })
        .collect();
    assert_eq!(rows.len(), 3, "{v}");
    for (t, plan, measured) in &rows {
        assert!(
            (plan - measured).abs() <= 0.01 * measured,
            "T {t}: plan {plan} vs peak {measured}"
        );
    }
    let slope = |a: &(f64, f64, f64), b: &(f64, f64, f64)| (b.2 - a.2) / (b.0 - a.0);
    let (short, long) = (slope(&rows[0], &rows[1]), slope(&rows[1], &rows[2]));
    assert!(
        (short - long).abs() <= 1e-3 * long,
        "bytes per token: {short} from 1024 to 2048, {long} from 2048 to 4096: {rows:?}"
    );
}

#[test]
fn inspect_says_whether_a_model_is_supported_and_what_is_missing() {
    let v = json(&afinador(&["inspect", "--json"]));
    assert_eq!(v["supported"], true, "{}", v["problems"]);
    assert_eq!(v["tensors"].as_array().unwrap().len(), 272);
    assert_eq!(v["tensors"][0]["supported"], true);
    // An architecture afinador does not run yet, with a tensor type it cannot read.
    let mut w = afinador_core::formats::GgufWriter::new();
    w.add_metadata("general.architecture", "gemma3").unwrap();
    w.add_tensor(
        "blk.0.attn_q.weight",
        &[32, 1],
        afinador_core::formats::GgmlType::IQ4_NL,
        vec![0; 18],
    )
    .unwrap();
    let path =
        std::env::temp_dir().join(format!("afinador-unsupported-{}.gguf", std::process::id()));
    std::fs::write(&path, w.to_bytes()).unwrap();
    let p = path.to_str().unwrap();
    let v = json(&afinador(&["inspect", "--model", p, "--json"]));
    assert_eq!(v["supported"], false);
    let problems = v["problems"].to_string();
    assert!(problems.contains("gemma3"), "{problems}");
    assert!(
        problems.contains("'blk.0.attn_q.weight' has type IQ4_NL"),
        "{problems}"
    );
    assert!(problems.contains("tokenizer"), "{problems}");
    let out = afinador(&["inspect", "--model", p]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT supported (3 problems)"), "{text}");
}

/// Relative RMS difference of `a` from `b`.
fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let sq = |it: &mut dyn Iterator<Item = f32>| it.map(|v| f64::from(v * v)).sum::<f64>();
    (sq(&mut a.iter().zip(b).map(|(x, y)| x - y)) / sq(&mut b.iter().copied())).sqrt()
}

#[test]
fn merge_writes_k_quant_projections_and_refuses_rows_they_cannot_hold() {
    use afinador_core::formats::{GgmlType, Gguf};

    let dir = scratch("merge-kquant");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    // C 256 and FF 512: every projection's rows are whole 256-value super-blocks.
    let model = path("tiny256.gguf");
    ok(afinador(&[
        "make-tiny-model",
        "--output",
        &model,
        "--embd",
        "256",
        "--ff",
        "512",
    ]));
    let adapter = path("adapter");
    ok(afinador(&[
        "make-random-adapter",
        "--model",
        &model,
        "--output",
        &adapter,
        "--target-modules",
        "all-linear",
        "--std",
        "0.05",
    ]));
    let merge = |model: &str, ty: &str| {
        let output = path(&format!("merged-{ty}.gguf"));
        let args = [
            "merge",
            "--model",
            model,
            "--adapter",
            &adapter,
            "--output",
            &output,
            "--merged-type",
            ty,
        ];
        (afinador(&args), output)
    };
    let read = |p: &str| {
        let bytes = std::fs::read(p).unwrap();
        (Gguf::parse(&bytes).unwrap(), bytes)
    };
    let (base, base_bytes) = read(&model);
    let (exact, exact_bytes) = read(&ok_path(merge(&model, "f32")));
    // Upper case is accepted too: the error messages name the types that way.
    for (flag, ty, tol) in [
        ("q4_k", GgmlType::Q4_K, 0.08),
        ("Q6_K", GgmlType::Q6_K, 0.02),
    ] {
        let (merged, bytes) = read(&ok_path(merge(&model, flag)));
        let mut n_merged = 0;
        for info in merged.tensors() {
            let before = base.require_tensor(&info.name).unwrap();
            let f32_info = exact.require_tensor(&info.name).unwrap();
            if f32_info.ty != GgmlType::F32 || before.ty == GgmlType::F32 {
                // Not adapted: copied as it was.
                assert_eq!(info.ty, before.ty, "{}", info.name);
                assert_eq!(
                    merged.tensor_bytes(info, &bytes).unwrap(),
                    base.tensor_bytes(before, &base_bytes).unwrap(),
                    "{}",
                    info.name
                );
                continue;
            }
            n_merged += 1;
            assert_eq!(info.ty, ty, "{}", info.name);
            let want = exact.tensor_f32(f32_info, &exact_bytes).unwrap();
            let got = merged.tensor_f32(info, &bytes).unwrap();
            let original = base.tensor_f32(before, &base_bytes).unwrap();
            let (err, moved) = (rel_rms(&got, &want), rel_rms(&original, &want));
            assert!(err < tol, "{ty} {}: {err} from the f32 merge", info.name);
            assert!(
                moved > 3.0 * err,
                "{ty} {}: the adapter moved it {moved}",
                info.name
            );
        }
        assert_eq!(n_merged, 2 * 7, "{ty}: every projection of both layers");
    }

    // The default tiny model is 64 wide: not a whole super-block.
    let narrow = path("tiny64.gguf");
    ok(afinador(&["make-tiny-model", "--output", &narrow]));
    let adapter64 = path("adapter64");
    ok(afinador(&[
        "make-random-adapter",
        "--model",
        &narrow,
        "--output",
        &adapter64,
    ]));
    let out = afinador(&[
        "merge",
        "--model",
        &narrow,
        "--adapter",
        &adapter64,
        "--output",
        &path("x.gguf"),
        "--merged-type",
        "q4_k",
    ]);
    let e = one_line_error(&out);
    assert!(
        e.contains(
            "cannot store the merged blk.0.attn_q.weight as Q4_K: its rows are 64 values wide, \
             not a multiple of Q4_K's blocks of 256; merge into a type whose blocks fit \
             (Q8_0, F16, BF16, F32)"
        ),
        "{e}"
    );
    let e = one_line_error(&merge(&model, "q5_k").0);
    assert!(
        e.contains("unknown --merged-type 'q5_k': use q8_0, q6_k, q4_k, f16, bf16, f32"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The output path of a command that must have succeeded.
fn ok_path((out, path): (Output, String)) -> String {
    ok(out);
    path
}
