//! Tokenizer tests.
//!
//! * `check_cases` / `check_roundtrip`: the llama.cpp reference (`tests/data/tokenizer_cases.json`,
//!   ids from `llama_tokenize(text, add_special = false, parse_special = true)`) on the real
//!   SmolLM2 vocabulary, which `smollm2_spec` provides.
//! * Small hand-built vocabularies (byte-level BPE and SentencePiece) whose expected ids are
//!   worked out by hand in the comments, so the algorithms are pinned without any file.
//! * The ChatML fallback with a tokenizer (the template tests are in `chat.rs`).

use super::*;

// ---------------------------------------------------------------------------------------------
// llama.cpp reference cases

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    text: String,
    ids: Vec<u32>,
}

fn parse_cases(cases_json: &str) -> Vec<Case> {
    let cases: Cases =
        serde_json::from_str(cases_json).expect("tokenizer_cases.json is not {\"cases\": [...]}");
    assert!(!cases.cases.is_empty(), "tokenizer_cases.json has no cases");
    cases.cases
}

/// Asserts that every case tokenizes to llama.cpp's ids; on failure prints, per case, the first
/// diverging position with both tokens in display form.
pub(crate) fn check_cases(tok: &Tokenizer, cases_json: &str) {
    let cases = parse_cases(cases_json);
    let show = |id: Option<&u32>| match id {
        Some(&id) => format!(
            "{id} {:?}",
            tok.token_str(id).unwrap_or_else(|| "<out of vocab>".into())
        ),
        None => "(end)".to_string(),
    };
    let mut failures = Vec::new();
    for case in &cases {
        let got = tok
            .encode(&case.text, false)
            .unwrap_or_else(|e| panic!("case {}: {e}", case.name));
        if got != case.ids {
            let at = got
                .iter()
                .zip(&case.ids)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(case.ids.len()));
            failures.push(format!(
                "case {:?} (text {:?}): first difference at token {at}: got {}, llama.cpp {}\n  got      {:?}\n  expected {:?}",
                case.name,
                case.text,
                show(got.get(at)),
                show(case.ids.get(at)),
                got,
                case.ids
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from llama.cpp:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "tokenizer: {} of {} llama.cpp cases match exactly",
        cases.len(),
        cases.len()
    );
}

/// Asserts `decode(encode(text)) == text` for every case (gpt2 vocabularies: lossless).
pub(crate) fn check_roundtrip(tok: &Tokenizer, cases_json: &str) {
    for case in parse_cases(cases_json) {
        let ids = tok
            .encode(&case.text, false)
            .unwrap_or_else(|e| panic!("case {}: {e}", case.name));
        assert_eq!(
            tok.decode(&ids),
            case.text,
            "case {:?}: decode(encode(x)) != x",
            case.name
        );
        let mut stream = tok.stream_decoder();
        let mut streamed: String = ids.iter().map(|&id| stream.push(id)).collect();
        streamed.push_str(&stream.finish());
        assert_eq!(
            streamed, case.text,
            "case {:?}: streamed decode differs",
            case.name
        );
    }
}

/// The SmolLM2-135M-Instruct tokenizer metadata, read from the real GGUF (a missing model fails).
fn smollm2_spec() -> TokenizerSpec {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (run scripts/fetch-model)"));
    let gguf = crate::formats::Gguf::parse(&bytes).expect("valid GGUF");
    TokenizerSpec::from_gguf(&gguf).expect("tokenizer metadata")
}

const CASES_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/tokenizer_cases.json"
));

#[test]
fn smollm2_matches_llama_cpp() {
    let tok = Tokenizer::from_spec(&smollm2_spec()).expect("SmolLM2 tokenizer");
    assert_eq!(tok.pre_tokenizer(), "smollm");
    assert!(tok.warnings().is_empty(), "{:?}", tok.warnings());
    check_cases(&tok, CASES_JSON);
}

#[test]
fn smollm2_roundtrip() {
    let tok = Tokenizer::from_spec(&smollm2_spec()).expect("SmolLM2 tokenizer");
    check_roundtrip(&tok, CASES_JSON);
}

