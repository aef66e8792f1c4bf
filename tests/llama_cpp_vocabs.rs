//! Token ids against llama.cpp's own tokenizer test vectors: the vocabulary-only GGUF files
//! `models/ggml-vocab-<name>.gguf` of llama.cpp, with their `.gguf.inp` (texts) and `.gguf.out`
//! (llama.cpp's ids), as the llama-cpp-python 0.3.36 sdist ships them
//! (`scripts/fetch-model llama-cpp-vocabs`). This covers the tokenizers of models we have no
//! GGUF of here: Llama 3 (`llama-bpe`), Llama 2 / Mistral and Phi-3 (SentencePiece), GPT-2,
//! StarCoder, Refact, Command-R, MPT, Falcon, DeepSeek Coder and LLM, Qwen3.5; Qwen2 again, on
//! llama.cpp's texts rather than ours.
//!
//! The cases are read as llama.cpp's `tests/test-tokenizer-0.cpp` reads them: the `.inp` text is
//! split on `"\n__ggml_vocab_test__\n"` (a trailing separator starts no case), line `i` of the
//! `.out` holds case `i`'s ids, and each case is tokenized with `add_special = false` (no BOS)
//! and `parse_special = false`. Our [`Tokenizer::encode`] always parses special tokens, which is
//! the same thing as long as no case holds the text of a control or unknown token (user-defined
//! tokens are split out in both modes); [`all_cases_match`] checks that.
//!
//! `tests/data/llama_cpp_vocab_cases.json` (`scripts/reference/llama_cpp_vocab_cases.py`) adds,
//! per vocabulary, 80 texts tokenized by llama.cpp with `parse_special = true`: texts aimed at
//! where we once differed (Unicode whitespace in deepseek's literal ranges, characters that are
//! no token of Falcon's vocabulary, whitespace after Phi-3's special tokens, combining marks) and
//! seeded random strings mixing characters, words and the vocabulary's special tokens.
//!
//! Left out, and why:
//! - `gemma-4`: its `tokenizer.ggml.model` is `gemma4` (llama.cpp's SentencePiece-style BPE:
//!   merges over raw UTF-8 with `▁` for spaces), a tokenizer afinador does not implement (nor the
//!   gemma4 architecture). Loading it must fail with an error naming it, which is checked.
//! - `bert-bge` (`bert`, WordPiece): an embedding model's tokenizer, not implemented.
//! - `aquila`, `baichuan`, `gpt-neox`, `nomic-bert-moe`: llama.cpp ships no test vectors for them.
//!
//! Every vocabulary here has a `tokenizer.ggml.pre` afinador knows; the fallback for one it does
//! not know (the GPT-2 regex, with a warning naming it) is tested in the core crate
//! (`bpe_errors_are_actionable`).

mod common;

use std::path::PathBuf;

use afinador_core::formats::Gguf;
use afinador_core::tokenizer::{TokenKind, Tokenizer};
use common::{afinador, data, ids, ok, repo};

/// `models/llama-cpp-vocabs/ggml-vocab-NAME.gguf<ext>`, or a failure naming the fetch command.
fn vocab_file(name: &str, ext: &str) -> PathBuf {
    let path = repo()
        .join("models/llama-cpp-vocabs")
        .join(format!("ggml-vocab-{name}.gguf{ext}"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model llama-cpp-vocabs",
        path.display()
    );
    path
}

/// The tokenizer of a vocabulary-only GGUF, through the path the CLI takes for a model file.
fn load(name: &str) -> Result<Tokenizer, afinador_core::tokenizer::TokenizerError> {
    let path = vocab_file(name, "");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let gguf = Gguf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(gguf.tensors().len(), 0, "{name}: a vocabulary-only file");
    Tokenizer::from_gguf(&gguf)
}

/// The (text, llama.cpp ids) cases of `ggml-vocab-NAME.gguf.inp/.out`, split as
/// `test-tokenizer-0.cpp` splits them.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let read = |ext| {
        let path = vocab_file(name, ext);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let (inp, out) = (read(".inp"), read(".out"));
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(SEP) {
            Some(i) => {
                texts.push(rest[..i].to_string());
                rest = &rest[i + SEP.len()..];
            }
            None => {
                texts.push(rest.to_string());
                rest = "";
            }
        }
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|t| t.parse().expect("a token id in the .out file"))
                .collect()
        })
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out case counts");
    texts.into_iter().zip(ids).collect()
}

/// The (text, llama.cpp ids) cases of `NAME` in `tests/data/llama_cpp_vocab_cases.json`, made
/// on the vocabulary file we have (same sha256).
fn more_cases(name: &str) -> Vec<(String, Vec<u32>)> {
    use sha2::Digest;
    let all = data("llama_cpp_vocab_cases.json");
    let family = &all["families"][name];
    let path = vocab_file(name, "");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        format!("{:x}", sha2::Sha256::digest(&bytes)),
        family["vocab_sha256"].as_str().expect("vocab_sha256"),
        "{name}: llama_cpp_vocab_cases.json was made on another vocabulary file"
    );
    let cases = family["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("llama_cpp_vocab_cases.json has no family {name}"));
    cases
        .iter()
        .map(|c| (c[0].as_str().expect("text").to_string(), ids(&c[1])))
        .collect()
}

