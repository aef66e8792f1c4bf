#!/usr/bin/env python3
"""The PEFT tensor names and shapes Hugging Face expects, and transformers + PEFT running
afinador's PEFT export, for a tiny model of every architecture.

Why: afinador writes LoRA adapters as PEFT directories (adapter_config.json +
adapter_model.safetensors) for a GGUF base model; someone loads them with
`PeftModel.from_pretrained` on the Hugging Face model. PEFT loads with strict=False, so a
wrong tensor name is skipped silently and a wrong row order is loaded silently. This script
asks transformers and PEFT themselves (no hand-written name list) and writes
`tests/data/peft_names.json`, which `tests/handoff.rs` compares afinador's exports against.

Per architecture of CASES:

1. `afinador make-tiny-model` (2 layers, C 256, FF 512, 4 heads / 2 KV heads of 64, vocab
   256, F32 weights: the shape of tiny_models.py's cases; `command`, MODEL = the output);
   its GGUF metadata gives the Hugging Face config (`hf_config`: `AutoConfig.for_model(
   hf_model_type, **hf_config)`; tie_word_embeddings = no `output.weight`; gemma3: the
   attention scale 1/sqrt(head_dim) as `query_pre_attn_scalar`, the per-layer sliding window
   pattern as `layer_types`, 10000 as the sliding layers' RoPE base, as llama.cpp reads the
   file). transformers' own GGUF config parsing gets several of these wrong for afinador's
   files (`gguf_config_differences`: no vocab size without a tokenizer; head_dim for
   qwen3/gemma3 without `attention.key_length`; gemma3's pattern and scale), so the config is
   built here and only the weights come from transformers' GGUF loader.
2. `expected`: `AutoModelForCausalLM.from_config(config)` wrapped by
   `get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))`:
   the sorted (name, shape) of `get_peft_model_state_dict(model)`, which is what
   `save_pretrained` writes into adapter_model.safetensors; `target_modules` = the module
   names PEFT matched (`peft_config.target_modules`). The explicit list of the
   architecture's projection names gives the same tensors (asserted).
3. afinador's adapter: `afinador make-random-adapter` (`adapter_command`: r 4, alpha 8,
   all-linear, std 0.1, seed 1; ADAPTER = its directory, which holds PEFT files and
   adapter.gguf) and `afinador export --to peft` from its adapter.gguf (`export_command`,
   PEFT = the output: the GGUF -> PEFT path, q/k rows put back in Hugging Face order). Both
   directories must have exactly `expected`'s names and shapes, F32, metadata
   {"format": "pt"}, the same tensors bit for bit, and an adapter_config.json that
   `LoraConfig.from_pretrained` reads with the same r, alpha and target modules as step 2.
4. transformers loads the GGUF (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...,
   config=...)`, which undoes llama.cpp's q/k row permutation for llama) in float64, every
   weight from the file (`output_loading_info`). Mistral: transformers 5.25 cannot load any
   GGUF into MistralForCausalLM (`get_gguf_hf_weights_map`: "Unknown gguf model_type:
   mistral in gguf-py"), so a copy of the file that says `general.architecture` llama (as
   llama.cpp's converter writes Mistral) is loaded into LlamaForCausalLM and its weights
   moved into MistralForCausalLM (the same parameter names).
   `PeftModel.from_pretrained` loads the export; every LoRA parameter of the model must
   equal the file's tensor of the same name (no missing or unexpected LoRA keys:
   `set_peft_model_state_dict`'s load_result is checked too). Then per text of TEXTS
   (ASCII; the tokenizer is the JSON's `tokenizer`: one token per byte, id = the byte, as a
   byte-level BPE tokenizer.json with no merges) the per-token log-probs of the base model
   and of the model with the adapter (`logprobs_base`, `logprobs_adapter`), and afinador's
   own (`afinador score --tokenizer --adapter PEFT`): `max_abs_dlogp_base` /
   `max_abs_dlogp_adapter` are afinador minus transformers; `effect` the adapter's largest
   per-token move; `sensitivity` how far the transformers log-probs would move if afinador
   had written the rows in the other order (q/k lora_B in llama.cpp's permuted order;
   phi3: gate and up swapped in gate_up_proj's lora_B, k and v swapped in qkv_proj's).

What it found (transformers 5.25, PEFT 0.21): every architecture's export has exactly the
names and shapes PEFT expects, PEFT sets every LoRA parameter from it, and afinador's
per-token log-probs are within 1.6e-6 (base) / 2.6e-6 (adapter) of transformers + PEFT in
float64, where a wrong row order would move them by 0.48-1.9 nats. The names fit the
*ForCausalLM classes, and from C 2560 on (Gemma 3 >= 4B on the Hub is
Gemma3ForConditionalGeneration) the multimodal model's decoder (case gemma3@2560, MULTIMODAL).

Run from the repository root with the Hugging Face venv (README.md), about 15 s:

    ~/.cache/afinador/hf-venv/bin/python scripts/reference/peft_names.py --afinador /tmp/afinador

`tests/handoff.rs` remakes each model and adapter with the recorded commands, checks the
model's sha256, compares the export's safetensors header and adapter_config.json with
`expected` and `target_modules`, and scores TEXTS with afinador against the log-probs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loading progress bars
from gguf import GGUFReader, GGUFValueType, GGUFWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import sha256_file, write_json  # noqa: E402

OUT = "tests/data/peft_names.json"
SHAPE = ["--layers", "2", "--embd", "256", "--ff", "512", "--heads", "4", "--kv-heads", "2",
         "--vocab", "256", "--seed", "1", "--weights", "f32"]
R, ALPHA, STD, SEED = 4, 8, 0.1, 1
ADAPTER_ARGS = ["--lora-r", str(R), "--lora-alpha", str(ALPHA), "--target-modules", "all-linear",
                "--std", str(STD), "--seed", str(SEED)]
# afinador architecture -> (Hugging Face model_type, the projection names PEFT can target)
CASES = {
    "llama": ("llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "mistral": ("mistral", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "qwen2": ("qwen2", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "qwen3": ("qwen3", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "gemma3": ("gemma3_text", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "phi3": ("phi3", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]),
}
# Gemma 3 4B, 12B and 27B are Gemma3ForConditionalGeneration in transformers: the decoder under
# model.language_model, beside a vision tower. afinador writes those names from C 2560 on
# (core/src/model/arch.rs, hf_multimodal_from_width), so this case is a gemma3 file 2560 wide
# (one layer, 10 heads of 256, FF 64, F16: 41 MB); its Hugging Face model gets a tiny SigLIP tower (TINY_VISION)
# and the decoder's weights from transformers' GGUF loader (as Gemma3ForCausalLM).
MULTIMODAL = {
    "gemma3@2560": ("gemma3", ["--layers", "1", "--embd", "2560", "--ff", "64", "--heads", "10",
                               "--kv-heads", "5", "--vocab", "256", "--seed", "1",
                               "--weights", "f16"]),
}
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=2, image_size=28, patch_size=14)
TEXTS = [
    "The quick brown fox jumps over the lazy dog, 0123456789 times.",
    "def soma(a, b):\n    return a + b  # Resposta: C\n",
]


def compact(path: Path) -> None:
    """write_json's output with arrays of strings and [name, shape] pairs on one line."""
    text = path.read_text(encoding="utf-8")
    s = r'"(?:[^"\\\n]|\\.)*"'
    text = re.sub(r"\[\n\s*(" + s + r"),\n\s*(\[[^\]\n]*\])\n\s*\]", r"[\1, \2]", text)
    text = re.sub(r"\[\n\s*((?:" + s + r",\n\s*)*" + s + r")\n\s*\]",
                  lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text)
    path.write_text(text, encoding="utf-8")


