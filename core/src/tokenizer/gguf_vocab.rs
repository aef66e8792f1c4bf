//! Building a [`Tokenizer`] from GGUF metadata ([`TokenizerSpec`]) or a HF `tokenizer.json`.
//!
//! gpt2 vocabularies: a HF byte-level BPE model from `tokens` + `merges`, with the pre-tokenizer
//! `tokenizer.ggml.pre` names (`pre.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};

use tokenizers::AddedToken;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};

use super::pre::{PreKind, pre_kind, pre_tokenizer};
use super::{Backend, EOG_TEXTS, Result, TokenKind, Tokenizer, TokenizerError, TokenizerSpec, spm};

/// The text of the byte-level BPE model's unknown token (see `build_bpe`): a NUL, which a
/// byte-level vocabulary spells `Ā`, so no real token is this.
const NOT_A_TOKEN: &str = "\0[not a token]";

/// The inverse of GPT-2's byte-to-unicode table (byte-level vocabulary character -> byte):
/// printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100.. in byte order.
fn char_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut n = 0u32;
    for b in 0..=255u8 {
        if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
            map.insert(char::from(b), b);
        } else if let Some(c) = char::from_u32(256 + n) {
            map.insert(c, b);
            n += 1;
        }
    }
    map
}

/// `<0xXX>` -> the byte.
pub(super) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Token kinds from `token_types`, with llama.cpp's override: end-of-turn texts that are not
/// typed control (old conversions) become control.
fn kinds_of(spec: &TokenizerSpec, warnings: &mut Vec<String>) -> Result<Vec<TokenKind>> {
    let n = spec.tokens.len();
    if !spec.token_types.is_empty() && spec.token_types.len() < n {
        return Err(TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.token_type",
            got: spec.token_types.len(),
            expected: n,
        });
    }
    let mut kinds: Vec<TokenKind> = if spec.token_types.is_empty() {
        vec![TokenKind::Normal; n]
    } else {
        spec.token_types[..n]
            .iter()
            .map(|&t| TokenKind::from_gguf(t))
            .collect()
    };
    for (i, t) in spec.tokens.iter().enumerate() {
        if EOG_TEXTS.contains(&t.as_str()) && kinds[i] != TokenKind::Control {
            warn(
                warnings,
                format!(
                    "token {i} {t:?} looks like a control token but is typed {:?}; treating it as control",
                    kinds[i]
                ),
            );
            kinds[i] = TokenKind::Control;
        }
    }
    Ok(kinds)
}

/// Whether the whitespace after special token `text` is dropped: llama.cpp's Phi-3 rule
/// ([`TokenizerSpec::rstrip_special`]), every special token but `<unk>`, `<s>`, `<|endoftext|>`.
fn rstrips(spec: &TokenizerSpec, text: &str) -> bool {
    spec.rstrip_special && !matches!(text, "<unk>" | "<s>" | "<|endoftext|>")
}

fn warn(warnings: &mut Vec<String>, msg: String) {
    log::warn!("tokenizer: {msg}");
    warnings.push(msg);
}

fn check_id(key: &'static str, id: Option<u32>, n: usize) -> Result<Option<u32>> {
    match id {
        Some(id) if id as usize >= n => Err(TokenizerError::SpecialIdOutOfRange {
            key,
            id,
            vocab_size: n,
        }),
        _ => Ok(id),
    }
}

/// EOS plus every token whose text is one of llama.cpp's end-of-generation names, with its two
/// exceptions: `<|end|>` is not EOG next to `<|return|>` + `<|call|>` (gpt-oss) or `<|calls|>` +
/// `<|flush|>` (solar-open), and `</s>` is not EOG next to `<|tool_response>` (Gemma 4).
fn eog_set(texts: &[String], eos: Option<u32>) -> BTreeSet<u32> {
    let mut eog: BTreeSet<u32> = texts
        .iter()
        .enumerate()
        .filter(|(_, t)| EOG_TEXTS.contains(&t.as_str()))
        .map(|(i, _)| i as u32)
        .collect();
    let find =
        |eog: &BTreeSet<u32>, name: &str| eog.iter().copied().find(|&i| texts[i as usize] == name);
    let has = |eog: &BTreeSet<u32>, name: &str| find(eog, name).is_some();
    let gpt_oss = has(&eog, "<|return|>") && has(&eog, "<|call|>");
    let solar = has(&eog, "<|calls|>") && has(&eog, "<|flush|>");
    if let (true, Some(end)) = (gpt_oss || solar, find(&eog, "<|end|>")) {
        eog.remove(&end);
    }
    if let (true, Some(s)) = (has(&eog, "<|tool_response>"), find(&eog, "</s>")) {
        eog.remove(&s);
    }
    eog.extend(eos);
    eog
}

