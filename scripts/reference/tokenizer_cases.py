#!/usr/bin/env python3
"""Expected token ids for a GGUF tokenizer (SmolLM2, Qwen2 or Gemma 3), produced by llama.cpp.

Uses llama-cpp-python with `vocab_only=True` (no weights are loaded) and writes
tests/data/tokenizer_cases.json (SmolLM2, `general.architecture` llama),
tests/data/tokenizer_cases_qwen2.json (Qwen2.5, qwen2) or
tests/data/tokenizer_cases_gemma3.json (Gemma 3 270M, gemma3). For every case:

  ids             llm.tokenize(text, add_bos=<the model's add_bos flag>, special=True)
                  (special/control tokens such as <|im_start|> are parsed)
  ids_no_special  the same with special=False (special-token text is then
                  tokenized as ordinary text)

The model's add_bos flag is recorded as well. It is false for SmolLM2 and
Qwen2.5, so no BOS is ever prepended; it is true for Gemma 3, so every `ids`
and `ids_no_special` list of the gemma3 file starts with BOS (2), as
llama.cpp (and afinador's `encode(text, true)`) prepends it. The qwen2 and
gemma3 files also list llama.cpp's view of the vocabulary's special tokens
(`special_tokens`: CONTROL and USER_DEFINED ids, EOG ids, the UNUSED ids).

Run from the repository root:

    python scripts/reference/tokenizer_cases.py
    python scripts/reference/tokenizer_cases.py \
        --model models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \
        --out tests/data/tokenizer_cases_qwen2.json
    python scripts/reference/tokenizer_cases.py \
        --model models/gemma-3-270m.Q4_K_M.gguf   # -> tokenizer_cases_gemma3.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import sha256_file, write_json

GENERATOR = "scripts/reference/tokenizer_cases.py"
DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUTS = {
    "llama": "tests/data/tokenizer_cases.json",
    "qwen2": "tests/data/tokenizer_cases_qwen2.json",
    "gemma3": "tests/data/tokenizer_cases_gemma3.json",
}

CASES: list[tuple[str, str]] = [
    ("empty", ""),
    ("single_space", " "),
    ("single_newline", "\n"),
    ("english_prose",
     "The quick brown fox jumps over the lazy dog. Meanwhile, in a quiet "
     "village by the sea, an old fisherman mended his nets."),
    ("capital_of_france", "The capital of France is"),
    ("portuguese_accents",
     "Ação, coração e informação: não é fácil! Você já comeu pão com "
     "manteiga? As eleições são úteis; a avó está à janela, põe o chá."),
    ("mixed_case", "HELLO World hello WORLD HeLLo wOrLd iPhone McDonald's camelCaseName SCREAMING_SNAKE"),
    ("contractions", "don't I'll we've they're she'd it's you'RE I'M WE'VE can't"),
    ("punctuation_runs", "Wait... what?!?! No way!!! (really) [yes] {maybe} -- ok; fine: done... ---> <=> ***"),
    ("leading_spaces", "   leading spaces and  double  spaces   inside"),
    ("trailing_spaces", "trailing spaces   \nnext line  \t\n"),
    ("multiple_blank_lines", "first paragraph\n\n\n\nsecond paragraph\n\n\n  \n\nthird\n"),
    ("crlf_line_endings", "line one\r\nline two\r\n\r\nline four\r\n"),
    ("digits_and_numbers", "1234567 3.14159 2026-11-23 0x1F 1,000,000 -42 +7 1e-5 007 12:30"),
    ("python_code",
     "import os\n\n\nclass Greeter:\n    def __init__(self, name: str) -> None:\n"
     "        self.name = name\n\n    def greet(self):\n        if not self.name:\n"
     "            return None\n        return f\"Hello, {self.name}!\"  # comment\n"),
    ("python_tabs", "def f(x):\n\tif x > 0:\n\t\treturn x * 2\n\treturn -x\n"),
    ("rust_code",
     "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n"
     "    println!(\"{:?}\", v);\n    if let Some(&last) = v.last() {\n"
     "        assert_eq!(last, 81);\n    }\n}\n"),
    ("json",
     '{"name": "afinador", "version": "0.1.0", "layers": [1, 2, 3],\n'
     ' "nested": {"ok": true, "value": null, "pi": 3.14}, "emoji": "\\u00e9"}'),
    ("urls",
     "See https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#top "
     "or http://example.com/path/to/file.html and mailto:someone@example.org"),
    ("emoji",
     "I love it 😀😂🎉 👍🏽 family: 👨‍👩‍👧‍👦 rainbow flag: 🏳️‍🌈 flags: 🇧🇷🇵🇹🇯🇵 heart ❤️"),
    ("chinese", "我爱自然语言处理。今天天气很好，我们去公园散步吧！"),
    ("japanese", "こんにちは、世界。東京は日本の首都です。カタカナとひらがな。"),
    ("korean", "안녕하세요, 세계! 저는 한국어를 공부하고 있습니다."),
    ("arabic", "مرحبا بالعالم! اللغة العربية جميلة جدا."),
    ("mixed_scripts", "Hello мир Κόσμε שלום नमस्ते 世界 ñandú naïve café Straße"),
    ("very_long_word",
     "Supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis "
     "Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz"),
    ("repeated_chars", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ==================== ____"),
    ("chatml",
     "<|im_start|>user\nOlá!<|im_end|>\n<|im_start|>assistant\n"),
    ("chatml_full",
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
     "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
     "<|im_start|>assistant\n2+2 is 4.<|im_end|>\n"),
    ("special_tokens_adjacent", "<|endoftext|><|im_start|><|im_end|>text<|im_end|> <|im_start|> spaced"),
    ("special_tokens_other", "<repo_name>afinador<file_sep>src/main.rs<gh_stars>100\n<jupyter_code>x = 1"),
    ("whitespace_mix", " \t \n\t\n  \u00a0nbsp\u3000ideographic space\u2003em space"),
]

# Qwen2.5: the model-agnostic SmolLM2 cases, Qwen's own special tokens
# instead of SmolLM2's, and texts aimed at the qwen2 pre-tokenizer regex
# (single digits, an optional non-letter before a letter run, newline runs).
_QWEN_SYSTEM = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
                "You are a helpful assistant.<|im_end|>\n")
_QWEN_REPLACED = {
    "chatml_full":
        _QWEN_SYSTEM + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n2+2 is 4.<|im_end|>\n",
    "special_tokens_other":
        "<|fim_prefix|>def f(x):\n<|fim_suffix|>\n    return y<|fim_middle|>"
        "<|repo_name|>afinador<|file_sep|>src/main.rs\n<|fim_pad|><|endoftext|>",
}
QWEN2_CASES: list[tuple[str, str]] = [(n, _QWEN_REPLACED.get(n, t)) for n, t in CASES] + [
    # SmolLM2's special tokens are ordinary text for Qwen.
    ("smollm2_special_tokens_as_text",
     "<repo_name>afinador<file_sep>src/main.rs<gh_stars>100\n<jupyter_code>x = 1"),
    # USER_DEFINED tokens: llama.cpp matches them even with special=False.
    ("user_defined_tokens",
     "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lisboa\"}}\n</tool_call>"),
    # "</s>" (128247) is a NORMAL token in Qwen's vocab, but llama.cpp makes
    # it CONTROL (and end-of-generation) because of its text, so with
    # special=True it is matched as one token; with special=False it is BPE'd.
    ("slash_s_promoted_to_control", "a</s>b </s>\n</s>"),
    # UNUSED tokens ([PAD151665]..[PAD151935]) are not special: plain text.
    ("unused_pad_tokens_as_text", "[PAD151665] [PAD151935]x"),
    ("vision_tokens", "<|vision_start|><|image_pad|><|vision_end|>Describe it."),
    ("symbols_before_letters",
     "foo.bar(x) $HOME @user #tag _private -flag ¿Qué? «citação» x+=1 a->b ::std"),
    ("digit_runs",
     "3141592653589793 2^64=18446744073709551616 v1.2.3 ١٢٣ ５６ ²³ ½"),
    ("newline_runs_with_spaces", "a  \n  \n\tb\r\n\r\n  c \n\n\n}\n\n)\n   "),
    ("punctuation_then_newlines", "end.\n\nnext;\r\n\r\n--\n\n\n/* x */\n"),
]

# Gemma 3 (SentencePiece, `tokenizer.ggml.model` llama, 262144 tokens, byte
# fallback, add_bos true): the model-agnostic cases, Gemma's chat format and
# special tokens in place of SmolLM2's, the Qwen2.5 extras (all ordinary text
# for Gemma except `</s>`, which llama.cpp makes CONTROL here too), and texts
# aimed at Gemma's vocabulary: its USER_DEFINED tokens (runs of 2..31 spaces,
# of 1..31 newlines and tabs, HTML tags, [multimodal], <start_of_image>),
# which llama.cpp matches before SentencePiece even with special=False, and
# its <unusedN> tokens, CONTROL in the GGUF and therefore matched with
# special=True although llama.cpp also marks them UNUSED.
_GEMMA_REPLACED = {
    "chatml": ("gemma_chat",
               "<start_of_turn>user\nOlá!<end_of_turn>\n<start_of_turn>model\n"),
    "chatml_full": ("gemma_chat_full",
                    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
                    "<start_of_turn>model\n2+2 is 4.<end_of_turn>\n"),
    "special_tokens_adjacent": (
        "special_tokens_adjacent",
        "<start_of_turn><end_of_turn>text<end_of_turn> <start_of_turn> spaced<eos>"),
    "special_tokens_other": (
        "special_tokens_other",
        "<mask>[multimodal]<start_of_image><end_of_image><unk> x<pad><pad>"),
}
GEMMA3_CASES: list[tuple[str, str]] = (
    [_GEMMA_REPLACED.get(n, (n, t)) for n, t in CASES]
    + [(n, t) for n, t in QWEN2_CASES[len(CASES):]]
    + [
        ("chatml_as_text", CASES[[n for n, _ in CASES].index("chatml_full")][1]),
        # <bos> in the text gives a second 2 after the prepended BOS.
        ("bos_eos_pad_in_text", "<bos>Hello<eos><pad> <bos> world<eos>"),
        ("unused_tokens", "<unused0><unused98> <unused99>x<unused6241><unused6242>"),
        ("html_tags",
         "<table><tr><td>1</td></tr></table>\n<h1>Title</h1><p><strong>bold</strong> "
         "<em>it</em> <code>x</code></p><div><span>a</span></div><br>"),
        ("whitespace_runs",
         "a" + " " * 2 + "b" + " " * 31 + "c" + " " * 32 + "d" + " " * 70 + "e\n"
         + "\t" * 3 + "f" + "\t" * 40 + "g" + "\n" * 31 + "h" + "\n" * 33 + "i"),
        ("leading_space", " Hello  world"),
        ("byte_fallback", "\x01\x7f control \U0001d11e \U000e0041 \uffff \U0010fffd end"),
        ("pt_chat",
         "<start_of_turn>user\nQual é a capital de Portugal?<end_of_turn>\n"
         "<start_of_turn>model\nA capital de Portugal é Lisboa.<end_of_turn>"),
    ]
)


def special_tokens(llama_cpp, llm, vocab) -> dict:
    """llama.cpp's token attributes after loading (it upgrades some tokens to
    CONTROL by their text and derives the end-of-generation set)."""
    control, user_defined, unused, eog = [], [], [], []
    for i in range(llm.n_vocab()):
        attr = llama_cpp.llama_vocab_get_attr(vocab, i)
        if attr & llama_cpp.LLAMA_TOKEN_ATTR_UNUSED:
            unused.append(i)
        elif attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
            control.append(i)
        elif attr & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED:
            user_defined.append(i)
        if llama_cpp.llama_vocab_is_eog(vocab, i):
            eog.append(i)
        assert not attr & (llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP | llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP), i
    ranges: list[list[int]] = []
    for i in unused:
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    # UNUSED tokens that are also CONTROL (Gemma's <unusedN>: CONTROL in the
    # GGUF, UNUSED added by llama.cpp because of the name) stay in llama.cpp's
    # special-token cache, so special=True matches them.
    unused_control = [i for i in unused
                      if llama_cpp.llama_vocab_get_attr(vocab, i) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL]
    assert not unused_control or unused_control == unused, "some unused tokens are control"

    def text(i: int) -> str:
        return llm.detokenize([i], special=True).decode("utf-8")

    out = {
        "control": [{"id": i, "text": text(i)} for i in control],
        "user_defined": [{"id": i, "text": text(i)} for i in user_defined],
        "eog_ids": eog,
        "unused_first": unused[0] if unused else None,
        "unused_last": unused[-1] if unused else None,
    }
    if len(ranges) > 1 or unused_control:
        # (Not in the qwen2 file: one contiguous range there, not control.)
        out["unused_ranges"] = ranges
        out["unused_are_control"] = bool(unused_control)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=None,
                    help="output JSON (default: tests/data/tokenizer_cases.json for "
                         "llama, tests/data/tokenizer_cases_qwen2.json for qwen2)")
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    model_path = Path(args.model)
    llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    arch = llm.metadata["general.architecture"]
    case_list = {"llama": CASES, "qwen2": QWEN2_CASES, "gemma3": GEMMA3_CASES}[arch]

    names = [name for name, _ in case_list]
    assert len(names) == len(set(names)), "duplicate case names"

    cases = []
    for name, text in case_list:
        raw = text.encode("utf-8")
        # add_bos: the model's flag (false for SmolLM2 and Qwen2.5).
        ids = llm.tokenize(raw, add_bos=add_bos, special=True)
        ids_no_special = llm.tokenize(raw, add_bos=add_bos, special=False)
        body = ids
        if add_bos:
            assert ids[0] == ids_no_special[0] == llm.token_bos(), name
            body = ids[1:]
        # Round trip: detokenizing must give the original bytes back.
        assert llm.detokenize(body, special=True) == raw, name
        cases.append({"name": name, "text": text, "ids": ids,
                      "ids_no_special": ids_no_special})
        print(f"{name:24s} {len(ids):4d} ids")

    out = {
        "generator": GENERATOR,
        "llama_cpp_python": llama_cpp.__version__,
        "model": model_path.name,
        "model_sha256": sha256_file(model_path),
        "add_bos": add_bos,
        "bos_id": llm.token_bos(),
        "eos_id": llm.token_eos(),
    }
    if add_bos:
        out["notes"] = (
            "ids and ids_no_special come from llama.cpp's tokenize with add_bos = the "
            "model's flag (tokenizer.ggml.add_bos_token = true), so each starts with "
            f"bos_id {llm.token_bos()} (the empty text gives [{llm.token_bos()}]); ids: "
            "special=True (control tokens such as <start_of_turn> matched), "
            "ids_no_special: special=False (USER_DEFINED tokens -- space/tab/newline "
            "runs, HTML tags, [multimodal], <start_of_image> -- are still matched)")
    out["cases"] = cases
    if arch != "llama":
        # (Not in the SmolLM2 file, whose layout predates this.)
        out["special_tokens"] = special_tokens(llama_cpp, llm, vocab)
    out_path = Path(args.out or DEFAULT_OUTS[arch])
    write_json(out_path, out)
    print(f"wrote {out_path} ({len(cases)} cases, add_bos={add_bos})")


if __name__ == "__main__":
    main()
