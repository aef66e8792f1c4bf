//! `merge_into_gguf`: the adapted projections re-encoded in the type asked for (the f32 merge,
//! quantized), everything else copied; rows that cannot hold the type's blocks refused.

use super::{LoraAdapter, LoraConfig, LoraPair, Module, values};
use crate::formats::{GgmlType, Gguf, GgufWriter, quant};
use crate::lora::LoraError;
use crate::lora::merge::merge_into_gguf;

/// A one-layer base model of width `c` and MLP width `ff`: attn_q [out 8, in c] in F16 and
/// ffn_down [out c, in ff] in Q4_1 (the adapted ones), token_embd [3, c] in F16 (not adapted).
fn base(c: usize, ff: usize) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    for (name, rows, cols, ty, seed) in [
        ("blk.0.attn_q.weight", 8, c, GgmlType::F16, 1),
        ("blk.0.ffn_down.weight", c, ff, GgmlType::Q4_1, 2),
        ("token_embd.weight", 3, c, GgmlType::F16, 3),
    ] {
        let dims = [cols as u64, rows as u64];
        w.add_tensor_f32(name, &dims, ty, &values(rows * cols, seed))
            .unwrap();
    }
    w.to_bytes()
}

/// A rank-2 adapter on attn_q and ffn_down (scale 1) that moves the weights about as far as
/// they are large.
fn lora(c: usize, ff: usize) -> LoraAdapter {
    let pair = |module, in_features, out_features, seed| LoraPair {
        layer: 0,
        module,
        a: values(2 * in_features, seed),
        b: values(out_features * 2, seed + 1),
        in_features,
        out_features,
    };
    LoraAdapter {
        config: LoraConfig::new(2, 2.0, &[Module::QProj, Module::DownProj]),
        tensors: vec![
            pair(Module::QProj, c, 8, 10),
            pair(Module::DownProj, ff, c, 20),
        ],
    }
}

#[test]
fn merged_projections_take_the_type_asked_for() {
    let (c, ff) = (256, 512);
    let (file, adapter) = (base(c, ff), lora(c, ff));
    let gguf = Gguf::parse(&file).unwrap();
    let f32_file = merge_into_gguf(&gguf, &file, &adapter, GgmlType::F32).unwrap();
    let f32_merge = Gguf::parse(&f32_file).unwrap();
    // Relative RMS error of the merged weights against the f32 merge, per type (measured
    // 0.065, 0.016 and 0.0047 on these uniform-like weights; the adapter moves them by 0.62-0.66).
    for (ty, tol) in [
        (GgmlType::Q4_K, 0.08),
        (GgmlType::Q6_K, 0.02),
        (GgmlType::Q8_0, 0.006),
    ] {
        let bytes = merge_into_gguf(&gguf, &file, &adapter, ty).unwrap();
        let merged = Gguf::parse(&bytes).unwrap();
        for name in ["blk.0.attn_q.weight", "blk.0.ffn_down.weight"] {
            let info = merged.require_tensor(name).unwrap();
            let exact_info = f32_merge.require_tensor(name).unwrap();
            assert_eq!((info.ty, &info.dims), (ty, &exact_info.dims), "{name}");
            let exact = f32_merge.tensor_f32(exact_info, &f32_file).unwrap();
            // The bytes are the f32 merge encoded as `ty`...
            assert_eq!(
                merged.tensor_bytes(info, &bytes).unwrap(),
                quant::quantize(ty, &exact).unwrap(),
                "{ty} {name}"
            );
            // ...which decodes close to it, while the adapter moved the weights much further.
            let got = merged.tensor_f32(info, &bytes).unwrap();
            let original = gguf
                .tensor_f32(gguf.require_tensor(name).unwrap(), &file)
                .unwrap();
            let rms = |d: &mut dyn Iterator<Item = f32>| {
                let (s, n) = d.fold((0.0f64, 0u32), |(s, n), e| (s + f64::from(e * e), n + 1));
                (s / f64::from(n)).sqrt()
            };
            let scale = rms(&mut exact.iter().copied());
            let err = rms(&mut got.iter().zip(&exact).map(|(a, b)| a - b)) / scale;
            let moved = rms(&mut original.iter().zip(&exact).map(|(a, b)| a - b)) / scale;
            assert!(err < tol, "{ty} {name}: relative RMS error {err}");
            assert!(
                moved > 5.0 * err,
                "{ty} {name}: the merge moved it by only {moved}"
            );
        }
        // The tensor the adapter does not touch is copied as it was.
        let (a, b) = (
            gguf.require_tensor("token_embd.weight").unwrap(),
            merged.require_tensor("token_embd.weight").unwrap(),
        );
        assert_eq!(b.ty, GgmlType::F16);
        assert_eq!(
            gguf.tensor_bytes(a, &file).unwrap(),
            merged.tensor_bytes(b, &bytes).unwrap()
        );
    }
}

#[test]
fn k_quant_merges_need_rows_of_whole_super_blocks() {
    // attn_q rows of 96: whole Q8_0 blocks, but not k-quant super-blocks.
    let (c, ff) = (96, 512);
    let (file, adapter) = (base(c, ff), lora(c, ff));
    let gguf = Gguf::parse(&file).unwrap();
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        let err = merge_into_gguf(&gguf, &file, &adapter, ty).unwrap_err();
        assert!(matches!(err, LoraError::MergedRowWidth { width: 96, .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "cannot store the merged blk.0.attn_q.weight as {ty}: its rows are 96 values \
                 wide, not a multiple of {ty}'s blocks of 256; merge into a type whose blocks \
                 fit (Q8_0, F16, BF16, F32)"
            )
        );
    }
    merge_into_gguf(&gguf, &file, &adapter, GgmlType::Q8_0).unwrap();

    // Rows of 48: only the float types remain.
    let (file, adapter) = (base(48, 512), lora(48, 512));
    let gguf = Gguf::parse(&file).unwrap();
    let err = merge_into_gguf(&gguf, &file, &adapter, GgmlType::Q8_0).unwrap_err();
    assert!(err.to_string().ends_with("(F16, BF16, F32)"), "{err}");
}
