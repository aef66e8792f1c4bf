//! GGUF LoRA: layout as llama.cpp reads it, round trips, PEFT → GGUF, errors.

use safetensors::tensor::Dtype;

use super::super::peft::peft_tensor_name;
use super::super::permute::hf_to_gguf_rows;
use super::super::{LoraError, Module, from_gguf_lora, from_peft, to_gguf_lora};
use super::{C, PREFIX, QK, adapter, config_json, dims, f32_bytes, safetensors_file, values};
use crate::formats::{GgmlType, Gguf, GgufWriter, MetaValue};

#[test]
fn layout_is_what_llama_cpp_reads() {
    let a = adapter(3, 2, &Module::ALL);
    let bytes = to_gguf_lora(&a, "llama").unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let meta = g.metadata();
    assert_eq!(
        meta.get("general.architecture"),
        Some(&MetaValue::String("llama".into()))
    );
    assert_eq!(
        meta.get("general.type"),
        Some(&MetaValue::String("adapter".into()))
    );
    assert_eq!(
        meta.get("adapter.type"),
        Some(&MetaValue::String("lora".into()))
    );
    // llama.cpp reads alpha with gguf_get_val_f32, which asserts the type is f32.
    assert_eq!(meta.get("adapter.lora.alpha"), Some(&MetaValue::F32(6.0)));

    assert_eq!(g.tensors().len(), 2 * 2 * 7);
    assert_eq!(g.tensors()[0].name, "blk.0.attn_q.weight.lora_a");
    assert_eq!(g.tensors()[1].name, "blk.0.attn_q.weight.lora_b");
    for p in &a.tensors {
        let base = format!("blk.{}.{}.weight", p.layer, p.module.gguf_name());
        let ta = g.require_tensor(&format!("{base}.lora_a")).unwrap();
        let tb = g.require_tensor(&format!("{base}.lora_b")).unwrap();
        // Base weight ne = [in, out]: lora_a.ne[0] = in, lora_b.ne[1] = out, a.ne[1] = b.ne[0] = r.
        assert_eq!(ta.dims, [p.in_features as u64, 3], "{base}");
        assert_eq!(tb.dims, [3, p.out_features as u64], "{base}");
        assert_eq!((ta.ty, tb.ty), (GgmlType::F32, GgmlType::F32));
        assert_eq!(g.tensor_f32(ta, &bytes).unwrap(), p.a);
        // lora_b stays in GGUF row order, q/k included.
        assert_eq!(g.tensor_f32(tb, &bytes).unwrap(), p.b);
    }
}

#[test]
fn round_trip_through_gguf() {
    let a = adapter(4, 3, &[Module::QProj, Module::KProj, Module::DownProj]);
    let back = from_gguf_lora(&to_gguf_lora(&a, "llama").unwrap()).unwrap();
    assert_eq!(back.architecture, "llama");
    assert!(back.skipped.is_empty());
    let mut expected = a.clone();
    expected.sort();
    assert_eq!(back.adapter, expected);
}

#[test]
fn rslora_alpha_is_folded_for_llama_cpp() {
    let mut a = adapter(4, 1, &[Module::VProj]);
    a.config.alpha = 8.0;
    a.config.use_rslora = true;
    let bytes = to_gguf_lora(&a, "llama").unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    // llama.cpp scales by alpha / r: alpha·√r / r = alpha / √r.
    assert_eq!(
        g.metadata().get("adapter.lora.alpha"),
        Some(&MetaValue::F32(16.0))
    );
    let back = from_gguf_lora(&bytes).unwrap().adapter;
    assert!(!back.config.use_rslora);
    assert_eq!(back.config.scale(), a.config.scale());
}

#[test]
fn peft_import_then_gguf_matches_llama_cpp_converter() {
    // convert_lora_to_gguf.py permutes lora_B of q/k with the base model's permutation and
    // writes lora_A as is; afinador's PEFT import + GGUF export must give the same tensors.
    let r = 2;
    let mut tensors = Vec::new();
    let mut hf = Vec::new();
    for m in [Module::QProj, Module::KProj] {
        let (in_f, out_f) = dims(m);
        let (a, b) = (values(r * in_f, m as u64), values(out_f * r, 9 + m as u64));
        hf.push((m, out_f, a.clone(), b.clone()));
        tensors.push((
            peft_tensor_name(PREFIX, 0, m, false),
            vec![r, in_f],
            f32_bytes(&a),
        ));
        tensors.push((
            peft_tensor_name(PREFIX, 0, m, true),
            vec![out_f, r],
            f32_bytes(&b),
        ));
    }
    let refs: Vec<_> = tensors
        .iter()
        .map(|(n, s, b)| (n.as_str(), Dtype::F32, s.clone(), b.clone()))
        .collect();
    let adapter = from_peft(&config_json(r, ""), &safetensors_file(&refs), QK).unwrap();
    let bytes = to_gguf_lora(&adapter, "llama").unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    for (m, out_f, a, b) in hf {
        let heads = m.rope_heads(QK).unwrap();
        let base = format!("blk.0.{}.weight", m.gguf_name());
        let ta = g.require_tensor(&format!("{base}.lora_a")).unwrap();
        let tb = g.require_tensor(&format!("{base}.lora_b")).unwrap();
        assert_eq!(g.tensor_f32(ta, &bytes).unwrap(), a);
        assert_eq!(
            g.tensor_f32(tb, &bytes).unwrap(),
            hf_to_gguf_rows(&b, out_f, heads).unwrap()
        );
    }
    assert_eq!(
        g.metadata().get("adapter.lora.alpha"),
        Some(&MetaValue::F32(16.0))
    );
}

