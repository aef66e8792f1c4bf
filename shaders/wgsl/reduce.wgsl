// reduce.wgsl — the global L2 norm of a flat f32 array in two passes, without atomics (so it is
// portable and gives the same bits every run).
//   SUMSQ_PARTIAL  partial[w] = Σ x[i]² over i = w·256 + t + k·(W·256), for W workgroups
//                  Bindings: 0 params, 1 x (read), 2 partial (read_write). Dispatch: (W, 1, 1).
//   NORM_FINISH    out = [‖x‖, clip, finite] from W partials: clip = max_norm / (‖x‖ + 1e-6)
//                  when max_norm > 0 and ‖x‖ > max_norm, else 1; finite = 0 when ‖x‖ is NaN or inf.
//                  Bindings: 0 params, 1 partial (read), 2 out (read_write). Dispatch: (1, 1, 1).

struct Params {
    n: u32, n_partials: u32, max_norm: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn workgroup_sum(t: u32, v: f32) -> f32 {
    partial[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
#ifdef SUMSQ_PARTIAL
    var acc = 0.0;
    for (var i = wg.x * 256u + t; i < p.n; i += nwg.x * 256u) {
        let x = src[i];
        acc += x * x;
    }
    let total = workgroup_sum(t, acc);
    if (t == 0u) {
        dst[wg.x] = total;
    }
#endif
#ifdef NORM_FINISH
    var acc = 0.0;
    for (var i = t; i < p.n_partials; i += 256u) {
        acc += src[i];
    }
    let total = workgroup_sum(t, acc);
    if (t == 0u) {
        let norm = sqrt(total);
        // NaN and inf are the values whose exponent bits are all ones (checked on the bits:
        // compilers may fold float self-comparisons away).
        let finite = (bitcast<u32>(norm) & 0x7f800000u) != 0x7f800000u;
        var clip = 1.0;
        if (p.max_norm > 0.0 && norm > p.max_norm) {
            clip = p.max_norm / (norm + 1e-6);
        }
        dst[0] = norm;
        dst[1] = clip;
        dst[2] = select(0.0, 1.0, finite);
    }
#endif
}
