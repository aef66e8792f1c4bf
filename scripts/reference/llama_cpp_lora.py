#!/usr/bin/env python3
"""llama.cpp itself loads afinador's GGUF LoRA and merged model: reference data.

What it does (from the repository root, with the llama-cpp-python venv of README.md), for
SmolLM2-135M-Instruct Q4_1 (llama, the default) or, with `--model`, Qwen2.5-Coder-0.5B-Instruct
Q4_K_M (qwen2) or Gemma 3 270M Q4_K_M (gemma3):

1. `afinador make-random-adapter` writes a seeded random LoRA (r 2 on q/k/v/o, B not zero)
   for the model — the same bytes on every machine — as PEFT files and `adapter.gguf`;
   `afinador export --to merged --merged-type f32` merges it into a GGUF (only the adapted
   projections become f32: 188 MB for SmolLM2, 637 MB for Qwen2.5, 352 MB for Gemma 3).
2. llama.cpp's own quantizer (`llama_model_quantize`, ftype ALL_F32, requantize allowed)
   converts the quantized model to F32: the same weights, exactly dequantized, and no activation
   quantization in llama.cpp's F32 matmuls; with an f32 KV cache (its default is f16) llama.cpp
   then computes what afinador's kernels compute over the quantized file.
3. llama.cpp scores a few texts (per-token log-probabilities, `logits_all`; one thread) with: the
   F32 model, the F32 model + `--lora adapter.gguf`, the model as shipped (key `q4_1` or
   `q4_k_m`, from the file name), the shipped model + LoRA, and afinador's merged model. The ids
   start with a BOS where the model's `tokenizer.ggml.add_bos_token` says so (Gemma 3), as
   afinador's `score` does; the first log-prob is then that of the first text token.

It writes tests/data/llama_cpp_lora.json (or `--out`, e.g. tests/data/llama_cpp_lora_qwen2.json)
with the token ids, those log-probs, the sha256 of the adapter and merged files and the commands
that made them. `tests/handoff.rs` remakes both files (checking the sha256), scores them with
afinador and compares: per-token log-probs with the LoRA within 2e-3 nats of llama.cpp's F32 run,
and the adapter's effect (adapted minus base mean NLL) on the quantized model within 10% + 0.003
nats of llama.cpp's.

Cost: building llama-cpp-python 0.3.36 from its sdist takes ~25 min on 2 cores (once; keep the
venv outside the repository, e.g. ~/.cache/afinador/llama-venv); this script then runs in ~10 s
for SmolLM2, ~30 s for Qwen2.5 (whose F32 conversion, 2.5 GB, lives in a temporary
directory that is deleted at the end) and ~20 s for Gemma 3 (F32 conversion 1.1 GB). It is not run by CI: CI runs the test against the
committed JSON.

    ~/.cache/afinador/llama-venv/bin/python scripts/reference/llama_cpp_lora.py \
        --afinador target/debug/afinador
    ~/.cache/afinador/llama-venv/bin/python scripts/reference/llama_cpp_lora.py \
        --afinador target/debug/afinador \
        --model models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \
        --out tests/data/llama_cpp_lora_qwen2.json
    ~/.cache/afinador/llama-venv/bin/python scripts/reference/llama_cpp_lora.py \
        --afinador target/debug/afinador \
        --model models/gemma-3-270m.Q4_K_M.gguf \
        --out tests/data/llama_cpp_lora_gemma3.json
"""

from __future__ import annotations

import argparse
import ctypes
import re
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
# Qwen2.5's residual stream has a few huge channels: std 0.1 raises the mean NLL by 10-18 nats
# (a broken model), 0.03 moves it by under 0.1, 0.045 by 0.3-1.3 nats either way (SmolLM2's 0.1:
# 0.3-1.5).
QWEN2_ADAPTER_ARGS = ["--lora-r", "2", "--lora-alpha", "4", "--std", "0.045", "--seed", "1",
                      "--target-modules", "q_proj,k_proj,v_proj,o_proj"]
