// weights.wgsl — included by kernels that read model weights.
//
// A weight matrix W[N, K] (N rows of K values; GGUF dims [K, N]) lives on the GPU in two
// buffers that the including shader declares as `w_q: array<u32>` and `w_s: array<u32>`, one
// `#ifdef W_<TYPE>` section per format (the table: afinador-shaders' `WeightFormat`; the
// repacking from GGUF blocks: core's `kernels::weights::pack_weight`). Every read is an aligned
// 32-bit load; f16 values are unpacked with `unpack2x16float`, so no format needs `shader-f16`.
//   W_F32   w_q: the f32 bits, row-major; w_s unused.
//   W_F16   w_q: two f16 per word, row-major (element 2i low half); w_s unused.
//   W_BF16  as W_F16 with bfloat16 halves (widened by shifting into the top of an f32).
//   W_Q4_0  w_q: 4 words per block of 32 k (byte j: element j in the low nibble, j+16 in the
//           high one); w_s: one f16 scale per block, two blocks per word. x = d·(q − 8).
//   W_Q4_1  w_q: as Q4_0; w_s: one word per block holding the f16 pair (d, m). x = d·q + m.
//   W_Q5_0  w_q: 5 words per block: qh (bit j: the fifth bit, 16, of element j), then the
//           nibbles as Q4_0; w_s: as Q4_0. x = d·(q − 16).
//   W_Q5_1  w_q: as Q5_0; w_s: as Q4_1. x = d·q + m.
//   W_Q8_0  w_q: 8 words per block (byte j: element j, signed); w_s: as Q4_0. x = d·q.
//   W_Q2_K  super-blocks of 256 k, 16 sub-blocks of 16. w_s: 5 words per super-block: the f16
//           pair (d, dmin), then 16 scale bytes (low nibble scale, high nibble min); w_q: 16
//           words of qs: element 128n + 32s + l is bits 2s..2s+2 of byte 32n + l.
//           x = d·sc·q − dmin·m of the element's sub-block.
//   W_Q3_K  super-blocks of 256 k, 16 sub-blocks of 16. w_q: 24 words per super-block, the 8
//           of hmask then the 16 of qs (as Q2_K): element 128n + 32s + l has q − 4 unless bit
//           4n + s of hmask byte l is set; w_s: 4 words: 12 bytes of 16 packed 6-bit signed
//           scales (low 4 bits in byte j % 8, nibble j / 8; high 2 in byte 8 + j % 4, bits
//           2·(j / 4)), then f16 d. x = d·(scale − 32)·q.
//   W_Q4_K  super-blocks of 256 k, 8 sub-blocks of 32. w_s: 4 words per super-block: the f16
//           pair (d, dmin), then the 12 bytes of 6-bit (scale, min) pairs (ggml's
//           get_scale_min_k4); w_q: 32 words, byte 32j + l: element 64j + l low, 64j + 32 + l
//           high. x = d·sc·q − dmin·m of the element's sub-block.
//   W_Q5_K  as Q4_K, with 8 more words per super-block before the nibbles in w_q: qh, whose
//           byte l bit 2j + h is the fifth bit of element 64j + 32h + l.
//   W_Q6_K  super-blocks of 256 k, 16 sub-blocks of 16. w_q: 48 words per super-block, the
//           32 of ql then the 16 of qh: element 128n + 32s + l takes 4 bits from ql byte
//           64n + 32(s % 2) + l (low nibble for s < 2) and 2 from bits 2s of qh byte 32n + l;
//           w_s: 5 words: the 16 i8 scales, then f16 d. x = d·scale·(q − 32).
// Blocks run along K, so a row must hold whole blocks (32 or 256 values); float formats need
// K % 4 == 0.
//
// w_load4(row, k, K) returns W[row, k..k+4] for k % 4 == 0.
// w_dot_word(row, wi, K, xb) returns Σ W[row, k]·x[xb + k] over the W_PER_WORD values that word
// wi of the row holds (consecutive lanes reading consecutive words: coalesced); the including
// shader defines W_DOT and declares `xv: array<vec4<f32>>` (xb in vec4 units).

#ifdef W_F32
#ifdef W_DOT
const W_PER_WORD: u32 = 1u;
#endif

