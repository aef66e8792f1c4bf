#!/usr/bin/env python3
"""Check that a HF `tokenizers` pipeline built from the GGUF vocab reproduces
llama.cpp's tokenization (this is what the Rust side does with the
`tokenizers` crate).

The pipeline: byte-level BPE over tokenizer.ggml.tokens / tokenizer.ggml.merges,
pre-tokenizer Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)], and the 17 CONTROL tokens
(token_type 3, ids 0..16) registered as special added tokens. llama.cpp's
"smollm" pre-tokenizer is the equivalent pair of regexes
  "\\p{N}"  then  GPT-2's "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
(see vendor/llama.cpp/src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_SMOLLM).

Compares against tests/data/tokenizer_cases.json and against llama.cpp on
random strings. Writes nothing. Run from the repository root:

    python scripts/reference/check_hf_tokenizer.py
"""

from __future__ import annotations

import argparse
import json
import random

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CASES = "tests/data/tokenizer_cases.json"
TOKEN_TYPE_CONTROL = 3

FUZZ_POOL = list("aAzZ09 \t\n\r'sStTdDlLmMvVeErR.,!?-_=+()[]{}<>|/\\\"`~@#$%^&*;:") + [
    "\u00a0", "\u3000", "\u2003", "\u0301", "é", "ç", "ã", "²", "½", "Ⅻ", "٣", "١",
    "中", "文", "한", "😀", "\u200d", "🇧", "🇷", "\ufe0f", "ß", "Σ", "ς", "\u0085",
    "\u2028", "\x0b", "\x0c", "\x00", "\x1f", "<|im_start|>", "<|im_end|>",
    "<|endoftext|>", "<filename>", "'ll", "'re", "'ve", "  ", "\n\n", " \n",
]


def build_tokenizer(model_path: str, with_special: bool) -> Tokenizer:
    fields = GGUFReader(model_path).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    merges = fields["tokenizer.ggml.merges"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()

    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab, [tuple(m.split(" ", 1)) for m in merges]))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    if with_special:
        tk.add_special_tokens([
            AddedToken(tokens[i], special=True, normalized=False)
            for i, ty in enumerate(types) if ty == TOKEN_TYPE_CONTROL
        ])
    return tk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--cases", default=DEFAULT_CASES)
    ap.add_argument("--fuzz", type=int, default=5000, help="number of random strings")
    args = ap.parse_args()

    from llama_cpp import Llama

    hf = build_tokenizer(args.model, with_special=True)
    hf_plain = build_tokenizer(args.model, with_special=False)
    llm = Llama(model_path=args.model, vocab_only=True, verbose=False)

    failures = 0

    def check(text: str, ids: list[int], ids_no_special: list[int]) -> None:
        nonlocal failures
        got = hf.encode(text, add_special_tokens=False).ids
        got_plain = hf_plain.encode(text, add_special_tokens=False).ids
        if got != ids or got_plain != ids_no_special:
            failures += 1
            print(f"MISMATCH {text!r}\n  llama.cpp {ids} / {ids_no_special}\n"
                  f"  hf        {got} / {got_plain}")

    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    for c in cases:
        check(c["text"], c["ids"], c["ids_no_special"])

    rng = random.Random(0)
    for _ in range(args.fuzz):
        text = "".join(rng.choice(FUZZ_POOL) for _ in range(rng.randint(1, 30)))
        raw = text.encode("utf-8")
        check(text, llm.tokenize(raw, add_bos=False, special=True),
              llm.tokenize(raw, add_bos=False, special=False))

    print(f"{len(cases)} cases + {args.fuzz} random strings: {failures} mismatches")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
