//! Every architecture and weight type without a real model here, on tiny random GGUFs: afinador's
//! `score` against an independent float64 numpy forward and llama.cpp
//! (`scripts/reference/tiny_models.py`, `tests/data/reference_nll_tiny.json`).
//!
//! For each case the test remakes the model with the recorded `make-tiny-model` arguments (the
//! sha256 must equal the file the references were computed on), scores the recorded token ids
//! (the tiny models have no tokenizer, so ids go straight to `Model::score`, as in
//! `real_models.rs`) and checks: every per-token log-prob within [`LOGPROB_TOL`] of the f64
//! forward, the mean NLL within 1% of it and within 3% of llama.cpp's, and the argmax equal to
//! the f64 forward's at ≥ 95% of the positions whose top-two margin exceeds 1e-3.
//!
//! Random weights give nearly flat next-token distributions (mean NLL ≈ 5.6 ≈ ln 256), so the
//! NLL tolerances are weak here and the per-token one carries the test: the JSON's
//! `sensitivity` records how far the f64 log-probs move when one feature of a case is dropped
//! (the rope pairing: 0.25–2.7 nats; qwen2's biases 2.4; q/k norms 0.9–1.1; gemma3's sliding
//! window 1.5; Llama 3's rope factors 1.1e-2; phi3's fused q/k/v cut in another order 2.5,
//! gate/up 0.65; LongRoPE's long factors instead of the short 0.33 — and past the original
//! context (`phi3+rope_freqs@16`), the short instead of the long 0.62 —, its attention factor
//! 0.18, no factors 4.1e-2; a partial rotary embedding rotating the whole head 0.39), all well
//! above the tolerance.
//!
//! Each architecture case also has a `lora` section: llama.cpp loading afinador's GGUF LoRA (a
//! seeded `make-random-adapter` on every projection) and its f32 merge, on ids the base model
//! writes. The test remakes both files (sha256), loads the model with the adapter and checks:
//! the per-token log-probs without and with it within [`LOGPROB_TOL`] of the f64 forward; with
//! it, within [`LOGPROB_TOL`] plus that run's recorded distance from the f64 forward of
//! llama.cpp's F32 run with `--lora`; the adapter's effect (adapted minus base mean NLL) within
//! 10% + 0.003 nats of llama.cpp's on the file as made; the merged file within [`LOGPROB_TOL`]
//! of the f64 adapted forward per token and its NLL within 1% of llama.cpp's on the same file.

mod common;

use std::path::Path;

use afinador_core::formats::Gguf;
use afinador_core::gpu::{Gpu, GpuOptions};
use afinador_core::model::tiny::TinySpec;
use afinador_core::model::{ARCHITECTURES, Model};
use common::{afinador, ids, ok, scratch};
use serde_json::Value;

/// Largest |afinador − f64| per-token log-prob, nats. Measured on lavapipe: ≤ 2.4e-6 for every
/// architecture and the F32/F16/BF16/Q4_0/Q4_1/Q8_0 files, 4.4e-6–2.6e-5 for Q5_0, Q5_1 and
/// the k-quants (make-tiny-model writes random blocks for those: weights ~10× larger than
/// 1/√C, so sharper attention that amplifies f32 rounding). llama.cpp's own F32 run is
/// within 3.4e-5 of the f64 forward (gemma3: 4.8e-4, its f16-table GELU). 2e-4 leaves ~8× the
/// worst case for other GPUs' arithmetic and stays 50× under the smallest feature the data
/// must tell apart (Llama 3's rope factors, 1.1e-2).
const LOGPROB_TOL: f64 = 2e-4;

/// Architectures afinador runs that the data do not cover yet (make-tiny-model writes them, the
/// numpy forward does not run them yet); remove one when its case is added.
const NOT_COVERED_YET: &[&str] = &[];

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// What one case measured, for the failure message and `--nocapture`.
struct Measured {
    name: String,
    max_dlogp_ref: f64,
    max_dlogp_llama_cpp: f64,
    max_nll_rel_ref: f64,
    max_nll_rel_llama_cpp: f64,
    argmax_agree: (usize, usize),
    lora: Option<LoraMeasured>,
}