#ifdef W_DOT
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let x4 = xv[xb + wi / 4u];
    return bitcast<f32>(w_q[row * K + wi]) * x4[wi % 4u];
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let i = row * K + k;
    return bitcast<vec4<f32>>(vec4<u32>(w_q[i], w_q[i + 1u], w_q[i + 2u], w_q[i + 3u]));
}
#endif

#ifdef W_Q4_0
#define W_Q4
#endif
#ifdef W_Q4_1
#define W_Q4
#endif

#ifdef W_Q4
#ifdef W_DOT
const W_PER_WORD: u32 = 8u;
#endif

#ifdef W_DOT
// (Σ q·x, Σ x) over the 8 nibbles of word w of a block whose x values start at vec4 xb4:
// low nibbles are values 4w..4w+3, high nibbles 16+4w..16+4w+3.
fn q4_word_sums(word: u32, w: u32, xb4: u32) -> vec2<f32> {
    let lo = vec4<f32>(vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(0xfu));
    let hi = vec4<f32>(vec4<u32>(word >> 4u, word >> 12u, word >> 20u, word >> 28u) & vec4<u32>(0xfu));
    let x_lo = xv[xb4 + w];
    let x_hi = xv[xb4 + 4u + w];
    return vec2<f32>(dot(lo, x_lo) + dot(hi, x_hi), dot(x_lo + x_hi, vec4<f32>(1.0)));
}
#endif
#endif

#ifdef W_Q4_0
#ifdef W_DOT
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let b = row * (K / 32u) + wi / 4u;
    let sums = q4_word_sums(w_q[row * (K / 8u) + wi], wi % 4u, xb + (wi / 4u) * 8u);
    let d = unpack2x16float(w_s[b / 2u])[b % 2u];
    return d * (sums.x - 8.0 * sums.y);
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let b = row * (K / 32u) + k / 32u;
    let j = k % 32u;
    let word = w_q[b * 4u + (j % 16u) / 4u] >> ((j / 16u) * 4u);
    let q = vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(0xfu);
    let d = unpack2x16float(w_s[b / 2u])[b % 2u];
    return d * (vec4<f32>(q) - 8.0);
}
#endif

#ifdef W_Q4_1
#ifdef W_DOT
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let b = row * (K / 32u) + wi / 4u;
    let sums = q4_word_sums(w_q[row * (K / 8u) + wi], wi % 4u, xb + (wi / 4u) * 8u);
    let dm = unpack2x16float(w_s[b]);
    return dm.x * sums.x + dm.y * sums.y;
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let b = row * (K / 32u) + k / 32u;
    let j = k % 32u;
    let word = w_q[b * 4u + (j % 16u) / 4u] >> ((j / 16u) * 4u);
    let q = vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(0xfu);
    let dm = unpack2x16float(w_s[b]);
    return dm.x * vec4<f32>(q) + dm.y;
}
#endif

#ifdef W_Q8_0
#ifdef W_DOT
const W_PER_WORD: u32 = 4u;
#endif

#ifdef W_DOT
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let b = row * (K / 32u) + wi / 8u;
    let word = w_q[row * (K / 4u) + wi];
    let q = vec4<f32>(vec4<i32>(
        i32(word << 24u) >> 24u,
        i32(word << 16u) >> 24u,
        i32(word << 8u) >> 24u,
        i32(word) >> 24u,
    ));
    let d = unpack2x16float(w_s[b / 2u])[b % 2u];
    return d * dot(q, xv[xb + wi]);
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let b = row * (K / 32u) + k / 32u;
    let word = w_q[b * 8u + (k % 32u) / 4u];
    let q = vec4<i32>(
        i32(word << 24u) >> 24u,
        i32(word << 16u) >> 24u,
        i32(word << 8u) >> 24u,
        i32(word) >> 24u,
    );
    let d = unpack2x16float(w_s[b / 2u])[b % 2u];
    return d * vec4<f32>(q);
}
#endif

#ifdef W_F16
#define W_HALF
#endif
#ifdef W_BF16
#define W_HALF
#endif

#ifdef W_F16
fn w_half2(word: u32) -> vec2<f32> {
    return unpack2x16float(word);
}
#endif

#ifdef W_BF16
fn w_half2(word: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}
#endif

#ifdef W_HALF
#ifdef W_DOT
const W_PER_WORD: u32 = 2u;

fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let x4 = xv[xb + wi / 2u];
    let x2 = select(x4.xy, x4.zw, (wi & 1u) == 1u);
    return dot(w_half2(w_q[row * (K / 2u) + wi]), x2);
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let i = (row * K + k) / 2u;
    return vec4<f32>(w_half2(w_q[i]), w_half2(w_q[i + 1u]));
}
#endif

#ifdef W_Q5_0
#define W_Q5
#endif
#ifdef W_Q5_1
#define W_Q5
#endif

#ifdef W_Q5
// The four 5-bit values of the bytes of `word` (low nibbles), fifth bits from bits hs..hs+3
// of qh.
fn q5_values(word: u32, qh: u32, hs: u32) -> vec4<f32> {
    let lo = vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(0xfu);
    let hi = (vec4<u32>(qh >> hs) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u)));
}

// W[row, k..k+4] as 5-bit integers, and the block index.
fn q5_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let b = row * (K / 32u) + k / 32u;
    let j = k % 32u;
    let word = w_q[b * 5u + 1u + (j % 16u) / 4u] >> ((j / 16u) * 4u);
    return q5_values(word, w_q[b * 5u], j);
}

#ifdef W_DOT
const W_PER_WORD: u32 = 8u;

// (Σ q·x, Σ x) over the 8 values of word wi of a row (see q4_word_sums).
fn q5_word_sums(row: u32, wi: u32, K: u32, xb: u32) -> vec2<f32> {
    let b = row * (K / 32u) + wi / 4u;
    let w = wi % 4u;
    let word = w_q[b * 5u + 1u + w];
    let qh = w_q[b * 5u];
    let x_lo = xv[xb + (wi / 4u) * 8u + w];
    let x_hi = xv[xb + (wi / 4u) * 8u + 4u + w];
    let lo = q5_values(word, qh, 4u * w);
    let hi = q5_values(word >> 4u, qh, 16u + 4u * w);
    return vec2<f32>(dot(lo, x_lo) + dot(hi, x_hi), dot(x_lo + x_hi, vec4<f32>(1.0)));
}
#endif
#endif

#ifdef W_Q5_0
#ifdef W_DOT
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let b = row * (K / 32u) + wi / 4u;
    let sums = q5_word_sums(row, wi, K, xb);
    let d = unpack2x16float(w_s[b / 2u])[b % 2u];
    return d * (sums.x - 16.0 * sums.y);
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let b = row * (K / 32u) + k / 32u;
    let d = unpack2x16float(w_s[b / 2u])[b % 2u];
    return d * (q5_load4(row, k, K) - 16.0);
}
#endif

#ifdef W_Q5_1
#ifdef W_DOT
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let b = row * (K / 32u) + wi / 4u;
    let sums = q5_word_sums(row, wi, K, xb);
    let dm = unpack2x16float(w_s[b]);
    return dm.x * sums.x + dm.y * sums.y;
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let dm = unpack2x16float(w_s[row * (K / 32u) + k / 32u]);
    return dm.x * q5_load4(row, k, K) + dm.y;
}
#endif

#ifdef W_Q4_K
#define W_K4
#endif
#ifdef W_Q5_K
#define W_K4
#endif

#ifdef W_K4
// Words of w_q per super-block, and where its nibbles start.
#ifdef W_Q5_K
const K4_WORDS: u32 = 40u;
const K4_QS: u32 = 8u;
#else
const K4_WORDS: u32 = 32u;
const K4_QS: u32 = 0u;
#endif

fn k4_byte(base: u32, i: u32) -> u32 {
    return (w_s[base + 1u + i / 4u] >> ((i % 4u) * 8u)) & 0xffu;
}

// (d·scale, dmin·min) of sub-block j of the super-block whose w_s words start at base
// (ggml's get_scale_min_k4).
fn k4_scale_min(base: u32, j: u32) -> vec2<f32> {
    var sm: vec2<u32>;
    if (j < 4u) {
        sm = vec2<u32>(k4_byte(base, j), k4_byte(base, j + 4u)) & vec2<u32>(63u);
    } else {
        let b = k4_byte(base, j + 4u);
        sm = vec2<u32>(
            (b & 0xfu) | ((k4_byte(base, j - 4u) >> 6u) << 4u),
            (b >> 4u) | ((k4_byte(base, j) >> 6u) << 4u),
        );
    }
    return unpack2x16float(w_s[base]) * vec2<f32>(sm);
}

