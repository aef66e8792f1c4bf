//! Every architecture on tiny random models: decoding through the KV cache chooses what one full
//! forward pass chooses (the biases and the rope style must land at the cached positions too).

use super::tiny::{TinySpec, make_tiny_gguf};
use super::{Generation, Model, SamplingConfig};
use crate::formats::Gguf;
use crate::kernels::testing::gpu;
use crate::util::Rng;

#[test]
fn every_architecture_decodes_incrementally_like_a_full_forward() {
    for spec in TinySpec::block_variants() {
        let arch = spec.arch;
        let bytes = make_tiny_gguf(&spec, None).unwrap();
        let gguf = Gguf::parse(&bytes).unwrap();
        let model = Model::load(gpu(), &gguf, &bytes).unwrap();
        assert_eq!(model.config.arch, arch);
        let mut rng = Rng::new(9);
        let ids: Vec<u32> = (0..14).map(|_| rng.below(256) as u32).collect();
        let full = pollster::block_on(model.score(gpu(), &ids)).unwrap();
        let mut g = Generation::new(gpu(), &model, ids.len(), SamplingConfig::default()).unwrap();
        // A prompt of 6 (the GEMM path), then one token at a time (the GEMV path).
        let split = 6;
        let mut choices = vec![pollster::block_on(g.feed(gpu(), &ids[..split])).unwrap()];
        for &id in &ids[split..] {
            choices.push(pollster::block_on(g.feed(gpu(), &[id])).unwrap());
        }
        assert_eq!(
            choices,
            full.argmax[split - 1..].to_vec(),
            "{}",
            spec.label()
        );
    }
}

#[test]
fn the_architecture_changes_what_the_model_computes() {
    // The same random weights read as llama, as qwen2 (NEOX rope, and biases the llama file
    // does not have) and with Llama 3's rope factors score differently: each is really read.
    let scores: Vec<f64> = TinySpec::block_variants()
        .iter()
        .filter(|s| s.arch != super::arch::MISTRAL)
        .map(|spec| {
            let bytes = make_tiny_gguf(spec, None).unwrap();
            let gguf = Gguf::parse(&bytes).unwrap();
            let model = Model::load(gpu(), &gguf, &bytes).unwrap();
            let ids: Vec<u32> = (0..40).map(|i| (i * 37 % 256) as u32).collect();
            pollster::block_on(model.score(gpu(), &ids)).unwrap().nll
        })
        .collect();
    for (i, a) in scores.iter().enumerate() {
        for b in &scores[i + 1..] {
            assert!((a - b).abs() > 1e-4, "{scores:?}");
        }
    }
}
