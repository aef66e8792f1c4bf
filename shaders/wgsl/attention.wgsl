// attention.wgsl — causal flash attention forward with grouped-query heads (GQA).
//
// For batch b, query token t (absolute position pos0 + t) and head h:
//   o[b, t, h, :] = Σ_{s ≤ pos0 + t} softmax_s(q·k_s · scale) · v_s,   kv head = h / (NH / KVH)
//   lse[b, t, h]  = log Σ_s exp(q·k_s · scale)   (saved for the backward pass)
// With a sliding window W the sums run over pos0 + t − W < s ≤ pos0 + t only (gemma3's local
// layers).
// q, o: [B, T, NH, HS] (row stride NH·HS);  k, v: [B, S, KVH, HS] (row stride KVH·HS), S ≥ pos0 + T.
// Scores are computed 64 keys at a time with an online softmax (running max and sum).
// Bindings: 0 params (uniform), 1 q (read), 2 k (read), 3 v (read), 4 o (read_write),
//           5 lse (read_write).
// One workgroup of 64 threads per (t, h, b). Dispatch: (T, NH, B). HS ≤ 256.
//
// Backward (flash style: probabilities are recomputed from q, k and the saved lse; pos0 = 0):
//   P[t,s] = exp(q_t·k_s·scale − lse_t),  dP[t,s] = dO_t·v_s,  D_t = dO_t·O_t,
//   dS[t,s] = P·(dP − D_t);  dQ_t = scale·Σ_s dS·k_s;  dK_s = scale·Σ_{t,h∈g} dS·q_t;
//   dV_s = Σ_{t,h∈g} P·dO_t.
// BWD_DQ: one workgroup per (t, h, b) writes dq (=) and delta = D (=).
//   Bindings: 0 params, 1 q, 2 k, 3 v, 4 o, 5 dout, 6 lse (read), 7 delta, 8 dq (read_write).
//   Dispatch: (T, NH, B).
// BWD_DKV: one workgroup per (s, kv head, b) sums over the queries and the query heads of its
//   group (so GQA needs no atomics) and writes dk, dv (=). Runs after BWD_DQ (reads delta).
//   Bindings: 0 params, 1 q, 2 k, 3 v, 4 dout, 5 lse, 6 delta (read), 7 dk, 8 dv (read_write).
//   Dispatch: (S, KVH, B).
//
// DIRECT (CPU adapters, whose barriers are expensive): the same three kernels with one thread
// per row — per (query, head) for the forward and BWD_DQ, per (key, kv head) for BWD_DKV — its
// vectors in private vec4 arrays, no workgroup memory and no barriers. HS % 4 == 0. Dispatch:
// (ceil(T·NH / 64), B, 1), BWD_DKV (ceil(S·KVH / 64), B, 1). llvmpipe ends an invocation's loops
// after 65535 iterations in all, so the host runs DIRECT only where the longest row stays under
// that (attention.rs, `AttentionVariant`).

struct Params {
    T: u32, NH: u32, KVH: u32, HS: u32,
    pos0: u32, S: u32, scale: f32, window: u32,
}

// Sliding window (window = 0xffffffff: none): a query at position pos attends the keys
// first_key(pos) ..= pos; key s is attended by the queries s .. last_query(s) − 1.
fn first_key(pos: u32) -> u32 {
    return select(0u, pos + 1u - p.window, pos + 1u > p.window);
}

