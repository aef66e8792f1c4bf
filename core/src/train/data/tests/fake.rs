//! A character-level tokenizer (one id per `char`, its code point) with ChatML special tokens,
//! for tests that must be able to read every id back as text.

use crate::train::data::reader::Item;
use crate::train::data::{RecordReader, SourceKind, TextEncoder};

pub const BOS: u32 = 0x11_0000;
pub const IM_START: u32 = 0x11_0001;
pub const IM_END: u32 = 0x11_0002;
pub const EOS_TEXT: u32 = 0x11_0003;

const SPECIALS: [(&str, u32); 4] = [
    ("<s>", BOS),
    ("<|im_start|>", IM_START),
    ("<|im_end|>", IM_END),
    ("</s>", EOS_TEXT),
];

/// How the fake chat template behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// ChatML, like `CHATML_TEMPLATE` of the tokenizer module.
    ChatMl,
    /// ChatML preceded by `<s>` written by the template itself (as Llama 3 templates do).
    ChatMlWithBos,
    /// Starts with the number of messages: every prefix renders differently.
    Unstable,
    /// Always fails.
    Broken,
    /// ChatML, and `</s>` after the last turn of a finished conversation.
    TrailingEos,
    /// ChatML, but assistant turns that are not the last message are rendered as `…` (as
    /// templates that strip the reasoning of earlier turns do).
    StripEarlier,
}

#[derive(Debug, Clone)]
pub struct Fake {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub template: Template,
}

impl Fake {
    /// SmolLM2-like: no BOS added, EOS = `<|im_end|>`, ChatML.
    pub fn chatml() -> Self {
        Self {
            bos: Some(BOS),
            eos: Some(IM_END),
            add_bos: false,
            template: Template::ChatMl,
        }
    }

    /// Llama-like: BOS added, EOS `</s>`.
    pub fn with_bos() -> Self {
        Self {
            bos: Some(BOS),
            eos: Some(EOS_TEXT),
            add_bos: true,
            template: Template::ChatMl,
        }
    }
}

impl TextEncoder for Fake {
    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        'outer: while let Some(c) = rest.chars().next() {
            for (s, id) in SPECIALS {
                if let Some(r) = rest.strip_prefix(s) {
                    out.push(id);
                    rest = r;
                    continue 'outer;
                }
            }
            out.push(c as u32);
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    fn render_chat(&self, messages: &[(String, String)], add_gen: bool) -> Result<String, String> {
        let mut s = String::new();
        match self.template {
            Template::Broken => return Err("raise_exception: roles must alternate".into()),
            Template::ChatMlWithBos => s.push_str("<s>"),
            Template::Unstable => s.push_str(&format!("[{}]", messages.len())),
            Template::ChatMl | Template::TrailingEos | Template::StripEarlier => {}
        }
        for (i, (role, content)) in messages.iter().enumerate() {
            let strip = self.template == Template::StripEarlier
                && role == "assistant"
                && i + 1 < messages.len();
            let content = if strip { "…" } else { content.as_str() };
            s.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
        }
        if add_gen {
            s.push_str("<|im_start|>assistant\n");
        } else if self.template == Template::TrailingEos {
            s.push_str("</s>");
        }
        Ok(s)
    }

    fn bos(&self) -> Option<u32> {
        self.bos
    }

    fn eos(&self) -> Option<u32> {
        self.eos
    }

    fn add_bos(&self) -> bool {
        self.add_bos
    }
}

/// Ids back to text (specials as their text).
pub fn decode(ids: &[u32]) -> String {
    ids.iter()
        .map(|&id| match SPECIALS.iter().find(|(_, s)| *s == id) {
            Some((t, _)) => t.to_string(),
            None => char::from_u32(id).map_or("\u{fffd}".into(), String::from),
        })
        .collect()
}

/// Deterministic test PRNG (xorshift64*).
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }
}

/// Reads `data` fed in the given chunk sizes (cycled), then finishes.
pub fn read_chunked(kind: SourceKind, data: &[u8], sizes: &[usize]) -> Vec<Item> {
    let mut r = RecordReader::new(kind);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < data.len() {
        let n = sizes[k % sizes.len()].max(1).min(data.len() - pos);
        out.extend(r.push(&data[pos..pos + n]));
        pos += n;
        k += 1;
    }
    out.extend(r.finish());
    out
}

/// Reads `data` in one chunk.
pub fn read_all(kind: SourceKind, data: &[u8]) -> Vec<Item> {
    read_chunked(kind, data, &[data.len().max(1)])
}