pub(super) fn build(spec: &TokenizerSpec) -> Result<Tokenizer> {
    match spec.model.as_str() {
        "gpt2" => build_bpe(spec),
        "llama" => build_spm(spec),
        other => Err(TokenizerError::UnsupportedModel(other.to_string())),
    }
}

/// Token texts with llama.cpp's fix for empty entries, and the text -> id map (duplicates fail).
fn texts_and_ids(
    spec: &TokenizerSpec,
    warnings: &mut Vec<String>,
) -> Result<(Vec<String>, HashMap<String, u32>)> {
    if spec.tokens.is_empty() {
        return Err(TokenizerError::EmptyVocab);
    }
    let mut texts = Vec::with_capacity(spec.tokens.len());
    let mut ids = HashMap::with_capacity(spec.tokens.len());
    for (i, t) in spec.tokens.iter().enumerate() {
        let t = if t.is_empty() {
            warn(
                warnings,
                format!("empty token at index {i}, renamed [EMPTY_{i}]"),
            );
            format!("[EMPTY_{i}]")
        } else {
            t.clone()
        };
        if let Some(first) = ids.insert(t.clone(), i as u32) {
            return Err(TokenizerError::DuplicateToken {
                text: t,
                first,
                second: i as u32,
            });
        }
        texts.push(t);
    }
    Ok((texts, ids))
}

