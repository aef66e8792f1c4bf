//! llama.cpp's SentencePiece tokenizer (`llm_tokenizer_spm`) for `tokenizer.ggml.model = "llama"`.
//!
//! Steps, as in `llama_vocab::impl::tokenize` with `parse_special = true`:
//! 1. split the text on special tokens (control, user-defined, unknown), longest text first,
//!    every occurrence, left to right, dropping the whitespace after those marked `rstrip`
//!    (`tokenizer_st_partition`);
//! 2. each text fragment gets a leading space when it starts the text or follows a special token
//!    and the model says `add_space_prefix` (Gemma's files do not), then spaces become `▁`;
//! 3. start from one symbol per character and repeatedly merge the adjacent pair whose
//!    concatenation is the vocabulary token with the highest score (ties: leftmost);
//! 4. symbols that are not tokens are emitted as their bytes (`<0xXX>` tokens).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// A token matched literally in the text before tokenization (control, user-defined, unknown).
pub(super) struct Special {
    pub(super) text: String,
    pub(super) id: u32,
    /// ASCII whitespace right after it is dropped (llama.cpp's `LLAMA_TOKEN_ATTR_RSTRIP`).
    pub(super) rstrip: bool,
}

pub(super) struct Spm {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    /// Longest first.
    specials: Vec<Special>,
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    add_space_prefix: bool,
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// A piece of the input after special-token splitting.
#[derive(Debug, PartialEq)]
pub(super) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// llama.cpp's `tokenizer_st_partition`: for each special token (longest first), split every
/// remaining text fragment at each of its occurrences; after an `rstrip` token the text resumes
/// past C's `isspace` characters.
pub(super) fn partition<'a>(text: &'a str, specials: &[Special]) -> Vec<Fragment<'a>> {
    let mut frags = Vec::new();
    if !text.is_empty() {
        frags.push(Fragment::Text(text));
    }
    for special in specials {
        let text = special.text.as_str();
        if !frags
            .iter()
            .any(|f| matches!(f, Fragment::Text(t) if t.contains(text)))
        {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            match f {
                Fragment::Token(_) => next.push(f),
                Fragment::Text(mut rest) => {
                    while let Some(pos) = rest.find(text) {
                        if pos > 0 {
                            next.push(Fragment::Text(&rest[..pos]));
                        }
                        next.push(Fragment::Token(special.id));
                        rest = &rest[pos + text.len()..];
                        if special.rstrip {
                            rest = rest.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
                        }
                    }
                    if !rest.is_empty() {
                        next.push(Fragment::Text(rest));
                    }
                }
            }
        }
        frags = next;
    }
    frags
}

impl Spm {
    pub(super) fn new(
        ids: HashMap<String, u32>,
        mut specials: Vec<Special>,
        scores: Vec<f32>,
        unk: Option<u32>,
        add_space_prefix: bool,
    ) -> Self {
        specials.sort_by_key(|s| std::cmp::Reverse(s.text.len()));
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = ids.get(&hex).copied().or_else(|| {
                // llama.cpp falls back to the byte itself as a token text
                std::str::from_utf8(&[b as u8])
                    .ok()
                    .and_then(|s| ids.get(s).copied())
            });
        }
        Self {
            ids,
            scores,
            specials,
            byte_ids,
            unk,
            add_space_prefix,
        }
    }

    pub(super) fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Appends the ids of `text` (no BOS/EOS) to `out`.
    pub(super) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut prev_special = true;
        for frag in partition(text, &self.specials) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    let mut s = String::with_capacity(t.len() + 3);
                    if prev_special && self.add_space_prefix {
                        s.push(' ');
                    }
                    s.push_str(t);
                    self.tokenize(&s.replace(' ', "\u{2581}"), out);
                    prev_special = false;
                }
            }
        }
    }

    fn tokenize(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        let n_chars = text.chars().count();
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i as isize - 1,
                next: if i + 1 == n_chars { -1 } else { i as isize + 1 },
            });
        }
        if symbols.is_empty() {
            return;
        }
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            self.try_add_bigram(text, &symbols, i as isize - 1, i as isize, &mut queue);
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
                continue;
            }
            symbols[bigram.left].len += r.len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = r.next;
            if r.next >= 0 {
                symbols[r.next as usize].prev = bigram.left as isize;
            }
            let left = symbols[bigram.left];
            self.try_add_bigram(text, &symbols, left.prev, bigram.left as isize, &mut queue);
            self.try_add_bigram(text, &symbols, bigram.left as isize, left.next, &mut queue);
        }
        let mut i = 0isize;
        while i != -1 {
            let s = symbols[i as usize];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        if let Some(id) = self.byte_ids[b as usize].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            i = s.next;
        }
    }

    fn try_add_bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: isize,
        right: isize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        let size = l.len + r.len;
        let Some(&id) = self.ids.get(&text[l.start..l.start + size]) else {
            return;
        };
        queue.push(Bigram {
            score: self.scores[id as usize],
            left: left as usize,
            right: right as usize,
            size,
        });
    }
}
