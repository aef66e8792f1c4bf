#!/usr/bin/env python3
"""Independent numpy reference forward pass for a Llama, Mistral, Qwen2, Qwen3, Gemma 3 or Phi-3 GGUF model.

Dequantizes every weight of the GGUF file with the `gguf` package and runs a
plain decoder forward pass in float64 (no activation quantization), then
writes a JSON file with, per text:

  ids     token ids (llama.cpp tokenizer, special tokens parsed, BOS only if
          the model's add_bos flag is set -- false for SmolLM2 and Qwen2.5,
          true for Gemma 3, whose ids start with BOS = 2)
  nll     mean over positions 1..n-1 of -log softmax(logits[pos-1])[ids[pos]]
  argmax  argmax of the logits at every position (length n)

plus some extras: per-token NLLs, the top-1/top-2 logit margin at every
position (argmax comparisons should skip near ties) and the top-5 logits at
the last position, and greedy continuations of fixed prompts.

Six architectures are supported (`general.architecture`; `ARCHS` below
says what sets each apart, `scripts/reference/tiny_models.py` runs all of them
on tiny random models from `afinador make-tiny-model`):

  llama  SmolLM2-135M: RoPE on adjacent pairs (llama.cpp "normal" mode; the
         GGUF Q/K rows are permuted by the converter so that this holds), no
         projection biases, LM head tied to token_embd. With a
         `rope_freqs.weight` tensor (Llama 3.1's rope scaling, as the
         converter writes it) pair i's angle is divided by rope_freqs[i].
  mistral  the llama block. llama.cpp has no "mistral" architecture (its
         converter writes Mistral 7B as "llama", conversion/__init__.py:
         "MistralForCausalLM": "llama"); afinador's tiny models use the name.
  qwen2  Qwen2.5-Coder-0.5B: q/k/v projections have biases, RoPE in NEOX
         mode (pairs (i, i + head_dim/2)), separate output.weight.
  qwen3  (llama.cpp src/models/qwen3.cpp) no biases; RMSNorm of each q/k
         head (attn_q_norm, attn_k_norm, HS values, the model's eps) before
         NEOX RoPE; attention scale 1/sqrt(head_dim); SiLU FFN.
  gemma3 Gemma 3 270M (llama.cpp src/models/gemma3.cpp): embeddings scaled by
         sqrt(n_embd); head_dim from attention.key_length (256, so the
         q width 4*256 != n_embd 640); RMSNorm of each q/k head (attn_q_norm,
         attn_k_norm) before NEOX RoPE; RoPE base 10000 on sliding-window
         layers (il % 6 < 5) and rope.freq_base (1e6) on the global ones;
         sliding-window mask (query pos - key pos >= attention.sliding_window
         is masked); RMSNorm of the attention output and of the FFN output
         (post_attention_norm, post_ffw_norm) before each residual add;
         GEGLU FFN with the tanh GELU; LM head tied to token_embd; no logit
         soft-capping. Norm weights are used as stored (the converter has
         already added Gemma's +1).
  phi3   (llama.cpp src/models/phi3.cpp) the llama block with NEOX RoPE, but
         fused projections: blk.N.attn_qkv.weight is q | k | v by rows
         (build_qkv's views) and blk.N.ffn_up.weight (2*FF rows) is
         gate | up (build_ffn LLM_FFN_SWIGLU: ggml_swiglu applies SiLU to
         the first half); `Model` splits both right after dequantizing (and
         after merging a LoRA, which adapts the fused matrices). No biases,
         no q/k norms; attention.sliding_window is ignored (phi3's
         load_arch_hparams). LongRoPE when the file has
         rope_factors_short/long.weight: per-pair divisors like rope_freqs,
         the short ones while the context is at most
         rope.scaling.original_context_length, the long ones beyond
         (llama_model::get_rope_factors: llama.cpp picks by its n_ctx,
         afinador by its context — the sequence here), and cos and sin multiplied by
         rope.scaling.attn_factor (read for every architecture,
         llama_model::load_hparams; ggml_rope_ext's attn_factor, i.e. rope_yarn's
         mscale with ext_factor 0), so q.k grows by its square.

`Model(path, adapter=...)` also merges a GGUF LoRA (llama.cpp's `--lora` format,
`blk.N.<tensor>.weight.lora_a/lora_b`, `adapter.lora.alpha`) into the
dequantized weights in float64: W + (alpha / r) B A, as llama.cpp's
build_lora_mm computes W x + (alpha / r) B (A x).

Only tokenization comes from llama-cpp-python. Its logits are used afterwards
as a cross-check (printed, and stored as `nll_llama_cpp`; for qwen2 the
greedy continuations from llama.cpp are stored too); llama.cpp quantizes
activations, so a difference of a couple of percent is expected.

Run from the repository root (single-threaded BLAS keeps it reproducible on
small machines):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/reference/reference_forward.py
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/reference/reference_forward.py \\
        --model models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \\
        --out tests/data/reference_nll_qwen2.json
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/reference/reference_forward.py \\
        --model models/gemma-3-270m.Q4_K_M.gguf   # -> tests/data/reference_nll_gemma3.json
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

from common import sha256_file, write_json

GENERATOR = "scripts/reference/reference_forward.py"
DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

LLAMA_CASES = [
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

QWEN_SYSTEM = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
               "You are a helpful assistant.<|im_end|>\n")

QWEN2_CASES = [
    ("english", LLAMA_CASES[0][1]),
    ("portuguese", LLAMA_CASES[2][1]),
    ("python_code", LLAMA_CASES[3][1]),
    ("digits", "1234567890 3.14159 2026-12-04"),
    ("emoji", "I ❤️ Rust 🦀 and 🚀"),
    ("chatml", QWEN_SYSTEM + "<|im_start|>user\nWhat is the capital of France?"
               "<|im_end|>\n<|im_start|>assistant\nThe capital of France is "
               "Paris.<|im_end|>\n"),
]

# Gemma 3 (a base model, but its chat format is worth pinning: the
# <start_of_turn>/<end_of_turn> control tokens, ids 105/106).
GEMMA3_CASES = [
    ("english", LLAMA_CASES[0][1]),
    ("portuguese", LLAMA_CASES[2][1]),
    ("python_code", LLAMA_CASES[3][1]),
    ("digits", QWEN2_CASES[3][1]),
    ("emoji", QWEN2_CASES[4][1]),
    ("gemma_chat", "<start_of_turn>user\nWhat is the capital of France?"
                   "<end_of_turn>\n<start_of_turn>model\nThe capital of France "
                   "is Paris.<end_of_turn>\n"),
]


@dataclass(frozen=True)
class Arch:
    """What sets one architecture's forward apart from the llama block.

    To add an architecture: a row in ARCHS (and, for an operation the forward
    does not have yet, a field here read in `Model.forward`).
    """

    # RoPE pairs (i, i + HS/2) (llama.cpp LLAMA_ROPE_TYPE_NEOX, see
    # llama_model_rope_type in src/llama-model.cpp) instead of (2i, 2i+1).
    rope_neox: bool
    # blk.N.attn_{q,k,v}.bias (qwen2).
    qkv_bias: bool = False
    # RMSNorm of each q and k head before RoPE (blk.N.attn_{q,k}_norm).
    qk_norm: bool = False
    # Gemma 3's extras: embeddings * sqrt(C), post-attention/post-FFN norms,
    # GEGLU, sliding-window layers with their own RoPE base, q scaled before
    # q.k.
    gemma3: bool = False
    # Phi-3's fused projections: blk.N.attn_qkv.weight (q | k | v rows) and
    # blk.N.ffn_up.weight (gate | up rows, 2*FF), no ffn_gate.
    fused: bool = False
    # general.architecture as llama.cpp knows it (tiny_models.py rewrites a
    # copy of the file for llama.cpp when it differs).
    llama_cpp_name: str | None = None


ARCHS = {
    "llama": Arch(rope_neox=False),
    # src/models/llama.cpp; Mistral 7B converts to "llama" (see above).
    "mistral": Arch(rope_neox=False, llama_cpp_name="llama"),
    "qwen2": Arch(rope_neox=True, qkv_bias=True),
    # src/models/qwen3.cpp: build_norm(Qcur, attn_q_norm) and the same for K
    # right after the projections, then ggml_rope_ext (NEOX).
    "qwen3": Arch(rope_neox=True, qk_norm=True),
    "gemma3": Arch(rope_neox=True, qk_norm=True, gemma3=True),
    # src/models/phi3.cpp: the llama block with NEOX RoPE (llama_model_rope_type), fused
    # q/k/v and gate/up projections (split in Model.split_fused), LongRoPE factors and
    # attention factor when the file has them (Model.__init__, Model.rope); its
    # attention.sliding_window is ignored (llama_model_phi3::load_arch_hparams).
    "phi3": Arch(rope_neox=True, fused=True),
}


@dataclass
class Profile:
    """What to compute and write for one architecture."""

    out: str
    cases: list[tuple[str, str]]
    min_tokens: int
    max_tokens: int
    short_ok: tuple[str, ...]          # case names exempt from min_tokens
    greedy: list[tuple[str, str]]      # (name, prompt)
    greedy_tokens: int
    greedy_expect: str | None          # required prefix of the first greedy text
    # True: the original SmolLM2 layout (a single "greedy" object, reference
    # only, no add_bos / architecture keys). False: "greedy" is a list with
    # llama.cpp's own greedy ids next to the reference ones.
    legacy_layout: bool


PROFILES = {
    "llama": Profile(
        out="tests/data/reference_nll.json",
        cases=LLAMA_CASES, min_tokens=10, max_tokens=120,
        short_ok=("capital_of_france",),
        greedy=[("capital_of_france", "The capital of France is")],
        greedy_tokens=8, greedy_expect=" Paris", legacy_layout=True),
    "qwen2": Profile(
        out="tests/data/reference_nll_qwen2.json",
        cases=QWEN2_CASES, min_tokens=10, max_tokens=60, short_ok=(),
        greedy=[
            ("chatml_square", QWEN_SYSTEM + "<|im_start|>user\nWrite a Python "
             "function that returns the square of a number.<|im_end|>\n"
             "<|im_start|>assistant\n"),
            ("fibonacci", "def fibonacci(n):"),
        ],
        greedy_tokens=12, greedy_expect=None, legacy_layout=False),
    "gemma3": Profile(
        out="tests/data/reference_nll_gemma3.json",
        cases=GEMMA3_CASES, min_tokens=10, max_tokens=60,
        short_ok=("emoji",),  # Qwen2.5's emoji text: 9 ids with the BOS
        greedy=[
            ("capital_of_france", "The capital of France is"),
            ("fibonacci", "def fibonacci(n):"),
        ],
        greedy_tokens=12, greedy_expect=None, legacy_layout=False),
}


class Model:
    """Decoder weights dequantized from GGUF, kept as float64 arrays.

    GGUF stores dims innermost-first (ne = [in, out]); the numpy arrays that
    GGUFReader / dequantize return are row-major with the dims reversed, i.e.
    a linear layer comes out as W[out, in] and is applied as x @ W.T.
    """

    def __init__(self, path: Path, adapter: Path | None = None):
        reader = GGUFReader(str(path))
        meta = {k: f.contents() for k, f in reader.fields.items()
                if not k.startswith("tokenizer.ggml.")}
        self.arch = arch = meta["general.architecture"]
        assert arch in ARCHS, f"unsupported architecture {arch!r}"
        spec = ARCHS[arch]
        self.n_layer = int(meta[f"{arch}.block_count"])
        self.n_embd = int(meta[f"{arch}.embedding_length"])
        self.n_ff = int(meta[f"{arch}.feed_forward_length"])
        self.n_head = int(meta[f"{arch}.attention.head_count"])
        self.n_head_kv = int(meta[f"{arch}.attention.head_count_kv"])
        # attention.key_length is absent for SmolLM2/Qwen2.5 (= n_embd/n_head);
        # Gemma 3 270M has 256 with n_embd/n_head = 160.
        self.head_dim = int(meta.get(f"{arch}.attention.key_length",
                                     self.n_embd // self.n_head))
        assert int(meta.get(f"{arch}.attention.value_length", self.head_dim)) == self.head_dim
        self.rope_base = float(meta[f"{arch}.rope.freq_base"])
        self.eps = float(meta[f"{arch}.attention.layer_norm_rms_epsilon"])
        # llama.cpp's rope type per architecture (llama_model_rope_type):
        # LLAMA_ROPE_TYPE_NORM for llama/mistral, NEOX for qwen2/qwen3/gemma3.
        self.rope_neox = spec.rope_neox
        self.qkv_bias = spec.qkv_bias
        self.qk_norm = spec.qk_norm
        self.gemma3 = spec.gemma3
        self.fused = spec.fused
        for key in ("rope.scaling.type", "rope.scaling.factor", "rope.scale_linear"):
            assert f"{arch}.{key}" not in meta, f"{arch}.{key} is not handled"
        # RoPE over the first n_rot values of each head (rope.dimension_count; all of them but
        # for a partial rotary embedding, Phi-4-mini's 96 of 128): llama.cpp's ggml_rope_ext
        # with n_dims = n_rot rotates those (NEOX: pairs (i, i + n_rot/2)) and copies the rest.
        self.n_rot = int(meta.get(f"{arch}.rope.dimension_count", self.head_dim))
        assert 0 < self.n_rot <= self.head_dim and self.n_rot % 2 == 0
        # Per layer: is it a sliding-window layer, and its RoPE base.
        self.n_swa = 0
        self.layer_swa = [False] * self.n_layer
        self.layer_rope_base = [self.rope_base] * self.n_layer
        # Gemma 3's attention scale (applied to q before q.k): 1/sqrt(head_dim).
        self.attn_scale = 1.0 / np.sqrt(self.head_dim)
        if self.gemma3:
            # llama_model_gemma3::load_arch_hparams (src/models/gemma3.cpp).
            for key in ("final_logit_softcapping", "attn_logit_softcapping"):
                assert f"{arch}.{key}" not in meta, f"{arch}.{key} is not handled"
            self.n_swa = int(meta.get(f"{arch}.attention.sliding_window", 0))
            if self.n_swa > 0:
                # load_swa_pattern(ml, 6): an explicit per-layer bool array,
                # else a period n (default 6): layer il is SWA iff
                # il % n < n - 1 (llama_hparams::set_swa_pattern).
                pattern = meta.get(f"{arch}.attention.sliding_window_pattern", 6)
                if isinstance(pattern, list):
                    self.layer_swa = [bool(b) for b in pattern][: self.n_layer]
                else:
                    n = int(pattern)
                    self.layer_swa = [n == 0 or il % n < n - 1 for il in range(self.n_layer)]
                # hparams.rope_freq_base_train_swa defaults to 10000.
                base_swa = float(meta.get(f"{arch}.rope.freq_base_swa", 10000.0))
                self.layer_rope_base = [base_swa if swa else self.rope_base
                                        for swa in self.layer_swa]
            if self.n_layer == 62:  # Gemma 3 27B: 1/sqrt(n_embd/n_head)
                self.attn_scale = 1.0 / np.sqrt(self.n_embd // self.n_head)

        self.w: dict[str, np.ndarray] = {}
        for t in reader.tensors:
            arr = dequantize(t.data, t.tensor_type)
            expected = tuple(int(d) for d in reversed(t.shape))
            assert arr.shape == expected, (t.name, arr.shape, expected)
            self.w[t.name] = arr.astype(np.float64)
            del arr
        del reader
        gc.collect()
        if adapter is not None:
            self.merge_lora(adapter)
        if self.fused:
            # The fused matrices (after the LoRA: it adapts them), split into the llama names.
            self.fused_w = {name: self.w.pop(name) for name in list(self.w)
                            if name.endswith((".attn_qkv.weight", ".ffn_up.weight"))}
            self.w.update(self.split_fused())

        self.vocab = self.w["token_embd.weight"].shape[0]
        # Llama 3's rope scaling: per-pair frequency divisors (n_rot/2 values),
        # one tensor for all layers. llama.cpp: src/models/llama.cpp loads
        # rope_freqs.weight (when rope.scaling.type is not "longrope") and
        # llama_model::get_rope_factors (src/llama-model.cpp) hands it to
        # ggml_rope_ext, whose CPU kernel (ggml/src/ggml-cpu/ops.cpp,
        # ggml_rope_cache_init) rotates pair i by theta/ff[i] with
        # theta = pos * base^(-2i/n_rot); freq_scale stays 1 and ext_factor 0
        # (no rope.scaling keys), so nothing else changes.
        self.rope_freqs = self.w.get("rope_freqs.weight")
        assert self.rope_freqs is None or self.rope_freqs.shape == (self.n_rot // 2,)
        # Phi-3's LongRoPE: two sets of per-pair divisors, applied like rope_freqs; llama.cpp
        # takes the short ones while its context is at most the original context length
        # (llama_model::get_rope_factors), the long ones beyond; `forward` takes the sequence
        # as the context (as afinador's score does).
        self.rope_factors_long = self.w.get("rope_factors_long.weight")
        short = self.w.get("rope_factors_short.weight")
        assert (short is None) == (self.rope_factors_long is None)
        self.n_ctx_orig = None
        if short is not None:
            assert self.rope_freqs is None and short.shape == (self.n_rot // 2,)
            self.rope_freqs = short
            self.n_ctx_orig = int(meta.get(f"{arch}.rope.scaling.original_context_length",
                                           meta[f"{arch}.context_length"]))
        # cos and sin times this (hparams.rope_attn_factor; 1 when the key is absent).
        self.rope_attn_factor = float(meta.get(f"{arch}.rope.scaling.attn_factor", 1.0))
        # Tied embeddings: no output.weight, the LM head reuses token_embd.
        self.lm_head = self.w.get("output.weight", self.w["token_embd.weight"])

        C, HS = self.n_embd, self.head_dim
        Q, KV = self.n_head * HS, self.n_head_kv * HS
        for i in range(self.n_layer):
            p = f"blk.{i}."
            assert self.w[p + "attn_q.weight"].shape == (Q, C)
            assert self.w[p + "attn_k.weight"].shape == (KV, C)
            assert self.w[p + "attn_v.weight"].shape == (KV, C)
            assert self.w[p + "attn_output.weight"].shape == (C, Q)
            assert (p + "attn_q_norm.weight" in self.w) == self.qk_norm, (arch, p)
            if self.qk_norm:
                assert self.w[p + "attn_q_norm.weight"].shape == (HS,)
                assert self.w[p + "attn_k_norm.weight"].shape == (HS,)
            if self.gemma3:
                assert self.w[p + "post_attention_norm.weight"].shape == (C,)
                assert self.w[p + "post_ffw_norm.weight"].shape == (C,)
            assert self.w[p + "ffn_gate.weight"].shape == (self.n_ff, C)
            assert self.w[p + "ffn_up.weight"].shape == (self.n_ff, C)
            assert self.w[p + "ffn_down.weight"].shape == (C, self.n_ff)
            for name, size in (("q", Q), ("k", KV), ("v", KV)):
                bias = self.w.get(p + f"attn_{name}.bias")
                assert (bias is not None) == self.qkv_bias, (arch, p, name)
                assert bias is None or bias.shape == (size,)

    def merge_lora(self, adapter: Path) -> None:
        """Add a GGUF LoRA's (alpha / r) B A to the weights it adapts (float64)."""
        reader = GGUFReader(str(adapter))
        meta = {k: f.contents() for k, f in reader.fields.items()}
        assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora", meta
        assert meta["general.architecture"] == self.arch, (meta["general.architecture"], self.arch)
        alpha = float(meta["adapter.lora.alpha"])
        ab = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64)
              for t in reader.tensors}
        names = sorted({n.rsplit(".", 1)[0] for n in ab})
        assert len(ab) == 2 * len(names), "every tensor has its lora_a and lora_b"
        for name in names:
            a, b = ab[name + ".lora_a"], ab[name + ".lora_b"]  # A [r, in], B [out, r]
            r = a.shape[0]
            assert b.shape[1] == r and self.w[name].shape == (b.shape[0], a.shape[1]), name
            self.w[name] = self.w[name] + (alpha / r) * (b @ a)

    def split_fused(self, qkv: str = "qkv", gate_first: bool = True) -> dict[str, np.ndarray]:
        """Phi-3's fused matrices as attn_q/k/v and ffn_gate/up, rows cut in the order
        `qkv` (q | k | v in the file) and gate | up (or up | gate); the other orders are the
        ablations of tiny_models.py."""
        Q, KV, FF = self.n_head * self.head_dim, self.n_head_kv * self.head_dim, self.n_ff
        rows = {"q": Q, "k": KV, "v": KV}
        out = {}
        for i in range(self.n_layer):
            p = f"blk.{i}."
            w = self.fused_w[p + "attn_qkv.weight"]
            assert w.shape[0] == Q + 2 * KV, w.shape
            start = 0
            for name in qkv:
                out[p + f"attn_{name}.weight"] = w[start:start + rows[name]]
                start += rows[name]
            w = self.fused_w[p + "ffn_up.weight"]
            assert w.shape[0] == 2 * FF, w.shape
            first, second = w[:FF], w[FF:]
            out[p + "ffn_gate.weight"], out[p + "ffn_up.weight"] = (
                (first, second) if gate_first else (second, first))
        return out

    def rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope_factors(self, context: int) -> np.ndarray | None:
        """The per-pair divisors for a context of `context` positions."""
        if self.n_ctx_orig is not None and context > self.n_ctx_orig:
            return self.rope_factors_long
        return self.rope_freqs

    def rope(self, x: np.ndarray, base: float, factors: np.ndarray | None) -> np.ndarray:
        """RoPE, x: [n_tokens, n_heads, head_dim], positions 0..n_tokens-1, on the
        first n_rot values of each head (the rest pass through).

        Pair i (i < n_rot/2) is rotated by theta = pos * base^(-2i/n_rot)
        (divided by factors[i]: Llama 3's rope_freqs or Phi-3's LongRoPE factors
        for the context, `rope_factors`; cos and sin times Phi-3's rope_attn_factor).
        llama "normal" mode pairs adjacent elements (x[2i], x[2i+1]); NEOX mode
        (qwen2, qwen3, gemma3, phi3) pairs the two halves (x[i], x[i + n_rot/2]).
        """
        if self.n_rot < x.shape[-1]:
            rot = self.rope(x[..., :self.n_rot], base, factors)
            return np.concatenate([rot, x[..., self.n_rot:]], axis=-1)
        n, _, hs = x.shape
        inv_freq = base ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
        theta = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
        if factors is not None:
            theta = theta / factors[None, :]
        cos = np.cos(theta)[:, None, :]
        sin = np.sin(theta)[:, None, :]
        if self.rope_attn_factor != 1.0:  # Phi-3's LongRoPE attention factor
            cos, sin = cos * self.rope_attn_factor, sin * self.rope_attn_factor
        if self.rope_neox:
            lo, hi = slice(0, hs // 2), slice(hs // 2, hs)
        else:
            lo, hi = slice(0, hs, 2), slice(1, hs, 2)
        x0, x1 = x[..., lo], x[..., hi]
        out = np.empty_like(x)
        out[..., lo] = x0 * cos - x1 * sin
        out[..., hi] = x0 * sin + x1 * cos
        return out

    def project(self, h: np.ndarray, p: str, name: str) -> np.ndarray:
        """h @ W.T (+ bias when the layer has one: qwen2's q/k/v)."""
        y = h @ self.w[p + name + ".weight"].T
        bias = self.w.get(p + name + ".bias")
        return y if bias is None else y + bias

    def forward(self, ids: list[int], last_only: bool = False) -> np.ndarray:
        """Logits [n_tokens, vocab] for a sequence starting at position 0
        (only the last position's row, [1, vocab], when last_only)."""
        n = len(ids)
        factors = self.rope_factors(n)
        HS, NH, NKV = self.head_dim, self.n_head, self.n_head_kv
        group = NH // NKV
        causal = np.triu(np.ones((n, n), dtype=bool), k=1)
        pos = np.arange(n)
        # Sliding window (llama_hparams::is_masked_swa, LLAMA_SWA_TYPE_STANDARD):
        # key p0 is hidden from query p1 when p1 - p0 >= n_swa.
        swa_mask = causal | (pos[:, None] - pos[None, :] >= self.n_swa) if self.n_swa else causal

        x = self.w["token_embd.weight"][np.asarray(ids)]
        if self.gemma3:
            x = x * np.sqrt(self.n_embd)
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = self.rms_norm(x, self.w[p + "attn_norm.weight"])
            q = self.project(h, p, "attn_q").reshape(n, NH, HS)
            k = self.project(h, p, "attn_k").reshape(n, NKV, HS)
            v = self.project(h, p, "attn_v").reshape(n, NKV, HS)
            if self.qk_norm:  # RMSNorm over each head's head_dim values
                q = self.rms_norm(q, self.w[p + "attn_q_norm.weight"])
                k = self.rms_norm(k, self.w[p + "attn_k_norm.weight"])
            base = self.layer_rope_base[i]
            q, k = self.rope(q, base, factors), self.rope(k, base, factors)
            if self.gemma3:
                # Gemma scales q (f_attention_scale), then attends with scale 1.
                q = q * self.attn_scale
                kq_div = 1.0
            else:
                kq_div = np.sqrt(HS)
            mask = swa_mask if self.layer_swa[i] else causal

            attn = np.empty((n, NH, HS))
            for head in range(NH):
                kv = head // group  # GQA: query head -> kv head
                scores = (q[:, head, :] @ k[:, kv, :].T) / kq_div
                scores[mask] = -np.inf
                scores -= scores.max(axis=-1, keepdims=True)
                probs = np.exp(scores)
                probs /= probs.sum(axis=-1, keepdims=True)
                attn[:, head, :] = probs @ v[:, kv, :]
            out = attn.reshape(n, NH * HS) @ self.w[p + "attn_output.weight"].T
            if self.gemma3:
                out = self.rms_norm(out, self.w[p + "post_attention_norm.weight"])
            x = x + out

            h = self.rms_norm(x, self.w[p + "ffn_norm.weight"])
            gate = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            if self.gemma3:
                # ggml_geglu: ggml's GELU is the tanh approximation.
                act = 0.5 * gate * (1.0 + np.tanh(np.sqrt(2.0 / np.pi)
                                                  * (gate + 0.044715 * gate ** 3)))
            else:
                act = gate / (1.0 + np.exp(-gate))  # SiLU
            out = (act * up) @ self.w[p + "ffn_down.weight"].T
            if self.gemma3:
                out = self.rms_norm(out, self.w[p + "post_ffw_norm.weight"])
            x = x + out

        if last_only:
            x = x[-1:]
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
    ap.add_argument("--out", default=None,
                    help="output JSON (default: tests/data/reference_nll.json for "
                         "llama, tests/data/reference_nll_qwen2.json for qwen2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="llama.cpp threads for the cross-check (default 1)")
    ap.add_argument("--no-llama-cpp-check", action="store_true",
                    help="skip the cross-check against llama.cpp's own logits")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import llama_cpp
    from llama_cpp import Llama

    model_path = Path(args.model)
    tok = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(tok._model.vocab))

    def tokenize(text: str) -> list[int]:
        # add_bos is false for SmolLM2 and Qwen2.5, so nothing is prepended;
        # it is true for Gemma 3, whose ids then start with BOS (2).
        return tok.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def detokenize(ids: list[int]) -> str:
        return tok.detokenize(ids, special=True).decode("utf-8", errors="replace")

    print(f"loading + dequantizing {model_path} ...")
    model = Model(model_path)
    profile = PROFILES[model.arch]
    print(f"  arch={model.arch} layers={model.n_layer} C={model.n_embd} "
          f"FF={model.n_ff} heads={model.n_head}/{model.n_head_kv} "
          f"head_dim={model.head_dim} rope_base={model.rope_base} eps={model.eps} "
          f"add_bos={add_bos} "
          f"({time.perf_counter() - t_start:.1f} s)")
    if model.n_swa:
        print(f"  sliding window {model.n_swa}; global layers "
              f"{[i for i, swa in enumerate(model.layer_swa) if not swa]}; rope bases "
              f"{sorted(set(model.layer_rope_base))}")

    llm = None
    if not args.no_llama_cpp_check:
        llm = Llama(model_path=str(model_path), logits_all=True, n_ctx=512,
                    n_batch=512, n_threads=args.threads,
                    n_threads_batch=args.threads, verbose=False)

    cases = []
    for name, text in profile.cases:
        ids = tokenize(text)
        assert profile.min_tokens <= len(ids) <= profile.max_tokens or name in profile.short_ok, \
            (name, len(ids))
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
        print(line, flush=True)
        cases.append(case)
        del logits

    # Greedy generation (full recompute each step; the prompts are short).
    greedy = []
    for name, prompt in profile.greedy:
        prompt_ids = tokenize(prompt)
        seq = list(prompt_ids)
        margins = []
        for _ in range(profile.greedy_tokens):
            last = model.forward(seq, last_only=True)[-1]
            top2 = np.sort(last)[-2:]
            margins.append(round(float(top2[1] - top2[0]), 4))
            seq.append(int(last.argmax()))
        gen_ids = seq[len(prompt_ids):]
        gen_text = detokenize(gen_ids)
        print(f"greedy (ref)       {name}: {gen_text!r} {gen_ids}")
        print(f"  top1-top2 logit margins: {margins}")
        entry = {
            "name": name,
            "prompt": prompt,
            "prompt_ids": prompt_ids,
            "ids": gen_ids,
            "text": gen_text,
            "argmax_margin": margins,
        }
        if llm is not None:
            llm.reset()
            llm.eval(prompt_ids)
            cpp_ids = []
            for _ in range(profile.greedy_tokens):
                cpp_ids.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
                llm.eval(cpp_ids[-1:])
            cpp_text = detokenize(cpp_ids)
            same = next((i for i, (a, b) in enumerate(zip(gen_ids, cpp_ids)) if a != b),
                        len(gen_ids))
            print(f"greedy (llama.cpp) {name}: {cpp_text!r} {cpp_ids}")
            print(f"  agree on the first {same}/{len(gen_ids)} tokens")
            entry["ids_llama_cpp"] = cpp_ids
            entry["text_llama_cpp"] = cpp_text
        greedy.append(entry)
    if profile.greedy_expect is not None:
        assert greedy[0]["text"].startswith(profile.greedy_expect), greedy[0]["text"]

    out = {
        "generator": GENERATOR,
        "llama_cpp_python": llama_cpp.__version__,
        "model": model_path.name,
        "model_sha256": sha256_file(model_path),
    }
    if profile.legacy_layout:
        out["notes"] = ("nll/argmax from an f64 numpy forward over dequantized GGUF "
                        "weights; nll_llama_cpp is llama.cpp's CPU result for comparison")
        out["cases"] = cases
        (g,) = greedy
        out["greedy"] = {k: g[k] for k in ("prompt", "prompt_ids", "ids", "text",
                                            "argmax_margin")}
    else:
        from importlib.metadata import version
        out["gguf"] = version("gguf")
        out["numpy"] = np.__version__
        out["architecture"] = model.arch
        out["add_bos"] = add_bos
        out["notes"] = ("nll/argmax/greedy ids from an f64 numpy forward over "
                        "dequantized GGUF weights; nll_llama_cpp and "
                        "greedy[].ids_llama_cpp are llama.cpp's CPU results for "
                        "comparison (it quantizes activations to Q8)")
        if add_bos:
            out["notes"] += ("; ids and prompt_ids include the BOS token "
                             f"({tok.token_bos()}) that llama.cpp prepends because "
                             "tokenizer.ggml.add_bos_token is true, and nll averages "
                             "over positions 1..n-1, i.e. the first text token is "
                             "predicted from BOS")
        out["cases"] = cases
        out["greedy"] = greedy
    out_path = Path(args.out or profile.out)
    write_json(out_path, out)
    print(f"wrote {out_path} ({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
