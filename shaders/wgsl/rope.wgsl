// rope.wgsl — rotary position embedding, in place, of the first ROT values of each head (ROT = HS
// unless the model rotates only part of each head: Phi-4-mini's 96 of 128; the rest pass
// through). Pair i < ROT/2 of a head is the values (i·pair_step, i·pair_step + pair_gap):
// adjacent pairs (2i, 2i+1) for llama's GGUF layout (llama.cpp's converter permuted the Q/K rows
// so), pair_step 2 and gap 1; NEOX halves (i, i + ROT/2) for qwen2, phi3 and gemma, pair_step 1
// and gap ROT/2.
//
// x holds T tokens of H heads of HS values: element (t, h, d) at x[off + t·row_stride + h·HS + d].
// Token t is at position pos0 + (t mod period) (period = T of each sequence when a batch of
// sequences is stacked; larger than T otherwise); pair i rotates by
// θ = pos · base^(−2i / ROT) / factors[i] (factors: all 1, Llama 3's rope_freqs.weight or
// Phi-3's LongRoPE factors), and cos θ, sin θ are multiplied by `scale` (LongRoPE's attention
// factor; 1 otherwise). sign = +1 rotates (forward); sign = −1 rotates back (the backward pass:
// the transpose, scaled alike).
// Bindings: 0 params (uniform), 1 x (read_write), 2 factors (read, ROT/2). One thread per pair.
// Dispatch: (ceil(T·H·ROT/2 / 256), 1, 1).

struct Params {
    T: u32, H: u32, HS: u32, pos0: u32,
    off: u32, row_stride: u32, theta_base: f32, sign: f32,
    period: u32, pair_step: u32, pair_gap: u32, scale: f32,
    ROT: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> factors: array<f32>;

const TAU: f32 = 6.283185307179586;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    let half = p.ROT / 2u;
    if (idx >= p.T * p.H * half) {
        return;
    }
    let i = idx % half;
    let h = (idx / half) % p.H;
    let t = idx / (half * p.H);
    let pos = f32(p.pos0 + t % p.period);
    let theta = pos * pow(p.theta_base, -2.0 * f32(i) / f32(p.ROT)) / factors[i];
    // Reduce to [0, 2π) first: GPU sin/cos are only accurate on small arguments.
    let r = theta - TAU * floor(theta / TAU);
    let cs = cos(r) * p.scale;
    let sn = sin(r) * p.sign * p.scale;
    let o = p.off + t * p.row_stride + h * p.HS + i * p.pair_step;
    let x0 = x[o];
    let x1 = x[o + p.pair_gap];
    x[o] = x0 * cs - x1 * sn;
    x[o + p.pair_gap] = x0 * sn + x1 * cs;
}
