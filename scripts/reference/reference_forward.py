#!/usr/bin/env python3
"""Independent numpy reference forward pass for the SmolLM2 GGUF model.

Dequantizes every weight of the GGUF file with the `gguf` package and runs a
plain Llama forward pass in float64 (no activation quantization), then writes
tests/data/reference_nll.json with, per text:

  ids     token ids (llama.cpp tokenizer, special tokens parsed, no BOS since
          the model's add_bos is false)
  nll     mean over positions 1..n-1 of -log softmax(logits[pos-1])[ids[pos]]
  argmax  argmax of the logits at every position (length n)

plus some extras: per-token NLLs, the top-1/top-2 logit margin at every
position (argmax comparisons should skip near ties) and the top-5 logits at
the last position, and a greedy continuation of "The capital of France is".

Only tokenization comes from llama-cpp-python. Its logits are used afterwards
as a cross-check (printed, and stored as `nll_llama_cpp`); llama.cpp quantizes
activations, so a difference of a couple of percent is expected.

Run from the repository root:

    python scripts/reference/reference_forward.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

from common import sha256_file, write_json

GENERATOR = "scripts/reference/reference_forward.py"
DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = "tests/data/reference_nll.json"

CASES = [
    ("english", "The quick brown fox jumps over the lazy dog. It was a sunny "
                "afternoon, and the children were playing in the park near the river."),
    ("capital_of_france", "The capital of France is"),
    ("portuguese", "A educação é a base de uma nação. Não há dúvida de que a "
                   "informação e a comunicação são essenciais: o coração do "
                   "país bate mais forte quando as crianças aprendem."),
    ("python_code", "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
                    "        a, b = b, a + b\n    return a\n\nprint(fibonacci(10))\n"),
    ("chatml", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
               "trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the "
               "capital of France?<|im_end|>\n<|im_start|>assistant\nThe capital "
               "of France is Paris.<|im_end|>\n"),
    ("json", '{"name": "afinador", "version": "0.1.0", "layers": 30, '
             '"heads": [9, 3], "tied": true, "eps": 1e-5}'),
]

GREEDY_PROMPT = "The capital of France is"
GREEDY_TOKENS = 8


class Model:
    """Llama weights dequantized from GGUF, kept as float64 arrays.

    GGUF stores dims innermost-first (ne = [in, out]); the numpy arrays that
    GGUFReader / dequantize return are row-major with the dims reversed, i.e.
    a linear layer comes out as W[out, in] and is applied as x @ W.T.
    """

    def __init__(self, path: Path):
        reader = GGUFReader(str(path))
        meta = {k: f.contents() for k, f in reader.fields.items()
                if not k.startswith("tokenizer.ggml.")}
        assert meta["general.architecture"] == "llama"
        self.n_layer = int(meta["llama.block_count"])
        self.n_embd = int(meta["llama.embedding_length"])
        self.n_ff = int(meta["llama.feed_forward_length"])
        self.n_head = int(meta["llama.attention.head_count"])
        self.n_head_kv = int(meta["llama.attention.head_count_kv"])
        self.head_dim = self.n_embd // self.n_head
        self.rope_base = float(meta["llama.rope.freq_base"])
        self.eps = float(meta["llama.attention.layer_norm_rms_epsilon"])

        self.w: dict[str, np.ndarray] = {}
        for t in reader.tensors:
            arr = dequantize(t.data, t.tensor_type)
            expected = tuple(int(d) for d in reversed(t.shape))
            assert arr.shape == expected, (t.name, arr.shape, expected)
            self.w[t.name] = arr.astype(np.float64)

        self.vocab = self.w["token_embd.weight"].shape[0]
        # Tied embeddings: no output.weight, the LM head reuses token_embd.
        self.lm_head = self.w.get("output.weight", self.w["token_embd.weight"])

        C, HS = self.n_embd, self.head_dim
        KV = self.n_head_kv * HS
        for i in range(self.n_layer):
            p = f"blk.{i}."
            assert self.w[p + "attn_q.weight"].shape == (C, C)
            assert self.w[p + "attn_k.weight"].shape == (KV, C)
            assert self.w[p + "attn_v.weight"].shape == (KV, C)
            assert self.w[p + "attn_output.weight"].shape == (C, C)
            assert self.w[p + "ffn_gate.weight"].shape == (self.n_ff, C)
            assert self.w[p + "ffn_up.weight"].shape == (self.n_ff, C)
            assert self.w[p + "ffn_down.weight"].shape == (C, self.n_ff)

    def rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x: np.ndarray) -> np.ndarray:
        """RoPE on adjacent pairs (x[2i], x[2i+1]) -- llama.cpp "normal" mode.

        x: [n_tokens, n_heads, head_dim], positions 0..n_tokens-1.
        """
        n, _, hs = x.shape
        inv_freq = self.rope_base ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
        theta = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
        cos = np.cos(theta)[:, None, :]
        sin = np.sin(theta)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def forward(self, ids: list[int]) -> np.ndarray:
        """Logits [n_tokens, vocab] for a sequence starting at position 0."""
        n = len(ids)
        HS, NH, NKV = self.head_dim, self.n_head, self.n_head_kv
        group = NH // NKV
        causal = np.triu(np.ones((n, n), dtype=bool), k=1)

        x = self.w["token_embd.weight"][np.asarray(ids)]
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = self.rms_norm(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(n, NH, HS)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(n, NKV, HS)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(n, NKV, HS)
            q, k = self.rope(q), self.rope(k)

            attn = np.empty((n, NH, HS))
            for head in range(NH):
                kv = head // group  # GQA: query head -> kv head
                scores = (q[:, head, :] @ k[:, kv, :].T) / np.sqrt(HS)
                scores[causal] = -np.inf
                scores -= scores.max(axis=-1, keepdims=True)
                probs = np.exp(scores)
                probs /= probs.sum(axis=-1, keepdims=True)
                attn[:, head, :] = probs @ v[:, kv, :]
            x = x + attn.reshape(n, NH * HS) @ self.w[p + "attn_output.weight"].T

            h = self.rms_norm(x, self.w[p + "ffn_norm.weight"])
            gate = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            silu = gate / (1.0 + np.exp(-gate))
            x = x + (silu * up) @ self.w[p + "ffn_down.weight"].T

        x = self.rms_norm(x, self.w["output_norm.weight"])
        return x @ self.lm_head.T


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def token_nlls(logits: np.ndarray, ids: list[int]) -> np.ndarray:
    """-log p(ids[pos] | ids[:pos]) for pos = 1..n-1."""
    lp = log_softmax(np.asarray(logits, dtype=np.float64)[:-1])
    return -lp[np.arange(len(ids) - 1), np.asarray(ids[1:])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--no-llama-cpp-check", action="store_true",
                    help="skip the cross-check against llama.cpp's own logits")
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    model_path = Path(args.model)
    tok = Llama(model_path=str(model_path), vocab_only=True, verbose=False)

    def tokenize(text: str) -> list[int]:
        # add_bos is false for this model, so nothing is prepended.
        return tok.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    print(f"loading + dequantizing {model_path} ...")
    model = Model(model_path)

    llm = None
    if not args.no_llama_cpp_check:
        llm = Llama(model_path=str(model_path), logits_all=True, n_ctx=512,
                    n_batch=512, verbose=False)

    cases = []
    for name, text in CASES:
        ids = tokenize(text)
        assert 10 <= len(ids) <= 120 or name == "capital_of_france", (name, len(ids))
        logits = model.forward(ids)
        nll = token_nlls(logits, ids)
        top2 = np.sort(logits, axis=-1)[:, -2:]
        top5_last = np.argsort(logits[-1])[::-1][:5]
        case = {
            "name": name,
            "text": text,
            "ids": ids,
            "nll": float(nll.mean()),
            "argmax": [int(a) for a in logits.argmax(axis=-1)],
            # Extras for debugging / tolerant comparisons:
            "token_nll": [round(float(v), 6) for v in nll],
            # top-1 minus top-2 logit; argmax at near-tie positions is fragile.
            "argmax_margin": [round(float(m), 4) for m in top2[:, 1] - top2[:, 0]],
            "top5_last": [[int(t), round(float(logits[-1, t]), 4)] for t in top5_last],
        }
        line = f"{name:18s} n={len(ids):3d}  nll(ref)={case['nll']:.5f}"
        if llm is not None:
            llm.reset()
            llm.eval(ids)
            cpp_logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
            cpp_nll = float(token_nlls(cpp_logits, ids).mean())
            agree = float(np.mean(cpp_logits.argmax(axis=-1) == logits.argmax(axis=-1)))
            case["nll_llama_cpp"] = cpp_nll
            line += (f"  nll(llama.cpp)={cpp_nll:.5f}"
                     f"  rel.diff={(cpp_nll - case['nll']) / case['nll']:+.3%}"
                     f"  argmax agree={agree:.1%}")
        print(line)
        cases.append(case)

    # Greedy generation (full recompute each step; the prompt is tiny).
    prompt_ids = tokenize(GREEDY_PROMPT)
    seq = list(prompt_ids)
    margins = []
    for _ in range(GREEDY_TOKENS):
        last = model.forward(seq)[-1]
        top2 = np.sort(last)[-2:]
        margins.append(round(float(top2[1] - top2[0]), 4))
        seq.append(int(last.argmax()))
    gen_ids = seq[len(prompt_ids):]
    gen_text = tok.detokenize(gen_ids).decode("utf-8", errors="replace")
    print(f"greedy (ref):       {GREEDY_PROMPT!r} -> {gen_text!r} {gen_ids}")
    print(f"  top1-top2 logit margins: {margins}")
    if llm is not None:
        llm.reset()
        llm.eval(prompt_ids)
        cpp_ids = []
        for _ in range(GREEDY_TOKENS):
            cpp_ids.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval(cpp_ids[-1:])
        cpp_text = tok.detokenize(cpp_ids).decode("utf-8", errors="replace")
        print(f"greedy (llama.cpp): {GREEDY_PROMPT!r} -> {cpp_text!r} {cpp_ids}")
    assert gen_text.startswith(" Paris"), gen_text

    out = {
        "generator": GENERATOR,
        "llama_cpp_python": llama_cpp.__version__,
        "model": model_path.name,
        "model_sha256": sha256_file(model_path),
        "notes": "nll/argmax from an f64 numpy forward over dequantized GGUF "
                 "weights; nll_llama_cpp is llama.cpp's CPU result for comparison",
        "cases": cases,
        "greedy": {
            "prompt": GREEDY_PROMPT,
            "prompt_ids": prompt_ids,
            "ids": gen_ids,
            "text": gen_text,
            "argmax_margin": margins,
        },
    }
    out_path = Path(args.out)
    write_json(out_path, out)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
