//! The real default model, SmolLM2-135M-Instruct (Q4_1): its header, its tensors, and mutations
//! of its first megabytes. The file is required: a missing file fails these tests.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::*;

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/SmolLM2-135M-Instruct.Q4_1.gguf"
);

/// The model's bytes, read once for all tests.
fn model() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        std::fs::read(MODEL).unwrap_or_else(|e| {
            panic!(
                "cannot read the test model {MODEL}: {e}. \
                 Run scripts/fetch-model to download it (the tests need it)."
            )
        })
    })
}

#[test]
fn smollm2_header_and_tensors() {
    let bytes = model();
    let gguf = Gguf::parse(bytes).unwrap();
    let meta = gguf.metadata();
    assert_eq!(gguf.version(), 3);
    assert_eq!(gguf.architecture().unwrap(), "llama");
    assert_eq!(meta.len(), 33);
    assert_eq!(meta.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(meta.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(meta.get_u32("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(meta.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(meta.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(meta.get_u32("llama.vocab_size").unwrap(), 49152);
    assert_eq!(meta.get_u64("llama.context_length").unwrap(), 8192);
    assert_eq!(meta.get_f32("llama.rope.freq_base").unwrap(), 100_000.0);
    assert_eq!(
        meta.get_f32("llama.attention.layer_norm_rms_epsilon")
            .unwrap(),
        1e-5
    );
    assert!(!meta.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(meta.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    let tokens = meta.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(
        &tokens[..3],
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    );
    assert_eq!(
        meta.get_i32_array("tokenizer.ggml.token_type")
            .unwrap()
            .len(),
        49152
    );
    let merges = meta.get_str_array("tokenizer.ggml.merges").unwrap();
    assert_eq!((merges.len(), merges[0].as_str()), (48900, "Ġ t"));
    assert!(
        meta.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(gguf.alignment(), 32);
    assert_eq!(gguf.data_offset(), 1_785_664);

    let mut by_type = BTreeMap::new();
    for info in gguf.tensors() {
        *by_type.entry(info.ty.name()).or_insert(0) += 1;
    }
    assert_eq!(gguf.tensors().len(), 272);
    assert_eq!(
        by_type,
        BTreeMap::from([("F32", 61), ("Q4_1", 210), ("Q8_0", 1)])
    );
    assert_eq!(
        gguf.require_tensor("token_embd.weight").unwrap().ty,
        GgmlType::Q8_0
    );
    assert!(
        gguf.tensor("output.weight").is_none(),
        "embeddings are tied"
    );
    for (name, dims) in [
        ("token_embd.weight", [576, 49152]),
        ("blk.0.ffn_down.weight", [1536, 576]),
        ("blk.0.ffn_gate.weight", [576, 1536]),
        ("blk.29.attn_k.weight", [576, 192]),
        ("blk.29.attn_q.weight", [576, 576]),
    ] {
        assert_eq!(gguf.require_tensor(name).unwrap().dims, dims, "{name}");
    }
    for layer in 0..30 {
        for part in ["attn_norm", "ffn_norm"] {
            let info = gguf
                .require_tensor(&format!("blk.{layer}.{part}.weight"))
                .unwrap();
            assert_eq!(
                (info.ty, info.dims.as_slice()),
                (GgmlType::F32, &[576u64][..])
            );
        }
    }

    // The tensors tile the data section: each starts at the aligned end of the previous one and
    // the last one ends the file.
    let mut infos: Vec<&TensorInfo> = gguf.tensors().iter().collect();
    infos.sort_by_key(|t| t.offset);
    let mut end = 0u64;
    for info in &infos {
        assert_eq!(info.offset, end.next_multiple_of(32), "{}", info.name);
        end = info.offset + info.n_bytes;
    }
    assert_eq!(gguf.data_offset() + end, bytes.len() as u64);
}

#[test]
fn smollm2_tensors_decode_like_gguf_py() {
    let bytes = model();
    let gguf = Gguf::parse(bytes).unwrap();
    // (name, first four values, sum, sum of magnitudes, last value) from gguf-py 0.19.
    let expected = [
        (
            "token_embd.weight",
            [
                -0.10654449462890625,
                0.032978057861328125,
                0.048198699951171875,
                -0.022830963134765625,
            ],
            -15353.04449415207,
            2802153.619805813,
            -0.0417022705078125,
        ),
        (
            "blk.0.attn_q.weight",
            [
                -0.0963134765625,
                0.1573486328125,
                -0.0963134765625,
                -0.73046875,
            ],
            59.22322082519531,
            63395.39872741699,
            -0.255859375,
        ),
        (
            "blk.29.ffn_down.weight",
            [
                -0.2733154296875,
                0.186279296875,
                0.186279296875,
                0.04840087890625,
            ],
            49.83570861816406,
            126250.91435241699,
            0.056640625,
        ),
        (
            "output_norm.weight",
            [1.7578125, 1.8203125, 1.78125, 1.6015625],
            1038.33203125,
            1045.09765625,
            1.984375,
        ),
    ];
    for (name, first, sum, abs_sum, last) in expected {
        let info = gguf.require_tensor(name).unwrap();
        let x = gguf.tensor_f32(info, bytes).unwrap();
        assert_eq!(x.len() as u64, info.n_elements);
        for (a, b) in x.iter().zip(first) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-6 * b.abs(),
                "{name}: {a} vs {b}"
            );
        }
        assert_eq!(f64::from(*x.last().unwrap()), last, "{name}");
        let s: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let a: f64 = x.iter().map(|&v| f64::from(v).abs()).sum();
        assert!(
            (s - sum).abs() <= 1e-6 * abs_sum,
            "{name}: sum {s} vs {sum}"
        );
        assert!(
            (a - abs_sum).abs() <= 1e-6 * abs_sum,
            "{name}: |sum| {a} vs {abs_sum}"
        );
    }
}

#[test]
fn smollm2_header_mutations_never_panic() {
    const CASES: usize = 1000;
    let bytes = model();
    let header_len = Gguf::parse(bytes).unwrap().data_offset() as usize;
    // Mutations stay in the header and the first tensors: the first few MB.
    let span = header_len + (2 << 20);
    let mut work = bytes.to_vec();
    let mut rng = Rng::new(0x5e0_1135);
    let (mut ok, mut truncated) = (0, 0);
    for _ in 0..CASES {
        if rng.below(4) == 0 {
            // Any cut before the end of the data fails.
            let len = rng.below(span);
            assert!(
                Gguf::parse(&work[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
            truncated += 1;
            continue;
        }
        // Overwrite up to 8 bytes in the header, parse the whole file, then restore them.
        let at = rng.below(header_len);
        let n = (1 + rng.below(8)).min(header_len - at);
        let saved: Vec<u8> = work[at..at + n].to_vec();
        let value = match rng.below(3) {
            0 => u64::MAX,
            1 => rng.next_u64() >> rng.below(64),
            _ => 1 << rng.below(64),
        };
        work[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
        if let Ok(gguf) = Gguf::parse(&work) {
            ok += 1;
            for info in gguf.tensors() {
                gguf.tensor_bytes(info, &work).unwrap();
            }
        }
        work[at..at + n].copy_from_slice(&saved);
    }
    assert!(
        truncated > 0 && ok > 0,
        "{ok} parsed, {truncated} truncations"
    );
}
