//! Tokenizer: GGUF vocabularies (gpt2 byte-level BPE, llama SentencePiece) and HF
//! `tokenizer.json`, plus chat templates.
//!
//! The GGUF path reproduces llama.cpp's `llama_tokenize(text, add_special, parse_special = true)`:
//!
//! * **gpt2** (`tokenizer.ggml.model = "gpt2"`): a [`tokenizers::Tokenizer`] with a byte-level
//!   BPE model built from `tokens` + `merges`, the pre-tokenizer that `tokenizer.ggml.pre` names
//!   (the same regex list llama.cpp uses for that name, see `pre.rs`), and every control,
//!   user-defined and unknown token (types 3, 4, 2) registered as a special `AddedToken`
//!   (`normalized = false`, no lstrip, rstrip only by [`TokenizerSpec::rstrip_special`]), so
//!   that such tokens written in the text become their ids.
//! * **llama** (`tokenizer.ggml.model = "llama"`): llama.cpp's SentencePiece tokenizer
//!   (`llm_tokenizer_spm`: merges by score priority, `▁` for spaces, `<0xXX>` byte fallback),
//!   implemented in `spm.rs`.
//!
//! Decoding concatenates the bytes each token stands for (control tokens as their text, byte-level
//! characters mapped back to bytes, `▁` to a space) and turns them into UTF-8 lossily; it does not
//! apply llama.cpp's `clean_spaces` pass, so `decode(encode(x)) == x` for gpt2 vocabularies.
//!
//! Unknown `tokenizer.ggml.pre` names: llama.cpp refuses to load them; we fall back to the GPT-2
//! regex (what HF's `ByteLevel` pre-tokenizer uses), log a warning, and report it in
//! [`Tokenizer::warnings`]. A missing `tokenizer.ggml.pre` uses llama.cpp's `default` regex list,
//! as llama.cpp does.

pub mod chat;
mod gguf_spec;
mod gguf_vocab;
mod pre;
mod spm;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use chat::{ChatMessage, ChatTemplate};