// The four values of one byte-lane group: nibbles of `word` (already shifted), fifth bits
// from bit `bit` of each byte of qh (Q5_K).
fn k4_values(word: u32, sb: u32, l4: u32, bit: u32) -> vec4<f32> {
    var q = vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(0xfu);
#ifdef W_Q5_K
    let qh = w_q[sb * K4_WORDS + l4] >> bit;
    q |= (vec4<u32>(qh, qh >> 8u, qh >> 16u, qh >> 24u) & vec4<u32>(1u)) << vec4<u32>(4u);
#endif
    return vec4<f32>(q);
}

#ifdef W_DOT
const W_PER_WORD: u32 = 8u;

// Word wi of a row: nibble word w of its super-block, whose bytes hold elements 64j + 4·l4..
// (low nibbles, sub-block 2j) and 64j + 32 + 4·l4.. (high, sub-block 2j + 1).
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let sb = row * (K / 256u) + wi / 32u;
    let w = wi % 32u;
    let j = w / 8u;
    let l4 = w % 8u;
    let word = w_q[sb * K4_WORDS + K4_QS + w];
    let x_lo = xv[xb + (wi / 32u) * 64u + 16u * j + l4];
    let x_hi = xv[xb + (wi / 32u) * 64u + 16u * j + 8u + l4];
    let lo = k4_values(word, sb, l4, 2u * j);
    let hi = k4_values(word >> 4u, sb, l4, 2u * j + 1u);
    let s_lo = k4_scale_min(sb * 4u, 2u * j);
    let s_hi = k4_scale_min(sb * 4u, 2u * j + 1u);
    let ones = vec4<f32>(1.0);
    return s_lo.x * dot(lo, x_lo) - s_lo.y * dot(x_lo, ones)
        + s_hi.x * dot(hi, x_hi) - s_hi.y * dot(x_hi, ones);
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let sb = row * (K / 256u) + k / 256u;
    let r = k % 256u;
    let j = r / 64u;
    let h = (r / 32u) % 2u;
    let l4 = (r % 32u) / 4u;
    let word = w_q[sb * K4_WORDS + K4_QS + 8u * j + l4] >> (4u * h);
    let sm = k4_scale_min(sb * 4u, 2u * j + h);
    return sm.x * k4_values(word, sb, l4, 2u * j + h) - sm.y;
}
#endif

#ifdef W_Q6_K
// d·scale of sub-block i (0..16) of super-block sb.
fn q6_scale(sb: u32, i: u32) -> f32 {
    let word = w_s[sb * 5u + i / 4u];
    let sc = i32(word << (24u - 8u * (i % 4u))) >> 24u;
    return unpack2x16float(w_s[sb * 5u + 4u]).x * f32(sc);
}

// The four 6-bit values (minus 32) of element group (n, s, l4) of super-block sb: elements
// 128n + 32s + 4·l4 ...
fn q6_values(sb: u32, n: u32, s: u32, l4: u32) -> vec4<f32> {
    let ql = w_q[sb * 48u + 16u * n + 8u * (s % 2u) + l4] >> (4u * (s / 2u));
    let qh = w_q[sb * 48u + 32u + 8u * n + l4] >> (2u * s);
    let lo = vec4<u32>(ql, ql >> 8u, ql >> 16u, ql >> 24u) & vec4<u32>(0xfu);
    let hi = vec4<u32>(qh, qh >> 8u, qh >> 16u, qh >> 24u) & vec4<u32>(3u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
}

#ifdef W_DOT
const W_PER_WORD: u32 = 8u;

// Word wi of a row: ql word w of its super-block, whose low nibbles are elements
// 128n + 32s + 4·l4.. and high nibbles the same + 64 (s = (w % 16) / 8).
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let sb = row * (K / 256u) + wi / 32u;
    let w = wi % 32u;
    let n = w / 16u;
    let s = (w % 16u) / 8u;
    let l4 = w % 8u;
    let x0 = xb + (wi / 32u) * 64u + 32u * n + 8u * s + l4;
    let lo = dot(q6_values(sb, n, s, l4), xv[x0]);
    let hi = dot(q6_values(sb, n, s + 2u, l4), xv[x0 + 16u]);
    let i = 8u * n + 2u * s + l4 / 4u;
    return q6_scale(sb, i) * lo + q6_scale(sb, i + 4u) * hi;
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let sb = row * (K / 256u) + k / 256u;
    let r = k % 256u;
    return q6_scale(sb, r / 16u) * q6_values(sb, r / 128u, (r / 32u) % 4u, (r % 32u) / 4u);
}
#endif

