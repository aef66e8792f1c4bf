// matmul.wgsl — tiled GEMM: C[M, N] = alpha · A[M, K] · B[K, N]  (+ C when accumulate = 1)
//
// A(m, k) = a[a_off + m·a_sm + k·a_sk]            (any strides: plain or transposed)
// B(k, n):
//   B_STRIDED   = b[b_off + k·b_sk + n·b_sn]      (f32, any strides)
//   W_*         = W[n, k] of a model weight (see weights.wgsl): C = A · Wᵀ, the linear layer
//   W_* + WT    = W[k, n]: C = A · W, the input gradient of the linear layer (dX = dY · W);
//                 N is the weight's row length then (N % 4 == 0)
// C(m, n) = c[c_off + m·c_sm + n]
// The sum runs over k in [k_begin, k_end) (K stays the full length, for indexing): on CPU
// adapters the host splits long sums into several dispatches (matmul.rs, `k_chunk`), because
// llvmpipe ends every loop of an invocation after 65535 iterations in all.
// F16: A and B are stored as f16 (B_STRIDED only); products are summed in f32 and C stays f32.
//
// Bindings: 0 params (uniform), 1 a (read), 2 b / w_q (read), 3 w_s (read), 4 c (read_write).
//
// Tiled (default): register-blocked. A workgroup of WX × WY threads computes a BM × BN block of
// C (BM = WY·TM, BN = WX·TN); K advances BK at a time through workgroup memory (A and B slices,
// k-major); each thread keeps TM × TN accumulators in registers and per k reads TM values of A
// and TN of B from workgroup memory. Thread (tx, ty) owns rows ty + i·WY and columns tx + j·WX
// (neighbouring threads read neighbouring words: no bank conflicts, coalesced stores). The tile
// sizes are pipeline-overridable constants chosen per adapter (matmul.rs, `MatmulTiles`); the
// defaults are the portable configuration. Limits: TM, TN ≤ 8, BM·BK and BK·BN ≤ 2048,
// BK % 4 == 0, BN % 4 == 0. Dispatch: (ceil(N / BN), ceil(M / BM), 1).
// DIRECT (for CPU adapters, whose caches do what workgroup memory does on a GPU and whose
// barriers are expensive): 32×32 outputs per workgroup of 4×4 threads, each thread 8×8 read
// straight from memory, no barriers; fixed sizes. Dispatch: (ceil(N / 32), ceil(M / 32), 1).
// COOP (devices with cooperative matrices, i.e. tensor cores; native Vulkan/Metal only): a
// workgroup of SG threads (the adapter's subgroup size, a pipeline constant) computes a 32 × 32
// block of C as 2 × 2 cooperative 16 × 16 matrices with f32 accumulators. K advances 32 at a time:
// the A and B slices are staged in workgroup memory as f16, zero-padded at the edges, so any
// shape and any B source works (f32 inputs are rounded to f16 there). The block is stored through
// workgroup memory for the bounds-checked epilogue (α, accumulate). Dispatch: (ceil(N / 32),
// ceil(M / 32), 1). Several subgroups in one workgroup (a device with varying subgroup sizes)
// each compute the same block: correct, only wasteful.

#ifdef COOP
#define HALF
enable wgpu_cooperative_matrix;
#endif
#ifdef F16
#define HALF
#endif
#ifdef HALF
enable f16;
#endif
#ifndef DIRECT
#ifndef COOP
#define TILED
#endif
#endif
#ifdef F16
alias elem = f16;
#else
alias elem = f32;
#endif

