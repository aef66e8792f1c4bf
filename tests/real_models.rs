//! Tier 3 for the other architectures, on the real files people download:
//! - Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2: NEOX rope, q/k/v biases up to ~145, a 144 MB
//!   Q8_0 output projection split across bindings on lavapipe);
//! - Gemma 3 270M Q4_K_M (gemma3: embeddings × √C, per-head q/k norms, GeGLU, post norms,
//!   sliding-window layers with their own rope base, head size 256, a 178 MB tied Q8_0
//!   embedding split across bindings, SentencePiece without a space prefix).
//!
//! Each against llama.cpp's token ids and greedy tokens and an independent f64 numpy forward
//! (`scripts/reference/reference_forward.py`, `tests/data/reference_nll_*.json`), and a short
//! training run. lavapipe runs these models at a few tokens per second, so the cases are short.

mod common;

use std::path::Path;

use afinador_core::model::{Generation, SamplingConfig};
use common::{
    Loaded, ShortRun, afinador, data, gemma3_path, ids, loaded_gemma3, loaded_qwen2, ok,
    qwen2_path, tokenizer_ids_equal_llama_cpp,
};

/// Two steps of 24 tokens: enough to see the loss fall on these models, few on lavapipe.
const TWO_STEPS: ShortRun = ShortRun {
    steps: 2,
    seq_len: 24,
    lr: 3e-3,
};

/// The named cases of `reference_nll_*.json`: NLL within 1% of the exact forward and 3% of
/// llama.cpp (which quantizes activations), argmax agreement ≥ 95% where the reference's top
/// two logits are not a near tie.
fn score_matches_the_f64_reference_and_llama_cpp(l: &Loaded, file: &str, names: &[&str]) {
    let reference = data(file);
    let mut checked = 0;
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if !names.contains(&name) {
            continue;
        }
        let want_ids = ids(&case["ids"]);
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            l.tokenizer.encode(text, true).unwrap(),
            want_ids,
            "{name}: tokens"
        );
        let score = pollster::block_on(l.model.score(&l.gpu, &want_ids)).unwrap();
        let checks = [
            ("f64 reference", "nll", 0.01),
            ("llama.cpp", "nll_llama_cpp", 0.03),
        ];
        for (what, key, tolerance) in checks {
            let want = case[key].as_f64().unwrap();
            let rel = (score.nll - want).abs() / want;
            assert!(
                rel < tolerance,
                "{file} {name}: nll {} vs {what} {want} ({:.2}% off)",
                score.nll,
                rel * 100.0
            );
        }
        let want_argmax = ids(&case["argmax"]);
        let margins = case["argmax_margin"].as_array().unwrap();
        let (mut agree, mut total) = (0, 0);
        for ((got, want), margin) in score.argmax.iter().zip(&want_argmax).zip(margins) {
            if margin.as_f64().unwrap() > 1e-2 {
                total += 1;
                agree += (got == want) as usize;
            }
        }
        assert!(
            agree as f64 >= 0.95 * total as f64,
            "{file} {name}: argmax agrees at {agree} of {total} positions"
        );
        checked += 1;
    }
    assert_eq!(checked, names.len());
}

/// Both greedy prompts of `reference_nll_*.json`, 12 tokens through the KV cache: the first 8
/// equal llama.cpp's and the f64 reference's. Returns the continuations' text.
fn greedy_generation_follows_llama_cpp(l: &Loaded, file: &str) -> Vec<String> {
    let reference = data(file);
    let cases = reference["greedy"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    let mut texts = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        assert_eq!(
            l.tokenizer
                .encode(case["prompt"].as_str().unwrap(), true)
                .unwrap(),
            prompt,
            "{name}: prompt tokens"
        );
        let want = ids(&case["ids_llama_cpp"]);
        let capacity = prompt.len() + want.len();
        let mut g = Generation::new(&l.gpu, &l.model, capacity, SamplingConfig::default()).unwrap();
        let out =
            pollster::block_on(g.generate(&l.gpu, &prompt, want.len(), |_| false, |_| {})).unwrap();
        let same = out.iter().zip(&want).take_while(|(a, b)| a == b).count();
        assert!(
            same >= 8,
            "{file} {name}: {:?} vs llama.cpp {:?} agree on {same} tokens",
            l.tokenizer.decode(&out),
            case["text_llama_cpp"]
        );
        assert_eq!(&ids(&case["ids"])[..8], &out[..8], "{name}: f64 reference");
        texts.push(l.tokenizer.decode(&out));
    }
    texts
}