#ifdef W_Q2_K
#define W_K2
#endif
#ifdef W_Q3_K
#define W_K2
#endif

#ifdef W_K2
// Q2_K and Q3_K: 2-bit quants in 16 qs words per super-block, word 8n + l4 holding elements
// 128n + 32s + 4·l4.. in bits 2s of its bytes.
#ifdef W_Q3_K
const K2_WORDS: u32 = 24u;
const K2_QS: u32 = 8u;
#else
const K2_WORDS: u32 = 16u;
const K2_QS: u32 = 0u;
#endif

#ifdef W_Q2_K
// d·sc·q − dmin·m for the four 2-bit values q of sub-block i (0..16) of super-block sb (l4 and
// hbit, which locate Q3_K's high bits, are unused).
fn k2_dequant(sb: u32, i: u32, q: vec4<u32>, l4: u32, hbit: u32) -> vec4<f32> {
    let sc = (w_s[sb * 5u + 1u + i / 4u] >> (8u * (i % 4u))) & 0xffu;
    let dm = unpack2x16float(w_s[sb * 5u]);
    return dm.x * f32(sc & 0xfu) * vec4<f32>(q) - dm.y * f32(sc >> 4u);
}
#endif

#ifdef W_Q3_K
fn q3_scale_byte(sb: u32, b: u32) -> u32 {
    return (w_s[sb * 4u + b / 4u] >> (8u * (b % 4u))) & 0xffu;
}

// d·(scale − 32)·(q − 4·(1 − h)) for the four values of sub-block i (0..16) of super-block sb;
// the h bits are bit hbit of the bytes of hmask word l4.
fn k2_dequant(sb: u32, i: u32, q: vec4<u32>, l4: u32, hbit: u32) -> vec4<f32> {
    let low = (q3_scale_byte(sb, i % 8u) >> (4u * (i / 8u))) & 0xfu;
    let high = (q3_scale_byte(sb, 8u + i % 4u) >> (2u * (i / 4u))) & 3u;
    let scale = f32(i32(low | (high << 4u)) - 32);
    let hm = w_q[sb * K2_WORDS + l4] >> hbit;
    let h = vec4<u32>(hm, hm >> 8u, hm >> 16u, hm >> 24u) & vec4<u32>(1u);
    let d = unpack2x16float(w_s[sb * 4u + 3u]).x;
    return d * scale * (vec4<f32>(q) - 4.0 * vec4<f32>(vec4<u32>(1u) - h));
}
#endif

// The four 2-bit quants of element group (n, s, l4) of super-block sb.
fn k2_quants(sb: u32, n: u32, s: u32, l4: u32) -> vec4<u32> {
    let word = w_q[sb * K2_WORDS + K2_QS + 8u * n + l4] >> (2u * s);
    return vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(3u);
}

#ifdef W_DOT
const W_PER_WORD: u32 = 16u;

// Word wi of a row: qs word w = 8n + l4 of its super-block, 16 values in four groups s.
fn w_dot_word(row: u32, wi: u32, K: u32, xb: u32) -> f32 {
    let sb = row * (K / 256u) + wi / 16u;
    let w = wi % 16u;
    let n = w / 8u;
    let l4 = w % 8u;
    var acc = 0.0;
    for (var s = 0u; s < 4u; s += 1u) {
        let v = k2_dequant(sb, 8u * n + 2u * s + l4 / 4u, k2_quants(sb, n, s, l4), l4, 4u * n + s);
        acc += dot(v, xv[xb + (wi / 16u) * 64u + 32u * n + 8u * s + l4]);
    }
    return acc;
}
#endif

fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let sb = row * (K / 256u) + k / 256u;
    let r = k % 256u;
    let n = r / 128u;
    let s = (r / 32u) % 4u;
    let l4 = (r % 32u) / 4u;
    return k2_dequant(sb, r / 16u, k2_quants(sb, n, s, l4), l4, r / 32u);
}
#endif
