//! ggml's k-quant super-blocks (256 elements): CPU dequantization of Q2_K, Q3_K, Q4_K, Q5_K and
//! Q6_K, bit-exact with `dequantize_row_q*_K` in ggml-quants.c and `gguf.quants.dequantize`
//! (the reference data in `tests/data/quant_reference.json`), and quantization to Q4_K and Q6_K,
//! bit-exact with ggml's `quantize_row_q4_K_ref` / `quantize_row_q6_K_ref`
//! (`tests/data/kquant_encode_reference.json`).
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
//! without fused multiply-adds, so the results match the reference to the bit. The quantizers
//! likewise repeat ggml's f32 arithmetic operation by operation (its x86-64 build has no fused
//! multiply-adds either): their searches compare rounded sums, so any reordering can pick
//! another scale.

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

/// The inverse of [`scale_min_k4`], as `quantize_row_q4_K_ref` packs: the 6-bit scale and min
/// of sub-block `j` into the 12 scale bytes `q`. Sub-blocks 4..8 OR their high bits into bytes
/// 0..8, so call it for `j` in order from 0.
fn set_scale_min_k4(j: usize, sc: u8, m: u8, q: &mut [u8]) {
    if j < 4 {
        q[j] = sc;
        q[j + 4] = m;
    } else {
        q[j + 4] = (sc & 0xF) | ((m & 0xF) << 4);
        q[j - 4] |= (sc >> 4) << 6;
        q[j] |= (m >> 4) << 6;
    }
}