def run(afinador: str, args: list[str]) -> str:
    return subprocess.run([afinador, *args], check=True, capture_output=True, text=True).stdout


def fill(cmd: list[str], **paths) -> list[str]:
    return [str(paths.get(a, a)) for a in cmd]


def byte_tokenizer() -> dict:
    """tokenizer.json with one token per byte, id = the byte (GPT-2's byte-to-unicode map)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): b for b, c in sorted(zip(bs, cs))}
    level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", **level},
            "post_processor": None, "decoder": {"type": "ByteLevel", **level},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}


def meta(path: Path) -> tuple[dict, dict]:
    reader = GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    shapes = {t.name: [int(x) for x in reversed(t.shape)] for t in reader.tensors}  # numpy order
    return fields, shapes


def hf_config(arch: str, fields: dict, shapes: dict) -> dict:
    """The Hugging Face config kwargs for afinador's file, as llama.cpp reads it."""
    g = lambda k, d=None: fields.get(f"{arch}.{k}", d)  # noqa: E731
    n_embd, n_head = int(g("embedding_length")), int(g("attention.head_count"))
    head_dim = int(g("attention.key_length", n_embd // n_head))
    cfg = {
        "vocab_size": shapes["token_embd.weight"][0],
        "hidden_size": n_embd,
        "intermediate_size": int(g("feed_forward_length")),
        "num_hidden_layers": int(g("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(g("attention.head_count_kv")),
        "head_dim": head_dim,
        "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")),
        "max_position_embeddings": int(g("context_length")),
        "tie_word_embeddings": "output.weight" not in shapes,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(g("rope.freq_base"))},
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
    }
    assert not any(k.startswith(f"{arch}.rope.scaling") for k in fields), "rope scaling: not handled"
    assert "rope_freqs.weight" not in shapes, "rope factors: not handled"
    if arch == "phi3":
        del cfg["head_dim"]  # Phi3Config: hidden_size // num_attention_heads
        assert head_dim == n_embd // n_head
        cfg["original_max_position_embeddings"] = cfg["max_position_embeddings"]
    if arch == "gemma3":
        # llama_model_gemma3::load_arch_hparams: SWA layers il % n < n - 1, their RoPE base
        # rope.freq_base_swa (default 10000), q scaled by 1/sqrt(head_dim).
        n = int(g("attention.sliding_window_pattern", 6))
        cfg["sliding_window"] = int(g("attention.sliding_window"))
        cfg["layer_types"] = ["sliding_attention" if n == 0 or i % n < n - 1 else "full_attention"
                              for i in range(cfg["num_hidden_layers"])]
        cfg["query_pre_attn_scalar"] = head_dim
        cfg["rope_parameters"] = {
            "full_attention": cfg["rope_parameters"],
            "sliding_attention": {"rope_type": "default",
                                  "rope_theta": float(g("rope.freq_base_swa", 10000.0))},
        }
        cfg["final_logit_softcapping"] = None
        cfg["attn_logit_softcapping"] = None
    if arch == "mistral":
        cfg["sliding_window"] = None
    return cfg


def config(model_type: str, kwargs: dict):
    from transformers import AutoConfig
    return AutoConfig.for_model(model_type, **kwargs)


def peft_expected(model_type: str, kwargs: dict, modules: list[str]) -> tuple[list, list[str]]:
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    def names(target):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config(model_type, kwargs))
        model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=target))
        sd = get_peft_model_state_dict(model)
        # PEFT 0.21 expands all-linear to the matched modules' full paths.
        matched = {m.rsplit(".", 1)[-1] for m in model.peft_config["default"].target_modules}
        return sorted([k, list(v.shape)] for k, v in sd.items()), sorted(matched)

    all_linear, targets = names("all-linear")
    explicit, _ = names(modules)
    assert all_linear == explicit, "all-linear and the explicit module list differ"
    assert targets == sorted(modules), f"all-linear matched {targets}"
    return all_linear, targets


