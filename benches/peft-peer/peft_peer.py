#!/usr/bin/env python3
"""The training peer: PyTorch + PEFT LoRA on the same shapes `afinador bench train` times.

A SmolLM2-135M-shaped Llama (30 layers, C 576, FF 1536, 9/3 heads, vocab 49152, tied
embeddings) with random weights — no download —, LoRA r 16 (alpha 32, no dropout) on the
attention projections or on every linear layer, AdamW (lr 2e-4), random tokens, every position
trained: the configuration of `afinador bench train`. For each batch×sequence shape, dtype
(fp32, bf16) and target set it reports tokens/s over timed steps after warm-up and the peak of
allocated GPU memory, as JSON in the shape of `bench train --json` ("results" rows with batch,
seq_len, lora, lora_r, step_s, tokens_per_s, gpu_memory_bytes, plus dtype and peer).

Run it in the same session as `afinador bench train` so the ratio holds on a busy machine:

    python benches/peft-peer/peft_peer.py --json > peft.json       # CUDA when present
    python benches/peft-peer/peft_peer.py --device cpu --shapes 1x32 --layers 2 --steps 1  # smoke

Needs torch, transformers and peft (the lent GPU machine has them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_LINEAR = ATTENTION + ["gate_proj", "up_proj", "down_proj"]
SHAPES = {  # the shapes `--like` names in afinador
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         rope_theta=100000.0, tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         rope_theta=1000000.0, tie_word_embeddings=True),
}


def model_for(like: str, layers: int | None, dtype: torch.dtype, device: str):
    shape = dict(SHAPES[like])
    if layers:
        shape["num_hidden_layers"] = layers
    config = LlamaConfig(rms_norm_eps=1e-5, max_position_embeddings=8192, **shape)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype)


def run(args, batch: int, seq: int, dtype_name: str, targets: str) -> dict:
    device = args.device
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = model_for(args.like, args.layers, dtype, device)
    lora = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0,
                      target_modules=ATTENTION if targets == "attention" else ALL_LINEAR,
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen).to(device)

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    secs = (time.perf_counter() - start) / max(args.steps, 1)
    memory = torch.cuda.max_memory_allocated() if cuda else None
    del model, opt
    return {
        "peer": "pytorch+peft",
        "dtype": dtype_name,
        "batch": batch,
        "seq_len": seq,
        "lora": targets,
        "lora_r": args.lora_r,
        "step_s": secs,
        "tokens_per_s": batch * seq / secs,
        "gpu_memory_bytes": memory,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--like", default="smollm2-135m", choices=sorted(SHAPES))
    ap.add_argument("--shapes", default="1x256,8x512")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--targets", default="both", choices=["attention", "all-linear", "both"])
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--layers", type=int, default=None, help="fewer layers (smoke tests)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    targets = ["attention", "all-linear"] if args.targets == "both" else [args.targets]
    rows = []
    for shape in args.shapes.split(","):
        b, t = (int(x) for x in shape.lower().split("x"))
        for dtype in args.dtypes.split(","):
            for tg in targets:
                row = run(args, b, t, dtype, tg)
                rows.append(row)
                mem = row["gpu_memory_bytes"]
                print(f"{b}×{t} {dtype} {tg}: {row['tokens_per_s']:.0f} tok/s, "
                      f"{row['step_s']:.3f} s/step"
                      + (f", {mem / 1e9:.2f} GB" if mem is not None else ""), file=sys.stderr)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    if args.json:
        print(json.dumps({"peer": "pytorch+peft", "torch": torch.__version__, "device": device,
                          "like": args.like, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
