//! CPU dequantization against `gguf.quants.dequantize`: `tests/data/quant_reference.json`
//! (written by `scripts/reference/quant_reference.py`) holds random blocks of every block type
//! and the f32 values the Python package decodes them to; ours must equal them bit for bit.
//!
//! The k-quant encoders against ggml itself: `tests/data/kquant_encode_reference.json` (written
//! by `scripts/reference/kquant_encode_reference.py`) holds seeded rows and the bytes ggml's
//! `quantize_row_q4_K_ref` / `quantize_row_q6_K_ref` make of them; ours must be the same bytes.

use super::*;

const REFERENCE: &str = include_str!("../../../../tests/data/quant_reference.json");
const KQUANT_ENCODE: &str = include_str!("../../../../tests/data/kquant_encode_reference.json");

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// f32 bit patterns written as 8 hex digits each.
fn hex_u32s(s: &str) -> Vec<u32> {
    (0..s.len())
        .step_by(8)
        .map(|i| u32::from_str_radix(&s[i..i + 8], 16).expect("hex"))
        .collect()
}

#[test]
fn dequantization_equals_gguf_py_bit_for_bit() {
    let doc: serde_json::Value = serde_json::from_str(REFERENCE).expect("valid JSON");
    let mut seen = Vec::new();
    for case in doc["cases"].as_array().expect("cases") {
        let name = case["type"].as_str().expect("type");
        let ty = *GgmlType::ALL
            .iter()
            .find(|t| t.name() == name)
            .expect("a ggml type");
        let n = case["n_elements"].as_u64().expect("n_elements") as usize;
        let bytes = hex_bytes(case["bytes"].as_str().expect("bytes"));
        let want = hex_u32s(case["f32_bits"].as_str().expect("f32_bits"));
        assert_eq!(want.len(), n);
        let got = quant::dequantize(ty, &bytes, n).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                *w,
                "{name} element {i}: got {g}, gguf-py {}",
                f32::from_bits(*w)
            );
        }
        seen.push(ty);
    }
    // Every quantized type afinador decodes has reference data.
    for ty in GgmlType::ALL {
        if ty.is_supported() && ty.is_quantized() {
            assert!(seen.contains(ty), "no reference data for {ty}");
        }
    }
}

#[test]
fn k_quant_encoders_equal_ggml_byte_for_byte() {
    let doc: serde_json::Value = serde_json::from_str(KQUANT_ENCODE).expect("valid JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let x: Vec<f32> = hex_u32s(case["f32_bits"].as_str().expect("f32_bits"))
            .into_iter()
            .map(f32::from_bits)
            .collect();
        assert_eq!(
            x.len() as u64,
            case["n_elements"].as_u64().expect("n_elements")
        );
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            let key = ty.name().to_lowercase();
            let want = hex_bytes(case[&key].as_str().expect("bytes"));
            let got = quant::quantize(ty, &x).unwrap();
            let block = ty.type_size() as usize;
            for (i, (g, w)) in got.chunks(block).zip(want.chunks(block)).enumerate() {
                assert_eq!(
                    hex(g),
                    hex(w),
                    "{name} {ty} super-block {i}: afinador's bytes, then ggml's"
                );
            }
            assert_eq!(got.len(), want.len(), "{name} {ty}");

            // Sanity: on ggml's bytes our decoder gives what gguf-py decodes.
            let decoded = quant::dequantize(ty, &want, x.len()).unwrap();
            let gguf_py = hex_u32s(
                case[format!("{key}_dequantized_bits")]
                    .as_str()
                    .expect("bits"),
            );
            let bits: Vec<u32> = decoded.iter().map(|v| v.to_bits()).collect();
            assert_eq!(bits, gguf_py, "{name} {ty}: decoding ggml's bytes");
        }
    }
}

/// The script's `sweep_row`: per super-block a kind and a scale, then 256 integers of at most
/// 24 bits times powers of two (exact in f32, so Python and Rust make the same values).
fn sweep_row(seed: u64, n_blocks: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(n_blocks * 256);
    for _ in 0..n_blocks {
        let kind = rng.next_u64() % 4;
        let e = (rng.next_u64() % 17) as i32 - 12;
        let mut e_group = e;
        for i in 0..256 {
            if kind == 3 && i % 16 == 0 {
                e_group = e - (rng.next_u64() % 12) as i32;
            }
            let c = match kind {
                0 => (rng.next_u64() >> 40) as i64,
                _ => (0..4).map(|_| (rng.next_u64() >> 42) as i64).sum(),
            } - (1 << 23);
            let mut k = if kind == 3 { e_group } else { e };
            if kind == 2 && rng.next_u64().is_multiple_of(64) {
                k += 6;
            }
            // 2^(k − 23) built from its bits: exact, unlike a library power.
            x.push(c as f32 * f32::from_bits(((127 + k - 23) as u32) << 23));
        }
    }
    x
}

#[test]
fn k_quant_encoders_equal_ggml_on_the_sweep() {
    let doc: serde_json::Value = serde_json::from_str(KQUANT_ENCODE).expect("valid JSON");
    let sweep = &doc["sweep"];
    let n_blocks = sweep["n_blocks"].as_u64().expect("n_blocks") as usize;
    let x = sweep_row(sweep["seed"].as_u64().expect("seed"), n_blocks);
    let first = hex_u32s(sweep["first_f32_bits"].as_str().expect("first_f32_bits"));
    let ours: Vec<u32> = x[..first.len()].iter().map(|v| v.to_bits()).collect();
    assert_eq!(ours, first, "the sweep's values differ from the script's");
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        let key = format!("{}_fnv1a32", ty.name().to_lowercase());
        let want = hex_u32s(sweep[&key].as_str().expect("hashes"));
        let got = quant::quantize(ty, &x).unwrap();
        let got: Vec<u32> = got.chunks(ty.type_size() as usize).map(fnv1a32).collect();
        assert_eq!(got.len(), n_blocks, "{ty}");
        let differ: Vec<usize> = (0..n_blocks).filter(|&i| got[i] != want[i]).collect();
        assert!(
            differ.is_empty(),
            "{ty}: super-blocks {differ:?} of {n_blocks} differ from ggml's"
        );
    }
}

/// The 32-bit FNV-1a hash of `bytes` (as the script's `fnv1a32`).
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