TEXTS = [
    "The capital of France is Paris, and the capital of Portugal is Lisbon.",
    "O Brasil é o maior país da América do Sul e tem mais de 200 milhões de habitantes.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "<|im_start|>user\nQual é a capital do Brasil?<|im_end|>\n<|im_start|>assistant\nBrasília.",
]
# Qwen2.5-Coder: code, and a ChatML exchange (Qwen's tokens) in Portuguese with a code answer,
# 30 tokens each: tests/handoff.rs scores them on a software Vulkan driver in CI, where every
# afinador call on this model costs 4-8 s (a third text, English, took the test past a minute;
# SmolLM2's file covers English). A text whose per-token changes cancel out is a poor one for
# the effect check: "Escreva uma função Python que eleva um número ao quadrado." moves tokens
# by up to 11 nats but the mean by 0.06 nats on F32 and 0.03 on Q4_K_M.
QWEN2_TEXTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)",
    "<|im_start|>user\nEscreva uma função que soma dois números.<|im_end|>\n"
    "<|im_start|>assistant\ndef soma(a, b):\n    return a + b<|im_end|>",
]
# Gemma 3 270M (a base model, no chat template): Portuguese prose and a short Python function,
# at most 30 tokens each with the BOS (23 and 20). Its adapter is as sensitive as Qwen2.5's:
# with afinador on Q4_K_M, std 0.05 moves the mean NLL by +0.32 / +0.79 nats, 0.06 by
# +1.04 / +2.13, 0.1 by +17 / +16.5.
GEMMA3_ADAPTER_ARGS = ["--lora-r", "2", "--lora-alpha", "4", "--std", "0.05", "--seed", "1",
                       "--target-modules", "q_proj,k_proj,v_proj,o_proj"]
GEMMA3_TEXTS = [
    "O Brasil é o maior país da América do Sul e tem mais de 200 milhões de habitantes.",
    "def quadrado(x):\n    return x * x\n\nprint(quadrado(4))",
]
QWEN2_NOTES = (
    "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2: q/k/v biases, NEOX rope, GGUF Q/K rows not "
    "permuted, so neither are the LoRA's B rows). f32 and f32_lora: llama.cpp on the model's "
    "ALL_F32 conversion with an f32 KV cache (what afinador computes over the Q4_K_M file); "
    "q4_k_m and q4_k_m_lora: the file as shipped (mostly q5_0 weights, q4_K/q6_K ffn_down, "
    "q8_0 output: llama.cpp quantizes the activations to Q8_0/Q8_K for those matmuls, so "
    "compare the LoRA's effect, not the log-probs); merged: afinador's "
    "merged model (f32 q/k/v/o, the other tensors as shipped: 637 MB), f16 KV cache. "
    "std 0.045, not SmolLM2's 0.1: Qwen2.5's residual stream has a few huge channels and 0.1 "
    "raises the mean NLL by 10-18 nats. tests/handoff.rs scores the merged model on the first "
    "text only (each afinador call costs seconds on a software driver). One llama.cpp thread."
)
GEMMA3_NOTES = (
    "Gemma 3 270M Q4_K_M (gemma3: a base model, add_bos true, so ids start with <bos> (2) and "
    "the log-probs with the first text token's; scaled embeddings, per-head q/k RMSNorm, "
    "post-attention/post-FFN norms, GEGLU, per-layer RoPE base, sliding window; GGUF Q/K rows "
    "not permuted, so neither are the LoRA's B rows). f32 and f32_lora: llama.cpp on the "
    "model's ALL_F32 conversion with an f32 KV cache (what afinador computes over the Q4_K_M "
    "file); q4_k_m and q4_k_m_lora: the file as shipped (llama.cpp quantizes the activations "
    "for the quantized matmuls, so compare the LoRA's effect, not the log-probs); merged: "
    "afinador's merged model (f32 q/k/v/o, the other tensors as shipped: 352 MB), f16 KV "
    "cache. std 0.05 (0.06 already moves the code text's mean NLL by 2.1 nats, 0.1 by 16). "
    "llama.cpp's F32 run is itself up to 2.7e-3 nats off a float64 forward of the same "
    "weights (reference_forward.py; afinador: 1.2e-5), most likely ggml's f16 GELU table: "
    "tests/handoff.rs allows 6e-3 here. One llama.cpp thread."
)
# Per architecture: the texts, the adapter and the notes (None: SmolLM2's file has none).
PROFILES = {
    "llama": (TEXTS, ADAPTER_ARGS, None),
    "qwen2": (QWEN2_TEXTS, QWEN2_ADAPTER_ARGS, QWEN2_NOTES),
    "gemma3": (GEMMA3_TEXTS, GEMMA3_ADAPTER_ARGS, GEMMA3_NOTES),
}


