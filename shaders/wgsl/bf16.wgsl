// bf16.wgsl — f32 values kept as bf16 pairs between a training step's forward and backward
// passes (the 16-bit saved residual stream). Word i of `packed` holds values 2i (low half) and
// 2i + 1 (high half), each the top 16 bits of its f32 rounded to nearest, ties to even (NaN stays
// a quiet NaN); integer arithmetic only, so every adapter rounds alike and no feature is needed.
//   (default) PACK: packed[i] = the pair, and x[2i], x[2i + 1] rounded in place to it, so the
//             rest of the forward pass sees exactly what the backward pass will restore.
//   UNPACK:   x[2i], x[2i + 1] = the values of packed[i].
// n: words (half the values). Bindings: 0 params (uniform), 1 x (read_write), 2 packed
// (read_write). One thread per word. Dispatch: (min(ceil(n / 256), 32768), ceil(n / 256 / 32768), 1).

struct Params {
    n: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;

#ifndef UNPACK
fn to_bf16(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0x7fc0u;
    }
    return (bits + 0x7fffu + ((bits >> 16u) & 1u)) >> 16u;
}
#endif

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
#ifdef UNPACK
    let w = packed[i];
#else
    let w = to_bf16(x[2u * i]) | (to_bf16(x[2u * i + 1u]) << 16u);
    packed[i] = w;
#endif
    x[2u * i] = bitcast<f32>(w << 16u);
    x[2u * i + 1u] = bitcast<f32>(w & 0xffff0000u);
}