#[test]
fn smollm2_specials() {
    let spec = smollm2_spec();
    let tok = Tokenizer::from_spec(&spec).expect("SmolLM2 tokenizer");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.pad_id()),
        (Some(1), Some(2), Some(2))
    );
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    // control tokens in the text become their ids; "user" and "\n" are ordinary tokens
    let ids = tok
        .encode("<|im_start|>user\nHi<|im_end|>\n", false)
        .expect("encode");
    assert_eq!(ids[0], 1);
    assert_eq!(tok.decode(&ids[1..2]), "user");
    assert_eq!(ids[ids.len() - 2], 2);
    assert_eq!(tok.decode(&ids), "<|im_start|>user\nHi<|im_end|>\n");
    // SmolLM2 does not add BOS
    assert_eq!(
        tok.encode("Hi", true).expect("encode"),
        tok.encode("Hi", false).expect("encode")
    );
    // end of generation: <|endoftext|> (0) and <|im_end|> (2), not <|im_start|>
    assert!(tok.is_eog(0) && tok.is_eog(2) && !tok.is_eog(1));
    assert_eq!(tok.eog_ids(), vec![0, 2]);
    // display forms
    let the = tok.token_id("Ġthe").expect("Ġthe in vocab");
    assert_eq!(tok.token_str(the).as_deref(), Some(" the"));
    assert_eq!(tok.token_text(the), Some("Ġthe"));
    assert_eq!(tok.token_str(2).as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.token_str(49152), None);
    // the template in the GGUF is the one the chat tests below write out
    assert_eq!(
        spec.chat_template.as_deref(),
        Some(chat::tests::SMOLLM2_TEMPLATE)
    );
}

// ---------------------------------------------------------------------------------------------
// hand-built byte-level BPE vocabulary

/// GPT-2's byte-to-unicode character of byte `b`.
fn bl(b: u8) -> char {
    let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable {
        return char::from(b);
    }
    let n = (0..b)
        .filter(|&x| !matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF))
        .count() as u32;
    char::from_u32(256 + n).expect("valid char")
}

/// ids: 0 `<|endoftext|>`, 1 `<|im_start|>`, 2 `<|im_end|>` (control), 3 + b the byte b,
/// then merge results: 259 `Ġt`, 260 `he`, 261 `Ġthe`, 262 `12`, 263 `Ġ12`.
fn toy_bpe(pre: &str) -> TokenizerSpec {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    tokens.extend((0..=255u8).map(|b| bl(b).to_string()));
    tokens.extend(["Ġt", "he", "Ġthe", "12", "Ġ12"].map(String::from));
    let mut token_types = vec![3; 3];
    token_types.extend(vec![1; tokens.len() - 3]);
    TokenizerSpec {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types,
        merges: ["Ġ t", "h e", "Ġt he", "1 2", "Ġ 12"]
            .map(String::from)
            .to_vec(),
        bos_id: Some(0),
        eos_id: Some(0),
        ..TokenizerSpec::default()
    }
}

fn byte_id(b: u8) -> u32 {
    3 + b as u32
}

fn ids_of(s: &str) -> Vec<u32> {
    s.bytes().map(byte_id).collect()
}

#[test]
fn bpe_merges_and_pre_tokenizers() {
    let smollm = Tokenizer::from_spec(&toy_bpe("smollm")).expect("toy smollm");
    // " the" is one piece: Ġ t h e -> (Ġt rank 0, he rank 1) -> Ġt he -> Ġthe
    assert_eq!(smollm.encode(" the", false).expect("encode"), vec![261]);
    // "the": t h e -> t he
    assert_eq!(
        smollm.encode("the", false).expect("encode"),
        vec![byte_id(b't'), 260]
    );
    // smollm isolates every digit, so "12" never merges and the space stays alone
    assert_eq!(smollm.encode(" 12", false).expect("encode"), ids_of(" 12"));
    // gpt-2 keeps " 12" as one piece: Ġ 1 2 -> Ġ 12 -> Ġ12
    let gpt2 = Tokenizer::from_spec(&toy_bpe("gpt-2")).expect("toy gpt-2");
    assert_eq!(gpt2.encode(" 12", false).expect("encode"), vec![263]);
    // qwen2 splits digits one by one too
    let qwen2 = Tokenizer::from_spec(&toy_bpe("qwen2")).expect("toy qwen2");
    assert_eq!(qwen2.encode("x12", false).expect("encode"), ids_of("x12"));
    // llama3 keeps up to three digits together: "12" -> 12
    let llama3 = Tokenizer::from_spec(&toy_bpe("llama-bpe")).expect("toy llama3");
    assert_eq!(llama3.encode("12", false).expect("encode"), vec![262]);
    // llama3: a letter run takes one leading non-letter: "(the" -> "(" + ... as one piece,
    // which has no merges for "(t": ( t he
    assert_eq!(
        llama3.encode("(the", false).expect("encode"),
        vec![byte_id(b'('), byte_id(b't'), 260]
    );
    let default = Tokenizer::from_spec(&toy_bpe("default")).expect("toy default");
    assert_eq!(default.encode(" the", false).expect("encode"), vec![261]);
}

