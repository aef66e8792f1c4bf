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
    let path = repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model",
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
    LOADED.get_or_init(|| {
        let bytes = std::fs::read(model_path()).expect("read model");
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
    })
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