/// A GGUF LoRA file built by hand: metadata (key, value) and F32 tensors (name, dims).
fn gguf(meta: &[(&str, MetaValue)], tensors: &[(&str, &[u64])]) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(*k, v.clone()).unwrap();
    }
    for (i, (name, dims)) in tensors.iter().enumerate() {
        let n = dims.iter().product::<u64>() as usize;
        w.add_tensor_f32(*name, dims, GgmlType::F32, &values(n, i as u64))
            .unwrap();
    }
    w.to_bytes()
}

fn lora_meta(general_type: &str, adapter_type: &str) -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", "llama".into()),
        ("general.type", general_type.into()),
        ("adapter.type", adapter_type.into()),
        ("adapter.lora.alpha", 4.0f32.into()),
    ]
}

const QA: &str = "blk.0.attn_q.weight.lora_a";
const QB: &str = "blk.0.attn_q.weight.lora_b";

#[test]
fn reads_other_types_skips_norms_and_defaults_alpha() {
    let c = C as u64;
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("general.type", "adapter").unwrap();
    w.add_metadata("adapter.type", "lora").unwrap();
    let a: Vec<f32> = (0..2 * C).map(|i| i as f32 / 4.0).collect();
    let b: Vec<f32> = (0..2 * 12).map(|i| -(i as f32) / 8.0).collect();
    w.add_tensor_f32(QA, &[c, 2], GgmlType::F16, &a).unwrap();
    w.add_tensor_f32(QB, &[2, 12], GgmlType::BF16, &b).unwrap();
    w.add_tensor_f32("blk.0.attn_norm.weight", &[c], GgmlType::F32, &[1.0; C])
        .unwrap();
    let got = from_gguf_lora(&w.to_bytes()).unwrap();
    assert_eq!(got.skipped, ["blk.0.attn_norm.weight"]);
    let p = &got.adapter.tensors[0];
    assert_eq!((&p.a, &p.b), (&a, &b));
    // No alpha: llama.cpp applies B·A unscaled, so alpha = r.
    assert_eq!(got.adapter.config.alpha, 2.0);
    assert_eq!(got.adapter.config.scale(), 1.0);
}

#[test]
fn refuses_files_that_are_not_lora_adapters() {
    let c = C as u64;
    let pair: [(&str, &[u64]); 2] = [(QA, &[c, 2]), (QB, &[2, 12])];
    let err = |bytes: Vec<u8>| from_gguf_lora(&bytes).unwrap_err().to_string();
    assert_eq!(
        err(gguf(&lora_meta("model", "lora"), &pair)),
        "GGUF LoRA: general.type is 'model', expected 'adapter' (is this a model rather than an adapter?)"
    );
    assert_eq!(
        err(gguf(&lora_meta("adapter", "control_vector"), &pair)),
        "GGUF LoRA: adapter.type is 'control_vector', expected 'lora'"
    );
    let mut no_type = lora_meta("adapter", "lora");
    no_type.remove(1);
    assert_eq!(
        err(gguf(&no_type, &pair)),
        "GGUF LoRA: general.type is missing (expected 'adapter') (is this a model rather than an adapter?)"
    );
    let mut int_type = lora_meta("adapter", "lora");
    int_type[2].1 = MetaValue::U32(1);
    assert_eq!(
        err(gguf(&int_type, &pair)),
        "GGUF LoRA: adapter.type is a u32, expected the string 'lora'"
    );
    let no_arch = &lora_meta("adapter", "lora")[1..];
    assert!(err(gguf(no_arch, &pair)).contains("general.architecture"));
    assert!(matches!(from_gguf_lora(b"GGUF"), Err(LoraError::Gguf(_))));
}

#[test]
fn names_bad_tensors() {
    let c = C as u64;
    let meta = lora_meta("adapter", "lora");
    let err = |tensors: &[(&str, &[u64])]| {
        from_gguf_lora(&gguf(&meta, tensors))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&[(QA, &[c, 2])]),
        "layer 0 q_proj: the adapter has lora_a but no lora_b"
    );
    assert_eq!(
        err(&[(QA, &[c, 2]), (QB, &[3, 12])]),
        "adapter tensor blk.0.attn_q.weight.lora_b has shape [3, 12], expected GGUF dims \
         [r, out] = [2, out] (r from its lora_a)"
    );
    // A second pair of another rank.
    let kb = "blk.0.attn_k.weight.lora_b";
    let ka = "blk.0.attn_k.weight.lora_a";
    assert_eq!(
        err(&[(QA, &[c, 2]), (QB, &[2, 12]), (ka, &[c, 3]), (kb, &[3, 4])]),
        "adapter tensor blk.0.attn_k.weight.lora_a has shape [10, 3], expected GGUF dims \
         [in, r] = [in, 2] (r of the first pair)"
    );
    assert!(err(&[("token_embd.weight.lora_a", &[4, 2])]).starts_with(
        "adapter tensor 'token_embd.weight.lora_a' adapts a tensor afinador does not adapt"
    ));
    assert!(
        err(&[(QA, &[c, 2]), ("blk.0.attn_q.weight.scale", &[2])])
            .starts_with("adapter tensor 'blk.0.attn_q.weight.scale' has an unexpected suffix")
    );
    assert_eq!(err(&[]), "the GGUF LoRA file holds no LoRA matrices");
}

#[test]
fn export_refuses_empty_adapters_and_architectures() {
    let mut a = adapter(2, 1, &[Module::QProj]);
    assert!(matches!(
        to_gguf_lora(&a, ""),
        Err(LoraError::GgufMeta { .. })
    ));
    a.tensors.clear();
    assert_eq!(
        to_gguf_lora(&a, "llama").unwrap_err().to_string(),
        "the adapter holds no LoRA matrices"
    );
}