/// What a case's adapter measured.
#[derive(Default)]
struct LoraMeasured {
    /// Largest |afinador − f64| per-token log-prob, base and adapted.
    max_dlogp_ref: f64,
    /// Largest |afinador − llama.cpp's F32 run with the adapter|, and what it may be.
    max_dlogp_llama_cpp_f32: f64,
    tol_llama_cpp_f32: f64,
    /// The adapter's effect on each sequence's mean NLL: (afinador, llama.cpp on the file as
    /// made).
    effects: Vec<(f64, f64)>,
    /// Largest |afinador on the merged file − the f64 adapted forward|, per token.
    max_dlogp_merged: f64,
    /// Largest |afinador's merged-file NLL − llama.cpp's| / llama.cpp's.
    max_nll_rel_merged: f64,
}

impl LoraMeasured {
    fn effects_agree(&self) -> bool {
        self.effects
            .iter()
            .all(|&(ours, theirs)| (ours - theirs).abs() <= 0.1 * theirs.abs() + 0.003)
    }
}

/// Runs a recorded command (`make-tiny-model`, `make-random-adapter`, `merge`) with its
/// placeholders (MODEL, ADAPTER, MERGED) filled in.
fn run_recorded(command: &Value, fill: &[(&str, &Path)]) {
    let args: Vec<&str> = command
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            fill.iter()
                .find(|(k, _)| *k == a)
                .map_or(a, |(_, p)| p.to_str().unwrap())
        })
        .collect();
    ok(afinador(&args));
}

fn mean(xs: &[f32]) -> f64 {
    xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len() as f64
}

