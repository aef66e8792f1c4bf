#!/usr/bin/env python3
"""Reference dequantization of ggml block formats, for core/src/formats/tests/reference.rs.

For every block type afinador decodes, a few deterministic random blocks (random bytes whose
f16 scale fields are overwritten with finite values of both signs, so no block decodes to
inf/NaN) and the f32 values `gguf.quants.dequantize` returns for them. The Rust test decodes
the same bytes and compares bit for bit.

Values are stored as the hex of their f32 bit patterns (8 hex digits, big-endian text of the
u32), so nothing is lost to decimal printing. Writes tests/data/quant_reference.json. Run from
the repository root (needs only numpy and gguf, see requirements.txt):

    python scripts/reference/quant_reference.py
"""

from __future__ import annotations

import json
from importlib.metadata import version

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

OUT = "tests/data/quant_reference.json"
SEED = 20261204

# Byte offsets of the f16 fields (scales, mins) inside one block of each type (ggml-common.h).
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def random_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        mag = rng.uniform(1e-4, 1.0, size=n_blocks) * rng.choice([-1.0, 1.0], size=n_blocks)
        raw[:, off : off + 2] = mag.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return raw


def main() -> None:
    rng = np.random.default_rng(SEED)
    cases = []
    for qtype in F16_FIELDS:
        block_size, _ = GGML_QUANT_SIZES[qtype]
        n_blocks = 3 if block_size == 256 else 8
        raw = random_blocks(rng, qtype, n_blocks)
        values = gguf.quants.dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert values.size == n_blocks * block_size and np.isfinite(values).all()
        cases.append(
            {
                "type": qtype.name,
                "n_elements": int(values.size),
                "bytes": raw.tobytes().hex(),
                "f32_bits": "".join(f"{b:08x}" for b in values.view(np.uint32)),
            }
        )
    doc = {
        "produced_by": "scripts/reference/quant_reference.py",
        "how": (
            f"gguf.quants.dequantize (gguf {version('gguf')}, "
            f"numpy {np.__version__}) on random blocks (numpy default_rng seed {SEED}) whose f16 "
            "scale/min fields hold finite values; f32_bits: the f32 results' bit patterns, 8 hex "
            "digits each"
        ),
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {', '.join(c['type'] for c in cases)}")


if __name__ == "__main__":
    main()
