#!/usr/bin/env python3
"""Reference log-probs for tiny random models of every architecture and weight type.

Why: the real models (SmolLM2 llama, Qwen2.5 qwen2, Gemma 3 gemma3) pin afinador's forward for
three architectures and a few weight types (reference_nll*.json), and llama.cpp's loading of
afinador's GGUF LoRA for them (llama_cpp_lora*.json). The other architectures (mistral, qwen3,
llama with Llama 3's rope scaling, phi3 with and without LongRoPE) and weight types have no real
model here, so this script pins them on tiny random GGUFs from `afinador make-tiny-model`
(2 layers, C 256, FF 512, 4 heads / 2 KV heads, vocab 256: every file is under 5 MB and every
forward takes milliseconds). `tests/tiny_models.rs` remakes each file with the recorded arguments,
checks its sha256 and scores the same ids with afinador.

What it does, per case of CASES (an architecture and a weight type):

1. runs `afinador make-tiny-model` with the case's arguments (recorded as `command`, with
   `MODEL` in place of the output path) and records the file's sha256 and weight types;
2. on fixed token-id sequences (`sequences()`: seeded random ids, three of 24 and one of
   128; no tokenizer, no BOS):
   the float64 forward of `reference_forward.py`'s `Model` over the `gguf` package's
   dequantized weights: per-token log-probs, mean NLL, argmax and top-1 minus top-2 margins,
   mean entropy and the largest probability (how peaked the distributions are);
3. llama.cpp (llama-cpp-python, one thread, `logits_all`) on the same ids, twice: on the file
   as made (`logprobs_llama_cpp`, `nll_llama_cpp`: llama.cpp quantizes the activations to Q8 for quantized matmuls and
   keeps an f16 KV cache), and on llama.cpp's own ALL_F32 conversion with an f32 KV cache
   (`nll_llama_cpp_f32`, `max_abs_dlogp_llama_cpp_f32`: the same weights exactly, no
   activation quantization; it agrees with the f64 forward to ~1e-6..1e-4, gemma3's
   f16-table GELU to ~6e-4). llama.cpp refuses a GGUF without `tokenizer.ggml.model`,
   so it gets a copy with `tokenizer.ggml.model = "no_vocab"` and `{arch}.vocab_size`
   (llama_vocab::impl::load in src/llama-vocab.cpp: LLAMA_VOCAB_TYPE_NONE with that many dummy
   tokens), and with `general.architecture` renamed where llama.cpp knows the architecture
   under another name (mistral -> llama); the tensors are byte for byte the same. Its sha256
   is recorded as `llama_cpp_model_sha256`;
4. `sensitivity`: how far the per-token log-probs move (max |delta|, nats) when the f64
   forward drops one of the case's features (RoPE pairing, q/k norms, biases, rope factors,
   the sliding window, phi3's fused-split order, LongRoPE's short factors and attention
   factor) -- what a per-token tolerance can tell apart on these nearly flat distributions;
5. `lora` (the architecture cases, `TinyCase.lora` = the adapter's std): `afinador
   make-random-adapter` (`lora.command`, ADAPTER = its output directory: PEFT files and
   `adapter.gguf`, whose sha256 is recorded) and `afinador merge --merged-type f32`
   (`lora.merge_command`, MERGED = the output; sha256 recorded). On three sequences the base
   model writes (`sample_sequences`: sampled from the f64 forward; on the random ids of step 2
   a random adapter's effect on the mean NLL has either sign and averages out, on the model's
   own samples it is about KL(base || adapted) > 0): the f64 forward without and with the
   adapter (`Model(path, adapter=...)` merges (alpha / r) B A in float64), and llama.cpp with
   `lora_path` on its copy of the file as made and on its ALL_F32 conversion, each also
   without the adapter, and on a no_vocab copy of the merged file (default f16 KV cache). The
   adapter llama.cpp loads is `adapter.gguf` itself, or for mistral a copy that says `llama`
   (llama_adapter_lora_init: "model arch and LoRA arch mismatch";
   `llama_cpp_adapter_sha256`). The script asserts that llama.cpp's F32 run with the adapter
   is within 1e-4 of the f64 forward (1e-3 for gemma3), the merged file's NLL within 0.5% of
   the adapted one, the adapter's effect (adapted minus base mean NLL) 0.05-1 nats and
   llama.cpp's effect on the file as made within 10% of it.

Random weights give nearly uniform next-token distributions (logits with a std of ~0.6 over
256 ids: mean NLL ~5.7 ~ ln 256 + 0.2), so a 1% NLL tolerance (0.057 nats) is weak; the
per-token log-probs and `sensitivity` are the strong checks.

Run from the repository root with the llama-cpp-python venv (README.md), single-threaded
BLAS; about 15 s, and the same bytes every time:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ~/.cache/afinador/llama-venv/bin/python \\
        scripts/reference/tiny_models.py --afinador target/debug/afinador

Copy the binary first (`cp target/debug/afinador /tmp/`) if someone may rebuild it meanwhile.
To add an architecture: a row in `reference_forward.ARCHS` (and what its forward needs in
`Model`), then a `TinyCase` in CASES (with `lora=`: a std whose effect is 0.1-1 nats), and take
it out of NOT_COVERED_YET in tests/tiny_models.rs (which reads every case of the JSON and checks
that every architecture afinador runs has one, with a `lora` section).
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import llama_cpp
import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from llama_cpp._utils import suppress_stdout_stderr

from common import sha256_file, write_json
from reference_forward import ARCHS, Model, log_softmax

GENERATOR = "scripts/reference/tiny_models.py"
OUT = "tests/data/reference_nll_tiny.json"

# The shape every case shares: tiny, and whole 256-value blocks for the k-quants.
SHAPE = ["--layers", "2", "--embd", "256", "--ff", "512", "--heads", "4", "--kv-heads", "2",
         "--vocab", "256", "--seed", "1"]
VOCAB = 256

# Seeded random id sequences: three of 24 tokens and one of LONG_LEN. The sliding window of the
# tiny gemma3 (4 positions, every other layer) matters from position 4 on; Llama 3's rope
# factors only divide the angles of the slow pairs (wavelength > 2048 positions: pairs 21..31
# of 32 at base 10000), which barely turn in 24 positions: dropping the factors moves the
# log-probs by 1.2e-3 there, by 1.1e-2 over 128 positions (1.8e-2 over 256).
SEQUENCE_SEED = 20261205
SEQUENCE_LENS = [24, 24, 24, LONG_LEN := 128]
# The adapters' sequences: ids the base model writes (sample_sequences), so that an adapter
# raises their mean NLL by about KL(base || adapted) (on random ids its effect has either sign
# and averages out: -0.32..+0.23 nats at std 0.08-0.2, often under 0.01). 24 ids are too few
# (at std 0.1 qwen3's adapter lowered one such sample's mean NLL by 0.008); 48 are enough here.
LORA_SEQUENCE_SEED = SEQUENCE_SEED + 1
LORA_SEQUENCE_LENS = [48, 64, LONG_LEN]


@dataclass(frozen=True)
class TinyCase:
    """One tiny model: make-tiny-model's --arch, --weights (None: its default), --rope-freqs;
    `lora`: the std of a random adapter to check in llama.cpp (None: no `lora` section)."""

    arch: str
    weights: str | None = None
    rope_freqs: bool = False
    # phi3 with rope_freqs: --rope-original-context (the sequences run past it: the long factors)
    rope_original_context: int | None = None
    # --rope-dims: a partial rotary embedding (Phi-4-mini rotates 96 of each head's 128 values)
    rope_dims: int | None = None
    lora: float | None = None

    @property
    def name(self) -> str:
        name = self.arch + ("+rope_freqs" if self.rope_freqs else "")
        if self.rope_original_context is not None:
            name += f"@{self.rope_original_context}"
        if self.rope_dims is not None:
            name += f"+rot{self.rope_dims}"
        return name if self.weights is None else f"{name}/{self.weights}"

    def command(self) -> list[str]:
        """make-tiny-model's arguments, with MODEL for the output path."""
        cmd = ["make-tiny-model", "--output", "MODEL", "--arch", self.arch, *SHAPE]
        if self.weights is not None:
            cmd += ["--weights", self.weights]
        if self.rope_freqs:
            cmd.append("--rope-freqs")
        if self.rope_original_context is not None:
            cmd += ["--rope-original-context", str(self.rope_original_context)]
        if self.rope_dims is not None:
            cmd += ["--rope-dims", str(self.rope_dims)]
        return cmd

    def adapter_command(self) -> list[str]:
        """make-random-adapter's arguments, MODEL and ADAPTER (a directory) for the paths."""
        return ["make-random-adapter", "--model", "MODEL", "--output", "ADAPTER",
                *LORA_ARGS, "--std", str(self.lora), "--seed", str(LORA_SEED)]