fn last_query(s: u32) -> u32 {
    return select(p.T, min(p.T, s + p.window), p.window < p.T);
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
#ifdef BWD_DQ
@group(0) @binding(4) var<storage, read> o: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq: array<f32>;
#else
#ifdef BWD_DKV
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
#else
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
#endif
#endif

#ifdef DIRECT
// The largest HS / 4.
const MAX_HS4: u32 = 64u;

fn q4(i: u32) -> vec4<f32> {
    return vec4<f32>(q[i], q[i + 1u], q[i + 2u], q[i + 3u]);
}
fn k4(i: u32) -> vec4<f32> {
    return vec4<f32>(k[i], k[i + 1u], k[i + 2u], k[i + 3u]);
}
fn v4(i: u32) -> vec4<f32> {
    return vec4<f32>(v[i], v[i + 1u], v[i + 2u], v[i + 3u]);
}
#ifndef BWD_DQ
#ifndef BWD_DKV
#define DIRECT_FWD
#endif
#endif
#ifndef DIRECT_FWD
fn dout4(i: u32) -> vec4<f32> {
    return vec4<f32>(dout[i], dout[i + 1u], dout[i + 2u], dout[i + 3u]);
}
#endif

// Row i = qt·NH + h of sequence b for the forward and dQ: its global row and where its kv
// head's keys start.
struct QueryRow {
    row: u32,
    qt: u32,
    kv_stride: u32,
    kv_base: u32,
}

fn query_row(i: u32, b: u32) -> QueryRow {
    let kv_stride = p.KVH * p.HS;
    let h = i % p.NH;
    let kv_base = b * p.S * kv_stride + (h / (p.NH / p.KVH)) * p.HS;
    return QueryRow(b * p.T * p.NH + i, i / p.NH, kv_stride, kv_base);
}

#ifdef DIRECT_FWD
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wg.x * 64u + t;
    if (i >= p.T * p.NH) {
        return;
    }
    let r = query_row(i, wg.y);
    let row = r.row;
    let kv_stride = r.kv_stride;
    let kv_base = r.kv_base;
    let hs4 = p.HS / 4u;
    var qv: array<vec4<f32>, MAX_HS4>;
    var acc: array<vec4<f32>, MAX_HS4>;
    for (var d = 0u; d < hs4; d++) {
        qv[d] = q4(row * p.HS + 4u * d) * p.scale;
        acc[d] = vec4<f32>(0.0);
    }
    var m = -3.0e38;
    var l = 0.0;
    for (var s = first_key(p.pos0 + r.qt); s < p.pos0 + r.qt + 1u; s++) {
        let kb = kv_base + s * kv_stride;
        var score = 0.0;
        for (var d = 0u; d < hs4; d++) {
            score += dot(qv[d], k4(kb + 4u * d));
        }
        let m_new = max(m, score);
        let c = exp(m - m_new);
        let e = exp(score - m_new);
        l = l * c + e;
        m = m_new;
        for (var d = 0u; d < hs4; d++) {
            acc[d] = acc[d] * c + e * v4(kb + 4u * d);
        }
    }
    let ob = row * p.HS;
    for (var d = 0u; d < hs4; d++) {
        let x = acc[d] / l;
        o[ob + 4u * d] = x.x;
        o[ob + 4u * d + 1u] = x.y;
        o[ob + 4u * d + 2u] = x.z;
        o[ob + 4u * d + 3u] = x.w;
    }
    lse[row] = m + log(l);
}
#endif

#ifdef BWD_DQ
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wg.x * 64u + t;
    if (i >= p.T * p.NH) {
        return;
    }
    let r = query_row(i, wg.y);
    let row = r.row;
    let kv_stride = r.kv_stride;
    let kv_base = r.kv_base;
    let hs4 = p.HS / 4u;
    var qv: array<vec4<f32>, MAX_HS4>;
    var dov: array<vec4<f32>, MAX_HS4>;
    var acc: array<vec4<f32>, MAX_HS4>;
    var big_d = 0.0;
    for (var d = 0u; d < hs4; d++) {
        let at = row * p.HS + 4u * d;
        qv[d] = q4(at);
        dov[d] = dout4(at);
        big_d += dot(dov[d], vec4<f32>(o[at], o[at + 1u], o[at + 2u], o[at + 3u]));
        acc[d] = vec4<f32>(0.0);
    }
    delta[row] = big_d;
    let l = lse[row];
    for (var s = first_key(r.qt); s <= r.qt; s++) {
        let kb = kv_base + s * kv_stride;
        var score = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < hs4; d++) {
            score += dot(qv[d], k4(kb + 4u * d));
            dp += dot(dov[d], v4(kb + 4u * d));
        }
        let g = exp(score * p.scale - l) * (dp - big_d);
        for (var d = 0u; d < hs4; d++) {
            acc[d] += g * k4(kb + 4u * d);
        }
    }
    for (var d = 0u; d < hs4; d++) {
        let x = acc[d] * p.scale;
        let at = row * p.HS + 4u * d;
        dq[at] = x.x;
        dq[at + 1u] = x.y;
        dq[at + 2u] = x.z;
        dq[at + 3u] = x.w;
    }
}
#endif

#ifdef BWD_DKV
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wg.x * 64u + t;
    if (i >= p.S * p.KVH) {
        return;
    }
    let b = wg.y;
    let s = i / p.KVH;
    let kvh = i % p.KVH;
    let group = p.NH / p.KVH;
    let kb = (b * p.S + s) * p.KVH * p.HS + kvh * p.HS;
    let hs4 = p.HS / 4u;
    var kv: array<vec4<f32>, MAX_HS4>;
    var vv: array<vec4<f32>, MAX_HS4>;
    var acc_k: array<vec4<f32>, MAX_HS4>;
    var acc_v: array<vec4<f32>, MAX_HS4>;
    for (var d = 0u; d < hs4; d++) {
        kv[d] = k4(kb + 4u * d);
        vv[d] = v4(kb + 4u * d);
        acc_k[d] = vec4<f32>(0.0);
        acc_v[d] = vec4<f32>(0.0);
    }
    // Queries t ≥ s and the query heads of this kv head attend key s.
    for (var qt = s; qt < last_query(s); qt++) {
        for (var hh = 0u; hh < group; hh++) {
            let row = (b * p.T + qt) * p.NH + kvh * group + hh;
            let qb = row * p.HS;
            var score = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < hs4; d++) {
                score += dot(q4(qb + 4u * d), kv[d]);
                dp += dot(dout4(qb + 4u * d), vv[d]);
            }
            let pr = exp(score * p.scale - lse[row]);
            let g = pr * (dp - delta[row]);
            for (var d = 0u; d < hs4; d++) {
                acc_k[d] += g * q4(qb + 4u * d);
                acc_v[d] += pr * dout4(qb + 4u * d);
            }
        }
    }
    for (var d = 0u; d < hs4; d++) {
        let xk = acc_k[d] * p.scale;
        let xv = acc_v[d];
        let at = kb + 4u * d;
        dk[at] = xk.x;
        dk[at + 1u] = xk.y;
        dk[at + 2u] = xk.z;
        dk[at + 3u] = xk.w;
        dv[at] = xv.x;
        dv[at + 1u] = xv.y;
        dv[at + 2u] = xv.z;
        dv[at + 3u] = xv.w;
    }
}
#endif
#else
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