#[test]
fn bpe_character_that_is_no_token() {
    // A vocabulary without "x" (as Falcon's has no 0x0B): llama.cpp keeps the x as a symbol while
    // merging, so h and e around it do not merge, and drops it at the end.
    let mut spec = toy_bpe("smollm");
    spec.tokens[byte_id(b'x') as usize] = "[no x]".into();
    let tok = Tokenizer::from_spec(&spec).expect("toy");
    assert_eq!(tok.encode("he", false).expect("encode"), vec![260]);
    assert_eq!(
        tok.encode("hxe", false).expect("encode"),
        vec![byte_id(b'h'), byte_id(b'e')]
    );
    assert_eq!(tok.token_id("\0[not a token]"), None);
}

#[test]
fn bpe_special_tokens_and_bos() {
    let tok = Tokenizer::from_spec(&toy_bpe("smollm")).expect("toy");
    let mut want = vec![1];
    want.extend(ids_of("user"));
    assert_eq!(tok.encode("<|im_start|>user", false).expect("encode"), want);
    // adjacent specials, text between them, a special at the end
    let mut want = vec![1, 2];
    want.extend(ids_of("a"));
    want.push(0);
    assert_eq!(
        tok.encode("<|im_start|><|im_end|>a<|endoftext|>", false)
            .expect("encode"),
        want
    );
    // a broken special token is plain text
    assert_eq!(
        tok.encode("<|im_end", false).expect("encode"),
        ids_of("<|im_end")
    );
    // add_bos false: add_special adds nothing
    assert_eq!(tok.encode("a", true).expect("encode"), ids_of("a"));
    let mut spec = toy_bpe("smollm");
    spec.add_bos = true;
    spec.add_eos = true;
    let tok = Tokenizer::from_spec(&spec).expect("toy");
    assert_eq!(
        tok.encode("a", true).expect("encode"),
        vec![0, byte_id(b'a'), 0]
    );
    assert_eq!(tok.encode("a", false).expect("encode"), ids_of("a"));
}

#[test]
fn bpe_decode_and_display() {
    let tok = Tokenizer::from_spec(&toy_bpe("smollm")).expect("toy");
    for text in [
        "",
        " the 12",
        "<|im_start|>user\nhé 😀<|im_end|>\n",
        "tab\tand  two spaces  ",
        "ünïcödé ✓",
    ] {
        let ids = tok.encode(text, false).expect("encode");
        assert_eq!(tok.decode(&ids), text);
    }
    assert_eq!(tok.token_str(261).as_deref(), Some(" the"));
    assert_eq!(tok.token_str(byte_id(b'\n')).as_deref(), Some("\n"));
    assert_eq!(tok.token_str(2).as_deref(), Some("<|im_end|>"));
    // half of a UTF-8 character shows U+FFFD
    assert_eq!(tok.token_str(byte_id(0xC3)).as_deref(), Some("\u{FFFD}"));
    assert_eq!(tok.vocab_size(), 264);
    assert!(tok.is_eog(0) && tok.is_eog(2) && !tok.is_eog(1) && !tok.is_eog(261));
}

