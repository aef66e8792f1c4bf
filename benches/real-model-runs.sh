#!/usr/bin/env bash
# Ten QLoRA steps on each real model (SmolLM2-135M Q4_1, Qwen2.5-Coder-0.5B Q4_K_M, Gemma 3
# 270M Q4_K_M), LoRA r 16 on every linear layer, AdamW, on the browser tests' small set of
# Portuguese questions and answers (web/tests/data/train.jsonl, prompt/completion: "Qual é a
# capital de X?" → " A capital de X é Y."; records 5-14 train, 1-4 validate): the training loss
# of every step, the validation loss of the base model and of the adapter (`afinador eval
# --metrics ppl`), and the trainer's own final validation loss (its `--eval-data` line).
# Short packed sequences (2×64) keep it to minutes on lavapipe (2 cores).
# Writes docs/bench/real-model-runs.json.
#   AFINADOR=target/release/afinador benches/real-model-runs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${AFINADOR:-target/release/afinador}
OUT=docs/bench/real-model-runs.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -4 web/tests/data/train.jsonl >"$tmp/val.jsonl"
sed -n '5,$p' web/tests/data/train.jsonl >"$tmp/train.jsonl"
runs=()
for name in smollm2 qwen2.5-coder gemma3; do
  model=$(scripts/fetch-model "$name")
  run="$tmp/$name"
  start=$(date +%s)
  "$BIN" train --model "$model" --data "$tmp/train.jsonl" --eval-data "$tmp/val.jsonl" \
    --output "$run" --max-steps 10 --batch-size 2 --seq-len 64 --lr 1e-3 \
    --target-modules all-linear --eval-every 10 --seed 7 >"$run.log" 2>&1
  seconds=$(($(date +%s) - start))
  "$BIN" eval --model "$model" --data "$tmp/val.jsonl" --metrics ppl --json \
    >"$run.base.json" 2>/dev/null
  "$BIN" eval --model "$model" --adapter "$run/adapter" --data "$tmp/val.jsonl" --metrics ppl \
    --json >"$run.adapted.json" 2>/dev/null
  runs+=("$name=$model=$seconds")
done
python3 - "$tmp" "$OUT" "$(git rev-parse --short HEAD)" "$("$BIN" --version)" "${runs[@]}" <<'EOF'
import json, sys, datetime, pathlib
tmp, out, commit, version, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
def eval_loss(path):
    def find(v):
        if isinstance(v, dict):
            if "eval_loss" in v:
                return v["eval_loss"]
            for x in v.values():
                if (r := find(x)) is not None:
                    return r
        return None
    return find(json.loads(pathlib.Path(path).read_text()))
models = []
for entry in runs:
    name, model, seconds = entry.split("=")
    run = pathlib.Path(tmp) / name
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l]
    losses = [l["loss"] for l in lines if "loss" in l]
    vals = [l["eval_loss"] for l in lines if "eval_loss" in l]
    models.append({
        "model": model,
        "seconds": int(seconds),
        "train_loss": losses,
        "first_3_mean": sum(losses[:3]) / 3,
        "last_3_mean": sum(losses[-3:]) / 3,
        "trainer_val_loss": vals[-1] if vals else None,
        "val_loss_base": eval_loss(f"{run}.base.json"),
        "val_loss_adapted": eval_loss(f"{run}.adapted.json"),
    })
doc = {
    "generator": "benches/real-model-runs.sh",
    "commit": commit,
    "afinador": version,
    "date": datetime.date.today().isoformat(),
    "machine": "2-core CPU, lavapipe",
    "config": "10 steps of 2x64 (packed), lr 1e-3 cosine, LoRA r 16 alpha 32 all-linear, "
              "AdamW; web/tests/data/train.jsonl records 5-14 train, 1-4 validate",
    "models": models,
}
pathlib.Path(out).write_text(json.dumps(doc, indent=1) + "\n")
for m in models:
    print(f"{m['model']}: train loss {m['first_3_mean']:.3f} -> {m['last_3_mean']:.3f}, "
          f"val {m['val_loss_base']} -> {m['val_loss_adapted']}, {m['seconds']} s")
EOF
