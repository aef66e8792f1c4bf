#!/usr/bin/env python3
"""llama.cpp itself loads afinador's GGUF LoRA and merged model: reference data.

What it does (from the repository root, with the llama-cpp-python venv of README.md):

1. `afinador make-random-adapter` writes a seeded random LoRA (r 2 on q/k/v/o, B not zero)
   for SmolLM2-135M-Instruct Q4_1 — the same bytes on every machine — as PEFT files and
   `adapter.gguf`; `afinador export --to merged --merged-type f32` merges it into a GGUF.
2. llama.cpp's own quantizer (`llama_model_quantize`, ftype ALL_F32, requantize allowed)
   converts the Q4_1 model to F32: the same weights, exactly dequantized, and no activation
   quantization in llama.cpp's F32 matmuls; with an f32 KV cache (its default is f16) llama.cpp
   then computes what afinador's kernels compute over the Q4_1 file.
3. llama.cpp scores a few texts (per-token log-probabilities, `logits_all`) with: the F32 model,
   the F32 model + `--lora adapter.gguf`, the Q4_1 model as shipped, the Q4_1 model + LoRA, and
   afinador's merged model.

It writes tests/data/llama_cpp_lora.json with the token ids, those log-probs, the sha256 of the
adapter and merged files and the commands that made them. `tests/handoff.rs` remakes both files
(checking the sha256), scores them with afinador and compares: per-token log-probs with the LoRA
within 2e-3 nats of llama.cpp's F32 run, and the adapter's effect (adapted minus base mean NLL)
on the quantized model within 10% + 0.003 nats of llama.cpp's.

Cost: building llama-cpp-python 0.3.36 from its sdist takes ~25 min on 2 cores (once; keep the
venv outside the repository, e.g. ~/.cache/afinador/llama-venv); this script then runs in ~1 min.
It is not run by CI: CI runs the test against the committed JSON.

    ~/.cache/afinador/llama-venv/bin/python scripts/reference/llama_cpp_lora.py \
        --afinador target/debug/afinador
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import tempfile
from pathlib import Path

import llama_cpp
import numpy as np

from common import sha256_file, write_json

GENERATOR = "scripts/reference/llama_cpp_lora.py"
MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = "tests/data/llama_cpp_lora.json"
ADAPTER_ARGS = ["--lora-r", "2", "--lora-alpha", "4", "--std", "0.1", "--seed", "1",
                "--target-modules", "q_proj,k_proj,v_proj,o_proj"]
TEXTS = [
    "The capital of France is Paris, and the capital of Portugal is Lisbon.",
    "O Brasil é o maior país da América do Sul e tem mais de 200 milhões de habitantes.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "<|im_start|>user\nQual é a capital do Brasil?<|im_end|>\n<|im_start|>assistant\nBrasília.",
]


def to_f32(src: Path, dst: Path) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc})")


def logprobs(model: Path, lora: Path | None, text: str, f32_cache: bool) -> tuple[list[int], list[float]]:
    kwargs = dict(model_path=str(model), logits_all=True, n_ctx=512, n_threads=2, verbose=False)
    if f32_cache:
        # llama.cpp keeps K and V in f16 by default; f32 keeps its F32 runs exact.
        kwargs["type_k"] = kwargs["type_v"] = llama_cpp.GGML_TYPE_F32
    if lora is not None:
        kwargs["lora_path"] = str(lora)
    llm = llama_cpp.Llama(**kwargs)
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    out = [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
    del llm
    return [int(t) for t in ids], out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--afinador", default="target/debug/afinador")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    model = Path(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        adapter = tmp / "adapter"
        make = [args.afinador, "make-random-adapter", "--model", str(model),
                "--output", str(adapter), *ADAPTER_ARGS]
        subprocess.run(make, check=True)
        merged = tmp / "merged.gguf"
        merge = [args.afinador, "export", "--model", str(model), "--adapter", str(adapter),
                 "--to", "merged", "--merged-type", "f32", "--output", str(merged)]
        subprocess.run(merge, check=True)
        f32 = tmp / "model-f32.gguf"
        to_f32(model, f32)
        lora = adapter / "adapter.gguf"
        runs = {
            "f32": (f32, None),
            "f32_lora": (f32, lora),
            "q4_1": (model, None),
            "q4_1_lora": (model, lora),
            "merged": (merged, None),
        }
        cases = []
        for text in TEXTS:
            case = {"text": text}
            for name, (m, l) in runs.items():
                ids, lp = logprobs(m, l, text, f32_cache=name.startswith("f32"))
                case.setdefault("ids", ids)
                assert case["ids"] == ids, "one tokenizer for every run"
                case[name] = lp
            cases.append(case)
            effect = np.mean(case["q4_1"]) - np.mean(case["q4_1_lora"])
            print(f"{text[:40]!r}: {len(case['ids'])} tokens, LoRA effect on the mean NLL {effect:+.4f}")
        write_json(Path(args.out), {
            "generator": GENERATOR,
            "llama_cpp_python": llama_cpp.__version__,
            "model_sha256": sha256_file(model),
            "adapter_command": ["make-random-adapter", "--model", MODEL, "--output", "ADAPTER",
                                *ADAPTER_ARGS],
            "adapter_gguf_sha256": sha256_file(lora),
            "merged_command": ["export", "--model", MODEL, "--adapter", "ADAPTER", "--to",
                               "merged", "--merged-type", "f32", "--output", "MERGED"],
            "merged_sha256": sha256_file(merged),
            "cases": cases,
        })
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
