// elementwise.wgsl — element-wise kernels over n values.
//   OP_SWIGLU  out[i] = act(gate[i]) · up[i],  act = silu(g) = g / (1 + e^(−g)), or with
//              ACT_GELU the tanh GELU 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))) (GeGLU: gemma)
//              gate(i) = a[a_off + i], up(i) = b[b_off + i]
//   OP_ADD     out[i] = a[a_off + i] + b[b_off + i]
//   OP_BIAS    out[i] += a[a_off + i mod width]   (a bias row added to every row of out, or with
//              width = n a whole slice added into out; b unused)
//   OP_SWIGLU_BWD  given gate a, up b and the output gradient g = c[c_off + i]:
//              out[i] = g · b · act'(a)   (d gate, =)
//              out2[i] = g · act(a)       (d up, =)
//   OP_DROPOUT out[i] = a[i] / (1 − p_drop) when hash(seed, i) keeps it, else 0 (the mask is a
//              pure function of (seed, i), so the backward pass regenerates it); with
//              accumulate = 1, out[i] += that instead (the backward through the mask)
// out(i) = out[out_off + i], out2(i) = out2[out_off + i].
// Bindings: 0 params (uniform), 1 a (read), 2 b (read), 3 out (read_write);
//           OP_SWIGLU_BWD adds 4 c (read), 5 out2 (read_write).
// One thread per element. Dispatch: (min(ceil(n / 256), 32768), ceil(n / 256 / 32768), 1).

struct Params {
    n: u32, a_off: u32, b_off: u32, out_off: u32,
    c_off: u32, seed: u32, p_drop: f32, accumulate: u32,
    width: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#ifdef OP_SWIGLU_BWD
@group(0) @binding(4) var<storage, read> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;
#endif

// The gate's activation and its derivative.
#ifdef ACT_GELU
const GELU_C: f32 = 0.7978845608028654; // √(2/π)
const GELU_A: f32 = 0.044715;

fn act(x: f32) -> f32 {
    return 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_A * x * x * x)));
}

fn act_grad(x: f32) -> f32 {
    let th = tanh(GELU_C * (x + GELU_A * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
}
#else
fn act(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

fn act_grad(x: f32) -> f32 {
    let s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}
#endif

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
#ifdef OP_BIAS
    out[p.out_off + i] += a[p.a_off + i % p.width];
#else
    let x = a[p.a_off + i];
#endif
#ifdef OP_DROPOUT
    // PCG-style hash of (seed, i) to a uniform in [0, 1).
    var h = i * 747796405u + p.seed * 2891336453u + 1u;
    h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
    h = (h >> 22u) ^ h;
    let u = f32(h >> 8u) / 16777216.0;
    var v = select(0.0, x / (1.0 - p.p_drop), u >= p.p_drop);
    if (p.accumulate != 0u) {
        v += out[p.out_off + i];
    }
    out[p.out_off + i] = v;
#endif
#ifndef OP_BIAS
#ifndef OP_DROPOUT
    let y = b[p.b_off + i];
#endif
#endif
#ifdef OP_SWIGLU
    out[p.out_off + i] = act(x) * y;
#endif
#ifdef OP_ADD
    out[p.out_off + i] = x + y;
#endif
#ifdef OP_SWIGLU_BWD
    let g = c[p.c_off + i];
    out[p.out_off + i] = g * y * act_grad(x);
    out2[p.out_off + i] = g * act(x);
#endif
}