def multimodal_model(kw: dict):
    """Gemma3ForConditionalGeneration with the text config `kw` and a tiny vision tower."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration
    cfg = Gemma3Config(text_config=config("gemma3_text", kw).to_dict(), vision_config=TINY_VISION,
                       mm_tokens_per_image=4)
    torch.manual_seed(0)
    return Gemma3ForConditionalGeneration(cfg)


def peft_names_of(model, lora_config) -> list:
    from peft import get_peft_model, get_peft_model_state_dict
    sd = get_peft_model_state_dict(get_peft_model(model, lora_config))
    return sorted([k, list(v.shape)] for k, v in sd.items())


def peft_expected_multimodal(kw: dict, modules: list[str]) -> list:
    """The decoder's LoRA tensors of the multimodal model (the vision tower's left out)."""
    from peft import LoraConfig
    names = peft_names_of(multimodal_model(kw), LoraConfig(r=R, lora_alpha=ALPHA,
                                                           target_modules=modules))
    decoder = [n for n in names if ".language_model." in n[0]]
    assert decoder and all(".vision_tower." in n[0] for n in names if n not in decoder), names
    return decoder


def multimodal_from_text(text_model, kw: dict):
    """The multimodal model with `text_model`'s weights in its decoder, float64."""
    cg = multimodal_model(kw)
    sd = {("model.language_model." + k[len("model."):] if k.startswith("model.") else k): v
          for k, v in text_model.state_dict().items()}
    missing, unexpected = cg.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(".vision_tower." in k or "multi_modal_projector" in k
               for k in missing), missing
    return cg.to(torch.float64).eval()