struct Params {
    M: u32, N: u32, K: u32, accumulate: u32,
    a_off: u32, a_sm: u32, a_sk: u32, b_off: u32,
    b_sk: u32, b_sn: u32, c_off: u32, c_sm: u32,
    alpha: f32, k_begin: u32, k_end: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
#ifdef B_STRIDED
@group(0) @binding(2) var<storage, read> b: array<elem>;
#else
@group(0) @binding(2) var<storage, read> w_q: array<u32>;
#endif
@group(0) @binding(3) var<storage, read> w_s: array<u32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

#include "weights.wgsl"

#ifdef TILED
override TM: u32 = 4u;
override TN: u32 = 4u;
override WX: u32 = 16u;
override WY: u32 = 16u;
override BK: u32 = 16u;
const REG_MAX: u32 = 8u;
// The most any configuration may use (16 KiB: WebGPU's default workgroup storage limit).
const TILE_MAX: u32 = 2048u;
var<workgroup> a_tile: array<f32, TILE_MAX>; // [BK][BM]
var<workgroup> b_tile: array<f32, TILE_MAX>; // [BK][BN]
#endif

// C(m, n) = α·x, plus the old C(m, n) when accumulating; nothing outside M × N.
fn store_c(m: u32, n: u32, x: f32) {
    if (m < p.M && n < p.N) {
        let idx = p.c_off + m * p.c_sm + n;
        var v = p.alpha * x;
        if (p.accumulate != 0u) {
            v += c[idx];
        }
        c[idx] = v;
    }
}

fn load_a(m: u32, k: u32) -> f32 {
    if (m < p.M && k < p.k_end) {
        return f32(a[p.a_off + m * p.a_sm + k * p.a_sk]);
    }
    return 0.0;
}

#ifdef WT
// B(k, n..n+4) = W[k, n..n+4] as a vec4 over n.
fn load_b4n(k: u32, n: u32) -> vec4<f32> {
    if (k < p.k_end && n < p.N) {
        return w_load4(k, n, p.N);
    }
    return vec4<f32>(0.0);
}
#else
// B(k..k+4, n) as a vec4 over k.
fn load_b4(k: u32, n: u32) -> vec4<f32> {
#ifdef B_STRIDED
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (n < p.N && k + i < p.k_end) {
            v[i] = f32(b[p.b_off + (k + i) * p.b_sk + n * p.b_sn]);
        }
    }
    return v;
#else
    if (n < p.N && k < p.k_end) {
        return w_load4(n, k, p.K);
    }
    return vec4<f32>(0.0);
#endif
}
#endif

#ifdef DIRECT
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (m < p.M) {
        let base = p.a_off + m * p.a_sm;
        for (var i = 0u; i < 4u; i++) {
            if (k + i < p.k_end) {
                v[i] = f32(a[base + (k + i) * p.a_sk]);
            }
        }
    }
    return v;
}

// Each of the 16 threads owns 8 consecutive rows × 8 consecutive columns: per four k it reads
// 8 + 8 vec4 and does 256 multiply-adds. Accumulator j-quads live in acc[2·i + q] (columns
// n0 + 4q .. n0 + 4q + 4 of row m0 + i); every loop bound is a constant.
const DT: u32 = 8u;

