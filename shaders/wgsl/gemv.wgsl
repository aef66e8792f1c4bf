// gemv.wgsl — matrix–vector products for decode: y[m, n] = alpha · Σ_k x[m, k] · W[n, k]
//             (+ y[m, n] when accumulate = 1), for a few rows m of x.
//
// W is a model weight in one of the formats of weights.wgsl (K % 32 == 0 for quantized ones).
// x(m, k) = x[x_off + m·K + k] (x_off % 4 == 0); y(m, n) = y[y_off + m·y_sm + n].
// Bindings: 0 params (uniform), 1 x (read), 2 w_q (read), 3 w_s (read), 4 y (read_write).
// Portable: each workgroup of 256 threads computes 8 rows n with 32 threads each; consecutive
// threads read consecutive words of a row (w_dot_word in weights.wgsl) and a workgroup-memory
// tree sums them. SUBGROUPS: subgroups of a 64-thread workgroup take whole rows and reduce with
// subgroupAdd. Rows per workgroup: 8 portable, 32 with subgroups.
// Dispatch: (ceil(N / 8), M, 1).

struct Params {
    N: u32, K: u32, x_off: u32, y_off: u32,
    y_sm: u32, accumulate: u32, alpha: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w_q: array<u32>;
@group(0) @binding(3) var<storage, read> w_s: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

#define W_DOT
#include "weights.wgsl"

#ifdef SUBGROUPS
// Each subgroup computes whole rows: its lanes read consecutive words and one subgroupAdd
// reduces them — no workgroup memory, no barriers. The workgroup covers ROWS rows with however
// many subgroups the device makes of its 64 threads.
const ROWS: u32 = 32u;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) n_sg: u32,
) {
    let m = wg.y;
    let xb = (p.x_off + m * p.K) / 4u;
    let words = p.K / W_PER_WORD;
    for (var r = sg; r < ROWS; r += n_sg) {
        let n = wg.x * ROWS + r;
        var acc = 0.0;
        if (n < p.N) {
            for (var wi = lane; wi < words; wi += lanes) {
                acc += w_dot_word(n, wi, p.K, xb);
            }
        }
        let total = subgroupAdd(acc);
        if (lane == 0u && n < p.N) {
            let idx = p.y_off + m * p.y_sm + n;
            var v = p.alpha * total;
            if (p.accumulate != 0u) {
                v += y[idx];
            }
            y[idx] = v;
        }
    }
}
#else
const LANES: u32 = 32u;
const ROWS: u32 = 8u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lane = t % LANES;
    let group = t / LANES;
    let n = wg.x * ROWS + group;
    let m = wg.y;
    var acc = 0.0;
    if (n < p.N) {
        let xb = (p.x_off + m * p.K) / 4u;
        let words = p.K / W_PER_WORD;
        for (var wi = lane; wi < words; wi += LANES) {
            acc += w_dot_word(n, wi, p.K, xb);
        }
    }
    partial[t] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u && n < p.N) {
        let idx = p.y_off + m * p.y_sm + n;
        var v = p.alpha * partial[t];
        if (p.accumulate != 0u) {
            v += y[idx];
        }
        y[idx] = v;
    }
}
#endif