fn build_bpe(spec: &TokenizerSpec) -> Result<Tokenizer> {
    let mut warnings = Vec::new();
    let (texts, ids) = texts_and_ids(spec, &mut warnings)?;
    let kinds = kinds_of(spec, &mut warnings)?;
    if spec.merges.is_empty() {
        return Err(TokenizerError::MissingMerges);
    }

    let (kind, pre) = match spec.pre.as_deref() {
        None | Some("") => {
            warn(
                &mut warnings,
                "tokenizer.ggml.pre is missing; using llama.cpp's 'default' pre-tokenizer \
                 (generation quality may suffer; re-convert the model)"
                    .into(),
            );
            (
                PreKind::Default,
                "default (tokenizer.ggml.pre missing)".to_string(),
            )
        }
        Some(p) => match pre_kind(p) {
            Some(k) => (k, p.to_string()),
            None => {
                warn(
                    &mut warnings,
                    format!(
                        "tokenizer.ggml.pre '{p}' is not supported; falling back to the GPT-2 \
                         regex, so token ids may differ from llama.cpp (pass --tokenizer \
                         tokenizer.json for exact tokenization)"
                    ),
                );
                (PreKind::Gpt2, format!("gpt-2 (fallback for unknown '{p}')"))
            }
        },
    };
    let ignore_merges = matches!(
        kind,
        PreKind::Llama3 {
            ignore_merges: true
        }
    );

    // Merges: split at the first space after the first character (llama.cpp), keep the first
    // occurrence of a pair, drop those whose parts or result are not tokens.
    let mut merges = Vec::with_capacity(spec.merges.len());
    let mut seen = HashSet::with_capacity(spec.merges.len());
    let mut skipped = 0usize;
    for m in &spec.merges {
        let Some((pos, _)) = m.char_indices().skip(1).find(|&(_, c)| c == ' ') else {
            skipped += 1;
            continue;
        };
        let (a, b) = (&m[..pos], &m[pos + 1..]);
        let joined = format!("{a}{b}");
        if !ids.contains_key(a) || !ids.contains_key(b) || !ids.contains_key(&joined) {
            skipped += 1;
            continue;
        }
        if seen.insert((a.to_string(), b.to_string())) {
            merges.push((a.to_string(), b.to_string()));
        }
    }
    if skipped > 0 {
        warn(
            &mut warnings,
            format!(
                "{skipped} of {} merges in tokenizer.ggml.merges are malformed or name \
                 non-tokens; skipped",
                spec.merges.len()
            ),
        );
    }

    // A character that is no token (Falcon's vocabulary has no 0x0B, 0x03, ...): llama.cpp keeps
    // it as a symbol while merging, so no merge spans it, and drops it at the end. HF's BPE drops
    // it before merging, letting its neighbours merge, unless there is an unknown token: so it
    // gets one, an id past the vocabulary that `Tokenizer::encode` then drops.
    let mut vocab: Vocab = ids.iter().map(|(t, &i)| (t.clone(), i)).collect();
    if vocab
        .insert(NOT_A_TOKEN.to_string(), texts.len() as u32)
        .is_some()
    {
        return Err(TokenizerError::Build(format!(
            "the vocabulary holds afinador's internal token {NOT_A_TOKEN:?}"
        )));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(NOT_A_TOKEN.to_string())
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| {
            TokenizerError::Build(format!("BPE model from tokenizer.ggml.tokens/merges: {e}"))
        })?;
    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_pre_tokenizer(Some(pre_tokenizer(kind)?));
    hf.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = texts
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.is_special())
        .map(|(t, _)| {
            // (HF's rstrip takes Unicode whitespace along; llama.cpp only ASCII.)
            AddedToken::from(t.clone(), true)
                .normalized(false)
                .lstrip(false)
                .rstrip(rstrips(spec, t))
                .single_word(false)
        })
        .collect();
    hf.add_special_tokens(&specials);

    // Decoded bytes per token (llama.cpp token_to_piece with special = true).
    let char_byte = char_to_byte();
    let pieces = texts
        .iter()
        .zip(&kinds)
        .map(|(t, k)| match k {
            TokenKind::Normal => {
                let mut bytes = Vec::with_capacity(t.len());
                for c in t.chars() {
                    match char_byte.get(&c) {
                        Some(&b) => bytes.push(b),
                        None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                bytes
            }
            TokenKind::Byte => parse_byte_token(t).map(|b| vec![b]).unwrap_or_default(),
            k if k.is_special() => t.as_bytes().to_vec(),
            _ => Vec::new(),
        })
        .collect();

    finish(
        spec,
        Backend::Bpe(Box::new(hf)),
        texts,
        kinds,
        pieces,
        false,
        pre,
        warnings,
    )
}

fn build_spm(spec: &TokenizerSpec) -> Result<Tokenizer> {
    let mut warnings = Vec::new();
    let (texts, ids) = texts_and_ids(spec, &mut warnings)?;
    let n = texts.len();
    let kinds = kinds_of(spec, &mut warnings)?;
    if !spec.scores.is_empty() && spec.scores.len() < n {
        return Err(TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.scores",
            got: spec.scores.len(),
            expected: n,
        });
    }
    let scores = if spec.scores.is_empty() {
        vec![0.0; n]
    } else {
        spec.scores[..n].to_vec()
    };
    let unk = check_id("tokenizer.ggml.unknown_token_id", spec.unk_id, n)?;
    let pieces = texts
        .iter()
        .zip(&kinds)
        .map(|(t, k)| match k {
            TokenKind::Normal => t.replace('\u{2581}', " ").into_bytes(),
            TokenKind::Byte => parse_byte_token(t).map(|b| vec![b]).unwrap_or_default(),
            k if k.is_special() => t.as_bytes().to_vec(),
            _ => Vec::new(),
        })
        .collect();
    let specials = texts
        .iter()
        .zip(&kinds)
        .enumerate()
        .filter(|(_, (_, k))| k.is_special())
        .map(|(i, (t, _))| spm::Special {
            text: t.clone(),
            id: i as u32,
            rstrip: rstrips(spec, t),
        })
        .collect();
    let model = spm::Spm::new(ids, specials, scores, unk, spec.add_space_prefix);
    finish(
        spec,
        Backend::Spm(Box::new(model)),
        texts,
        kinds,
        pieces,
        spec.add_space_prefix,
        "llama (SentencePiece)".into(),
        warnings,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    spec: &TokenizerSpec,
    backend: Backend,
    texts: Vec<String>,
    kinds: Vec<TokenKind>,
    pieces: Vec<Vec<u8>>,
    strip_first_space: bool,
    pre: String,
    warnings: Vec<String>,
) -> Result<Tokenizer> {
    let n = texts.len();
    let bos = check_id("tokenizer.ggml.bos_token_id", spec.bos_id, n)?;
    let eos = check_id("tokenizer.ggml.eos_token_id", spec.eos_id, n)?;
    let pad = check_id("tokenizer.ggml.padding_token_id", spec.pad_id, n)?;
    if spec.add_bos && bos.is_none() {
        return Err(TokenizerError::MissingSpecialId {
            flag: "tokenizer.ggml.add_bos_token",
            id_key: "tokenizer.ggml.bos_token_id",
        });
    }
    if spec.add_eos && eos.is_none() {
        return Err(TokenizerError::MissingSpecialId {
            flag: "tokenizer.ggml.add_eos_token",
            id_key: "tokenizer.ggml.eos_token_id",
        });
    }
    let eog = eog_set(&texts, eos);
    Ok(Tokenizer {
        backend,
        texts,
        kinds,
        pieces,
        bos,
        eos,
        pad,
        add_bos: spec.add_bos,
        add_eos: spec.add_eos,
        strip_first_space,
        eog,
        pre,
        warnings,
    })
}

const BOS_TEXTS: &[&str] = &[
    "<|begin_of_text|>",
    "<s>",
    "<|startoftext|>",
    "<bos>",
    "[CLS]",
];
const EOS_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "</s>",
    "<|end_of_text|>",
    "<eos>",
    "<|im_end|>",
    "<|eot_id|>",
    "[SEP]",
];

