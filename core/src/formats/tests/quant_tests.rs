//! The quantized block formats: known layouts, bytes identical to ggml's reference quantizers,
//! and round-trip error bounds.

use half::f16;

use super::*;
use crate::formats::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, bf16_bits_to_f32, f32_to_bf16_bits};

/// 96 values `((37 i) mod 101 - 50) / 7`, then 32 zeros: three varied blocks and an empty one.
fn golden_input() -> Vec<f32> {
    (0..128)
        .map(|i| {
            if i < 96 {
                ((i * 37 % 101) as f32 - 50.0) / 7.0
            } else {
                0.0
            }
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// Bytes produced for `golden_input()` by gguf-py 0.19 (`gguf.quants.quantize`), whose
// quantizers are bit-exact ports of ggml's `quantize_row_*_ref`.
const GOLDEN_Q4_0: &str = "253be046acf258bd1379df358be046acf26800bb740fb953fd9731eb852fca640ea842fd\
003b57bd0379df248ae046acf258be1379df008088888888888888888888888888888888";
const GOLDEN_Q4_1: &str = "9e3b25c7d0369bf157bd1369ce248ae0469cf257643bdbc69bf157ad0368ce248ad0469b\
f257bd13643b00c757ad0368ce248ad0469bf257bd1379cf0000000000000000000000000000000000000000";
const GOLDEN_Q8_0: &str = "332b81df3d9af856b41270cd2b89e745a2005ebb1977d53390ee4caa0866c3217fdc0e2b\
3c96f656b0106fca2984e3439efd5db71777d1318beb4ba50565bf1f7fd939930e2bf353ad0d6dc72781e1419bfb5bb51575\
cf2f89e949a30362bd1d7cd73691f05000000000000000000000000000000000000000000000000000000000000000000000";
/// The first 16 values only.
const GOLDEN_BF16: &str = "e5c0eebf5b40b7c0dbbe9b4089c0803fc94037c01b40d7c0b7bf7740a9c00000";
const GOLDEN_F16: &str = "25c76ebfdb42b7c5dbb6db4449c4003c4946b7c1db40b7c6b7bdb74349c50000";

#[test]
fn quantizers_match_ggml_reference_bytes() {
    let x = golden_input();
    for (ty, golden) in [
        (GgmlType::Q4_0, GOLDEN_Q4_0),
        (GgmlType::Q4_1, GOLDEN_Q4_1),
        (GgmlType::Q8_0, GOLDEN_Q8_0),
    ] {
        assert_eq!(quant::quantize(ty, &x).unwrap(), hex(golden), "{ty}");
    }
    for (ty, golden) in [(GgmlType::BF16, GOLDEN_BF16), (GgmlType::F16, GOLDEN_F16)] {
        assert_eq!(quant::quantize(ty, &x[..16]).unwrap(), hex(golden), "{ty}");
    }
}

#[test]
fn q4_0_layout() {
    // d = 0.5; byte 0 holds element 0 (low nibble 0xF: (15 - 8) * 0.5) and element 16 (high
    // nibble 0x1: (1 - 8) * 0.5).
    let mut bytes = [0x88u8; 18];
    bytes[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
    bytes[2] = 0x1F;
    bytes[17] = 0x0A; // element 15: (10 - 8) * 0.5, element 31: (0 - 8) * 0.5
    let x = quant::dequantize(GgmlType::Q4_0, &bytes, 32).unwrap();
    assert_eq!((x[0], x[16], x[15], x[31]), (3.5, -3.5, 1.0, -4.0));
    assert!(
        x.iter()
            .enumerate()
            .all(|(j, &v)| [0, 15, 16, 31].contains(&j) || v == 0.0)
    );

    // -8..=7 in the first half, 7..=-8 in the second: the largest magnitude is -8 at element 0,
    // so d = -8 / -8 = 1 and q = x + 8 exactly.
    let input: [f32; 32] = std::array::from_fn(|j| {
        if j < 16 {
            j as f32 - 8.0
        } else {
            23.0 - j as f32
        }
    });
    let block = BlockQ4_0::quantize(&input);
    assert_eq!(block.d, f16::ONE);
    assert_eq!(block.qs[0], 0xF0);
    assert_eq!(block.qs[15], 0x0F);
    assert_eq!(BlockQ4_0::from_bytes(&block.to_bytes()), block);
    let mut out = [0.0; 32];
    block.dequantize(&mut out);
    assert_eq!(out, input);

    // A positive maximum gives a negative scale, so the range is [-7d, 8d] mirrored.
    let mut input = [0.0f32; 32];
    input[3] = 8.0;
    input[4] = -8.0;
    let block = BlockQ4_0::quantize(&input);
    assert_eq!(block.d.to_f32(), -1.0);
    block.dequantize(&mut out);
    assert_eq!((out[3], out[4]), (8.0, -7.0));
}

#[test]
fn q4_1_layout() {
    let mut bytes = [0u8; 20];
    bytes[..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
    bytes[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
    bytes[4] = 0xF2; // element 0: 2 * 0.25 - 1, element 16: 15 * 0.25 - 1
    let x = quant::dequantize(GgmlType::Q4_1, &bytes, 32).unwrap();
    assert_eq!((x[0], x[16], x[1]), (-0.5, 2.75, -1.0));

    // 0..16 twice: min 0, max 15, so d = 1, m = 0, q = x.
    let input: [f32; 32] = std::array::from_fn(|j| (j % 16) as f32);
    let block = BlockQ4_1::quantize(&input);
    assert_eq!((block.d, block.m), (f16::ONE, f16::ZERO));
    assert!(
        block
            .qs
            .iter()
            .enumerate()
            .all(|(j, &q)| q == (j as u8) * 0x11)
    );
    assert_eq!(BlockQ4_1::from_bytes(&block.to_bytes()), block);
    let mut out = [0.0; 32];
    block.dequantize(&mut out);
    assert_eq!(out, input);
}

#[test]
fn q8_0_layout() {
    let mut bytes = [0u8; 34];
    bytes[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
    bytes[2] = 0x81; // -127
    bytes[33] = 0x7F; // 127
    bytes[10] = 3;
    let x = quant::dequantize(GgmlType::Q8_0, &bytes, 32).unwrap();
    assert_eq!((x[0], x[31], x[8]), (-63.5, 63.5, 1.5));

    let input: [f32; 32] = std::array::from_fn(|j| j as f32 * 4.0 - 64.0);
    let block = BlockQ8_0::quantize(&input);
    // d = 64 / 127; q = round(x / d): -64 → -127, -60 → round(-119.06) = -119, 60 → 119.
    assert_eq!(block.d, f16::from_f32(64.0 / 127.0));
    assert_eq!((block.qs[0], block.qs[1], block.qs[31]), (-127, -119, 119));
    assert_eq!(BlockQ8_0::from_bytes(&block.to_bytes()), block);
}

#[test]
fn float_encodings() {
    let x = [1.0f32, -2.5, 65504.0, 1e-8, 0.1];
    let f32_bytes = quant::quantize(GgmlType::F32, &x).unwrap();
    assert_eq!(quant::dequantize(GgmlType::F32, &f32_bytes, 5).unwrap(), x);
    let f16_bytes = quant::quantize(GgmlType::F16, &x).unwrap();
    assert_eq!(&f16_bytes[..4], [0x00, 0x3c, 0x00, 0xc1]);
    let back = quant::dequantize(GgmlType::F16, &f16_bytes, 5).unwrap();
    assert_eq!(&back[..3], &x[..3]);
    let bf16_bytes = quant::quantize(GgmlType::BF16, &x).unwrap();
    assert_eq!(&bf16_bytes[..4], [0x80, 0x3f, 0x20, 0xc0]);
    let back = quant::dequantize(GgmlType::BF16, &bf16_bytes, 5).unwrap();
    assert_eq!(&back[..2], &x[..2]);
    assert!((back[4] - 0.1).abs() < 0.1 / 128.0);

    // Round to nearest even on the dropped 16 bits; NaN stays NaN and becomes quiet.
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7f80);
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
    assert!(bf16_bits_to_f32(f32_to_bf16_bits(f32::NAN)).is_nan());
}

/// Worst-case error of one element after a round trip, from the block's own statistics: half a
/// quantization step (a whole one where Q4_0 clips), plus the f16 rounding of the scale times the
/// largest quant, plus the f16 rounding of Q4_1's min.
fn bound(ty: GgmlType, block: &[f32]) -> f32 {
    let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let (min, max) = block
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let f16_err = |v: f32| (v - f16::from_f32(v).to_f32()).abs();
    let f32_err = amax * 1e-6;
    match ty {
        GgmlType::Q4_0 => {
            let d = amax / 8.0;
            d + 8.0 * f16_err(d) + f32_err
        }
        GgmlType::Q4_1 => {
            let d = (max - min) / 15.0;
            d / 2.0 + 15.0 * f16_err(d) + f16_err(min) + f32_err
        }
        GgmlType::Q8_0 => {
            let d = amax / 127.0;
            d / 2.0 + 127.0 * f16_err(d) + f32_err
        }
        GgmlType::F16 => block.iter().map(|&v| f16_err(v)).fold(0.0, f32::max),
        GgmlType::BF16 => amax / 256.0,
        _ => 0.0,
    }
}

#[test]
fn round_trips_stay_within_quantization_error() {
    let mut rng = Rng::new(42);
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ];
    for case in 0..40 {
        let n_blocks = [1, 3, 7, 13][case % 4];
        let scale = [1e-3, 0.5, 1.0, 37.0, 1e4][case % 5];
        let offset = if case % 3 == 0 { scale * 0.7 } else { 0.0 };
        let mut x: Vec<f32> = (0..n_blocks * 32)
            .map(|_| rng.f32_in(-scale, scale) + offset)
            .collect();
        if case % 7 == 0 {
            x[..32].fill(0.0); // an all-zero block
        }
        if case % 11 == 0 {
            x[..32].fill(-scale); // a constant block
        }
        for ty in types {
            let bytes = quant::quantize(ty, &x).unwrap();
            assert_eq!(bytes.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
            let y = quant::dequantize(ty, &bytes, x.len()).unwrap();
            let mut row = vec![f32::NAN; x.len()];
            quant::dequantize_row(ty, &bytes, &mut row).unwrap();
            assert_eq!(row, y, "dequantize_row agrees with dequantize");
            for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
                let tol = bound(ty, xb);
                for (j, (a, q)) in xb.iter().zip(yb).enumerate() {
                    assert!(
                        (a - q).abs() <= tol,
                        "{ty} case {case} block {b} element {j}: {a} → {q}, tolerance {tol}"
                    );
                }
                if xb.iter().all(|&v| v == 0.0) {
                    assert!(yb.iter().all(|&v| v == 0.0), "{ty}: zeros stay zeros");
                }
            }
        }
    }
}

#[test]
fn k_quant_round_trips_stay_close() {
    // Relative RMS error of a round trip on rows uniform in [-3, 1) with one zero super-block.
    // Plain rounding to 16 levels over each sub-block's range (Q4_K), or to steps of max/32
    // (Q6_K), would give about 0.055 and 0.02; the fitted scales do better (0.042, 0.015).
    let mut rng = Rng::new(5);
    for (ty, tol) in [(GgmlType::Q4_K, 0.05), (GgmlType::Q6_K, 0.02)] {
        let mut x: Vec<f32> = (0..4 * 256).map(|_| rng.f32_in(-3.0, 1.0)).collect();
        x[256..512].fill(0.0);
        let bytes = quant::quantize(ty, &x).unwrap();
        assert_eq!(bytes.len() as u64, ty.bytes_for(1024).unwrap());
        let y = quant::dequantize(ty, &bytes, x.len()).unwrap();
        assert!(
            y[256..512].iter().all(|&v| v == 0.0),
            "{ty}: zeros stay zeros"
        );
        let rms = |v: &mut dyn Iterator<Item = f32>| {
            let (s, n) = v.fold((0.0f64, 0), |(s, n), e| (s + f64::from(e * e), n + 1));
            (s / f64::from(n)).sqrt()
        };
        let err = rms(&mut x.iter().zip(&y).map(|(a, b)| a - b));
        let rel = err / rms(&mut x.iter().copied());
        assert!(rel < tol, "{ty}: relative RMS error {rel}");
    }
    // Rows must be whole super-blocks.
    assert!(quant::quantize(GgmlType::Q4_K, &[0.0; 288]).is_err());
}