#[test]
fn stream_decoder_holds_back_split_utf8() {
    let tok = Tokenizer::from_spec(&toy_bpe("smollm")).expect("toy");
    let ids = tok.encode("a😀b", false).expect("encode");
    // the emoji is four byte tokens: F0 9F 98 80
    assert_eq!(ids, ids_of("a😀b"));
    let mut stream = tok.stream_decoder();
    let out: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect();
    assert_eq!(out, ["a", "", "", "", "😀", "b"]);
    assert_eq!(stream.finish(), "");
    // a cut-off character is flushed as U+FFFD by finish, and an invalid byte never blocks
    let mut stream = tok.stream_decoder();
    assert_eq!(stream.push(byte_id(0xF0)), "");
    assert_eq!(stream.finish(), "\u{FFFD}");
    let mut stream = tok.stream_decoder();
    assert_eq!(stream.push(byte_id(0x80)), "\u{FFFD}");
    assert_eq!(stream.push(byte_id(b'x')), "x");
    assert_eq!(stream.push(1), "<|im_start|>");
}

#[test]
fn bpe_errors_are_actionable() {
    let mut spec = toy_bpe("smollm");
    spec.model = "rwkv".into();
    let err = Tokenizer::from_spec(&spec)
        .expect_err("rwkv is unsupported")
        .to_string();
    assert_eq!(
        err,
        "unsupported tokenizer model 'rwkv' in tokenizer.ggml.model (afinador supports gpt2 BPE and llama \
         SentencePiece; pass --tokenizer tokenizer.json)"
    );
    // unknown pre-tokenizer: GPT-2 regex, with a warning saying so
    let tok = Tokenizer::from_spec(&toy_bpe("brand-new")).expect("fallback");
    assert_eq!(
        tok.pre_tokenizer(),
        "gpt-2 (fallback for unknown 'brand-new')"
    );
    assert!(tok.warnings()[0].contains("'brand-new' is not supported"));
    assert_eq!(tok.encode(" 12", false).expect("encode"), vec![263]);
    let mut spec = toy_bpe("smollm");
    spec.merges.clear();
    assert!(matches!(
        Tokenizer::from_spec(&spec),
        Err(TokenizerError::MissingMerges)
    ));
    let mut spec = toy_bpe("smollm");
    spec.eos_id = Some(10_000);
    let err = Tokenizer::from_spec(&spec)
        .expect_err("out of range")
        .to_string();
    assert_eq!(
        err,
        "tokenizer.ggml.eos_token_id = 10000 is outside the vocabulary of 264 tokens"
    );
    let mut spec = toy_bpe("smollm");
    spec.tokens[5] = spec.tokens[6].clone();
    assert!(matches!(
        Tokenizer::from_spec(&spec),
        Err(TokenizerError::DuplicateToken {
            first: 5,
            second: 6,
            ..
        })
    ));
    let mut spec = toy_bpe("smollm");
    spec.add_bos = true;
    spec.bos_id = None;
    let err = Tokenizer::from_spec(&spec).expect_err("no bos").to_string();
    assert!(err.starts_with(
        "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is not set"
    ));
    let mut spec = toy_bpe("smollm");
    spec.token_types.truncate(10);
    assert!(matches!(
        Tokenizer::from_spec(&spec),
        Err(TokenizerError::LengthMismatch { .. })
    ));
}

/// The spec of a GGUF holding only `meta` and a two-token gpt2 vocabulary.
fn spec_of_gguf(meta: &[(&str, crate::formats::MetaValue)]) -> TokenizerSpec {
    use crate::formats::{Gguf, GgufWriter};
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "gpt2").unwrap();
    w.add_metadata("tokenizer.ggml.tokens", vec!["a", "b"])
        .unwrap();
    for (k, v) in meta {
        w.add_metadata(*k, v.clone()).unwrap();
    }
    TokenizerSpec::from_gguf(&Gguf::parse(&w.to_bytes()).unwrap()).unwrap()
}

#[test]
fn gguf_defaults_as_llama_cpp() {
    // add_bos_token absent: llama.cpp adds BOS for its Llama 3 group of pre-tokenizers (not
    // dbrx/smaug, which share the regex), tekken and chameleon; an explicit flag wins.
    for (pre, bos) in [
        ("llama-bpe", true),
        ("llama3", true),
        ("falcon3", true),
        ("pixtral", true),
        ("lfm2", true),
        ("tekken", true),
        ("dbrx", false),
        ("qwen2", false),
        ("gpt-2", false),
    ] {
        let spec = spec_of_gguf(&[("tokenizer.ggml.pre", pre.into())]);
        assert_eq!(spec.add_bos, bos, "{pre}");
    }
    let spec = spec_of_gguf(&[
        ("tokenizer.ggml.pre", "llama-bpe".into()),
        ("tokenizer.ggml.add_bos_token", false.into()),
    ]);
    assert!(!spec.add_bos);
    // the whitespace after special tokens is dropped when general.name names Phi-3
    for (name, rstrip) in [
        ("Phi3", true),
        ("Phi-3-mini-4k-instruct", true),
        ("Phi 3 Mini", false),
        ("Llama", false),
    ] {
        let spec = spec_of_gguf(&[("general.name", name.into())]);
        assert_eq!(spec.rstrip_special, rstrip, "{name}");
    }
    assert!(!spec_of_gguf(&[]).rstrip_special);
}

