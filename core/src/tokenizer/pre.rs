//! The pre-tokenizers of gpt2 vocabularies, by `tokenizer.ggml.pre`: llama.cpp's regex lists
//! (`src/llama-vocab.cpp`, `llm_tokenizer_bpe`), applied in order, each splitting every piece
//! the previous one produced and keeping both matches and the text between them (HF `Split`
//! with `Isolated`), then the GPT-2 byte-to-unicode mapping (HF `ByteLevel`, `use_regex = false`).

use tokenizers::SplitDelimiterBehavior;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

use super::{Result, TokenizerError};

/// GPT-2's regex as llama.cpp writes it (HF `ByteLevel` adds a trailing `|\s+`, which makes no
/// difference under `Isolated` splitting).
const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3: llama.cpp's case-insensitive-contraction adaptation of the tokenizer.json regex.
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2: as Llama 3 but single digits.
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5: as Qwen2, but letter runs take combining marks (`\p{M}`) along.
const QWEN35_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// deepseek-llm's letter runs: llama.cpp's explicit ranges (Latin, Greek, Cyrillic, Armenian,
/// Georgian, Cherokee, ... and full-width Latin), an optional whitespace before.
const DEEPSEEK_LLM_LETTERS_RE: &str = r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
/// deepseek's CJK runs: llama.cpp's ranges (U+4E00..U+9FA5, U+0800..U+4E00, U+AC00..U+D7FF) less
/// whitespace. llama.cpp matches a regex without `\p{..}` classes (std::wregex) on the text with
/// every non-ASCII whitespace character replaced by U+000B, so U+3000, U+2028, U+2000..U+200A
/// etc. never match a literal range that spans them; `&&\S` says the same here.
const DEEPSEEK_CJK_RE: &str = r"[[一-龥ࠀ-一가-퟿]&&\S]+";
/// deepseek-llm's punctuation runs: ASCII, full-width and CJK punctuation, U+3000 left out as
/// above.
const DEEPSEEK_LLM_PUNCT_RE: &str = r"\s?[[!-/:-~！-／：-～‘-‟　-。]&&\S]+";

/// The pre-tokenizer families llama.cpp knows that we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PreKind {
    /// `\p{N}` (each digit alone), then GPT-2: starcoder, refact, command-r, smollm, codeshell, ...
    Starcoder,
    /// GPT-2 regex alone: gpt-2, phi-2, mpt, olmo, jais, ...
    Gpt2,
    /// Llama 3 regex, `ignore_merges`: llama3, llama-bpe, falcon3, ...
    Llama3 { ignore_merges: bool },
    /// Qwen2 regex: qwen2, stablelm2, deepseek-r1-qwen, ...
    Qwen2,
    /// Qwen2 regex with combining marks in letter runs: qwen35.
    Qwen35,
    /// Punctuation runs, GPT-2, then three-digit groups: falcon.
    Falcon,
    /// Newlines, letter runs, punctuation runs, CJK runs, single digits: deepseek-coder.
    DeepseekCoder,
    /// Newlines, Latin/Greek/Cyrillic/... letter runs, ASCII and full-width punctuation runs,
    /// trailing spaces, CJK runs, digit runs: deepseek-llm.
    DeepseekLlm,
    /// llama.cpp's `default` list (also used when `tokenizer.ggml.pre` is missing).
    Default,
}

/// Whether llama.cpp adds BOS for pre-tokenizer `pre` when `tokenizer.ggml.add_bos_token` is
/// absent: its Llama 3 group (the names of `PreKind::Llama3 { ignore_merges: true }`), tekken and
/// chameleon.
pub(super) fn adds_bos_by_default(pre: &str) -> bool {
    matches!(
        pre_kind(pre),
        Some(PreKind::Llama3 {
            ignore_merges: true
        })
    ) || matches!(pre, "tekken" | "chameleon")
}

pub(super) fn pre_kind(pre: &str) -> Option<PreKind> {
    Some(match pre {
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => PreKind::Starcoder,
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
        | "exaone4" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => PreKind::Gpt2,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreKind::Llama3 {
            ignore_merges: true,
        },
        "dbrx" | "smaug-bpe" => PreKind::Llama3 {
            ignore_merges: false,
        },
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "hunyuan"
        | "solar-open" | "megrez" => PreKind::Qwen2,
        "qwen35" => PreKind::Qwen35,
        "falcon" => PreKind::Falcon,
        "deepseek-coder" => PreKind::DeepseekCoder,
        "deepseek-llm" => PreKind::DeepseekLlm,
        "default" => PreKind::Default,
        _ => return None,
    })
}

fn split(re: &str) -> Result<PreTokenizerWrapper> {
    let s = Split::new(
        SplitPattern::Regex(re.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| TokenizerError::Build(format!("pre-tokenizer regex {re:?}: {e}")))?;
    Ok(s.into())
}

pub(super) fn pre_tokenizer(kind: PreKind) -> Result<PreTokenizerWrapper> {
    let byte_level = |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, false, use_regex));
    let steps = match kind {
        PreKind::Starcoder => vec![Digits::new(true).into(), byte_level(true)],
        PreKind::Gpt2 => vec![byte_level(true)],
        PreKind::Llama3 { .. } => vec![split(LLAMA3_RE)?, byte_level(false)],
        PreKind::Qwen2 => vec![split(QWEN2_RE)?, byte_level(false)],
        PreKind::Qwen35 => vec![split(QWEN35_RE)?, byte_level(false)],
        PreKind::Falcon => vec![
            split(r"[\p{P}\$\+<=>\^~\|`]+")?,
            split(GPT2_RE)?,
            split(r"[0-9][0-9][0-9]")?,
            byte_level(false),
        ],
        PreKind::DeepseekCoder => vec![
            split(r"[\r\n]")?,
            split(r"\s?\p{L}+")?,
            split(r"\s?\p{P}+")?,
            split(DEEPSEEK_CJK_RE)?,
            split(r"\p{N}")?,
            byte_level(false),
        ],
        PreKind::DeepseekLlm => vec![
            split(r"[\r\n]")?,
            split(DEEPSEEK_LLM_LETTERS_RE)?,
            split(DEEPSEEK_LLM_PUNCT_RE)?,
            split(r"\s+$")?,
            split(DEEPSEEK_CJK_RE)?,
            split(r"\p{N}+")?,
            byte_level(false),
        ],
        PreKind::Default => vec![
            split(r"[\p{P}\$\+<=>\^~\|]+")?,
            split(GPT2_RE)?,
            split(r"\p{N}+")?,
            split(r"[0-9][0-9][0-9]")?,
            byte_level(false),
        ],
    };
    Ok(Sequence::new(steps).into())
}