def read_safetensors(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta_ = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{name}: {info['dtype']}"
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], "<f4").reshape(info["shape"])
    return meta_, out


def check_export(d: Path, expected: list, targets: list[str], problems: list[str], label: str):
    from peft import LoraConfig
    meta_, tensors = read_safetensors(d / "adapter_model.safetensors")
    got = sorted([k, list(v.shape)] for k, v in tensors.items())
    if meta_ != {"format": "pt"}:
        problems.append(f"{label}: safetensors metadata {meta_}")
    if got != expected:
        want = {k: s for k, s in expected}
        have = {k: s for k, s in got}
        for k in sorted(set(want) | set(have)):
            if want.get(k) != have.get(k):
                problems.append(f"{label}: {k}: PEFT expects {want.get(k)}, afinador wrote {have.get(k)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = LoraConfig.from_pretrained(str(d))
    got_targets = (cfg.target_modules if isinstance(cfg.target_modules, str)
                   else sorted(cfg.target_modules))
    if (cfg.r, cfg.lora_alpha, got_targets) != (R, ALPHA, targets):
        problems.append(f"{label}: adapter_config.json reads as r {cfg.r}, alpha {cfg.lora_alpha}, "
                        f"targets {got_targets}; expected {R}, {ALPHA}, {targets}")
    return tensors


def gguf_copy_as(src: Path, dst: Path, new_arch: str) -> None:
    """`src` with general.architecture (and the key prefix) renamed; same tensors."""
    reader = GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(str(dst), new_arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        key = field.name
        if key.startswith(arch + "."):
            key = new_arch + key[len(arch):]
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()


def hf_from_gguf(arch: str, model_type: str, kwargs: dict, path: Path, tmp: Path):
    """transformers' model with the GGUF's weights (its GGUF loader), in float64."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    load_as = model_type
    if arch == "mistral":
        # transformers 5.25 cannot load a GGUF into MistralForCausalLM (get_gguf_hf_weights_map:
        # "Unknown gguf model_type: mistral in gguf-py", even for a file that says llama, as
        # llama.cpp's converter writes Mistral). Load a copy that says llama into
        # LlamaForCausalLM (the same parameter names and maths; q/k un-permuted) and move the
        # weights over.
        path = tmp / "mistral-as-llama.gguf"
        gguf_copy_as(tmp / "mistral" / "model.gguf", path, "llama")
        load_as = "llama"
    kw = {k: v for k, v in kwargs.items() if not (load_as != model_type and k == "sliding_window")}
    model, info = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, config=config(load_as, kw),
        dtype=torch.float32, output_loading_info=True)
    # A weight the loader did not find would stay at its random init.
    missing = [k for k in info["missing_keys"] if k != "lm_head.weight"]
    assert not missing and not info["mismatched_keys"], info
    n_gguf = len(GGUFReader(str(path)).tensors)
    n_hf = len({p.data_ptr() for p in model.parameters()})
    assert n_hf == n_gguf, f"{n_hf} distinct parameters for {n_gguf} GGUF tensors"
    if load_as != model_type:
        target = AutoModelForCausalLM.from_config(config(model_type, kwargs))
        target.load_state_dict(model.state_dict(), strict=True)
        model = target
    return model.to(torch.float64).eval()


def logprobs(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return np.array([float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)])


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter's q/k row permutation (HF -> GGUF order)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def wrong_orders(arch: str, kw: dict, tensors: dict) -> dict[str, dict]:
    """Adapter tensors with rows in an order afinador must not write."""
    nh, nkv = kw["num_attention_heads"], kw["num_key_value_heads"]
    hd = kw.get("head_dim", kw["hidden_size"] // nh)
    out = {}
    if arch == "phi3":
        ff = kw["intermediate_size"]
        gu, qkv = dict(tensors), dict(tensors)
        for k, v in tensors.items():
            if k.endswith("gate_up_proj.lora_B.weight"):
                gu[k] = np.concatenate([v[ff:], v[:ff]])
            if k.endswith("qkv_proj.lora_B.weight"):
                q, kk, vv = v[:nh * hd], v[nh * hd:(nh + nkv) * hd], v[(nh + nkv) * hd:]
                qkv[k] = np.concatenate([q, vv, kk])
        out["gate_up_swapped"] = gu
        out["qkv_as_q_v_k"] = qkv
    else:
        qk = dict(tensors)
        for k, v in tensors.items():
            if k.endswith("q_proj.lora_B.weight"):
                qk[k] = permute(v, nh)
            if k.endswith("k_proj.lora_B.weight"):
                qk[k] = permute(v, nkv)
        out["qk_lora_B_rows_permuted"] = qk
    return out


def run_case(name: str, afinador: str, tmp: Path, tok_path: Path) -> tuple[dict, list[str]]:
    from peft import LoraConfig, PeftModel, set_peft_model_state_dict
    from transformers import AutoConfig

    multimodal = name in MULTIMODAL
    arch, shape = MULTIMODAL[name] if multimodal else (name, SHAPE)
    model_type, modules = CASES[arch]
    problems: list[str] = []
    d = tmp / name
    d.mkdir()
    model_path, adapter, peft_dir = d / "model.gguf", d / "adapter", d / "peft"
    command = ["make-tiny-model", "--output", "MODEL", "--arch", arch, *shape]
    adapter_command = ["make-random-adapter", "--model", "MODEL", "--output", "ADAPTER", *ADAPTER_ARGS]
    export_command = ["export", "--model", "MODEL", "--adapter", "ADAPTER/adapter.gguf",
                      "--to", "peft", "--output", "PEFT"]
    paths = {"MODEL": model_path, "ADAPTER": adapter, "PEFT": peft_dir,
             "ADAPTER/adapter.gguf": adapter / "adapter.gguf"}
    run(afinador, fill(command, **paths))
    fields, shapes = meta(model_path)
    kw = hf_config(arch, fields, shapes)

    # What transformers' own GGUF config parsing says (for the record).
    parsed = AutoConfig.from_pretrained(str(d), gguf_file=model_path.name).to_dict()
    ours = config(model_type, kw).to_dict()
    differences = {k: {"gguf_parser": parsed.get(k), "used": ours.get(k)}
                   for k in sorted(kw) if parsed.get(k) != ours.get(k) and k not in
                   ("bos_token_id", "eos_token_id", "pad_token_id")}

    if multimodal:
        expected = peft_expected_multimodal(kw, modules)
    else:
        expected, targets = peft_expected(model_type, kw, modules)

    run(afinador, fill(adapter_command, **paths))
    run(afinador, fill(export_command, **paths))
    if multimodal:
        # afinador's target_modules is a pattern: PEFT given it must adapt exactly the decoder's
        # projections of the multimodal model (not the vision tower's q_proj & co.).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            targets = LoraConfig.from_pretrained(str(peft_dir)).target_modules
        got = peft_names_of(multimodal_model(kw), LoraConfig.from_pretrained(str(peft_dir)))
        if got != expected:
            problems.append(f"PEFT given afinador's adapter_config.json (target_modules "
                            f"{targets!r}) adapts {len(got)} tensors, not the decoder's "
                            f"{len(expected)}: {sorted(set(map(tuple, got)) ^ set(map(tuple, expected)))[:4]}")
    made = check_export(adapter, expected, targets, problems, "make-random-adapter")
    exported = check_export(peft_dir, expected, targets, problems, "export --to peft")
    for k in sorted(set(made) & set(exported)):
        if not np.array_equal(made[k], exported[k]):
            problems.append(f"{k}: the PEFT export of adapter.gguf differs from the PEFT files")

    base = hf_from_gguf(arch, model_type, kw, model_path, tmp)
    if multimodal:
        base = multimodal_from_text(base, kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = PeftModel.from_pretrained(base, str(peft_dir))
    pm.eval()
    for w in caught:
        if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower():
            problems.append(f"PeftModel.from_pretrained warned: {w.message}")
    sd = {k: v for k, v in pm.state_dict().items() if ".lora_" in k}
    file_keys = set(exported)
    used = set()
    for k, v in sd.items():
        fk = k.replace(".default.weight", ".weight")
        if fk not in exported:
            problems.append(f"PEFT parameter {k} has no tensor {fk} in the file")
            continue
        used.add(fk)
        if not np.array_equal(v.numpy(), exported[fk].astype(np.float64)):
            problems.append(f"PEFT parameter {k} is not the file's {fk}")
    for k in sorted(file_keys - used):
        problems.append(f"file tensor {k} was not loaded into any PEFT parameter")
    res = set_peft_model_state_dict(pm, {k: torch.from_numpy(v.astype(np.float64))
                                         for k, v in exported.items()})
    lora_missing = [k for k in res.missing_keys if ".lora_" in k]
    if lora_missing or res.unexpected_keys:
        problems.append(f"set_peft_model_state_dict: missing LoRA keys {lora_missing}, "
                        f"unexpected {res.unexpected_keys}")
    scale = [m.scaling["default"] for m in pm.modules()
             if isinstance(getattr(m, "scaling", None), dict) and "default" in m.scaling]
    assert scale and all(s == ALPHA / R for s in scale), scale

    texts = []
    for text in TEXTS:
        ids = json.loads(run(afinador, ["tokenize", "--model", str(model_path), "--tokenizer",
                                        str(tok_path), "--text", text, "--json"]))["ids"]
        assert ids == list(text.encode()), "the byte tokenizer: id = byte"
        lp_adapter = logprobs(pm, ids)
        with pm.disable_adapter():
            lp_base = logprobs(pm, ids)
        sens = {}
        for wrong, tensors in wrong_orders(arch, kw, exported).items():
            set_peft_model_state_dict(pm, {k: torch.from_numpy(v.astype(np.float64))
                                           for k, v in tensors.items()})
            sens[wrong] = float(np.max(np.abs(logprobs(pm, ids) - lp_adapter)))
        set_peft_model_state_dict(pm, {k: torch.from_numpy(v.astype(np.float64))
                                       for k, v in exported.items()})
        ours = {}
        for key, extra in (("base", []), ("adapter", ["--adapter", str(peft_dir)])):
            out = json.loads(run(afinador, ["score", "--model", str(model_path), "--tokenizer",
                                            str(tok_path), "--text", text, "--json", *extra]))
            ours[key] = np.array(out["token_logprobs"])
        d_base = float(np.max(np.abs(ours["base"] - lp_base)))
        d_adapter = float(np.max(np.abs(ours["adapter"] - lp_adapter)))
        effect = float(np.max(np.abs(lp_adapter - lp_base)))
        texts.append({
            "text": text,
            "logprobs_base": [round(float(x), 7) for x in lp_base],
            "logprobs_adapter": [round(float(x), 7) for x in lp_adapter],
            "max_abs_dlogp_base": float(f"{d_base:.3g}"),
            "max_abs_dlogp_adapter": float(f"{d_adapter:.3g}"),
            "effect": round(effect, 4),
            "sensitivity": {k: round(v, 4) for k, v in sens.items()},
        })
        print(f"  {name}: {len(ids)} tokens, afinador vs transformers max |dlogp| base {d_base:.2e} "
              f"adapter {d_adapter:.2e}; adapter effect {effect:.3f}; wrong orders "
              + ", ".join(f"{k} {v:.3f}" for k, v in sens.items()))
        if d_adapter > 2e-4 or d_base > 2e-4:
            problems.append(f"afinador's log-probs differ from transformers+PEFT by {d_base:.2e} "
                            f"(base) / {d_adapter:.2e} (adapter) on {text!r}")
        if any(v < 10 * max(d_adapter, 1e-4) for v in sens.values()) or effect < 0.05:
            problems.append(f"the comparison is too weak on {text!r}: effect {effect}, {sens}")

    case = {
        "name": name,
        "arch": arch,
        "hf_model_type": model_type,
        "hf_class": type(base).__name__,
        "hf_config": kw,
        "gguf_config_differences": differences,
        "command": command,
        "model_sha256": sha256_file(model_path),
        "adapter_command": adapter_command,
        "adapter_sha256": sha256_file(adapter / "adapter_model.safetensors"),
        "export_command": export_command,
        "target_modules": targets,
        "expected": expected,
        "texts": texts,
    }
    print(f"{name}: {type(base).__name__}, {len(expected)} tensors, targets {targets}: "
          + ("ok" if not problems else f"{len(problems)} PROBLEMS"))
    for p in problems:
        print("   ", p)
    return case, problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--afinador", default="target/debug/afinador")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--arch", action="append", help="only these (default: every case)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cases, problems = [], []
    tokenizer = byte_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok_path = tmp / "tokenizer.json"
        tok_path.write_text(json.dumps(tokenizer))
        for name in args.arch or [*CASES, *MULTIMODAL]:
            case, p = run_case(name, args.afinador, tmp, tok_path)
            cases.append(case)
            problems += [f"{name}: {x}" for x in p]
    afinador_version = run(args.afinador, ["--version"]).strip()
    write_json(Path(args.out), {
        "generator": "scripts/reference/peft_names.py",
        "afinador": afinador_version,
        "torch": version("torch"), "transformers": version("transformers"),
        "peft": version("peft"), "safetensors": version("safetensors"),
        "gguf": version("gguf"), "numpy": version("numpy"),
        "notes": (
            "expected = sorted [name, shape] of peft.get_peft_model_state_dict(get_peft_model("
            "AutoModelForCausalLM.from_config(AutoConfig.for_model(hf_model_type, **hf_config)), "
            f"LoraConfig(r={R}, lora_alpha={ALPHA}, target_modules='all-linear'))), i.e. what "
            "save_pretrained writes; target_modules = the modules PEFT matched. texts: "
            "log-probs of the transformers model loaded from the GGUF (float64) without and with "
            "afinador's PEFT export loaded by PeftModel.from_pretrained; ids = the text's bytes "
            "(tokenizer); max_abs_dlogp_* = afinador score minus these; sensitivity = how far "
            "they move with the adapter's rows in a wrong order."),
        "tokenizer": tokenizer,
        "cases": cases,
    })
    compact(Path(args.out))
    if problems:
        print(f"{len(problems)} problems:")
        for p in problems:
            print("  ", p)
        sys.exit(1)


if __name__ == "__main__":
    main()
