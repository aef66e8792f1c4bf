//! ggml's k-quant super-blocks (256 elements): CPU dequantization of Q2_K, Q3_K, Q4_K, Q5_K and
//! Q6_K, bit-exact with `dequantize_row_q*_K` in ggml-quants.c and `gguf.quants.dequantize`
//! (the reference data in `tests/data/quant_reference.json`).
//!
//! Layouts (ggml-common.h), little-endian; a super-block is 16 sub-blocks of 16 (Q2_K, Q3_K,
//! Q6_K) or 8 of 32 (Q4_K, Q5_K), each with its own scale:
//!
//! | type | bytes | layout                                                          |
//! |------|-------|-----------------------------------------------------------------|
//! | Q2_K | 84    | 16 scale bytes (low nibble scale, high min), 64 `qs`, f16 `d`, f16 `dmin` |
//! | Q3_K | 110   | 32 `hmask`, 64 `qs`, 12 bytes of 16 packed 6-bit scales, f16 `d` |
//! | Q4_K | 144   | f16 `d`, f16 `dmin`, 12 bytes of 8 packed 6-bit (scale, min), 128 `qs` |
//! | Q5_K | 176   | as Q4_K, then 32 `qh` (the fifth bits) before the 128 `qs`      |
//! | Q6_K | 210   | 128 `ql` (low 4 bits), 64 `qh` (high 2 bits), 16 i8 scales, f16 `d` |
//!
//! Every product is evaluated in the order ggml writes it (`(d · sc) · q − dmin · m`), in f32,
//! without fused multiply-adds, so the results match the reference to the bit.

use half::f16;

/// Elements per k-quant super-block.
pub const QK_K: usize = 256;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) from the 12
/// packed bytes of a Q4_K/Q5_K super-block.
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Decodes one Q2_K super-block (84 bytes): element `128n + 32s + l` is
/// `d·sc − dmin·m` of sub-block `(128n + 32s + l) / 16` times bits `2s..2s+2` of `qs[32n + l]`.
pub fn dequantize_q2_k(b: &[u8; 84], y: &mut [f32; QK_K]) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (i, v) in y.iter_mut().enumerate() {
        let (n, s, l) = (i / 128, (i / 32) % 4, i % 32);
        let sc = scales[i / 16];
        let q = (qs[32 * n + l] >> (2 * s)) & 3;
        *v = d * f32::from(sc & 0xF) * f32::from(q) - dmin * f32::from(sc >> 4);
    }
}

/// The signed 6-bit scale of sub-block `j` (0..16) from Q3_K's 12 packed scale bytes: low 4
/// bits from byte `j % 8` (low or high nibble), high 2 bits from byte `8 + j % 4`.
pub fn scale_q3_k(j: usize, s: &[u8]) -> i8 {
    let low = (s[j % 8] >> (4 * (j / 8))) & 0xF;
    let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// Decodes one Q3_K super-block (110 bytes): element `128n + 32s + l` is
/// `d·scale · (q − 4·(1 − h))` with `q` bits `2s..2s+2` of `qs[32n + l]` and `h` bit `4n + s`
/// of `hmask[l]`.
pub fn dequantize_q3_k(b: &[u8; 110], y: &mut [f32; QK_K]) {
    let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    for (i, v) in y.iter_mut().enumerate() {
        let (n, s, l) = (i / 128, (i / 32) % 4, i % 32);
        let q = ((qs[32 * n + l] >> (2 * s)) & 3) as i8;
        let h = (hmask[l] >> (i / 32)) & 1;
        let q = q - if h == 0 { 4 } else { 0 };
        *v = d * f32::from(scale_q3_k(i / 16, scales)) * f32::from(q);
    }
}

/// Decodes one Q4_K super-block (144 bytes): element `64j + 32h + l` is
/// `d·sc − dmin·m` of sub-block `2j + h`, with `q` the low (h = 0) or high nibble of
/// `qs[32j + l]`.
pub fn dequantize_q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    k4_dequantize(b, &b[16..], None, y);
}

/// Decodes one Q5_K super-block (176 bytes): Q4_K's 4-bit values plus a fifth bit (16) from
/// bit `2j + h` of `qh[l]`.
pub fn dequantize_q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    k4_dequantize(b, &b[48..], Some(&b[16..48]), y);
}

/// The shared Q4_K/Q5_K body: header (d, dmin, scales) from `b`, nibbles from `qs`, fifth bits
/// from `qh` when given.
fn k4_dequantize(b: &[u8], qs: &[u8], qh: Option<&[u8]>, y: &mut [f32; QK_K]) {
    let (d, dmin, scales) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
    for (i, v) in y.iter_mut().enumerate() {
        let (j, h, l) = (i / 64, (i / 32) % 2, i % 32);
        let (sc, m) = scale_min_k4(2 * j + h, scales);
        let mut q = (qs[32 * j + l] >> (4 * h)) & 0xF;
        if let Some(qh) = qh {
            q |= ((qh[l] >> (2 * j + h)) & 1) << 4;
        }
        *v = d * f32::from(sc) * f32::from(q) - dmin * f32::from(m);
    }
}

/// Decodes one Q6_K super-block (210 bytes): element `128n + 32s + l` takes 4 low bits from
/// `ql[64n + 32(s % 2) + l]` (low nibble for s < 2, high otherwise) and 2 high bits from bits
/// `2s..2s+2` of `qh[32n + l]`, minus 32, times `d · scales[(128n + 32s + l) / 16]`.
pub fn dequantize_q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for (i, v) in y.iter_mut().enumerate() {
        let (n, s, l) = (i / 128, (i / 32) % 4, i % 32);
        let lo = (ql[64 * n + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0xF;
        let hi = (qh[32 * n + l] >> (2 * s)) & 3;
        let q = (lo | (hi << 4)) as i8 - 32;
        *v = d * f32::from(scales[i / 16] as i8) * f32::from(q);
    }
}
