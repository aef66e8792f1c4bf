//! CPU dequantization against `gguf.quants.dequantize`: `tests/data/quant_reference.json`
//! (written by `scripts/reference/quant_reference.py`) holds random blocks of every block type
//! and the f32 values the Python package decodes them to; ours must equal them bit for bit.

use super::*;

const REFERENCE: &str = include_str!("../../../../tests/data/quant_reference.json");

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
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
        let bits = case["f32_bits"].as_str().expect("f32_bits");
        let want: Vec<u32> = (0..n)
            .map(|i| u32::from_str_radix(&bits[8 * i..8 * i + 8], 16).expect("hex"))
            .collect();
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