# The adapters: rank 2 on every projection (q/k/v/o and gate/up/down; phi3's fused qkv_proj and
# gate_up_proj), alpha 4, normal A and B of the case's std, seed 1. The std moves the mean NLL
# by ~0.1-1 nats (see LORA_STD).
LORA_ARGS = ["--lora-r", "2", "--lora-alpha", "4", "--target-modules", "all-linear"]
LORA_SEED = 1


# Every architecture with make-tiny-model's default weight type (q4_1), llama with Llama 3's
# rope scaling and phi3 with LongRoPE (--rope-freqs), each with a random LoRA; then llama with
# every other weight type make-tiny-model writes.
# The adapters' std: 0.12 raises the mean NLL of the sampled sequences by 0.14-0.45 nats
# (KL(base || adapted) per position: ~0.04 at std 0.05, ~0.2 at 0.1, ~0.27 at 0.12); qwen2
# needs 0.18 for as much (0.12: ~0.1).
LORA_STD = 0.12
WEIGHT_TYPES = ["f32", "f16", "bf16", "q4_0", "q5_0", "q5_1", "q8_0",
                "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]
CASES = [
    TinyCase("llama", lora=LORA_STD),
    TinyCase("mistral", lora=LORA_STD),
    TinyCase("qwen2", lora=0.18),
    TinyCase("qwen3", lora=LORA_STD),
    TinyCase("gemma3", lora=LORA_STD),
    TinyCase("phi3", lora=LORA_STD),
    TinyCase("llama", rope_freqs=True, lora=LORA_STD),
    TinyCase("phi3", rope_freqs=True, lora=LORA_STD),
    TinyCase("phi3", rope_freqs=True, rope_original_context=16, lora=LORA_STD),
    TinyCase("phi3", rope_dims=48, lora=LORA_STD),
    *[TinyCase("llama", weights=w) for w in WEIGHT_TYPES],
]


def sequences() -> list[list[int]]:
    rng = np.random.default_rng(SEQUENCE_SEED)
    return [[int(t) for t in rng.integers(0, VOCAB, n)] for n in SEQUENCE_LENS]


def llama_cpp_copy(src: Path, dst: Path) -> str:
    """`src` as llama.cpp loads it (see the docstring, step 3); returns its architecture name."""
    reader = GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    cpp_arch = ARCHS[arch].llama_cpp_name or arch
    writer = GGUFWriter(str(dst), cpp_arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # GGUFWriter writes these itself
        key = field.name
        if key.startswith(arch + "."):
            key = cpp_arch + key[len(arch):]
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), kind, sub_type=sub)
    assert "tokenizer.ggml.model" not in reader.fields
    n_vocab = next(int(t.shape[1]) for t in reader.tensors if t.name == "token_embd.weight")
    writer.add_key_value(f"{cpp_arch}.vocab_size", n_vocab, GGUFValueType.UINT32)
    writer.add_key_value("tokenizer.ggml.model", "no_vocab", GGUFValueType.STRING)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    return cpp_arch


