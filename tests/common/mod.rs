//! Shared by the end-to-end tests: the real model, the GPU, reference data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use afinador_core::formats::Gguf;
use afinador_core::gpu::{Gpu, GpuOptions};
use afinador_core::model::Model;
use afinador_core::tokenizer::Tokenizer;

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The real model's path; a missing model fails the test with the command that fetches it.
pub fn model_path() -> PathBuf {
    fetched("SmolLM2-135M-Instruct.Q4_1.gguf", "")
}

/// The Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (architecture qwen2).
pub fn qwen2_path() -> PathBuf {
    fetched("Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf", " qwen2.5-coder")
}

/// The Gemma 3 270M Q4_K_M GGUF (architecture gemma3).
pub fn gemma3_path() -> PathBuf {
    fetched("gemma-3-270m.Q4_K_M.gguf", " gemma3")
}

/// `models/NAME`, or a failure naming the `scripts/fetch-model` command that fetches it.
fn fetched(name: &str, fetch_arg: &str) -> PathBuf {
    let path = repo().join("models").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model{fetch_arg}",
        path.display()
    );
    path
}

pub struct Loaded {
    pub gpu: Gpu,
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub gguf: Gguf,
}

/// The real model, loaded once per test binary (on lavapipe when there is no GPU).
pub fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| load(&model_path()))
}

/// The Qwen2.5-Coder model, loaded once per test binary.
pub fn loaded_qwen2() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| load(&qwen2_path()))
}

/// The Gemma 3 model, loaded once per test binary.
pub fn loaded_gemma3() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| load(&gemma3_path()))
}

fn load(path: &Path) -> Loaded {
    let bytes = std::fs::read(path).expect("read model");
    let gguf = Gguf::parse(&bytes).expect("parse model");
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"));
    let model = Model::load(&gpu, &gguf, &bytes).expect("load model");
    let tokenizer = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    Loaded {
        gpu,
        model,
        tokenizer,
        gguf,
    }
}

/// A JSON file under tests/data.
pub fn data(name: &str) -> serde_json::Value {
    let path = repo().join("tests/data").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// The CLI built with these tests, run from the repository root.
pub fn command(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_afinador"));
    c.args(args).current_dir(repo());
    c
}

/// Runs the CLI (see [`command`]) and returns its output.
pub fn afinador(args: &[&str]) -> std::process::Output {
    command(args).output().expect("run afinador")
}

/// `out`, after checking that it succeeded (its stderr in the message otherwise).
pub fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A failure: non-zero exit and a single `error: …` line on stderr, returned.
pub fn one_line_error(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    lines[0].to_string()
}

/// A fresh, empty temporary directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("afinador-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `dir/tiny.gguf`: a tiny random Llama (2 layers, C 64) with the real model's tokenizer.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny.gguf");
    ok(afinador(&[
        "make-tiny-model",
        "--output",
        model.to_str().unwrap(),
        "--tokenizer-from",
        model_path().to_str().unwrap(),
    ]));
    model
}

/// A short `afinador train` run on one text (one sequence per step, dropout off, a checkpoint
/// every step).
pub struct ShortRun {
    pub steps: usize,
    pub seq_len: usize,
    pub lr: f64,
}

impl ShortRun {
    /// Trains `text` on `model`: the loss falls, and the checkpoint before the last step scores
    /// the text (with the `eos` the trainer appends) with the NLL the trainer reported at the
    /// last step (measured before its update). Returns the run directory.
    pub fn lowers_the_loss_and_scores_like_the_trainer(
        &self,
        model: &Path,
        name: &str,
        text: &str,
        eos: &str,
    ) -> PathBuf {
        let dir = scratch(name);
        let data = dir.join("one.jsonl");
        std::fs::write(&data, serde_json::json!({ "text": text }).to_string()).unwrap();
        let out = dir.join("run");
        let (steps, seq_len, lr) = (
            self.steps.to_string(),
            self.seq_len.to_string(),
            self.lr.to_string(),
        );
        let path = |p: &Path| p.to_str().unwrap().to_string();
        ok(afinador(&[
            "train",
            "--model",
            &path(model),
            "--data",
            &path(&data),
            "--output",
            &path(&out),
            "--max-steps",
            &steps,
            "--batch-size",
            "1",
            "--seq-len",
            &seq_len,
            "--lr",
            &lr,
            "--lr-schedule",
            "constant",
            "--warmup-ratio",
            "0",
            "--lora-dropout",
            "0",
            "--save-every",
            "1",
            "--keep-checkpoints",
            &steps,
        ]));
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let losses: Vec<f64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v.get("loss").and_then(|l| l.as_f64()))
            .collect();
        assert_eq!(losses.len(), self.steps, "{metrics}");
        let last = losses[self.steps - 1];
        assert!(last < losses[0], "{name}: loss did not fall: {losses:?}");
        let ckpt = out.join(format!("checkpoints/step-{}", self.steps - 1));
        let scored = ok(afinador(&[
            "score",
            "--model",
            &path(model),
            "--adapter",
            &path(&ckpt),
            "--text",
            &format!("{text}{eos}"),
            "--json",
        ]));
        let nll = serde_json::from_slice::<serde_json::Value>(&scored.stdout).unwrap()["nll"]
            .as_f64()
            .unwrap();
        assert!(
            (nll - last).abs() < 2e-3 * last,
            "{name}: score --adapter {nll} vs trainer {last}"
        );
        out
    }
}

/// Every case of `tokenizer_cases_*.json`: our ids (special tokens parsed, BOS as the model
/// says) equal llama.cpp's.
pub fn tokenizer_ids_equal_llama_cpp(l: &Loaded, file: &str) {
    let cases = data(file);
    let cases = cases["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20, "too few tokenizer cases");
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = l.tokenizer.encode(text, true).unwrap();
        assert_eq!(got, want, "{file} case {}: {text:?}", case["name"]);
    }
}
