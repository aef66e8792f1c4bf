// embedding.wgsl — row gather: out[t, c] = scale · W[ids[t], c] for t < T, c < C (scale: gemma's
// √C, 1 otherwise).
//
// W is an embedding table [V, C] in one of the formats of weights.wgsl; this dispatch holds its
// rows row0 .. row0 + rows (a table larger than one binding is split by rows, one dispatch per
// part) and writes only the tokens whose rows it holds. Ids past V read row V − 1.
// Bindings: 0 params (uniform), 1 ids (read, u32), 2 w_q (read), 3 w_s (read), 4 out (read_write).
// Each thread writes 4 channels. Dispatch: (ceil(C / 256), min(T, 32768), ceil(T / 32768)):
// token t = wg.y + wg.z · nwg.y, so a batch of more than 65535 tokens fits the grid.

struct Params {
    C: u32, T: u32, V: u32, out_off: u32,
    row0: u32, rows: u32, scale: f32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w_q: array<u32>;
@group(0) @binding(3) var<storage, read> w_s: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

#include "weights.wgsl"

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wg.y + wg.z * nwg.y;
    let c = (wg.x * 64u + lid) * 4u;
    if (t >= p.T || c >= p.C) {
        return;
    }
    let id = min(ids[t], p.V - 1u);
    if (id < p.row0 || id - p.row0 >= p.rows) {
        return;
    }
    let v = w_load4(id - p.row0, c, p.C) * p.scale;
    let o = p.out_off + t * p.C + c;
    out[o] = v.x;
    out[o + 1u] = v.y;
    out[o + 2u] = v.z;
    out[o + 3u] = v.w;
}
