#!/usr/bin/env bash
# The memory of QLoRA on the Llama-3.1-8B shape (C 4096, FF 14336, 32 layers, 32/8 heads,
# vocab 128256, Q4_K weights, random), LoRA r 16 on every linear layer, AdamW:
#  1. measured: a step's buffers allocated at 2 and 4 layers and 1×128 / 1×256, with and
#     without gradient checkpointing — the peak of allocated GPU buffers beside the plan, and the
#     per-layer and per-token slopes of both (`bench train --steps 0`);
#  2. one real training step at 2 layers 1×128, with and without checkpointing: the peak while
#     it runs, beside the plan (`bench train --steps 1`; ~5 minutes each on lavapipe);
#  3. planned: the whole 32 layers at 1×2048 (`bench train --plan-only`, no weights uploaded).
# Writes docs/bench/memory-8b.json.
#   AFINADOR=target/release/afinador benches/memory-8b.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${AFINADOR:-target/release/afinador}
OUT=docs/bench/memory-8b.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for layers in 2 4; do
  for ckpt in "" "--gradient-checkpointing"; do
    "$BIN" bench train --like llama-3.1-8b --layers "$layers" --shapes 1x128,1x256 \
      --targets all-linear --steps 0 $ckpt --json >"$tmp/measured-$layers${ckpt:+-ckpt}.json"
  done
done
for ckpt in "" "--gradient-checkpointing"; do
  "$BIN" bench train --like llama-3.1-8b --layers 2 --shapes 1x128 --targets all-linear \
    --steps 1 $ckpt --json >"$tmp/step-2${ckpt:+-ckpt}.json"
done
for ckpt in "" "--gradient-checkpointing"; do
  "$BIN" bench train --like llama-3.1-8b --shapes 1x2048 --targets all-linear --plan-only \
    $ckpt --json >"$tmp/plan-32${ckpt:+-ckpt}.json"
done
python3 - "$tmp" "$OUT" "$(git rev-parse --short HEAD)" <<'PY'
import glob, json, os, sys
tmp, out, commit = sys.argv[1:]
measured = []
for path in sorted(glob.glob(tmp + "/measured-*.json")):
    layers = int(os.path.basename(path).split("-")[1].split(".")[0])
    d = json.load(open(path))
    for r in d["results"]:
        measured.append({"layers": layers, **r})
plans = [json.load(open(p))["results"][0] for p in sorted(glob.glob(tmp + "/plan-32*.json"))]
steps = [json.load(open(p))["results"][0] for p in sorted(glob.glob(tmp + "/step-2*.json"))]
for s in steps:
    s["plan_error"] = (s["plan_bytes"] - s["gpu_memory_bytes"]) / s["gpu_memory_bytes"]
G = 1 << 30
for m in measured:
    m["plan_error"] = (m["plan_bytes"] - m["gpu_memory_bytes"]) / m["gpu_memory_bytes"]
def slope(key, ckpt):
    rows = {(m["layers"], m["seq_len"]): m[key] for m in measured if m["gradient_checkpointing"] == ckpt}
    per_layer = (rows[(4, 128)] - rows[(2, 128)]) / 2
    per_token = (rows[(2, 256)] - rows[(2, 128)]) / 128
    return per_layer, per_token
slopes = {}
for ckpt in (False, True):
    (ml, mt), (pl, pt) = slope("gpu_memory_bytes", ckpt), slope("plan_bytes", ckpt)
    slopes["on" if ckpt else "off"] = {"measured_per_layer": ml, "plan_per_layer": pl,
                                      "measured_per_token": mt, "plan_per_token": pt}
report = {"generator": "benches/memory-8b.sh", "commit": commit, "adapter": json.load(open(glob.glob(tmp + "/measured-*.json")[0]))["adapter"],
          "allocated": measured, "slopes": slopes, "real_steps_2_layers_1x128": steps,
          "plan_32_layers_1x2048": plans}
json.dump(report, open(out, "w"), indent=1)
for m in measured:
    print(f'{m["layers"]} layers {m["batch"]}x{m["seq_len"]} ckpt {m["gradient_checkpointing"]}: '
          f'measured {m["gpu_memory_bytes"]/G:.3f} GiB, plan {m["plan_bytes"]/G:.3f} GiB ({100*m["plan_error"]:+.1f}%)')
for k, s in slopes.items():
    print(f'checkpointing {k}: per layer {s["measured_per_layer"]/2**20:.1f} MiB measured, {s["plan_per_layer"]/2**20:.1f} planned; '
          f'per token {s["measured_per_token"]/2**10:.1f} KiB measured, {s["plan_per_token"]/2**10:.1f} planned')
for s in steps:
    print(f'real step, 2 layers 1x128 ckpt {s["gradient_checkpointing"]}: peak {s["gpu_memory_bytes"]/G:.3f} GiB, '
          f'plan {s["plan_bytes"]/G:.3f} GiB ({100*s["plan_error"]:+.1f}%), {s["step_s"]:.0f} s/step')
for p in plans:
    print(f'32 layers 1x2048 ckpt {p["gradient_checkpointing"]}: plan {p["plan_bytes"]/G:.2f} GiB')
PY