/// The tokenizer metadata of a GGUF file (`tokenizer.ggml.*`), decoupled from the GGUF reader.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`: `"gpt2"` or `"llama"`.
    pub model: String,
    /// `tokenizer.ggml.pre`: `"smollm"`, `"llama-bpe"`, `"qwen2"`, `"gpt-2"`, `"default"`, ...
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user defined, 5 unused,
    /// 6 byte); may be empty (all normal).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges` (`"a b"` strings), gpt2 only.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores` (llama/SentencePiece); may be empty (all 0).
    pub scores: Vec<f32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (default: llama true, gpt2 false).
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token` (default false).
    pub add_eos: bool,
    /// SentencePiece: a space is put before the text and after each special token
    /// (`tokenizer.ggml.add_space_prefix`; llama.cpp's default is true, Gemma's files say false).
    pub add_space_prefix: bool,
    /// `tokenizer.chat_template` (Jinja).
    pub chat_template: Option<String>,
    /// The whitespace right after a special token (but `<unk>`, `<s>`, `<|endoftext|>`) is
    /// dropped, as llama.cpp does for models whose `general.name` contains `phi-3` or `phi3`
    /// (`<|user|>\nHi` is `<|user|>` `▁Hi`).
    #[serde(default)]
    pub rstrip_special: bool,
}

/// Errors of the tokenizer layer. Every message says which metadata key or input is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "unsupported tokenizer model '{0}' in tokenizer.ggml.model (afinador supports gpt2 BPE and \
         llama SentencePiece; pass --tokenizer tokenizer.json)"
    )]
    UnsupportedModel(String),
    #[error(
        "tokenizer.ggml.tokens is empty: the GGUF file has no vocabulary (pass --tokenizer tokenizer.json)"
    )]
    EmptyVocab,
    #[error(
        "tokenizer.ggml.merges is missing or empty, but a gpt2 BPE vocabulary needs its merges \
         (re-convert the model with a recent llama.cpp convert_hf_to_gguf.py, or pass --tokenizer tokenizer.json)"
    )]
    MissingMerges,
    #[error(
        "{key} has {got} entries but tokenizer.ggml.tokens has {expected}; the GGUF metadata is inconsistent"
    )]
    LengthMismatch {
        key: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("duplicate token in tokenizer.ggml.tokens: {text:?} has ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("{key} = {id} is outside the vocabulary of {vocab_size} tokens")]
    SpecialIdOutOfRange {
        key: &'static str,
        id: u32,
        vocab_size: usize,
    },
    #[error(
        "{flag} is true but {id_key} is not set; cannot add the token (set the id or turn the flag off)"
    )]
    MissingSpecialId {
        flag: &'static str,
        id_key: &'static str,
    },
    #[error("could not build the tokenizer: {0}")]
    Build(String),
    #[error(
        "tokenizer.json could not be loaded: {0} (is it a Hugging Face tokenizers file, not tokenizer_config.json?)"
    )]
    Json(String),
    #[error("tokenization failed: {0}")]
    Encode(String),
    #[error("chat template does not parse: {0}")]
    TemplateSyntax(String),
    #[error("chat template failed to render: {0}")]
    TemplateRender(String),
}

pub type Result<T> = std::result::Result<T, TokenizerError>;

/// What kind of token an id is (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
    Undefined,
}

impl TokenKind {
    /// Maps a GGUF `token_type` value (llama.cpp's `llama_token_type`).
    pub fn from_gguf(t: i32) -> Self {
        match t {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Undefined,
        }
    }

    /// Control, user-defined and unknown tokens: matched literally in the text before
    /// tokenization and rendered as their text when decoding.
    pub fn is_special(self) -> bool {
        matches!(self, Self::Control | Self::UserDefined | Self::Unknown)
    }
}

/// Token texts llama.cpp treats as end of generation (`special_eog_ids`), besides EOS. As in
/// llama.cpp, such a token that is not typed control is made control.
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

enum Backend {
    /// GGUF gpt2: HF tokenizer built from the spec; decoding uses `Tokenizer::pieces`.
    Bpe(Box<tokenizers::Tokenizer>),
    /// GGUF llama: llama.cpp's SentencePiece algorithm.
    Spm(Box<spm::Spm>),
    /// A HF tokenizer.json: HF encodes and decodes.
    Json(Box<tokenizers::Tokenizer>),
}

/// A tokenizer for one model. Cheap to share by reference; all methods take `&self`.
pub struct Tokenizer {
    backend: Backend,
    /// Vocabulary text of each id (as stored: byte-level `Ġthe`, SentencePiece `▁the`).
    texts: Vec<String>,
    kinds: Vec<TokenKind>,
    /// Bytes each id decodes to (for `Json` only used for display: HF decodes).
    pieces: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// SentencePiece `add_space_prefix`: decode drops the leading space of the first token.
    strip_first_space: bool,
    eog: BTreeSet<u32>,
    pre: String,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Bpe(_) => "gguf-bpe",
            Backend::Spm(_) => "gguf-spm",
            Backend::Json(_) => "tokenizer.json",
        };
        f.debug_struct("Tokenizer")
            .field("kind", &kind)
            .field("pre", &self.pre)
            .field("vocab_size", &self.texts.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_spec(spec: &TokenizerSpec) -> Result<Self> {
        gguf_vocab::build(spec)
    }

    /// Loads a Hugging Face `tokenizer.json` (the `--tokenizer` flag). BOS/EOS are guessed from
    /// the added tokens (`<|begin_of_text|>`, `<s>`, ... / `<|endoftext|>`, `</s>`, ...); override
    /// them with [`Tokenizer::set_special_ids`]. `encode(.., add_special = true)` runs the file's
    /// own post-processor.
    pub fn from_json(json: &str) -> Result<Self> {
        gguf_vocab::build_json(json)
    }

    /// Overrides BOS/EOS (e.g. with the GGUF ids when `--tokenizer` replaces its vocabulary).
    /// The new EOS is added to the end-of-generation set.
    pub fn set_special_ids(&mut self, bos: Option<u32>, eos: Option<u32>) {
        self.bos = bos.filter(|&b| (b as usize) < self.texts.len());
        self.eos = eos.filter(|&e| (e as usize) < self.texts.len());
        if let Some(e) = self.eos {
            self.eog.insert(e);
        }
    }

    /// Tokenizes `text`. Control/user-defined tokens written in the text become their ids
    /// (llama.cpp `parse_special = true`). With `add_special`, BOS is prepended when the model
    /// says `add_bos` and EOS appended when it says `add_eos` (tokenizer.json: its post-processor).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos && !matches!(self.backend, Backend::Json(_)) {
            out.push(self.bos.ok_or(TokenizerError::MissingSpecialId {
                flag: "tokenizer.ggml.add_bos_token",
                id_key: "tokenizer.ggml.bos_token_id",
            })?);
        }
        match &self.backend {
            Backend::Bpe(hf) => {
                let enc = hf
                    .encode_fast(text, false)
                    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                // ids past the vocabulary: characters that are no token, dropped as llama.cpp
                // drops them (see `gguf_vocab::build_bpe`)
                let n = self.texts.len();
                out.extend(enc.get_ids().iter().filter(|&&id| (id as usize) < n));
            }
            Backend::Spm(spm) => spm.encode(text, &mut out),
            Backend::Json(hf) => {
                let enc = hf
                    .encode_fast(text, add_special)
                    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                out.extend_from_slice(enc.get_ids());
            }
        }
        if add_special && self.add_eos && !matches!(self.backend, Backend::Json(_)) {
            out.push(self.eos.ok_or(TokenizerError::MissingSpecialId {
                flag: "tokenizer.ggml.add_eos_token",
                id_key: "tokenizer.ggml.eos_token_id",
            })?);
        }
        Ok(out)
    }

    /// Decodes ids to text, control tokens included as their text (`<|im_end|>`). Invalid UTF-8
    /// (e.g. a cut multi-byte character) becomes U+FFFD; ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.backend {
            Backend::Json(hf) => {
                let ids: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|&i| (i as usize) < self.texts.len())
                    .collect();
                hf.decode(&ids, false).unwrap_or_default()
            }
            _ => String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned(),
        }
    }

    /// The raw bytes `ids` stand for (GGUF backends).
    fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            if let Some(p) = self.pieces.get(id as usize) {
                let p = if i == 0 && self.strip_first_space {
                    p.strip_prefix(b" ").unwrap_or(p)
                } else {
                    p
                };
                bytes.extend_from_slice(p);
            }
        }
        bytes
    }

    /// The display form of one token: byte-level `Ġthe` is shown as `" the"`, SentencePiece
    /// `▁the` as `" the"`, control tokens as their text (`<|im_end|>`), byte tokens `<0x0A>` as the
    /// byte (`"\n"`); a piece that is not valid UTF-8 on its own (part of a multi-byte character)
    /// shows U+FFFD. `None` for ids outside the vocabulary.
    pub fn token_str(&self, id: u32) -> Option<String> {
        let i = id as usize;
        let text = self.texts.get(i)?;
        Some(match self.kinds[i] {
            TokenKind::Normal | TokenKind::Byte => {
                String::from_utf8_lossy(&self.pieces[i]).into_owned()
            }
            _ => text.clone(),
        })
    }

    /// The vocabulary text of `id` as stored (`Ġthe`, `▁the`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// The id whose vocabulary text is exactly `text` (e.g. `"<|im_end|>"`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.backend {
            Backend::Bpe(hf) | Backend::Json(hf) => hf
                .token_to_id(text)
                .filter(|&id| (id as usize) < self.texts.len()),
            Backend::Spm(spm) => spm.token_id(text),
        }
    }

    /// The kind of `id` (GGUF `token_type`; tokenizer.json: added special tokens are `Control`).
    pub fn token_kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// `tokenizer.ggml.padding_token_id` (tokenizer.json: none).
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Whether `encode(.., true)` prepends BOS / appends EOS (GGUF backends).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Number of ids (the embedding rows the model needs), added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// End of generation: EOS, or an end-of-turn control token such as `<|im_end|>`,
    /// `<|endoftext|>`, `<|eot_id|>` (llama.cpp's `special_eog_ids`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.eog.iter().copied().collect()
    }

    /// The pre-tokenizer in use, e.g. `"smollm"`, or `"gpt-2 (fallback for unknown 'foo')"`.
    pub fn pre_tokenizer(&self) -> &str {
        &self.pre
    }

    /// Things the loader had to work around (unknown pre-tokenizer, skipped merges, ...), for
    /// the CLI to print. Each was also logged with `log::warn!`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A streaming detokenizer for generation: feed ids, get the newly completed text.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            pending: Vec::new(),
            ids: Vec::new(),
            emitted: 0,
            first: true,
        }
    }
}

/// Incremental detokenizer. [`StreamDecoder::push`] returns the text completed by one more id and
/// holds back an incomplete UTF-8 sequence (an emoji split over byte tokens) until the rest
/// arrives; [`StreamDecoder::finish`] flushes what is left (lossily).
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    /// GGUF backends: bytes not yet returned.
    pending: Vec<u8>,
    /// tokenizer.json backend: ids since the last emitted boundary, and the length of the text
    /// of those ids already returned.
    ids: Vec<u32>,
    emitted: usize,
    first: bool,
}

impl std::fmt::Debug for StreamDecoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("pending", &self.pending)
            .field("ids", &self.ids)
            .finish()
    }
}

impl StreamDecoder<'_> {
    /// Adds one id; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        if let Backend::Json(_) = self.tok.backend {
            return self.push_json(id);
        }
        let Some(p) = self.tok.pieces.get(id as usize) else {
            return String::new();
        };
        let p = if self.first && self.tok.strip_first_space {
            p.strip_prefix(b" ").unwrap_or(p)
        } else {
            p
        };
        self.first = false;
        self.pending.extend_from_slice(p);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // valid_up_to is a char boundary of valid UTF-8
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // incomplete sequence at the end: wait for more bytes
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // invalid bytes: emit U+FFFD and go on after them
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
    }

    fn push_json(&mut self, id: u32) -> String {
        if id as usize >= self.tok.texts.len() {
            return String::new();
        }
        self.ids.push(id);
        let text = self.tok.decode(&self.ids);
        if text.ends_with(char::REPLACEMENT_CHARACTER) || text.len() < self.emitted {
            return String::new();
        }
        let new = text.get(self.emitted..).unwrap_or_default().to_string();
        // keep the last id as context (decoders that strip a leading space look at the start)
        if self.ids.len() > 1 {
            let last = self.ids[self.ids.len() - 1];
            self.ids.clear();
            self.ids.push(last);
            self.emitted = self.tok.decode(&self.ids).len();
        } else {
            self.emitted = text.len();
        }
        new
    }

    /// Returns whatever is held back (an unfinished UTF-8 sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
