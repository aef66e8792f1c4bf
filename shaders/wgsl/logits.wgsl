// logits.wgsl — log-softmax statistics of logit rows, without writing probabilities.
//
// For each row r < R of V logits z (row r at z[r·V]) and target id targets[o + r]
// (0xffffffff: none), with o = row_off, the statistics go to stats[(o + r)·4 + i]:
//   [0] = lse      = log Σ_v exp(z_v)
//   [1] = argmax   (u32 bits; the first maximum)
//   [2] = z_target − lse   (the target's log-probability; 0 without a target)
//   [3] = entropy  = lse − Σ_v softmax(z)_v · z_v
// Each thread keeps a running (max, Σe, Σe·z, argmax) over a strided slice; the workgroup
// merges them in a tree.
// Bindings: 0 params (uniform), 1 z (read), 2 targets (read), 3 stats (read_write).
// GRAD: the cross-entropy gradient, in place: z[r, v] = (softmax(z[r])_v − [v = target])·grad_scale
// from the lse in stats (rows without a target get 0), so logits chunks never need a second
// buffer. Bindings: 0 params, 1 z (read_write), 2 targets (read), 3 stats (read).
// One workgroup of 256 threads per row. Dispatch: (R, 1, 1).

struct Params {
    V: u32, R: u32, row_off: u32, grad_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef GRAD
@group(0) @binding(1) var<storage, read_write> z: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let r = wg.x;
    let base = r * p.V;
    let tgt = targets[p.row_off + r];
    let lse = stats[(p.row_off + r) * 4u];
    for (var v = t; v < p.V; v += 256u) {
        var g = 0.0;
        if (tgt < p.V) {
            g = exp(z[base + v] - lse);
            if (v == tgt) {
                g -= 1.0;
            }
        }
        z[base + v] = g * p.grad_scale;
    }
}
#else
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

var<workgroup> s_max: array<f32, 256>;
var<workgroup> s_sum: array<f32, 256>;
var<workgroup> s_dot: array<f32, 256>;
var<workgroup> s_arg: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let r = wg.x;
    let base = r * p.V;
    var m = -3.0e38;
    var sum = 0.0;
    var dot_ez = 0.0;
    var arg = 0xffffffffu;
    for (var v = t; v < p.V; v += 256u) {
        let x = z[base + v];
        if (x > m) {
            let c = exp(m - x);
            sum = sum * c + 1.0;
            dot_ez = dot_ez * c + x;
            m = x;
            arg = v;
        } else {
            let e = exp(x - m);
            sum += e;
            dot_ez += e * x;
        }
    }
    s_max[t] = m;
    s_sum[t] = sum;
    s_dot[t] = dot_ez;
    s_arg[t] = arg;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            let m1 = s_max[t];
            let m2 = s_max[t + s];
            let mm = max(m1, m2);
            let c1 = exp(m1 - mm);
            let c2 = exp(m2 - mm);
            s_sum[t] = s_sum[t] * c1 + s_sum[t + s] * c2;
            s_dot[t] = s_dot[t] * c1 + s_dot[t + s] * c2;
            // Ties go to the lower index, as a sequential argmax would.
            if (m2 > m1 || (m2 == m1 && s_arg[t + s] < s_arg[t])) {
                s_arg[t] = s_arg[t + s];
            }
            s_max[t] = mm;
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        let lse = s_max[0] + log(s_sum[0]);
        let tgt = targets[p.row_off + r];
        var logp = 0.0;
        if (tgt < p.V) {
            logp = z[base + tgt] - lse;
        }
        let o = (p.row_off + r) * 4u;
        stats[o + 0u] = lse;
        stats[o + 1u] = bitcast<f32>(s_arg[0]);
        stats[o + 2u] = logp;
        stats[o + 3u] = lse - s_dot[0] / s_sum[0];
    }
}
#endif