def quant_key(model: Path) -> str:
    """The shipped model's key in the JSON: its quantization, from the file name."""
    m = re.search(r"\.(Q\d\w*|F16|BF16|F32)\.gguf$", model.name, re.IGNORECASE)
    if not m:
        raise SystemExit(f"{model.name}: no quantization in the file name (….Q4_1.gguf)")
    return m.group(1).lower()


def to_f32(src: Path, dst: Path, threads: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc})")


def logprobs(model: Path, lora: Path | None, text: str, f32_cache: bool, add_bos: bool,
             threads: int) -> tuple[list[int], list[float]]:
    kwargs = dict(model_path=str(model), logits_all=True, n_ctx=512, n_threads=threads,
                  n_threads_batch=threads, verbose=False)
    if f32_cache:
        # llama.cpp keeps K and V in f16 by default; f32 keeps its F32 runs exact.
        kwargs["type_k"] = kwargs["type_v"] = llama_cpp.GGML_TYPE_F32
    if lora is not None:
        kwargs["lora_path"] = str(lora)
    llm = llama_cpp.Llama(**kwargs)
    ids = llm.tokenize(text.encode(), add_bos=add_bos, special=True)
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    out = [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
    del llm
    return [int(t) for t in ids], out


def architecture(model: Path) -> tuple[str, bool]:
    """The model's `general.architecture` and whether its tokenizer adds a BOS."""
    llm = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    arch = llm.metadata["general.architecture"]
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
    del llm
    return arch, add_bos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--afinador", default="target/debug/afinador")
    ap.add_argument("--model", default=MODEL,
                    help="a llama (SmolLM2), qwen2 (Qwen2.5) or gemma3 (Gemma 3) GGUF, as a "
                         "repository-relative "
                         "path (it is recorded in the commands)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    args = ap.parse_args()
    model = Path(args.model)
    arch, add_bos = architecture(model)
    if arch not in PROFILES:
        raise SystemExit(f"{model}: architecture {arch!r}, expected one of {sorted(PROFILES)}")
    texts, adapter_args, notes = PROFILES[arch]
    quant = quant_key(model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        adapter = tmp / "adapter"
        make = [args.afinador, "make-random-adapter", "--model", str(model),
                "--output", str(adapter), *adapter_args]
        subprocess.run(make, check=True)
        merged = tmp / "merged.gguf"
        merge = [args.afinador, "export", "--model", str(model), "--adapter", str(adapter),
                 "--to", "merged", "--merged-type", "f32", "--output", str(merged)]
        subprocess.run(merge, check=True)
        f32 = tmp / "model-f32.gguf"
        to_f32(model, f32, args.threads)
        lora = adapter / "adapter.gguf"
        runs = {
            "f32": (f32, None),
            "f32_lora": (f32, lora),
            quant: (model, None),
            f"{quant}_lora": (model, lora),
            "merged": (merged, None),
        }
        cases = []
        for text in texts:
            case = {"text": text}
            for name, (m, l) in runs.items():
                ids, lp = logprobs(m, l, text, f32_cache=name.startswith("f32"),
                                   add_bos=add_bos, threads=args.threads)
                case.setdefault("ids", ids)
                assert case["ids"] == ids, "one tokenizer for every run"
                case[name] = lp
            cases.append(case)
            effect = np.mean(case[quant]) - np.mean(case[f"{quant}_lora"])
            print(f"{text[:40]!r}: {len(case['ids'])} tokens, LoRA effect on the mean NLL {effect:+.4f}")
        out = {
            "generator": GENERATOR,
            "llama_cpp_python": llama_cpp.__version__,
        }
        if notes is not None:
            # (SmolLM2's file predates these fields: it stays byte for byte as it was.)
            out["architecture"] = arch
            out["model"] = args.model
            out["notes"] = notes
        out |= {
            "model_sha256": sha256_file(model),
            "adapter_command": ["make-random-adapter", "--model", args.model, "--output",
                                "ADAPTER", *adapter_args],
            "adapter_gguf_sha256": sha256_file(lora),
            "merged_command": ["export", "--model", args.model, "--adapter", "ADAPTER", "--to",
                               "merged", "--merged-type", "f32", "--output", "MERGED"],
            "merged_sha256": sha256_file(merged),
            "cases": cases,
        }
        write_json(Path(args.out), out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
