//! Every architecture on tiny random models: decoding through the KV cache chooses what one full
//! forward pass chooses (the biases and the rope style must land at the cached positions too).

use super::tiny::{TinySpec, make_tiny_gguf};
use super::{ARCHITECTURES, Generation, Model, SamplingConfig};
use crate::formats::{GgmlType, Gguf};
use crate::kernels::testing::gpu;
use crate::util::Rng;

#[test]
fn every_architecture_decodes_incrementally_like_a_full_forward() {
    for &arch in ARCHITECTURES {
        let spec = TinySpec {
            arch,
            weight_type: GgmlType::Q8_0,
            ..TinySpec::default()
        };
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
        assert_eq!(choices, full.argmax[split - 1..].to_vec(), "{}", arch.name);
    }
}

#[test]
fn the_architecture_changes_what_the_model_computes() {
    // The same random weights read as llama and as qwen2 (NEOX rope, and biases the llama file
    // does not have) score differently: the description is really read.
    let scores: Vec<f64> = [super::arch::LLAMA, super::arch::QWEN2]
        .iter()
        .map(|&arch| {
            let spec = TinySpec {
                arch,
                ..TinySpec::default()
            };
            let bytes = make_tiny_gguf(&spec, None).unwrap();
            let gguf = Gguf::parse(&bytes).unwrap();
            let model = Model::load(gpu(), &gguf, &bytes).unwrap();
            let ids: Vec<u32> = (0..12).map(|i| (i * 37 % 256) as u32).collect();
            pollster::block_on(model.score(gpu(), &ids)).unwrap().nll
        })
        .collect();
    assert!((scores[0] - scores[1]).abs() > 1e-3, "{scores:?}");
}