#ifdef BWD_DQ
var<workgroup> do_row: array<f32, MAX_HS>;
var<workgroup> ds: array<f32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let qt = wg.x;
    let h = wg.y;
    let b = wg.z;
    let kvh = h / (p.NH / p.KVH);
    let row = (b * p.T + qt) * p.NH + h;
    let q_base = row * p.HS;
    let kv_stride = p.KVH * p.HS;
    let kv_base = b * p.S * kv_stride + kvh * p.HS;
    let n_keys = qt + 1u;
    var part = 0.0;
    for (var d = t; d < p.HS; d += WG) {
        q_row[d] = q[q_base + d] * p.scale;
        do_row[d] = dout[q_base + d];
        part += dout[q_base + d] * o[q_base + d];
    }
    let big_d = reduce_sum(t, part); // also a barrier for q_row/do_row
    if (t == 0u) {
        delta[row] = big_d;
    }
    let l = lse[row];
    var acc: array<f32, 4>;
    for (var s0 = first_key(qt); s0 < n_keys; s0 += WG) {
        let s = s0 + t;
        var g = 0.0;
        if (s < n_keys) {
            let kb = kv_base + s * kv_stride;
            var score = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < p.HS; d++) {
                score += q_row[d] * k[kb + d];
                dp += do_row[d] * v[kb + d];
            }
            g = exp(score - l) * (dp - big_d);
        }
        ds[t] = g;
        workgroupBarrier();
        let n_chunk = min(WG, n_keys - s0);
        for (var i = 0u; i < 4u; i++) {
            let d = t + i * WG;
            if (d < p.HS) {
                var sum = acc[i];
                for (var j = 0u; j < n_chunk; j++) {
                    sum += ds[j] * k[kv_base + (s0 + j) * kv_stride + d];
                }
                acc[i] = sum;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let d = t + i * WG;
        if (d < p.HS) {
            dq[q_base + d] = acc[i] * p.scale;
        }
    }
}
#else
#ifdef BWD_DKV
var<workgroup> k_row: array<f32, MAX_HS>;
var<workgroup> v_row: array<f32, MAX_HS>;
var<workgroup> ds: array<f32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let s = wg.x;
    let kvh = wg.y;
    let b = wg.z;
    let group = p.NH / p.KVH;
    let kv_stride = p.KVH * p.HS;
    let kb = b * p.S * kv_stride + s * kv_stride + kvh * p.HS;
    for (var d = t; d < p.HS; d += WG) {
        k_row[d] = k[kb + d];
        v_row[d] = v[kb + d];
    }
    workgroupBarrier();
    var acc_k: array<f32, 4>;
    var acc_v: array<f32, 4>;
    // Queries t ≥ s attend key s; one (query, head) pair per thread in chunks of 64.
    let n_pairs = (last_query(s) - min(s, last_query(s))) * group;
    for (var i0 = 0u; i0 < n_pairs; i0 += WG) {
        let i = i0 + t;
        var g = 0.0;
        var pr = 0.0;
        if (i < n_pairs) {
            let qt = s + i / group;
            let h = kvh * group + i % group;
            let row = (b * p.T + qt) * p.NH + h;
            let qb = row * p.HS;
            var score = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < p.HS; d++) {
                score += q[qb + d] * k_row[d];
                dp += dout[qb + d] * v_row[d];
            }
            pr = exp(score * p.scale - lse[row]);
            g = pr * (dp - delta[row]);
        }
        ds[t] = g;
        probs[t] = pr;
        workgroupBarrier();
        let n_chunk = min(WG, n_pairs - i0);
        for (var c = 0u; c < 4u; c++) {
            let d = t + c * WG;
            if (d < p.HS) {
                var sk = acc_k[c];
                var sv = acc_v[c];
                for (var j = 0u; j < n_chunk; j++) {
                    let ij = i0 + j;
                    let row = (b * p.T + s + ij / group) * p.NH + kvh * group + ij % group;
                    sk += ds[j] * q[row * p.HS + d];
                    sv += probs[j] * dout[row * p.HS + d];
                }
                acc_k[c] = sk;
                acc_v[c] = sv;
            }
        }
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let d = t + c * WG;
        if (d < p.HS) {
            dk[kb + d] = acc_k[c] * p.scale;
            dv[kb + d] = acc_v[c];
        }
    }
}
#else
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
    for (var s0 = first_key(n_keys - 1u); s0 < n_keys; s0 += WG) {
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
#endif
#endif
#endif