// ---------------------------------------------------------------------------------------------
// hand-built SentencePiece vocabulary

/// ids: 0 `<unk>` (unknown), 1 `<s>`, 2 `</s>` (control), 3 + b `<0xXX>` (byte), then normal
/// pieces with scores (higher merges first).
fn toy_spm() -> TokenizerSpec {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut token_types = vec![2, 3, 3];
    let mut scores = vec![0.0; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        token_types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("he", -3.0),
        ("ll", -3.0),
        ("lo", -2.5),
        ("hell", -4.0),
        ("▁h", -6.0),
    ] {
        tokens.push(t.to_string());
        token_types.push(1);
        scores.push(s);
    }
    TokenizerSpec {
        model: "llama".into(),
        tokens,
        token_types,
        scores,
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
        add_space_prefix: true,
        ..TokenizerSpec::default()
    }
}

const SPM_SPACE: u32 = 259;
const SPM_H: u32 = 260;
const SPM_L: u32 = 262;
const SPM_HE: u32 = 264;
const SPM_LO: u32 = 266;
const SPM_SPACE_H: u32 = 268;

#[test]
fn spm_merges_by_score() {
    let tok = Tokenizer::from_spec(&toy_spm()).expect("toy spm");
    // "hello" -> "▁hello": pairs ▁h -6, he -3, ll -3, lo -2.5. lo first; then he and ll tie at -3
    // and the leftmost (he) wins; ll is then stale (its right l is inside lo). Never "hell".
    assert_eq!(
        tok.encode("hello", false).expect("encode"),
        vec![SPM_SPACE, SPM_HE, SPM_L, SPM_LO]
    );
    assert_eq!(
        tok.encode("hello", true).expect("encode"),
        vec![1, SPM_SPACE, SPM_HE, SPM_L, SPM_LO]
    );
    // no token for "é": its UTF-8 bytes C3 A9 as byte tokens; "▁h" (-6) is the only pair
    assert_eq!(
        tok.encode("hé", false).expect("encode"),
        vec![SPM_SPACE_H, 3 + 0xC3, 3 + 0xA9]
    );
    // a control token in the text; the text after it gets the space prefix again
    assert_eq!(
        tok.encode("h</s>h", false).expect("encode"),
        vec![SPM_SPACE_H, 2, SPM_SPACE_H]
    );
    // decode drops the prefix space of the first token, maps ▁ to spaces and bytes back
    assert_eq!(
        tok.decode(&tok.encode("hello hé", false).expect("encode")),
        "hello hé"
    );
    assert_eq!(tok.decode(&[1, SPM_SPACE, SPM_H]), "<s> h");
    assert_eq!(tok.token_str(SPM_SPACE).as_deref(), Some(" "));
    assert_eq!(tok.token_str(3 + b'\n' as u32).as_deref(), Some("\n"));
    assert!(tok.is_eog(2) && !tok.is_eog(1));
    let mut stream = tok.stream_decoder();
    let ids = tok.encode("hé", false).expect("encode");
    let out: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect();
    assert_eq!(out, ["h", "", "é"]);
}

#[test]
fn spm_without_a_space_prefix_as_gemma() {
    // tokenizer.ggml.add_space_prefix = false (Gemma): no ▁ before the text or after a special
    // token, and decode keeps a leading space that was really there.
    let tok = Tokenizer::from_spec(&TokenizerSpec {
        add_space_prefix: false,
        ..toy_spm()
    })
    .expect("toy spm");
    assert_eq!(
        tok.encode("hello", false).expect("encode"),
        vec![SPM_HE, SPM_L, SPM_LO]
    );
    assert_eq!(
        tok.encode("h</s> h", false).expect("encode"),
        vec![SPM_H, 2, SPM_SPACE_H]
    );
    assert_eq!(tok.decode(&[SPM_SPACE_H, SPM_L]), " hl");
}

