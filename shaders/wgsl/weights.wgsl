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

#ifdef W_F32
fn w_load4(row: u32, k: u32, K: u32) -> vec4<f32> {
    let i = row * K + k;
    return bitcast<vec4<f32>>(vec4<u32>(w_q[i], w_q[i + 1u], w_q[i + 2u], w_q[i + 3u]));
}
#endif

#ifdef W_Q4_0
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