/// ggml's `GROUP_MAX_EPS`: groups whose largest magnitude is below it quantize to zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: `x` rounded to the nearest integer, ties to even. Adding 1.5·2²³ makes
/// the addition itself round away the fraction and leaves the integer in the low mantissa
/// bits. ggml asserts |x| ≤ 2²² − 1 (in debug builds only); past that these are its bits too.
fn nearest_int(x: f32) -> i32 {
    let bits = (x + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// One level of [`make_qkx2_quants`]: `(v − min) · iscale` rounded, clamped to `0..=nmax`.
fn qkx_level(v: f32, min: f32, iscale: f32, nmax: u8) -> u8 {
    nearest_int(iscale * (v - min)).clamp(0, i32::from(nmax)) as u8
}

/// ggml's `make_qkx2_quants` with squared errors (`use_mad` false, as Q4_K calls it): fits
/// `x ≈ scale · l − min` over levels `l` in `0..=nmax`, weighting each value's error by
/// `weights`. It starts from `nmax / (max − min)`, then tries the inverse scales
/// `(nmax + rmin + rdelta · is) / (max − min)` for `is` in `0..=nstep`, refits scale and min
/// by weighted least squares for each and keeps the smallest error. As in ggml, a better fit's
/// min replaces `min` for the trials after it. Writes the levels to `l` (at most 32 values) and
/// returns `(scale, min)`, the min as a non-negative offset.
fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: u8,
    (rmin, rdelta, nstep): (f32, f32, i32),
    l: &mut [u8],
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    // The fit is `scale · l − offset` with levels l ≥ 0 and offset ≥ 0, so an all-positive
    // group starts from 0, not from its smallest value.
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmax_f = f32::from(nmax);
    let iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for ((q, &v), &w) in l.iter_mut().zip(x).zip(weights) {
        *q = qkx_level(v, min, iscale, nmax);
        let diff = scale * f32::from(*q) + min - v;
        best_error += w * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..x.len()];
    for is in 0..=nstep {
        let iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((q, &v), &w) in aux.iter_mut().zip(x).zip(weights) {
            *q = qkx_level(v, min, iscale, nmax);
            let lf = f32::from(*q);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * v;
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for ((&q, &v), &w) in aux.iter().zip(x).zip(weights) {
                let diff = this_scale * f32::from(q) + this_min - v;
                cur_error += w * (diff * diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `quantize_row_q4_K_ref` on one super-block. Each sub-block of 32 gets a scale and a
/// min from ggml's `make_qkx2_quants` (levels 0..=15, error weights `rms + |x|`); those are stored
/// as 6-bit multiples of `d` and `dmin` (the largest scale and min over 63, in f16), and every
/// value is then re-rounded against the scale and min as stored.
pub fn quantize_q4_k(x: &[f32; QK_K]) -> [u8; 144] {
    let mut levels = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, (sub, l)) in x
        .chunks_exact(32)
        .zip(levels.chunks_exact_mut(32))
        .enumerate()
    {
        let sum_x2 = sub.iter().fold(0.0f32, |s, &v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + sub[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(sub, &weights, 15, (-1.0, 0.1, 20), l);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let mut b = [0u8; 144];
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    for j in 0..8 {
        // C stores nearest_int's int in a uint8_t (wrapping) before clamping to 63.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        set_scale_min_k4(j, ls, lm, &mut b[4..16]);
    }
    let (d, dmin) = (
        f16::from_f32(max_scale / 63.0),
        f16::from_f32(max_min / 63.0),
    );
    b[..2].copy_from_slice(&d.to_le_bytes());
    b[2..4].copy_from_slice(&dmin.to_le_bytes());

    for (j, (sub, l)) in x
        .chunks_exact(32)
        .zip(levels.chunks_exact_mut(32))
        .enumerate()
    {
        let (sc, m) = scale_min_k4(j, &b[4..16]);
        let d = d.to_f32() * f32::from(sc);
        // A zero scale keeps make_qkx2_quants' levels (NaN does not: `if (!d)` in C).
        if d == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for (q, &v) in l.iter_mut().zip(sub) {
            *q = nearest_int((v + dm) / d).clamp(0, 15) as u8;
        }
    }

    // Element 64j + l is the low nibble of qs[32j + l], element 64j + 32 + l its high one.
    let qs = &mut b[16..];
    for (q, pair) in qs.chunks_exact_mut(32).zip(levels.chunks_exact(64)) {
        for (l, byte) in q.iter_mut().enumerate() {
            *byte = pair[l] | (pair[l + 32] << 4);
        }
    }
    b
}

/// One level of [`make_qx_quants`]: `v · iscale` rounded, clamped to `−nmax..nmax`.
fn qx_level(v: f32, iscale: f32, nmax: i32) -> i32 {
    nearest_int(iscale * v).clamp(-nmax, nmax - 1)
}

/// Σ w·x·l and Σ w·l² over `x` for the levels at `iscale`, with ggml's `rmse_type` 1 weights
/// `w = x²`.
fn qx_sums(x: &[f32], iscale: f32, nmax: i32) -> (f32, f32) {
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for &v in x {
        let l = qx_level(v, iscale, nmax) as f32;
        let w = v * v;
        sumlx += w * v * l;
        suml2 += w * l * l;
    }
    (sumlx, suml2)
}

/// Writes the levels of `x` at `iscale`, offset by `nmax` (so `0..2·nmax`), to `levels`.
fn set_qx_levels(x: &[f32], iscale: f32, nmax: i32, levels: &mut [u8]) {
    for (q, &v) in levels.iter_mut().zip(x) {
        *q = (qx_level(v, iscale, nmax) + nmax) as u8;
    }
}

/// ggml's `make_qx_quants` as Q6_K calls it (`rmse_type` 1, no importance weights): symmetric
/// levels `l` in `−nmax..nmax` for `x ≈ scale · l`, trying the inverse scales
/// `−(nmax + 0.1·is) / max` for `is` in −9..=9 (`max` the value of largest magnitude, with its
/// sign) and keeping the one with the best weighted least-squares fit (weights `x²`). Writes the
/// levels plus `nmax` to `levels`; returns the scale, 0 for an all-zero group.
fn make_qx_quants(x: &[f32], nmax: i32, levels: &mut [u8]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let iscale = -nmax_f / max;
    set_qx_levels(x, iscale, nmax, levels);
    let (sumlx, suml2) = qx_sums(x, iscale, nmax);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax_f + 0.1 * is as f32) / max;
        let (sumlx, suml2) = qx_sums(x, iscale, nmax);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set_qx_levels(x, iscale, nmax, levels);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `quantize_row_q6_K_ref` on one super-block. Each group of 16 gets a scale from
/// ggml's `make_qx_quants` (levels −32..32); the scales are stored as i8 multiples of `d` (the
/// largest-magnitude scale over −128, in f16) and every value is then re-rounded against its
/// scale as stored. A super-block whose scales are all (nearly) zero is all zero bytes.
pub fn quantize_q6_k(x: &[f32; QK_K]) -> [u8; 210] {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ((group, l), s) in x
        .chunks_exact(16)
        .zip(levels.chunks_exact_mut(16))
        .zip(&mut scales)
    {
        *s = make_qx_quants(group, 32, l);
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = *s;
        }
    }
    let mut b = [0u8; 210];
    if max_abs_scale < GROUP_MAX_EPS {
        return b;
    }

    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    b[208..].copy_from_slice(&d.to_le_bytes());
    for (byte, &s) in b[192..208].iter_mut().zip(&scales) {
        *byte = nearest_int(iscale * s).min(127) as i8 as u8;
    }
    for (j, (group, l)) in x
        .chunks_exact(16)
        .zip(levels.chunks_exact_mut(16))
        .enumerate()
    {
        let d = d.to_f32() * f32::from(b[192 + j] as i8);
        // A zero scale keeps make_qx_quants' levels (NaN does not: `if (!d)` in C).
        if d == 0.0 {
            continue;
        }
        for (q, &v) in l.iter_mut().zip(group) {
            *q = (nearest_int(v / d).clamp(-32, 31) + 32) as u8;
        }
    }

    // Per 128 elements, level 32k + l (k = 0..4) puts its low 4 bits in ql[l + 32(k % 2)] (low
    // nibble for k < 2, high otherwise) and its high 2 bits in bits 2k..2k+2 of qh[l].
    let (ql, qh) = b[..192].split_at_mut(128);
    for ((ql, qh), half) in ql
        .chunks_exact_mut(64)
        .zip(qh.chunks_exact_mut(32))
        .zip(levels.chunks_exact(128))
    {
        for l in 0..32 {
            let q: [u8; 4] = std::array::from_fn(|k| half[l + 32 * k]);
            ql[l] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
            ql[l + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
            qh[l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
    b
}
