// adamw.wgsl — AdamW with decoupled weight decay and bias correction, over flat f32 arrays.
//
// For i < n, with g = grad[i] · clip (clip = norm[1], from reduce.wgsl's NORM_FINISH):
//   m = β1·m + (1 − β1)·g,  v = β2·v + (1 − β2)·g²
//   param −= lr · ( (m / bc1) / (sqrt(v / bc2) + eps) + weight_decay · param )
// with bc1 = 1 − β1^t, bc2 = 1 − β2^t computed on the host for step t. When the gradient norm
// is not finite (norm[2] = 0) nothing is updated: the step is skipped.
// Bindings: 0 params (uniform), 1 param (read_write), 2 grad (read), 3 m (read_write),
//           4 v (read_write), 5 norm (read: [norm, clip, finite]).
// One thread per value. Dispatch: grid of ceil(n / 256) workgroups (x, y split).

struct Params {
    n: u32, lr: f32, beta1: f32, beta2: f32,
    eps: f32, weight_decay: f32, bc1: f32, bc2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> norm: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n || norm[2] == 0.0) {
        return;
    }
    let g = grad[i] * norm[1];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let update = (mi / p.bc1) / (sqrt(vi / p.bc2) + p.eps);
    param[i] -= p.lr * (update + p.weight_decay * param[i]);
}