@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let m0 = wg.y * 32u + (t / 4u) * DT;
    let n0 = wg.x * 32u + (t % 4u) * DT;
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var a4: array<vec4<f32>, 8>;
    for (var k = p.k_begin; k < p.k_end; k += 4u) {
        for (var i = 0u; i < DT; i++) {
            a4[i] = load_a4(m0 + i, k);
        }
#ifdef WT
        for (var kk = 0u; kk < 4u; kk++) {
            let b0 = load_b4n(k + kk, n0);
            let b1 = load_b4n(k + kk, n0 + 4u);
            for (var i = 0u; i < DT; i++) {
                let av = a4[i][kk];
                acc[2u * i] = fma(vec4<f32>(av), b0, acc[2u * i]);
                acc[2u * i + 1u] = fma(vec4<f32>(av), b1, acc[2u * i + 1u]);
            }
        }
#else
        let b0 = load_b4(k, n0);
        let b1 = load_b4(k, n0 + 1u);
        let b2 = load_b4(k, n0 + 2u);
        let b3 = load_b4(k, n0 + 3u);
        let b4 = load_b4(k, n0 + 4u);
        let b5 = load_b4(k, n0 + 5u);
        let b6 = load_b4(k, n0 + 6u);
        let b7 = load_b4(k, n0 + 7u);
        for (var i = 0u; i < DT; i++) {
            let av = a4[i];
            acc[2u * i] += vec4<f32>(dot(av, b0), dot(av, b1), dot(av, b2), dot(av, b3));
            acc[2u * i + 1u] += vec4<f32>(dot(av, b4), dot(av, b5), dot(av, b6), dot(av, b7));
        }
#endif
    }
    for (var i = 0u; i < DT; i++) {
        for (var j = 0u; j < DT; j++) {
            store_c(m0 + i, n0 + j, acc[2u * i + j / 4u][j % 4u]);
        }
    }
}
#endif
#ifdef TILED
@compute @workgroup_size(WX * WY)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let bm = WY * TM;
    let bn = WX * TN;
    let threads = WX * WY;
    let m0 = wg.y * bm;
    let n0 = wg.x * bn;
    let tx = t % WX;
    let ty = t / WX;

    var acc: array<array<f32, REG_MAX>, REG_MAX>;
    var ar: array<f32, REG_MAX>;
    var br: array<f32, REG_MAX>;
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += BK) {
        // A slice: consecutive threads read consecutive k (A is row-major in the engine).
        for (var i = t; i < bm * BK; i += threads) {
            let kk = i % BK;
            let mm = i / BK;
            a_tile[kk * bm + mm] = load_a(m0 + mm, k0 + kk);
        }
        // B slice, four values per load.
        for (var i = t; i < bn * BK / 4u; i += threads) {
#ifdef WT
            let kk = i / (bn / 4u);
            let nn = (i % (bn / 4u)) * 4u;
            let v = load_b4n(k0 + kk, n0 + nn);
            for (var j = 0u; j < 4u; j++) {
                b_tile[kk * bn + nn + j] = v[j];
            }
#else
            let kk = (i % (BK / 4u)) * 4u;
            let nn = i / (BK / 4u);
            let v = load_b4(k0 + kk, n0 + nn);
            for (var j = 0u; j < 4u; j++) {
                b_tile[(kk + j) * bn + nn] = v[j];
            }
#endif
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            for (var i = 0u; i < TM; i++) {
                ar[i] = a_tile[kk * bm + ty + i * WY];
            }
            for (var j = 0u; j < TN; j++) {
                br[j] = b_tile[kk * bn + tx + j * WX];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i][j] = fma(ar[i], br[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            store_c(m0 + ty + i * WY, n0 + tx + j * WX, acc[i][j]);
        }
    }
}
#endif

#ifdef COOP
override SG: u32 = 32u;
var<workgroup> a16: array<f16, 1024>; // [32 m][32 k]
var<workgroup> b16: array<f16, 1024>; // [32 k][32 n]
var<workgroup> c32: array<f32, 1024>; // [32 m][32 n]

@compute @workgroup_size(SG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let m0 = wg.y * 32u;
    let n0 = wg.x * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += 32u) {
        for (var i = t; i < 1024u; i += SG) {
            a16[i] = f16(load_a(m0 + i / 32u, k0 + i % 32u));
        }
        for (var i = t; i < 256u; i += SG) {
#ifdef WT
            let kk = i / 8u;
            let nn = (i % 8u) * 4u;
            let v = load_b4n(k0 + kk, n0 + nn);
            for (var j = 0u; j < 4u; j++) {
                b16[kk * 32u + nn + j] = f16(v[j]);
            }
#else
            let kk = (i % 8u) * 4u;
            let nn = i / 8u;
            let v = load_b4(k0 + kk, n0 + nn);
            for (var j = 0u; j < 4u; j++) {
                b16[(kk + j) * 32u + nn] = f16(v[j]);
            }
#endif
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk += 16u) {
            let stride = 32u;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a16[kk], stride);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a16[512u + kk], stride);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b16[kk * 32u], stride);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b16[kk * 32u + 16u], stride);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    // naga 30 wants coopStore's arguments bound with `let` first.
    let stride = 32u;
    let r00 = c00;
    let r01 = c01;
    let r10 = c10;
    let r11 = c11;
    let p00 = &c32[0];
    let p01 = &c32[16];
    let p10 = &c32[512];
    let p11 = &c32[528];
    coopStoreT(r00, p00, stride);
    coopStoreT(r01, p01, stride);
    coopStoreT(r10, p10, stride);
    coopStoreT(r11, p11, stride);
    workgroupBarrier();
    for (var i = t; i < 1024u; i += SG) {
        store_c(m0 + i / 32u, n0 + i % 32u, c32[i]);
    }
}
#endif
