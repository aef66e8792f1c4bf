#!/usr/bin/env python3
"""Token ids from llama.cpp for more texts on its vocabulary-only GGUFs.

llama.cpp's own test vectors (models/ggml-vocab-NAME.gguf.inp/.out, fetched by
`scripts/fetch-model llama-cpp-vocabs`) are 46 texts per vocabulary without a
special token. This adds, for the same vocabulary files, the ids llama.cpp
gives (`llm.tokenize(text, add_bos=False, special=True)`, i.e.
`llama_tokenize(.., add_special = false, parse_special = true)`, what
afinador's `encode(text, false)` does) for:

  targeted  texts aimed at where afinador and llama.cpp parted ways: Unicode
            whitespace inside the literal ranges of deepseek's regexes (llama.cpp
            matches those on the text with non-ASCII whitespace replaced by
            U+000B), characters that are no token of a byte-level vocabulary
            (Falcon has no 0x0B: llama.cpp keeps it while merging, then drops
            it), combining marks (qwen35), digits, scripts;
  random    seeded random strings from a pool of characters, words and the
            vocabulary's own special tokens (llama.cpp's CONTROL, USER_DEFINED
            and UNKNOWN tokens after loading), whitespace around them (Phi-3:
            llama.cpp drops the whitespace after most special tokens).

Writes tests/data/llama_cpp_vocab_cases.json, read by tests/llama_cpp_vocabs.rs.
Needs llama-cpp-python (see README.md). Run from the repository root:

    scripts/fetch-model llama-cpp-vocabs
    python scripts/reference/llama_cpp_vocab_cases.py
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from common import sha256_file, write_json

GENERATOR = "scripts/reference/llama_cpp_vocab_cases.py"
VOCABS = Path("models/llama-cpp-vocabs")
OUT = Path("tests/data/llama_cpp_vocab_cases.json")
FAMILIES = [
    "llama-bpe", "qwen2", "qwen35", "llama-spm", "phi-3", "gpt-2", "starcoder", "refact",
    "command-r", "mpt", "falcon", "deepseek-coder", "deepseek-llm",
]

TARGETED = [
    "a  \u3000", "x\u3000\u3000y \u3000。、z", "\u2028\u2029a\u2028", "a \u2003b\u1680c\u205fd",
    "中\u3000文\u2003한", "~ \x0b  x", "a\x0b b", "T're\r`x  \x0b  !",
    "\x03\x04\x05 x\x1c\x1dy\x1e", "\x0c\x0b\t\r\n ", "\U00040000\U000b0000 \U0010fffd",
    "e\u0301", "re\u0301sume\u0301", "a\u0300a\u0300a\u0300a\u0300", "Vie\u0302\u0301t Nam",
    "\u0301\u0301x \u0301", "1234567 ٣٤٥ ²³ ½ Ⅻ ５６", "3.14159 1,000,000 2026-11-23",
    "\u00a0nbsp\u0085nel", "  \n  \n\tb\r\n\r\n  c \n\n\n}\n\n)\n   ",
]

POOL = list("aAzZ09 \t\n\r'sStTdDlLmMvVeErR.,!?-_=+()[]{}<>|/\\\"`~@#$%^&*;:") + [
    "\u00a0", "\u3000", "\u2003", "\u2028", "\u0301", "\u0300", "é", "ç", "ã", "²", "½", "Ⅻ",
    "٣", "中", "文", "한", "😀", "\u200d", "🇧", "\ufe0f", "ß", "Σ", "ς", "\u0085", "\x0b",
    "\x0c", "\x1f", "\x03", "'ll", "'re", "'ve", "  ", "\n\n", " \n", "1234567", "ក", "ា",
    "់", "ि", "क", "ñ", "Ω", "K", "µ", "ａ", "！", "。", "‘", "    ", "\t\t", "Hello", " world",
    "The", "ing", "  x", "x  ",
]
RANDOM_CASES = 60


def special_texts(llama_cpp, llm) -> list[str]:
    """The texts llama.cpp matches before tokenizing with special=True."""
    vocab = llm._model.vocab
    wanted = (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
              | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN)
    out = []
    for i in range(llm.n_vocab()):
        if llama_cpp.llama_vocab_get_attr(vocab, i) & wanted:
            text = llm.detokenize([i], special=True).decode("utf-8", errors="replace")
            if text and "\ufffd" not in text:
                out.append(text)
    return sorted(set(out))


def random_text(rng: random.Random, specials: list[str]) -> str:
    parts = []
    for _ in range(rng.randint(1, 16)):
        if specials and rng.random() < 0.2:
            parts.append(rng.choice(specials))
        else:
            parts.append(rng.choice(POOL))
    return "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    families = {}
    for name in FAMILIES:
        path = VOCABS / f"ggml-vocab-{name}.gguf"
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        specials = special_texts(llama_cpp, llm)
        rng = random.Random(f"{args.seed}-{name}")
        texts = TARGETED + [random_text(rng, specials) for _ in range(RANDOM_CASES)]
        cases = [[text, llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)]
                 for text in texts]
        families[name] = {"vocab_sha256": sha256_file(path), "cases": cases}
        print(f"{name:16s} {len(cases)} cases, {len(specials)} special tokens")

    write_json(OUT, {
        "generator": GENERATOR,
        "llama_cpp_python": llama_cpp.__version__,
        "seed": args.seed,
        "notes": "per family: [text, ids] with ids = llama.cpp's tokenize(text, "
                 "add_bos=False, special=True) on models/llama-cpp-vocabs/ggml-vocab-NAME.gguf; "
                 f"the first {len(TARGETED)} texts are the same for every family, the rest random",
        "families": families,
    })
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