#[test]
fn spm_partition_prefers_longest_special() {
    use super::spm::{Fragment, Special, partition};
    let special = |text: &str, id, rstrip| Special {
        text: text.into(),
        id,
        rstrip,
    };
    let specials = vec![special("<|ab|>", 7, false), special("<|a", 8, false)];
    assert_eq!(
        partition("x<|ab|>y<|a", &specials),
        vec![
            Fragment::Text("x"),
            Fragment::Token(7),
            Fragment::Text("y"),
            Fragment::Token(8)
        ]
    );
    assert!(partition("", &specials).is_empty());
    // rstrip: C's isspace characters after the token go (\x0b too), others (U+3000) stay
    let specials = vec![special("<|ab|>", 7, true)];
    assert_eq!(
        partition("<|ab|> \t\n\x0b\x0c\ry<|ab|>\u{3000}z<|ab|>  ", &specials),
        vec![
            Fragment::Token(7),
            Fragment::Text("y"),
            Fragment::Token(7),
            Fragment::Text("\u{3000}z"),
            Fragment::Token(7)
        ]
    );
}

#[test]
fn spm_rstrip_special_as_phi3() {
    // llama.cpp, general.name "Phi3": whitespace after a special token is dropped (the text
    // after it then gets the space prefix), except after <unk>, <s> and <|endoftext|>.
    let tok = Tokenizer::from_spec(&TokenizerSpec {
        rstrip_special: true,
        ..toy_spm()
    })
    .expect("toy spm");
    assert_eq!(
        tok.encode("h</s>\n h", false).expect("encode"),
        vec![SPM_SPACE_H, 2, SPM_SPACE_H]
    );
    assert_eq!(
        tok.encode("h<s> h", false).expect("encode"),
        vec![SPM_SPACE_H, 1, SPM_SPACE, SPM_SPACE_H]
    );
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

#[test]
fn from_json_byte_level() {
    // a minimal byte-level BPE tokenizer.json: bytes "a", "b", "Ġ", merge "a b"
    let json = r#"{
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [{"id": 4, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": false, "special": true}],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
      "post_processor": null,
      "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "<|endoftext|>": 4}, "merges": ["a b"]}
    }"#;
    let tok = Tokenizer::from_json(json).expect("tokenizer.json");
    assert_eq!(
        tok.encode("ab a<|endoftext|>", false).expect("encode"),
        vec![3, 2, 0, 4]
    );
    assert_eq!(tok.decode(&[3, 2, 0, 4]), "ab a<|endoftext|>");
    assert_eq!(tok.eos_id(), Some(4));
    assert!(tok.is_eog(4));
    assert_eq!(tok.token_str(2).as_deref(), Some(" "));
    let mut stream = tok.stream_decoder();
    let out: String = [3, 2, 0, 4].iter().map(|&id| stream.push(id)).collect();
    assert_eq!(out, "ab a<|endoftext|>");
    let err = Tokenizer::from_json("{\"chat_template\": \"\"}")
        .expect_err("not a tokenizer")
        .to_string();
    assert!(
        err.starts_with("tokenizer.json could not be loaded"),
        "{err}"
    );
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<ChatTemplate>();
}

#[test]
fn chatml_fallback() {
    let tok = Tokenizer::from_spec(&toy_bpe("smollm")).expect("toy");
    let t = ChatTemplate::for_model(None, &tok).expect("chatml");
    assert_eq!(t.source(), chat::CHATML_TEMPLATE);
    let msgs = [ChatMessage::system("S"), ChatMessage::user("U")];
    assert_eq!(
        t.render(&msgs, true).expect("render"),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    // the rendered prompt tokenizes with the control tokens as single ids
    let ids = tok
        .encode(&t.render(&msgs, false).expect("render"), false)
        .expect("encode");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    let own = ChatTemplate::for_model(Some("{{ eos_token }}"), &tok).expect("template");
    assert_eq!(own.render(&[], false).expect("render"), "<|endoftext|>");
}
