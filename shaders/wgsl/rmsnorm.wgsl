// rmsnorm.wgsl — out[r, :] = x[r, :] · rstd[r] · w,  rstd[r] = 1 / sqrt(mean(x[r, :]²) + eps)
//
// Rows r < R of C channels, contiguous (out from element out_off: a KV cache position). rstd is
// saved for the backward pass. The per-head q/k norms (qwen3, gemma3) are rows of HS.
// Bindings: 0 params (uniform), 1 x (read), 2 w (read), 3 out (read_write), 4 rstd (read_write).
// BACKWARD: dx[r, :] (+)= rstd·(g − x̂·mean(g·x̂)), g = dy·w, x̂ = x·rstd (w frozen: no dw);
// `+=` when accumulate = 1.
// Bindings: 0 params, 1 x (read), 2 w (read), 3 dy (read), 4 rstd (read), 5 dx (read_write).
// One workgroup of 256 threads per row r = wg.x + wg.y · nwg.x. Dispatch: grid_1d(R).

struct Params {
    C: u32, R: u32, eps: f32, accumulate: u32,
    out_off: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
#ifdef BACKWARD
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
#else
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;
#endif

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
    let total = partial[0];
    workgroupBarrier();
    return total;
}

#ifdef BACKWARD
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= p.R) {
        return;
    }
    let base = r * p.C;
    let inv = rstd[r];
    var dot_gx = 0.0;
    for (var c = t; c < p.C; c += 256u) {
        dot_gx += dy[base + c] * w[c] * x[base + c] * inv;
    }
    let mean_gx = workgroup_sum(t, dot_gx) / f32(p.C);
    for (var c = t; c < p.C; c += 256u) {
        let g = dy[base + c] * w[c];
        var d = inv * (g - x[base + c] * inv * mean_gx);
        if (p.accumulate != 0u) {
            d += dx[base + c];
        }
        dx[base + c] = d;
    }
}
#else
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= p.R) {
        return;
    }
    let base = r * p.C;
    var ss = 0.0;
    for (var c = t; c < p.C; c += 256u) {
        let v = x[base + c];
        ss += v * v;
    }
    let inv = inverseSqrt(workgroup_sum(t, ss) / f32(p.C) + p.eps);
    for (var c = t; c < p.C; c += 256u) {
        out[p.out_off + base + c] = x[base + c] * inv * w[c];
    }
    if (t == 0u) {
        rstd[r] = inv;
    }
}
#endif
