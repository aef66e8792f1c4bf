#!/usr/bin/env bash
# The bf16 residual stream against the f32 one on real models: ten QLoRA steps of the same
# run (benches/real-model-runs.sh's: 2×64 packed, lr 1e-3, LoRA r 16 on every linear layer,
# seed 7), both with gradient checkpointing, once with --bf16-stream off and once on; the
# training loss of every step and their largest relative difference. SmolLM2-135M (Q4_1) and
# Gemma 3 270M (Q4_K_M: the residual stream of the Gemma models is the one most likely to leave
# f16's range, which is why the stream is bf16).
# Writes docs/bench/bf16-stream.json.
#   AFINADOR=target/debug/afinador benches/bf16-stream.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${AFINADOR:-target/release/afinador}
OUT=docs/bench/bf16-stream.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -4 web/tests/data/train.jsonl >"$tmp/val.jsonl"
sed -n '5,$p' web/tests/data/train.jsonl >"$tmp/train.jsonl"
runs=()
for name in smollm2 gemma3; do
  model=$(scripts/fetch-model "$name")
  for stream in off on; do
    run="$tmp/$name-$stream"
    start=$(date +%s)
    "$BIN" train --model "$model" --data "$tmp/train.jsonl" --output "$run" --max-steps 10 \
      --batch-size 2 --seq-len 64 --lr 1e-3 --target-modules all-linear --seed 7 \
      --gradient-checkpointing on --bf16-stream "$stream" >"$run.log" 2>&1
    runs+=("$name=$model=$stream=$(($(date +%s) - start))")
  done
done
python3 - "$tmp" "$OUT" "$(git rev-parse --short HEAD)" "$("$BIN" --version)" "${runs[@]}" <<'PY'
import json, sys, datetime, pathlib
tmp, out, commit, version, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
curves = {}
for entry in runs:
    name, model, stream, seconds = entry.split("=")
    lines = (pathlib.Path(tmp) / f"{name}-{stream}" / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(l)["loss"] for l in lines if l and "loss" in json.loads(l)]
    curves.setdefault(name, {"model": model})[stream] = {"train_loss": losses,
                                                         "seconds": int(seconds)}
models = []
for name, c in curves.items():
    f32, bf16 = c["off"]["train_loss"], c["on"]["train_loss"]
    # The first step runs both from the same parameters: the stream's own effect on the loss.
    # Later steps also follow slightly different parameters; near a loss of 0 a relative
    # difference says little, so the absolute one is the measure there.
    c["first_step_relative_difference"] = abs(f32[0] - bf16[0]) / f32[0]
    c["max_abs_difference"] = max(abs(a - b) for a, b in zip(f32, bf16))
    c["max_relative_difference"] = max(abs(a - b) / abs(a) for a, b in zip(f32, bf16))
    models.append(c)
    print(f"{name}: f32 {f32[0]:.4f} -> {f32[-1]:.4f}, bf16 {bf16[0]:.4f} -> {bf16[-1]:.4f}, "
          f"first step {c['first_step_relative_difference']:.1e} relative, largest difference "
          f"{c['max_abs_difference']:.4f} nats ({c['max_relative_difference']:.1e} relative)")
doc = {
    "generator": "benches/bf16-stream.sh",
    "commit": commit,
    "afinador": version,
    "date": datetime.date.today().isoformat(),
    "machine": "2-core CPU, lavapipe",
    "config": "10 steps of 2x64 (packed), lr 1e-3 cosine, LoRA r 16 alpha 32 all-linear, AdamW, "
              "seed 7, gradient checkpointing on; --bf16-stream off ('off') and on ('on')",
    "models": models,
}
pathlib.Path(out).write_text(json.dumps(doc, indent=1) + "\n")
PY