/// Every case of `NAME`: our ids (no BOS) equal llama.cpp's; all mismatches are printed.
/// `pre` is the pre-tokenizer we must be using (no fallback). Returns the number of cases of
/// llama.cpp's test vectors and of `llama_cpp_vocab_cases.json`.
fn all_cases_match(name: &str, pre: &str) -> (usize, usize) {
    let tok = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(tok.pre_tokenizer(), pre, "{name}: {:?}", tok.warnings());
    let cases = cases(name);
    // parse_special = false in llama.cpp: equivalent only while no case holds such a token.
    for id in 0..tok.vocab_size() as u32 {
        if matches!(
            tok.token_kind(id),
            Some(TokenKind::Control | TokenKind::Unknown)
        ) {
            let text = tok.token_text(id).unwrap();
            if let Some((case, _)) = cases.iter().find(|(c, _)| c.contains(text)) {
                panic!("{name}: case {case:?} holds control token {id} {text:?}");
            }
        }
    }
    let show = |ids: &[u32]| -> Vec<String> {
        ids.iter()
            .map(|&i| format!("{i} {:?}", tok.token_str(i).unwrap_or_default()))
            .collect()
    };
    let more = more_cases(name);
    let mut failures = Vec::new();
    for (what, cases) in [(".inp", &cases), ("json", &more)] {
        for (i, (text, want)) in cases.iter().enumerate() {
            let got = tok.encode(text, false).unwrap();
            if &got != want {
                failures.push(format!(
                    "{what} case {i} {text:?}\n  llama.cpp: {:?}\n  afinador:  {:?}",
                    show(want),
                    show(&got)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name} ({}): {} of {} cases differ from llama.cpp:\n{}",
        tok.pre_tokenizer(),
        failures.len(),
        cases.len() + more.len(),
        failures.join("\n")
    );
    (cases.len(), more.len())
}

/// Gemma 4's tokenizer is refused with an error that names it.
#[test]
fn gemma4_is_refused_naming_its_tokenizer() {
    let err = load("gemma-4").expect_err("gemma4 is not a tokenizer afinador implements");
    assert_eq!(
        err.to_string(),
        "unsupported tokenizer model 'gemma4' in tokenizer.ggml.model (afinador supports gpt2 BPE \
         and llama SentencePiece; pass --tokenizer tokenizer.json)"
    );
}

/// The CLI reads a vocabulary-only GGUF as a model's tokenizer; Llama 3's file has no
/// `add_bos_token`, and llama.cpp then adds BOS (128000) for `llama-bpe`.
#[test]
fn cli_tokenizes_with_a_vocabulary_only_gguf() {
    let model = vocab_file("llama-bpe", "");
    let out = ok(afinador(&[
        "tokenize",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "Hello world",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ids"], serde_json::json!([128000, 9906, 1917]));
}

#[test]
fn llama_bpe_llama3() {
    assert_eq!(all_cases_match("llama-bpe", "llama-bpe"), (46, 80));
}

#[test]
fn qwen2() {
    assert_eq!(all_cases_match("qwen2", "qwen2"), (46, 80));
}

#[test]
fn llama_spm_llama2_mistral() {
    assert_eq!(
        all_cases_match("llama-spm", "llama (SentencePiece)"),
        (46, 80)
    );
}

#[test]
fn phi3_spm() {
    assert_eq!(all_cases_match("phi-3", "llama (SentencePiece)"), (46, 80));
}

#[test]
fn gpt2() {
    assert_eq!(all_cases_match("gpt-2", "gpt-2"), (46, 80));
}

#[test]
fn starcoder() {
    assert_eq!(all_cases_match("starcoder", "starcoder"), (46, 80));
}

#[test]
fn refact() {
    assert_eq!(all_cases_match("refact", "refact"), (46, 80));
}

#[test]
fn command_r() {
    assert_eq!(all_cases_match("command-r", "command-r"), (46, 80));
}

#[test]
fn mpt() {
    assert_eq!(all_cases_match("mpt", "mpt"), (46, 80));
}

#[test]
fn falcon() {
    assert_eq!(all_cases_match("falcon", "falcon"), (46, 80));
}

#[test]
fn deepseek_coder() {
    assert_eq!(
        all_cases_match("deepseek-coder", "deepseek-coder"),
        (46, 80)
    );
}

#[test]
fn deepseek_llm() {
    assert_eq!(all_cases_match("deepseek-llm", "deepseek-llm"), (46, 80));
}

#[test]
fn qwen35() {
    assert_eq!(all_cases_match("qwen35", "qwen35"), (50, 80));
}