/// The PEFT files of `run/adapter`, read with no Q/K permutation, hold exactly the GGUF LoRA's
/// matrices (neither qwen2 nor gemma3 GGUFs permute Q/K), for `layers` × q/k/v/o.
fn peft_keeps_hugging_face_rows(run: &Path, arch: &str, layers: usize) {
    let adapter = run.join("adapter");
    let read = |name: &str| std::fs::read(adapter.join(name)).unwrap();
    let gguf = afinador_core::lora::from_gguf_lora(&read("adapter.gguf")).unwrap();
    assert_eq!(gguf.architecture, arch);
    let config = String::from_utf8(read("adapter_config.json")).unwrap();
    let peft = afinador_core::lora::from_peft(
        &config,
        &read("adapter_model.safetensors"),
        afinador_core::lora::QkOrder::Same,
    )
    .unwrap();
    assert_eq!(peft.tensors.len(), layers * 4);
    assert_eq!(peft.tensors, gguf.adapter.tensors);
}

#[test]
fn qwen2_tokenizer_ids_equal_llama_cpp() {
    tokenizer_ids_equal_llama_cpp(loaded_qwen2(), "tokenizer_cases_qwen2.json");
}

#[test]
fn qwen2_scores_like_the_f64_reference_and_llama_cpp() {
    let names = ["python_code", "portuguese", "emoji"];
    score_matches_the_f64_reference_and_llama_cpp(
        loaded_qwen2(),
        "reference_nll_qwen2.json",
        &names,
    );
}

#[test]
fn qwen2_generates_like_llama_cpp_and_answers_the_coding_prompt() {
    let texts = greedy_generation_follows_llama_cpp(loaded_qwen2(), "reference_nll_qwen2.json");
    assert!(texts[0].contains("Python function"), "{texts:?}");
}

#[test]
fn loading_qwen2_holds_little_host_memory_beyond_the_weights() {
    // The 491 MB file is memory-mapped (its pages are page cache) and each tensor is packed and
    // streamed a few MiB at a time with a flush every 16 MiB, so anonymous memory grows by the
    // device buffers (lavapipe keeps them in host memory) plus a little: 45 MB measured. Without
    // the flushes wgpu's staging copies held a second copy of every weight until the first
    // submission (486 MB beyond the device buffers).
    let out = ok(afinador(&[
        "inspect",
        "--model",
        qwen2_path().to_str().unwrap(),
        "--load",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let load = &report["load"];
    let mb = |v: &serde_json::Value| v.as_u64().unwrap() as f64 / 1e6;
    let (device, host) = (mb(&load["device_bytes"]), &load["host"]);
    assert!(device > 450.0, "{load}");
    assert!(host["samples"].as_u64().unwrap() > 10, "{load}");
    let beyond = mb(&host["beyond_device_buffers"]);
    assert!(
        beyond < 200.0,
        "{beyond:.0} MB beyond the device buffers: {load}"
    );
    assert!(mb(&host["anon_above_start"]) < device + 200.0, "{load}");
}

#[test]
fn qwen2_trains_and_exports() {
    let text = "def square(x):\n    \"\"\"Return x squared.\"\"\"\n    return x * x\n";
    let run = TWO_STEPS.lowers_the_loss_and_scores_like_the_trainer(
        &qwen2_path(),
        "qwen2",
        text,
        "<|im_end|>",
    );
    peft_keeps_hugging_face_rows(&run, "qwen2", 24);
}

#[test]
fn gemma3_tokenizer_ids_equal_llama_cpp() {
    tokenizer_ids_equal_llama_cpp(loaded_gemma3(), "tokenizer_cases_gemma3.json");
}

#[test]
fn gemma3_scores_like_the_f64_reference_and_llama_cpp() {
    let names = ["python_code", "portuguese", "gemma_chat"];
    score_matches_the_f64_reference_and_llama_cpp(
        loaded_gemma3(),
        "reference_nll_gemma3.json",
        &names,
    );
}

#[test]
fn gemma3_generates_like_llama_cpp() {
    let texts = greedy_generation_follows_llama_cpp(loaded_gemma3(), "reference_nll_gemma3.json");
    assert!(texts[1].contains("if n"), "{texts:?}");
}

#[test]
fn gemma3_trains_and_exports() {
    // Gemma's EOS is <eos>; the text record gets it appended.
    let text = "A capital de Portugal é Lisboa, e a do Brasil é Brasília.";
    let run = TWO_STEPS.lowers_the_loss_and_scores_like_the_trainer(
        &gemma3_path(),
        "gemma3",
        text,
        "<eos>",
    );
    peft_keeps_hugging_face_rows(&run, "gemma3", 18);
}