/// Whether a tokenizer.json decodes byte-level (GPT-2 style) tokens.
fn json_is_byte_level(json: &serde_json::Value) -> bool {
    let is_bl = |d: &serde_json::Value| d.get("type").and_then(|t| t.as_str()) == Some("ByteLevel");
    match json.get("decoder") {
        Some(d) if is_bl(d) => true,
        Some(d) => d
            .get("decoders")
            .and_then(|v| v.as_array())
            .is_some_and(|v| v.iter().any(is_bl)),
        None => false,
    }
}

pub(super) fn build_json(json: &str) -> Result<Tokenizer> {
    use std::str::FromStr;
    let hf =
        tokenizers::Tokenizer::from_str(json).map_err(|e| TokenizerError::Json(e.to_string()))?;
    let parsed: serde_json::Value =
        serde_json::from_str(json).map_err(|e| TokenizerError::Json(e.to_string()))?;
    let byte_level = json_is_byte_level(&parsed);
    let n = hf.get_vocab_size(true);
    let texts: Vec<String> = (0..n as u32)
        .map(|i| hf.id_to_token(i).unwrap_or_default())
        .collect();
    let added = hf.get_added_tokens_decoder();
    let kinds: Vec<TokenKind> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| match added.get(&(i as u32)) {
            Some(a) if a.special => TokenKind::Control,
            Some(_) => TokenKind::UserDefined,
            None if !byte_level && parse_byte_token(t).is_some() => TokenKind::Byte,
            None => TokenKind::Normal,
        })
        .collect();
    let char_byte = char_to_byte();
    // Display pieces only (token_str); decode goes through HF.
    let pieces = texts
        .iter()
        .zip(&kinds)
        .map(|(t, k)| match k {
            TokenKind::Normal if byte_level => t
                .chars()
                .flat_map(|c| match char_byte.get(&c) {
                    Some(&b) => vec![b],
                    None => c.to_string().into_bytes(),
                })
                .collect(),
            TokenKind::Normal => t.replace('\u{2581}', " ").into_bytes(),
            TokenKind::Byte => parse_byte_token(t).map(|b| vec![b]).unwrap_or_default(),
            _ => t.as_bytes().to_vec(),
        })
        .collect();
    let find = |names: &[&str]| names.iter().find_map(|name| hf.token_to_id(name));
    let bos = find(BOS_TEXTS);
    let eos = find(EOS_TEXTS);
    let eog = eog_set(&texts, eos);
    Ok(Tokenizer {
        backend: Backend::Json(Box::new(hf)),
        texts,
        kinds,
        pieces,
        bos,
        eos,
        pad: None,
        add_bos: false,
        add_eos: false,
        strip_first_space: false,
        eog,
        pre: "tokenizer.json".into(),
        warnings: Vec::new(),
    })
}
