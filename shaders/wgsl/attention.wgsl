// attention.wgsl — causal flash attention forward with grouped-query heads (GQA).
//
// For batch b, query token t (absolute position pos0 + t) and head h:
//   o[b, t, h, :] = Σ_{s ≤ pos0 + t} softmax_s(q·k_s · scale) · v_s,   kv head = h / (NH / KVH)
//   lse[b, t, h]  = log Σ_s exp(q·k_s · scale)   (saved for the backward pass)
// q, o: [B, T, NH, HS] (row stride NH·HS);  k, v: [B, S, KVH, HS] (row stride KVH·HS), S ≥ pos0 + T.
// Scores are computed 64 keys at a time with an online softmax (running max and sum).
// Bindings: 0 params (uniform), 1 q (read), 2 k (read), 3 v (read), 4 o (read_write),
//           5 lse (read_write).
// One workgroup of 64 threads per (t, h, b). Dispatch: (T, NH, B). HS ≤ 256.

struct Params {
    T: u32, NH: u32, KVH: u32, HS: u32,
    pos0: u32, S: u32, scale: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

const WG: u32 = 64u;
const MAX_HS: u32 = 256u;

var<workgroup> q_row: array<f32, MAX_HS>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

fn reduce_max(t: u32, x: f32) -> f32 {
    red[t] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            red[t] = max(red[t], red[t + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(t: u32, x: f32) -> f32 {
    red[t] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            red[t] += red[t + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let qt = wg.x;
    let h = wg.y;
    let b = wg.z;
    let kvh = h / (p.NH / p.KVH);
    let q_base = ((b * p.T + qt) * p.NH + h) * p.HS;
    let kv_stride = p.KVH * p.HS;
    let kv_base = b * p.S * kv_stride + kvh * p.HS;
    let n_keys = p.pos0 + qt + 1u;

    for (var d = t; d < p.HS; d += WG) {
        q_row[d] = q[q_base + d] * p.scale;
    }
    workgroupBarrier();

    var m = -3.0e38;
    var l = 0.0;
    var acc: array<f32, 4>; // this thread's dims t, t + 64, t + 128, t + 192
    for (var s0 = 0u; s0 < n_keys; s0 += WG) {
        let s = s0 + t;
        var score = -3.0e38;
        if (s < n_keys) {
            let kb = kv_base + s * kv_stride;
            var dot_qk = 0.0;
            for (var d = 0u; d < p.HS; d++) {
                dot_qk += q_row[d] * k[kb + d];
            }
            score = dot_qk;
        }
        let m_new = max(m, reduce_max(t, score));
        var pr = 0.0;
        if (s < n_keys) {
            pr = exp(score - m_new);
        }
        probs[t] = pr;
        let correction = exp(m - m_new);
        l = l * correction + reduce_sum(t, pr);
        m = m_new;
        // probs[] is visible after the barriers inside reduce_sum.
        let n_chunk = min(WG, n_keys - s0);
        for (var i = 0u; i < 4u; i++) {
            let d = t + i * WG;
            if (d < p.HS) {
                var sum = acc[i] * correction;
                for (var j = 0u; j < n_chunk; j++) {
                    sum += probs[j] * v[kv_base + (s0 + j) * kv_stride + d];
                }
                acc[i] = sum;
            }
        }
        workgroupBarrier();
    }

    let inv_l = 1.0 / l;
    for (var i = 0u; i < 4u; i++) {
        let d = t + i * WG;
        if (d < p.HS) {
            o[q_base + d] = acc[i] * inv_l;
        }
    }
    if (t == 0u) {
        lse[(b * p.T + qt) * p.NH + h] = m + log(l);
    }
}