/// Largest |a − b| over two equally long lists.
fn max_diff(name: &str, got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{name}: token count");
    got.iter()
        .zip(want)
        .map(|(&g, w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
}

/// The case's adapter (its `lora` section): remakes the adapter and the merged model (sha256),
/// scores the section's sequences with `base`, with the model loaded with the adapter and with
/// the merged model.
fn score_lora(
    gpu: &Gpu,
    dir: &Path,
    name: &str,
    model: &Path,
    base: &Model,
    lora: &Value,
) -> LoraMeasured {
    let stem = name.replace(['/', '+'], "_");
    let adapter = dir.join(format!("{stem}_adapter"));
    let merged = dir.join(format!("{stem}_merged.gguf"));
    let fill = [
        ("MODEL", model),
        ("ADAPTER", adapter.as_path()),
        ("MERGED", merged.as_path()),
    ];
    run_recorded(&lora["command"], &fill);
    let gguf_lora = adapter.join("adapter.gguf");
    assert_eq!(
        sha256(&gguf_lora),
        lora["adapter_sha256"].as_str().unwrap(),
        "{name}: make-random-adapter no longer writes the adapter llama.cpp loaded (rerun \
         scripts/reference/tiny_models.py)"
    );
    run_recorded(&lora["merge_command"], &fill);
    assert_eq!(
        sha256(&merged),
        lora["merged_sha256"].as_str().unwrap(),
        "{name}: merge no longer writes the file llama.cpp loaded"
    );
    let load = |path: &Path, adapter: Option<&afinador_core::lora::LoraAdapter>| {
        let bytes = std::fs::read(path).unwrap();
        let gguf = Gguf::parse(&bytes).unwrap();
        Model::load_with_adapter(gpu, &gguf, &bytes, adapter)
            .unwrap_or_else(|e| panic!("{name}: load {}: {e}", path.display()))
    };
    let parsed = afinador_core::lora::from_gguf_lora(&std::fs::read(&gguf_lora).unwrap())
        .unwrap_or_else(|e| panic!("{name}: the GGUF LoRA: {e}"));
    let adapted = load(model, Some(&parsed.adapter));
    let merged = load(&merged, None);

    let tol_llama_cpp_f32 = LOGPROB_TOL + lora["max_abs_dlogp_llama_cpp_f32"].as_f64().unwrap();
    let mut m = LoraMeasured {
        tol_llama_cpp_f32,
        ..Default::default()
    };
    for seq in lora["sequences"].as_array().unwrap() {
        let tokens = ids(&seq["ids"]);
        let score = |model: &Model| {
            pollster::block_on(model.score(gpu, &tokens))
                .unwrap()
                .token_logprobs
        };
        let (b, a, mg) = (score(base), score(&adapted), score(&merged));
        m.max_dlogp_ref = m
            .max_dlogp_ref
            .max(max_diff(name, &b, &floats(&seq["logprobs_base"])))
            .max(max_diff(name, &a, &floats(&seq["logprobs"])));
        m.max_dlogp_llama_cpp_f32 = m.max_dlogp_llama_cpp_f32.max(max_diff(
            name,
            &a,
            &floats(&seq["logprobs_llama_cpp_f32"]),
        ));
        m.max_dlogp_merged = m
            .max_dlogp_merged
            .max(max_diff(name, &mg, &floats(&seq["logprobs"])));
        let theirs = seq["nll_llama_cpp_merged"].as_f64().unwrap();
        m.max_nll_rel_merged = m
            .max_nll_rel_merged
            .max((-mean(&mg) - theirs).abs() / theirs);
        m.effects.push((
            mean(&b) - mean(&a),
            seq["effect_llama_cpp"].as_f64().unwrap(),
        ));
    }
    m
}

/// Remakes the case's model, checks its sha256, scores its sequences; returns what it measured.
fn score_case(gpu: &Gpu, dir: &Path, case: &Value) -> Measured {
    let name = case["name"].as_str().unwrap();
    let path = dir.join(format!("{}.gguf", name.replace(['/', '+'], "_")));
    let args: Vec<&str> = case["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| match a.as_str().unwrap() {
            "MODEL" => path.to_str().unwrap(),
            a => a,
        })
        .collect();
    ok(afinador(&args));
    assert_eq!(
        sha256(&path),
        case["model_sha256"].as_str().unwrap(),
        "{name}: make-tiny-model {args:?} no longer writes the file the references were computed \
         on (rerun scripts/reference/tiny_models.py)"
    );
    let bytes = std::fs::read(&path).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::load(gpu, &gguf, &bytes).unwrap_or_else(|e| panic!("{name}: load: {e}"));

    let mut m = Measured {
        name: name.to_string(),
        max_dlogp_ref: 0.0,
        max_dlogp_llama_cpp: 0.0,
        max_nll_rel_ref: 0.0,
        max_nll_rel_llama_cpp: 0.0,
        argmax_agree: (0, 0),
        lora: None,
    };
    for seq in case["sequences"].as_array().unwrap() {
        let tokens = ids(&seq["ids"]);
        let score = pollster::block_on(model.score(gpu, &tokens)).unwrap();
        let want = floats(&seq["logprobs"]);
        let want_cpp = floats(&seq["logprobs_llama_cpp"]);
        assert_eq!(
            score.token_logprobs.len(),
            want.len(),
            "{name}: token count"
        );
        for ((&got, w), c) in score.token_logprobs.iter().zip(&want).zip(&want_cpp) {
            m.max_dlogp_ref = m.max_dlogp_ref.max((got as f64 - w).abs());
            m.max_dlogp_llama_cpp = m.max_dlogp_llama_cpp.max((got as f64 - c).abs());
        }
        let rel = |key: &str| {
            let want = seq[key].as_f64().unwrap();
            (score.nll - want).abs() / want
        };
        m.max_nll_rel_ref = m.max_nll_rel_ref.max(rel("nll"));
        m.max_nll_rel_llama_cpp = m.max_nll_rel_llama_cpp.max(rel("nll_llama_cpp"));
        let want_argmax = ids(&seq["argmax"]);
        let margins = floats(&seq["argmax_margin"]);
        assert_eq!(score.argmax.len(), want_argmax.len(), "{name}: positions");
        for ((got, want), margin) in score.argmax.iter().zip(&want_argmax).zip(margins) {
            if margin > 1e-3 {
                m.argmax_agree.1 += 1;
                m.argmax_agree.0 += (got == want) as usize;
            }
        }
    }
    if let Some(lora) = case.get("lora") {
        m.lora = Some(score_lora(gpu, dir, name, &path, &model, lora));
    }
    m
}

/// The cases cover every architecture afinador runs (but [`NOT_COVERED_YET`]), each with an
/// adapter in llama.cpp, llama with Llama 3's rope factors and phi3 with LongRoPE (also with
/// adapters), and llama in every weight type a tiny model can be written in.
fn check_coverage(cases: &[Value]) {
    let covered = |arch: &str, rope_freqs: bool, weights: Option<&str>| {
        cases.iter().any(|c| {
            c["arch"] == arch
                && c["rope_freqs"] == rope_freqs
                && weights.is_none_or(|w| c["weight_types"]["attn_q"] == w)
        })
    };
    let with_lora = |arch: &str, rope_freqs: bool| {
        cases
            .iter()
            .any(|c| c["arch"] == arch && c["rope_freqs"] == rope_freqs && c.get("lora").is_some())
    };
    for arch in ARCHITECTURES {
        let pending = NOT_COVERED_YET.contains(&arch.name);
        assert_eq!(
            covered(arch.name, false, None),
            !pending,
            "{}: add its case to scripts/reference/tiny_models.py (and take it out of \
             NOT_COVERED_YET)",
            arch.name
        );
        assert!(
            pending || with_lora(arch.name, false),
            "{}: its case has no adapter (TinyCase.lora)",
            arch.name
        );
    }
    for arch in ["llama", "phi3"] {
        assert!(
            covered(arch, true, None) && with_lora(arch, true),
            "{arch} with rope_freqs, with an adapter"
        );
    }
    for ty in TinySpec::weight_types() {
        assert!(
            covered("llama", false, Some(ty.name())),
            "llama with {} weights",
            ty.name()
        );
    }
}

#[test]
fn tiny_models_score_like_the_f64_reference_and_llama_cpp() {
    let reference = common::data("reference_nll_tiny.json");
    let cases = reference["cases"].as_array().unwrap();
    check_coverage(cases);
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"));
    let dir = scratch("tiny-models");
    let mut failures = Vec::new();
    for case in cases {
        let m = score_case(&gpu, &dir, case);
        let (agree, total) = m.argmax_agree;
        eprintln!(
            "{:18} max |Δ log p| vs f64 {:.1e}, vs llama.cpp {:.1e}; NLL rel. off f64 {:.1e}, \
             off llama.cpp {:.1e}; argmax {agree}/{total}",
            m.name,
            m.max_dlogp_ref,
            m.max_dlogp_llama_cpp,
            m.max_nll_rel_ref,
            m.max_nll_rel_llama_cpp,
        );
        let checks = [
            (m.max_dlogp_ref <= LOGPROB_TOL, "per-token log-probs vs f64"),
            (m.max_nll_rel_ref < 0.01, "NLL within 1% of f64"),
            (m.max_nll_rel_llama_cpp < 0.03, "NLL within 3% of llama.cpp"),
            (
                agree as f64 >= 0.95 * total as f64,
                "argmax agreement ≥ 95%",
            ),
        ];
        for (passed, what) in checks {
            if !passed {
                failures.push(format!("{}: {what}", m.name));
            }
        }
        let Some(l) = &m.lora else { continue };
        let effects: Vec<String> = l
            .effects
            .iter()
            .map(|(ours, theirs)| format!("{ours:+.4}/{theirs:+.4}"))
            .collect();
        eprintln!(
            "{:18} LoRA: max |Δ log p| vs f64 {:.1e}, vs llama.cpp F32 {:.1e} (≤ {:.1e}); effect \
             afinador/llama.cpp {}; merged: vs f64 {:.1e}, NLL rel. off llama.cpp {:.1e}",
            "",
            l.max_dlogp_ref,
            l.max_dlogp_llama_cpp_f32,
            l.tol_llama_cpp_f32,
            effects.join(", "),
            l.max_dlogp_merged,
            l.max_nll_rel_merged,
        );
        let checks = [
            (
                l.max_dlogp_ref <= LOGPROB_TOL,
                "LoRA: per-token log-probs vs f64",
            ),
            (
                l.max_dlogp_llama_cpp_f32 <= l.tol_llama_cpp_f32,
                "LoRA: per-token log-probs vs llama.cpp's F32 run with the adapter",
            ),
            (
                l.effects_agree(),
                "LoRA: the adapter's effect within 10% + 0.003 nats of llama.cpp's",
            ),
            (
                l.max_dlogp_merged <= LOGPROB_TOL,
                "merged: per-token log-probs vs f64",
            ),
            (
                l.max_nll_rel_merged < 0.01,
                "merged: NLL within 1% of llama.cpp's",
            ),
        ];
        for (passed, what) in checks {
            if !passed {
                failures.push(format!("{}: {what}", m.name));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "failed: {failures:#?}");
}
