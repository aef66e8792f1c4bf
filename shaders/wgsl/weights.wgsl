// weights.wgsl — included by kernels that read model weights.
//
// A weight matrix W[N, K] (N rows of K values; GGUF dims [K, N]) lives on the GPU in two
// buffers that the including shader declares as `w_q: array<u32>` and `w_s: array<u32>`:
//   W_F32   w_q: the f32 bits, row-major; w_s unused.
//   W_Q4_0  w_q: 4 words per block of 32 k (byte j: element j in the low nibble, j+16 in the
//           high one); w_s: one f16 scale per block, two blocks per word. x = d·(q − 8).
//   W_Q4_1  w_q: as Q4_0; w_s: one word per block holding the f16 pair (d, m). x = d·q + m.
//   W_Q8_0  w_q: 8 words per block (byte j: element j, signed); w_s: as Q4_0. x = d·q.
// Blocks run along K, so quantized formats need K % 32 == 0; W_F32 needs K % 4 == 0.
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
