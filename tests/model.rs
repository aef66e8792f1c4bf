//! Tier 3: the real SmolLM2-135M GGUF through our kernels, against llama.cpp's token ids and an
//! independent f32 reference forward (scripts/reference/reference_forward.py).

mod common;

use afinador_core::model::{Generation, SamplingConfig};
use common::{data, ids, loaded};

#[test]
fn tokenizer_ids_equal_llama_cpp() {
    common::tokenizer_ids_equal_llama_cpp(loaded(), "tokenizer_cases.json");
}

#[test]
fn greedy_continuation_of_capital_of_france_is_paris() {
    let l = loaded();
    let prompt = l
        .tokenizer
        .encode("The capital of France is", true)
        .unwrap();
    let mut g = Generation::new(
        &l.gpu,
        &l.model,
        prompt.len() + 8,
        SamplingConfig::default(),
    )
    .unwrap();
    let mut next = pollster::block_on(g.feed(&l.gpu, &prompt)).unwrap();
    let mut out = vec![next];
    for _ in 0..4 {
        next = pollster::block_on(g.feed(&l.gpu, &[next])).unwrap();
        out.push(next);
    }
    let text = l.tokenizer.decode(&out);
    assert!(
        text.starts_with(" Paris"),
        "greedy continuation was {text:?}"
    );
    // The reference forward's greedy tokens agree.
    let reference = data("reference_nll.json");
    let want = ids(&reference["greedy"]["ids"]);
    assert_eq!(
        &out[..],
        &want[..out.len().min(want.len())],
        "greedy ids differ from the f32 reference"
    );
}

#[test]
fn score_matches_the_f32_reference() {
    let l = loaded();
    let reference = data("reference_nll.json");
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let want_ids = ids(&case["ids"]);
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            l.tokenizer.encode(text, true).unwrap(),
            want_ids,
            "{name}: tokens"
        );
        let score = pollster::block_on(l.model.score(&l.gpu, &want_ids)).unwrap();
        let want_nll = case["nll"].as_f64().unwrap();
        let rel = (score.nll - want_nll).abs() / want_nll;
        assert!(
            rel < 0.01,
            "{name}: nll {} vs reference {want_nll} ({:.3}% off)",
            score.nll,
            rel * 100.0
        );
        let want_argmax = ids(&case["argmax"]);
        let agree = score
            .argmax
            .iter()
            .zip(&want_argmax)
            .filter(|(a, b)| a == b)
            .count();
        let frac = agree as f64 / want_argmax.len() as f64;
        assert!(
            frac >= 0.95,
            "{name}: argmax agrees at {:.1}% of positions",
            frac * 100.0
        );
    }
}

#[test]
fn incremental_decode_matches_a_full_forward() {
    // Feeding a text in pieces through the KV cache gives the same next-token choices as one pass.
    let l = loaded();
    let text =
        "Lisbon is the capital and largest city of Portugal, with an estimated population of";
    let ids = l.tokenizer.encode(text, true).unwrap();
    let full = pollster::block_on(l.model.score(&l.gpu, &ids)).unwrap();
    let mut g = Generation::new(&l.gpu, &l.model, ids.len(), SamplingConfig::default()).unwrap();
    let split = ids.len() / 2;
    let mut choices = vec![pollster::block_on(g.feed(&l.gpu, &ids[..split])).unwrap()];
    for &id in &ids[split..] {
        choices.push(pollster::block_on(g.feed(&l.gpu, &[id])).unwrap());
    }
    assert_eq!(choices, full.argmax[split - 1..].to_vec());
}

#[test]
fn scoring_through_a_generation_then_rewinding_continues_like_a_fresh_prefill() {
    // score_and_keep scores like Model::score, and the positions it keeps serve a decode as if
    // only they had been fed.
    let l = loaded();
    let ids = l
        .tokenizer
        .encode("O Rio de Janeiro fica no sudeste do Brasil, perto de", true)
        .unwrap();
    let full = pollster::block_on(l.model.score(&l.gpu, &ids)).unwrap();
    let mut g = Generation::new(&l.gpu, &l.model, ids.len(), SamplingConfig::default()).unwrap();
    let keep = ids.len() / 2;
    let scored = pollster::block_on(g.score_and_keep(&l.gpu, &ids, keep)).unwrap();
    assert_eq!(scored.argmax, full.argmax);
    assert!((scored.nll - full.nll).abs() < 1e-4 * full.nll);
    assert_eq!(g.len(), keep);
    let mut choices = Vec::new();
    for &id in &ids[keep..] {
        choices.push(pollster::block_on(g.feed(&l.gpu, &[id])).unwrap());
    }
    assert_eq!(choices, full.argmax[keep..].to_vec());
}
