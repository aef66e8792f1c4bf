#!/usr/bin/env python3
"""Check an afinador LoRA export against what PEFT and llama.cpp expect.

Reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)
and, optionally, the GGUF LoRA file exported from the same adapter. Writes
nothing. The layout it checks, with where it comes from:

PEFT (huggingface/peft):
  * adapter_config.json: peft_type "LORA", task_type "CAUSAL_LM", r, lora_alpha,
    target_modules, bias "none", use_dora false, fan_in_fan_out false; PEFT
    builds LoraConfig(**json), ignoring unknown keys with a warning
    (src/peft/config.py, PeftConfigMixin.from_peft_type).
  * adapter_model.safetensors: metadata {"format": "pt"} (src/peft/peft_model.py,
    save_pretrained); tensors named
    base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
    and ...mlp.{gate,up,down}_proj..., lora_A [r, in], lora_B [out, r]; on load
    PEFT puts the adapter name back (lora_A.weight -> lora_A.default.weight,
    BaseTuner._remap_adapter_state_dict_for_load in src/peft/tuners/tuners_utils.py;
    older PEFT: _insert_adapter_name_into_state_dict) and loads with strict=False
    (src/peft/utils/save_and_load.py), so a wrong name is skipped, not refused.
  * q_proj / k_proj rows in Hugging Face order (rotate_half RoPE).

llama.cpp (src/llama-adapter.cpp, llama_adapter_lora_init_impl):
  * general.type "adapter", adapter.type "lora", general.architecture = the
    base model's, adapter.lora.alpha of type f32 (gguf_get_val_f32 asserts it);
  * tensors <base>.lora_a / .lora_b; for a base weight ne = [in, out]:
    lora_a.ne = [in, r], lora_b.ne = [r, out];
  * scale = alpha / r (no rsLoRA: an rsLoRA export writes alpha * sqrt(r));
  * lora_b of attn_q / attn_k in GGUF row order: the converter's
    w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)
    (conversion/llama.py, LlamaModel.permute; n_head = KV heads for K).

With --model (the base GGUF), it also checks the shapes against the base
tensors as llama.cpp does, and runs two float64 numpy forwards over the
dequantized base model: one in GGUF convention (GGUF weights + the GGUF LoRA,
adjacent-pair RoPE) and one in Hugging Face convention (q/k weights permuted
back, the PEFT tensors, rotate_half RoPE). Their logits must agree. With
--llama-cpp it also loads the GGUF LoRA into llama.cpp (llama-cpp-python) and
compares its logit change with the numpy one.

The llama.cpp comparison is only sharp on an F32 base model: with quantized
weights llama.cpp quantizes activations to Q8 and its logits are off by about
as much as a wrong row order would make them. Make one with llama.cpp itself:

    python -c "import ctypes, llama_cpp as l; p = l.llama_model_quantize_default_params(); \\
      p.ftype = 0; p.allow_requantize = True; \\
      l.llama_model_quantize(b'models/SmolLM2-135M-Instruct.Q4_1.gguf', b'/tmp/smol_f32.gguf', ctypes.byref(p))"

Run from the repository root, e.g.:

    python scripts/reference/check_peft_layout.py out/adapter --gguf out/adapter.gguf \\
        --n-head 9 --n-head-kv 3 --model /tmp/smol_f32.gguf --llama-cpp

Seen here (SmolLM2-135M shape, r 8, all seven modules, 30 layers, 13 tokens):
the two numpy forwards agree to 1e-13 (to 3e-7 with rsLoRA, the f32 rounding
of alpha·√r); llama.cpp with the GGUF LoRA is off from numpy by an RMS logit
error of 0.005, as without an adapter, and would be off by 0.4 with lora_B of
q/k left in Hugging Face order.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import struct
from pathlib import Path

import numpy as np

MODULES = {  # HF name -> (block, GGUF base name)
    "q_proj": ("self_attn", "attn_q"), "k_proj": ("self_attn", "attn_k"),
    "v_proj": ("self_attn", "attn_v"), "o_proj": ("self_attn", "attn_output"),
    "gate_proj": ("mlp", "ffn_gate"), "up_proj": ("mlp", "ffn_up"),
    "down_proj": ("mlp", "ffn_down"),
}
NAME = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\."
                  r"(\w+_proj)\.lora_(A|B)\.weight$")
TEXT = "The capital of France is Paris, and the capital of Portugal is"


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter (HF -> GGUF row order), verbatim."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse (GGUF -> HF row order)."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def read_safetensors(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Parses the format by hand (8-byte header length, JSON header, data)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    tensors, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        assert info["dtype"] == "F32", f"{name}: dtype {info['dtype']}, afinador writes F32"
        start, stop = info["data_offsets"]
        assert start == end, f"{name}: data is not contiguous"
        end = stop
        tensors[name] = np.frombuffer(data[start:stop], "<f4").reshape(info["shape"])
    assert end == len(data), "the data section has trailing bytes"
    return meta, tensors


def check_peft(adapter_dir: Path) -> tuple[dict, dict]:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    expect = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "bias": "none",
              "use_dora": False, "fan_in_fan_out": False, "inference_mode": True}
    for k, v in expect.items():
        assert cfg.get(k) == v, f"adapter_config.json: {k} = {cfg.get(k)!r}, expected {v!r}"
    r = cfg["r"]
    assert isinstance(r, int) and r > 0, f"r = {r!r}"
    assert isinstance(cfg["lora_alpha"], (int, float)) and cfg["lora_alpha"] > 0
    targets = cfg["target_modules"]
    assert set(targets) <= set(MODULES), f"target_modules {targets}"

    meta, tensors = read_safetensors(adapter_dir / "adapter_model.safetensors")
    assert meta == {"format": "pt"}, f"safetensors metadata {meta}"
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for name, t in tensors.items():
        m = NAME.match(name)
        assert m, f"{name}: not a PEFT LoRA name for a llama decoder layer"
        layer, block, module, half = int(m[1]), m[2], m[3], m[4]
        assert module in targets and MODULES[module][0] == block, name
        pairs.setdefault((layer, module), {})[half] = t
        # What PEFT loads it as (adapter name inserted after lora_A./lora_B.).
        loaded = re.sub(r"weight$", "default.weight", name)
        assert loaded.endswith(f".{module}.lora_{half}.default.weight"), loaded
    for (layer, module), p in pairs.items():
        assert set(p) == {"A", "B"}, f"layer {layer} {module}: {sorted(p)}"
        a, b = p["A"], p["B"]
        assert a.ndim == 2 and a.shape[0] == r, f"{module} lora_A {a.shape}, expected [r, in]"
        assert b.ndim == 2 and b.shape[1] == r, f"{module} lora_B {b.shape}, expected [out, r]"
    print(f"PEFT: {len(tensors)} tensors, r {r}, alpha {cfg['lora_alpha']}, "
          f"rslora {cfg.get('use_rslora', False)}, modules {targets}: ok")
    return cfg, pairs


def check_gguf(path: Path, cfg: dict, pairs: dict, n_head: int, n_head_kv: int):
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(path))
    fields = reader.fields

    def scalar(key):
        f = fields[key]
        return f.contents(), f.types[0]

    assert scalar("general.type")[0] == "adapter"
    assert scalar("adapter.type")[0] == "lora"
    arch = scalar("general.architecture")[0]
    alpha, ty = scalar("adapter.lora.alpha")
    assert ty == GGUFValueType.FLOAT32, f"adapter.lora.alpha has type {ty.name}, llama.cpp needs FLOAT32"
    r = cfg["r"]
    want = cfg["lora_alpha"] * (math.sqrt(r) if cfg.get("use_rslora") else 1.0)
    assert abs(alpha - want) <= 1e-5 * want, f"adapter.lora.alpha {alpha}, expected {want}"

    gg = {t.name: t for t in reader.tensors}
    assert len(gg) == 2 * len(pairs), f"{len(gg)} GGUF tensors for {len(pairs)} pairs"
    heads = {"q_proj": n_head, "k_proj": n_head_kv}
    for (layer, module), p in pairs.items():
        base = f"blk.{layer}.{MODULES[module][1]}.weight"
        ta, tb = gg[base + ".lora_a"], gg[base + ".lora_b"]
        (r_a, in_f), (out_f, r_b) = p["A"].shape, p["B"].shape
        assert list(ta.shape) == [in_f, r], f"{ta.name} ne {list(ta.shape)}, expected [in, r]"
        assert list(tb.shape) == [r, out_f], f"{tb.name} ne {list(tb.shape)}, expected [r, out]"
        assert ta.tensor_type.name == "F32" and tb.tensor_type.name == "F32"
        a = np.asarray(ta.data).reshape(r, in_f)
        b = np.asarray(tb.data).reshape(out_f, r)
        assert np.array_equal(a, p["A"]), f"{ta.name} differs from lora_A"
        hf_b = p["B"]
        expected_b = permute(hf_b, heads[module]) if module in heads else hf_b
        assert np.array_equal(b, expected_b), f"{tb.name} is not lora_B in GGUF row order"
    print(f"GGUF LoRA: arch {arch}, alpha {alpha} (f32), {len(gg)} tensors, "
          "lora_b of q/k = converter permutation of PEFT lora_B: ok")
    return gg, alpha


def check_against_model(model_path: Path, cfg, pairs, gg, alpha, n_head, n_head_kv,
                        gguf_path: Path, use_llama_cpp: bool):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gguf import GGUFReader
    from reference_forward import Model

    base = {t.name: list(t.shape) for t in GGUFReader(str(model_path)).tensors}
    for name, t in gg.items():
        w = base[name.rsplit(".", 1)[0]]
        if name.endswith(".lora_a"):
            assert t.shape[0] == w[0], f"{name}: ne[0] {t.shape[0]} != base ne[0] {w[0]}"
        else:
            assert t.shape[1] == w[1], f"{name}: ne[1] {t.shape[1]} != base ne[1] {w[1]}"
    print("shapes against the base model (llama.cpp's checks): ok")

    model = Model(model_path)
    assert (model.n_head, model.n_head_kv) == (n_head, n_head_kv), "head counts differ"
    r = cfg["r"]
    scale_hf = cfg["lora_alpha"] / (math.sqrt(r) if cfg.get("use_rslora") else r)
    scale_gguf = alpha / r  # llama.cpp's get_scale
    base_w = dict(model.w)

    from llama_cpp import Llama
    tok = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    ids = tok.tokenize(TEXT.encode(), add_bos=False, special=True)

    def run(weights, rope):
        model.w = weights
        model.rope = rope
        return model.forward(ids)

    gguf_rope = Model.rope.__get__(model)

    def hf_rope(x):  # rotate_half on the two halves of each head
        n, _, hs = x.shape
        inv = model.rope_base ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
        th = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
        cos = np.concatenate([np.cos(th)] * 2, -1)[:, None, :]
        sin = np.concatenate([np.sin(th)] * 2, -1)[:, None, :]
        rot = np.concatenate([-x[..., hs // 2:], x[..., :hs // 2]], -1)
        return x * cos + rot * sin

    # The base model in HF convention: q/k rows back in Hugging Face order.
    hf_base = {}
    for k, v in base_w.items():
        m = re.match(r"blk\.\d+\.attn_(q|k)\.weight$", k)
        hf_base[k] = unpermute(v, n_head if m[1] == "q" else n_head_kv) if m else v
    w_gguf, w_hf, w_wrong = dict(base_w), dict(hf_base), dict(base_w)
    for (layer, module), p in pairs.items():
        name = f"blk.{layer}.{MODULES[module][1]}.weight"
        a = np.asarray(gg[name + ".lora_a"].data, np.float64).reshape(p["A"].shape)
        b = np.asarray(gg[name + ".lora_b"].data, np.float64).reshape(p["B"].shape)
        w_gguf[name] = base_w[name] + scale_gguf * (b @ a)
        w_hf[name] = w_hf[name] + scale_hf * (p["B"].astype(np.float64) @ p["A"].astype(np.float64))
        w_wrong[name] = base_w[name] + scale_hf * (p["B"].astype(np.float64) @ p["A"].astype(np.float64))

    plain = run(base_w, gguf_rope)
    hf_plain = run(hf_base, hf_rope)
    with_gguf = run(w_gguf, gguf_rope)
    with_hf = run(w_hf, hf_rope)
    wrong = run(w_wrong, gguf_rope)
    d = lambda x, y: float(np.max(np.abs(x - y)))  # noqa: E731
    print(f"numpy forward, {len(ids)} tokens: |HF conv - GGUF conv| without adapter {d(plain, hf_plain):.2e}, "
          f"with adapter {d(with_gguf, with_hf):.2e}; adapter effect {d(with_gguf, plain):.3f}; "
          f"PEFT lora_B used unpermuted would be off by {d(wrong, with_gguf):.3f}")
    # adapter.lora.alpha is an f32 (alpha·√r for rsLoRA is rounded): allow that much.
    assert d(plain, hf_plain) < 1e-8
    assert d(with_gguf, with_hf) < 1e-8 + 1e-6 * d(with_gguf, plain)
    assert d(with_gguf, plain) > 1e-3, "the adapter has no visible effect: test is too weak"

    if use_llama_cpp:
        def logits(lora):
            kw = {"lora_path": str(gguf_path)} if lora else {}
            llm = Llama(model_path=str(model_path), logits_all=True, n_ctx=256, verbose=False, **kw)
            llm.eval(ids)
            out = np.array(llm.scores[:len(ids)], np.float64)
            llm.close()
            return out
        lc_plain, lc_lora = logits(False), logits(True)
        rms = lambda x, y: float(np.sqrt(np.mean((x - y) ** 2)))  # noqa: E731
        noise, err, err_wrong = rms(lc_plain, plain), rms(lc_lora, with_gguf), rms(lc_lora, wrong)
        print(f"llama.cpp vs numpy, RMS logit error: without adapter {noise:.4f}, with the GGUF "
              f"LoRA {err:.4f}, against a reference using lora_B unpermuted {err_wrong:.4f}; "
              f"adapter effect RMS {rms(with_gguf, plain):.4f}")
        # Only sharp on an F32 base model: llama.cpp quantizes activations to Q8 for
        # quantized weights (see README), which makes `noise` about as large as the effect of a
        # wrong row order.
        assert err < 3 * noise + 0.01 * rms(with_gguf, plain), \
            "llama.cpp applies the GGUF LoRA differently from the numpy reference"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapter_dir", type=Path)
    ap.add_argument("--gguf", type=Path, help="the GGUF LoRA exported from the same adapter")
    ap.add_argument("--n-head", type=int, required=True)
    ap.add_argument("--n-head-kv", type=int, required=True)
    ap.add_argument("--model", type=Path, help="the base model GGUF (needs --gguf)")
    ap.add_argument("--llama-cpp", action="store_true", help="also run llama.cpp with --lora")
    args = ap.parse_args()
    cfg, pairs = check_peft(args.adapter_dir)
    if args.gguf:
        gg, alpha = check_gguf(args.gguf, cfg, pairs, args.n_head, args.n_head_kv)
        if args.model:
            check_against_model(args.model, cfg, pairs, gg, alpha, args.n_head,
                                args.n_head_kv, args.gguf, args.llama_cpp)


if __name__ == "__main__":
    main()