def llama_cpp_adapter(src: Path, dst: Path, cpp_arch: str) -> Path:
    """The adapter `src` for llama.cpp's copy of its model: `src` itself, or (mistral) a copy
    whose general.architecture is llama.cpp's name (llama_adapter_lora_init refuses an adapter
    of another architecture: "model arch and LoRA arch mismatch"), same keys and tensors
    otherwise."""
    reader = GGUFReader(str(src))
    if reader.fields["general.architecture"].contents() == cpp_arch:
        return src
    writer = GGUFWriter(str(dst), cpp_arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    return dst


def to_f32(src: Path, dst: Path) -> None:
    """llama.cpp's own ALL_F32 conversion (its dequantization, exact)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 1
    with suppress_stdout_stderr(disable=False):  # its per-tensor log
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                            ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize failed ({rc})"


def llama_cpp_logits(model: Path, seqs: list[list[int]], f32_cache: bool,
                     lora: Path | None = None) -> list[np.ndarray]:
    # n_ctx = LONG_LEN: below the phi3+rope_freqs case's original context (2048), so llama.cpp
    # takes LongRoPE's short factors (llama_model::get_rope_factors), and above the @16 case's,
    # so the long ones — as afinador does for these sequences (24-128 ids, each its context).
    kwargs = dict(model_path=str(model), logits_all=True, n_ctx=LONG_LEN, n_batch=LONG_LEN,
                  n_threads=1, n_threads_batch=1, verbose=False)
    if f32_cache:
        kwargs["type_k"] = kwargs["type_v"] = llama_cpp.GGML_TYPE_F32
    if lora is not None:
        kwargs["lora_path"] = str(lora)  # scale 1: (alpha / r) B A
    llm = llama_cpp.Llama(**kwargs)
    assert llm.n_vocab() == VOCAB
    out = []
    for ids in seqs:
        llm.reset()
        llm.eval(ids)
        out.append(np.array(llm.scores[: len(ids)], dtype=np.float64))
    del llm
    return out


def token_logprobs(logits: np.ndarray, ids: list[int]) -> np.ndarray:
    """log p(ids[pos] | ids[:pos]) for pos = 1..n-1."""
    lp = log_softmax(logits[:-1])
    return lp[np.arange(len(ids) - 1), np.asarray(ids[1:])]


# Features the f64 forward can drop: (name, applies to this model?, attribute changes).
# `sensitivity` records how far the per-token log-probs move without each.
ABLATIONS = [
    ("rope_pairs", lambda m: True, lambda m: {"rope_neox": not m.rope_neox}),
    ("qk_norm", lambda m: m.qk_norm, lambda m: {"qk_norm": False}),
    ("qkv_bias", lambda m: m.qkv_bias,
     lambda m: {"w": {k: v for k, v in m.w.items() if not k.endswith(".bias")}}),
    ("rope_freqs", lambda m: m.rope_freqs is not None, lambda m: {"rope_freqs": None}),
    ("sliding_window", lambda m: any(m.layer_swa), lambda m: {"layer_swa": [False] * m.n_layer}),
    # phi3's fused projections cut in another order: q | v | k, and up | gate.
    ("qkv_split", lambda m: m.fused, lambda m: {"w": m.w | m.split_fused(qkv="qvk")}),
    ("gate_up_split", lambda m: m.fused,
     lambda m: {"w": m.w | m.split_fused(gate_first=False)}),
    # LongRoPE: the other set of factors (the long ones instead of the short, or the short
    # instead of the long past the original context; "rope_freqs" above drops the short ones),
    # and no attention factor.
    ("rope_factors_long", lambda m: m.rope_factors_long is not None,
     lambda m: {"rope_freqs": m.rope_factors_long, "rope_factors_long": m.rope_freqs}),
    ("rope_attn_factor", lambda m: m.rope_attn_factor != 1.0, lambda m: {"rope_attn_factor": 1.0}),
    # A partial rotary embedding rotating the whole head instead.
    ("rope_dims", lambda m: m.n_rot < m.head_dim, lambda m: {"n_rot": m.head_dim}),
]


def sensitivity(model: Model, seqs: list[list[int]], ref: list[np.ndarray]) -> dict[str, float]:
    out = {}
    for name, applies, changes in ABLATIONS:
        if not applies(model):
            continue
        saved = {}
        for attr, value in changes(model).items():
            saved[attr] = getattr(model, attr)
            setattr(model, attr, value)
        try:
            moved = max(float(np.abs(token_logprobs(model.forward(ids), ids) - r).max())
                        for ids, r in zip(seqs, ref))
        finally:
            for attr, value in saved.items():
                setattr(model, attr, value)
        out[name] = round(moved, 6)
    return out


def weight_types(path: Path) -> dict[str, str]:
    """The ggml type of the embedding and of each kind of layer-0 tensor."""
    reader = GGUFReader(str(path))
    return {t.name.removeprefix("blk.0.").removesuffix(".weight"): t.tensor_type.name
            for t in reader.tensors
            if t.name == "token_embd.weight" or t.name.startswith("blk.0.")}


def rounded(values, digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in values]


def sample_sequences(model: Model) -> list[list[int]]:
    """Token ids the base model writes: a seeded random first id, then each next id drawn from
    the f64 forward's distribution (temperature 1)."""
    rng = np.random.default_rng(LORA_SEQUENCE_SEED)
    out = []
    for n in LORA_SEQUENCE_LENS:
        ids = [int(rng.integers(0, VOCAB))]
        while len(ids) < n:
            p = np.exp(log_softmax(model.forward(ids, last_only=True)[-1]))
            ids.append(int(rng.choice(VOCAB, p=p / p.sum())))
        out.append(ids)
    return out


def run_lora(case: TinyCase, afinador: str, path: Path, model: Model, cpp_arch: str,
             cpp_path: Path, cpp_f32_path: Path) -> dict:
    """The case's random adapter in llama.cpp (see the docstring, step 5); `model`: the f64
    forward of the case's file, `cpp_path` and `cpp_f32_path` llama.cpp's copies of it."""
    stem = path.with_suffix("")
    adapter_dir = Path(f"{stem}_adapter")
    merged = Path(f"{stem}_merged.gguf")
    fill = {"MODEL": str(path), "ADAPTER": str(adapter_dir), "MERGED": str(merged)}
    command = case.adapter_command()
    merge_command = ["merge", "--model", "MODEL", "--adapter", "ADAPTER", "--output", "MERGED",
                     "--merged-type", "f32"]
    for cmd in (command, merge_command):
        subprocess.run([afinador, *[fill.get(a, a) for a in cmd]], check=True,
                       capture_output=True)
    adapter = adapter_dir / "adapter.gguf"
    cpp_adapter = llama_cpp_adapter(adapter, Path(f"{stem}_cpp_adapter.gguf"), cpp_arch)
    cpp_merged = Path(f"{stem}_cpp_merged.gguf")
    assert llama_cpp_copy(merged, cpp_merged) == cpp_arch

    seqs = sample_sequences(model)
    adapted = Model(path, adapter=adapter)  # the f64 forward with W + (alpha / r) B A
    runs = {  # name: llama.cpp's logits per sequence
        "cpp_base": llama_cpp_logits(cpp_path, seqs, f32_cache=False),
        "cpp": llama_cpp_logits(cpp_path, seqs, f32_cache=False, lora=cpp_adapter),
        "f32_base": llama_cpp_logits(cpp_f32_path, seqs, f32_cache=True),
        "f32": llama_cpp_logits(cpp_f32_path, seqs, f32_cache=True, lora=cpp_adapter),
        "merged": llama_cpp_logits(cpp_merged, seqs, f32_cache=False),
    }
    entries = []
    for i, ids in enumerate(seqs):
        lp_base = token_logprobs(model.forward(ids), ids)
        lp = token_logprobs(adapted.forward(ids), ids)
        cpp = {name: token_logprobs(logits[i], ids) for name, logits in runs.items()}
        nll = {name: float(-x.mean()) for name, x in cpp.items()}
        dev = lambda x, ref: float(f"{np.abs(x - ref).max():.2e}")  # noqa: E731
        entries.append({
            "ids": ids,
            "logprobs_base": rounded(lp_base),
            "logprobs": rounded(lp),
            "logprobs_llama_cpp_f32": rounded(cpp["f32"]),
            "nll_base": float(-lp_base.mean()),
            "nll": float(-lp.mean()),
            "nll_llama_cpp_base": nll["cpp_base"],
            "nll_llama_cpp": nll["cpp"],
            "nll_llama_cpp_f32_base": nll["f32_base"],
            "nll_llama_cpp_f32": nll["f32"],
            "nll_llama_cpp_merged": nll["merged"],
            "effect": float(lp_base.mean() - lp.mean()),
            "effect_llama_cpp": nll["cpp"] - nll["cpp_base"],
            "effect_llama_cpp_f32": nll["f32"] - nll["f32_base"],
            "max_abs_dlogp_adapter": dev(lp, lp_base),
            "max_abs_dlogp_llama_cpp_f32_base": dev(cpp["f32_base"], lp_base),
            "max_abs_dlogp_llama_cpp_f32": dev(cpp["f32"], lp),
            "max_abs_dlogp_llama_cpp_merged": dev(cpp["merged"], lp),
        })
    out = {
        "command": command,
        "adapter_sha256": sha256_file(adapter),
        "llama_cpp_adapter_sha256": sha256_file(cpp_adapter),
        "merge_command": merge_command,
        "merged_sha256": sha256_file(merged),
        "llama_cpp_merged_sha256": sha256_file(cpp_merged),
    }
    for key in ("max_abs_dlogp_adapter", "max_abs_dlogp_llama_cpp_f32_base",
                "max_abs_dlogp_llama_cpp_f32", "max_abs_dlogp_llama_cpp_merged"):
        out[key] = max(e[key] for e in entries)
    out["sequences"] = entries
    # What llama.cpp must show for the data to be worth keeping: its F32 run computes the f64
    # forward (with and without the adapter), the merged file scores what the adapter scores,
    # and the adapter's effect is well above llama.cpp's activation-quantization noise.
    f32_tol = 1e-3 if case.arch == "gemma3" else 1e-4  # gemma3: ggml's f16-table GELU
    assert out["max_abs_dlogp_llama_cpp_f32"] <= f32_tol, out["max_abs_dlogp_llama_cpp_f32"]
    assert out["max_abs_dlogp_llama_cpp_f32_base"] <= f32_tol
    for e in entries:
        merged_off = abs(e["nll_llama_cpp_merged"] - e["nll"])
        assert merged_off <= 5e-3 * e["nll"], e["nll_llama_cpp_merged"]
        assert 0.05 <= e["effect"] <= 1.0, e["effect"]
        effect_off = abs(e["effect_llama_cpp"] - e["effect"])
        assert effect_off <= 0.1 * e["effect"], e["effect_llama_cpp"]
    effects = ", ".join(f"{e['effect']:+.3f}/{e['effect_llama_cpp']:+.3f}" for e in entries)
    merged_rel = max(abs(e["nll_llama_cpp_merged"] - e["nll"]) / e["nll"] for e in entries)
    print(f"{'':20s} LoRA std {case.lora}: effect f64/llama.cpp {effects}; max|dlogp| adapter "
          f"{out['max_abs_dlogp_adapter']:.2f}, llama.cpp F32 without/with "
          f"{out['max_abs_dlogp_llama_cpp_f32_base']:.1e}/"
          f"{out['max_abs_dlogp_llama_cpp_f32']:.1e}, merged "
          f"{out['max_abs_dlogp_llama_cpp_merged']:.1e} (nll rel {merged_rel:.3%})", flush=True)
    return out


def run_case(case: TinyCase, afinador: str, tmp: Path, seqs: list[list[int]]) -> dict:
    path = tmp / (case.name.replace("/", "_").replace("+", "_") + ".gguf")
    cmd = [str(path) if a == "MODEL" else a for a in case.command()]
    subprocess.run([afinador, *cmd], check=True, capture_output=True)
    model = Model(path)
    assert model.arch == case.arch and model.vocab == VOCAB

    cpp_path = tmp / ("cpp_" + path.name)
    cpp_arch = llama_cpp_copy(path, cpp_path)
    cpp_f32_path = tmp / ("cpp_f32_" + path.name)
    to_f32(cpp_path, cpp_f32_path)
    cpp_logits = llama_cpp_logits(cpp_path, seqs, f32_cache=False)
    cpp_f32_logits = llama_cpp_logits(cpp_f32_path, seqs, f32_cache=True)

    entries, ref_lps = [], []
    for ids, cpp, cpp_f32 in zip(seqs, cpp_logits, cpp_f32_logits):
        logits = model.forward(ids)
        lp = token_logprobs(logits, ids)
        ref_lps.append(lp)
        lp_cpp = token_logprobs(cpp, ids)
        lp_f32 = token_logprobs(cpp_f32, ids)
        top2 = np.sort(logits, axis=-1)[:, -2:]
        probs = np.exp(log_softmax(logits))
        entries.append({
            "ids": ids,
            "logprobs": rounded(lp),
            "logprobs_llama_cpp": rounded(lp_cpp),
            "nll": float(-lp.mean()),
            "nll_llama_cpp": float(-lp_cpp.mean()),
            "nll_llama_cpp_f32": float(-lp_f32.mean()),
            # (llama.cpp's F32 log-probs themselves are not stored: they are within this of
            # `logprobs`.)
            "max_abs_dlogp_llama_cpp_f32": float(f"{np.abs(lp_f32 - lp).max():.2e}"),
            "argmax": [int(a) for a in logits.argmax(axis=-1)],
            "argmax_agree_llama_cpp": round(float(np.mean(cpp.argmax(axis=-1)
                                                          == logits.argmax(axis=-1))), 4),
            "argmax_margin": rounded(top2[:, 1] - top2[:, 0], 4),
            # How peaked the next-token distributions are (ln 256 = 5.545 is uniform).
            "mean_entropy": round(float(-(probs * np.log(probs)).sum(axis=-1).mean()), 5),
            "max_prob": round(float(probs.max()), 5),
            "logit_std": round(float(logits.std(axis=-1).mean()), 5),
        })
    out = {
        "name": case.name,
        "arch": case.arch,
        "rope_freqs": case.rope_freqs,
        **({} if case.rope_original_context is None
           else {"rope_original_context": case.rope_original_context}),
        **({} if case.rope_dims is None else {"rope_dims": case.rope_dims}),
        "weight_types": weight_types(path),
        "command": case.command(),
        "model_sha256": sha256_file(path),
        "llama_cpp_arch": cpp_arch,
        "llama_cpp_model_sha256": sha256_file(cpp_path),
        "sensitivity": sensitivity(model, seqs, ref_lps),
        "sequences": entries,
    }
    dev = max(float(np.abs(np.asarray(e["logprobs_llama_cpp"]) - e["logprobs"]).max())
              for e in entries)
    nll_rel = max(abs(e["nll_llama_cpp"] - e["nll"]) / e["nll"] for e in entries)
    agree = min(e["argmax_agree_llama_cpp"] for e in entries)
    out["max_abs_dlogp_llama_cpp"] = round(dev, 6)
    out["max_abs_dlogp_llama_cpp_f32"] = max(e["max_abs_dlogp_llama_cpp_f32"] for e in entries)
    print(f"{case.name:20s} nll {entries[0]['nll']:.4f}  max|dlogp| llama.cpp "
          f"{out['max_abs_dlogp_llama_cpp']:.2e} (F32 {out['max_abs_dlogp_llama_cpp_f32']:.1e})  "
          f"nll rel {nll_rel:.3%}  argmax agree {agree:.0%}  "
          f"entropy {entries[0]['mean_entropy']:.3f}  max p {max(e['max_prob'] for e in entries):.3f}  "
          f"sensitivity {out['sensitivity']}", flush=True)
    if case.lora is not None:
        out["lora"] = run_lora(case, afinador, path, model, cpp_arch, cpp_path, cpp_f32_path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--afinador", default="target/debug/afinador")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    t0 = time.perf_counter()
    seqs = sequences()
    afinador_version = subprocess.run([args.afinador, "--version"], check=True,
                                      capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [run_case(c, args.afinador, Path(tmp), seqs) for c in CASES]
    out = {
        "generator": GENERATOR,
        "afinador": afinador_version,
        "llama_cpp_python": llama_cpp.__version__,
        "gguf": version("gguf"),
        "numpy": np.__version__,
        "notes": (
            "Tiny random GGUFs from `afinador make-tiny-model` (`command`, MODEL = the output "
            "path; `model_sha256` of the file). Per sequence of ids (no BOS): logprobs = "
            "log p(ids[i] | ids[:i]) for i = 1..n-1 from the f64 numpy forward "
            "(reference_forward.py's Model over gguf's dequantize); logprobs_llama_cpp: "
            "llama.cpp on the file as made (Q8 activations for quantized matmuls, f16 KV "
            "cache); nll_llama_cpp_f32 and max_abs_dlogp_llama_cpp_f32 (max |its log-probs - "
            "logprobs|): llama.cpp on its ALL_F32 conversion with an f32 KV cache. "
            "llama.cpp loads a copy with tokenizer.ggml.model = no_vocab, "
            "{arch}.vocab_size and general.architecture as llama.cpp names it "
            "(llama_cpp_arch; mistral -> llama), same tensors (llama_cpp_model_sha256). "
            "nll = -mean(logprobs); argmax and argmax_margin (top-1 minus top-2 logit) at "
            "every position (length n), argmax_agree_llama_cpp the fraction of positions where "
            "llama.cpp's argmax (the file as made) is the same. The distributions are nearly flat (random weights): "
            "mean_entropy, max_prob and logit_std say how flat; sensitivity = max |delta "
            "logprob| when the f64 forward drops one feature of the case. lora (architecture "
            "cases): a seeded random adapter (command, ADAPTER = its directory, sha256 of its "
            "adapter.gguf; llama_cpp_adapter_sha256: what llama.cpp loads, renamed to llama "
            "for mistral) and afinador's f32 merge of it (merge_command, MERGED); per "
            "sequence of ids the base model writes (sampled from the f64 forward): "
            "logprobs_base / logprobs from the f64 forward without / with the adapter merged, "
            "logprobs_llama_cpp_f32 from llama.cpp's ALL_F32 conversion with lora_path and an "
            "f32 KV cache; nll_* the mean NLLs (llama_cpp: the file as made, f16 KV cache; "
            "merged: llama.cpp on a no_vocab copy of the merged file); effect = adapted minus "
            "base mean NLL; max_abs_dlogp_* the largest per-token differences (adapter: how "
            "far the adapter moves the f64 log-probs; llama_cpp_f32(_base): llama.cpp's F32 "
            "run with (without) the adapter against the f64 forward; llama_cpp_merged: "
            "llama.cpp on the merged file against the f64 adapted forward)."
        ),
        "cases": cases,
    }
    write_json(Path(args.out), out)
    print(f"wrote {args.out} ({len(cases)} cases, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
