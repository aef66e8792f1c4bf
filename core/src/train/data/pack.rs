//! Packing examples into fixed-length training sequences.
//!
//! A sequence is built from a window of `seq_len + 1` tokens: the inputs are the first
//! `seq_len`, the targets the same window shifted by one, so that an example of exactly
//! `seq_len + 1` tokens fills one sequence with every token both seen and predicted.
//!
//! **Packed** ([`PackMode::Packed`]): examples go, in arrival order, into the first open window
//! with room for them (first fit); when none has room a new window opens, and when
//! `max_open` windows are already open the oldest is emitted first. A window is emitted as soon
//! as fewer than 2 tokens are free (no trainable example fits in less). Windows still open at
//! the end are emitted by [`Packer::flush`], in the order they were opened. The tail of a window
//! is padded with `pad_id`.
//!
//! **Padded** ([`PackMode::Padded`]): one example per sequence.
//!
//! `doc_start[p]` is the position where the document holding position `p` begins (padding is
//! one more document), so attention restricted to `doc_start[p] ..= p` never crosses examples,
//! and `targets[p]` is [`IGNORE`] wherever the next token is not trained, belongs to another
//! document, or is padding. An example longer than `seq_len + 1` keeps its first `seq_len + 1`
//! tokens and is counted as truncated; if no trained token is left it is dropped (counted too).

use super::encode::Example;

/// Target value of positions that are not trained.
pub const IGNORE: u32 = u32::MAX;

/// Windows a packer keeps open by default.
pub const DEFAULT_MAX_OPEN: usize = 8;

/// Several examples per sequence, or one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackMode {
    #[default]
    Packed,
    Padded,
}

/// One training sequence of `seq_len` positions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sequence {
    /// Input token per position.
    pub ids: Vec<u32>,
    /// Token to predict at each position, or [`IGNORE`].
    pub targets: Vec<u32>,
    /// Per position, where its document starts in this sequence.
    pub doc_start: Vec<u32>,
}

impl Sequence {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Positions whose target is trained.
    pub fn trained_tokens(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// Counters of a packer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackStats {
    /// Examples received.
    pub examples: usize,
    pub sequences: usize,
    /// Examples cut to `seq_len + 1` tokens.
    pub truncated: usize,
    /// Examples not packed because no trained token was left in them.
    pub dropped: usize,
    /// The shortest `seq_len` that would have kept every dropped example's first trained token
    /// (0 when none was dropped for its length).
    #[serde(default)]
    pub seq_len_to_keep: usize,
    /// Example tokens placed in sequences.
    pub tokens: usize,
    /// Trained positions emitted.
    pub trained_tokens: usize,
    pub pad_tokens: usize,
}

/// A window being filled.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Window {
    ids: Vec<u32>,
    mask: Vec<bool>,
    /// Start of each document in it.
    starts: Vec<u32>,
}

/// Packs [`Example`]s into [`Sequence`]s (see the module docs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Packer {
    seq_len: usize,
    pad_id: u32,
    mode: PackMode,
    max_open: usize,
    open: Vec<Window>,
    stats: PackStats,
}

impl Packer {
    /// `seq_len ≥ 1` positions per sequence; padding uses `pad_id` (its targets are ignored, so
    /// any valid id works, EOS is the usual choice).
    pub fn new(seq_len: usize, pad_id: u32, mode: PackMode) -> Self {
        Self {
            seq_len: seq_len.max(1),
            pad_id,
            mode,
            max_open: DEFAULT_MAX_OPEN,
            open: Vec::new(),
            stats: PackStats::default(),
        }
    }

    /// How many windows may be open at once (packed mode): more fill better, fewer keep the
    /// arrival order closer. At least 1.
    pub fn with_max_open(mut self, max_open: usize) -> Self {
        self.max_open = max_open.max(1);
        self
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    pub fn stats(&self) -> &PackStats {
        &self.stats
    }

    /// Tokens held in open windows.
    pub fn pending_tokens(&self) -> usize {
        self.open.iter().map(|w| w.ids.len()).sum()
    }

    /// Adds one example; returns the sequences it completed.
    pub fn push(&mut self, ex: Example) -> Vec<Sequence> {
        let cap = self.seq_len + 1;
        self.stats.examples += 1;
        let (mut ids, mut mask) = (ex.ids, ex.loss_mask);
        mask.resize(ids.len(), false);
        // Token i is the target of position i − 1, which a sequence of seq_len positions has
        // when i ≤ seq_len.
        let first_trained = mask.iter().skip(1).position(|&m| m).map(|i| i + 1);
        if ids.len() > cap {
            ids.truncate(cap);
            mask.truncate(cap);
            self.stats.truncated += 1;
        }
        if !mask.iter().skip(1).any(|&m| m) {
            self.stats.dropped += 1;
            if let Some(i) = first_trained {
                self.stats.seq_len_to_keep = self.stats.seq_len_to_keep.max(i);
            }
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.mode == PackMode::Padded {
            let w = Window {
                ids,
                mask,
                starts: vec![0],
            };
            out.push(self.seal(w));
            return out;
        }
        let slot = match self
            .open
            .iter()
            .position(|w| w.ids.len() + ids.len() <= cap)
        {
            Some(i) => i,
            None => {
                if self.open.len() >= self.max_open {
                    let oldest = self.open.remove(0);
                    out.push(self.seal(oldest));
                }
                self.open.push(Window {
                    ids: Vec::with_capacity(cap),
                    mask: Vec::with_capacity(cap),
                    starts: Vec::new(),
                });
                self.open.len() - 1
            }
        };
        let w = &mut self.open[slot];
        w.starts.push(w.ids.len() as u32);
        w.ids.extend_from_slice(&ids);
        w.mask.extend_from_slice(&mask);
        if cap - w.ids.len() < 2 {
            let w = self.open.remove(slot);
            out.push(self.seal(w));
        }
        out
    }

    /// Emits the windows still open, oldest first.
    pub fn flush(&mut self) -> Vec<Sequence> {
        let open = std::mem::take(&mut self.open);
        open.into_iter().map(|w| self.seal(w)).collect()
    }

    /// Pads a window to `seq_len + 1` tokens and shifts it into inputs and targets.
    fn seal(&mut self, w: Window) -> Sequence {
        let t = self.seq_len;
        let used = w.ids.len();
        let mut tokens = w.ids;
        tokens.resize(t + 1, self.pad_id);
        let mut mask = w.mask;
        mask.resize(t + 1, false);
        let mut doc = vec![used as u32; t + 1];
        for (k, &s) in w.starts.iter().enumerate() {
            let e = w.starts.get(k + 1).map_or(used, |&e| e as usize);
            doc[s as usize..e].fill(s);
        }
        let targets: Vec<u32> = (0..t)
            .map(|p| {
                if mask[p + 1] && doc[p + 1] == doc[p] {
                    tokens[p + 1]
                } else {
                    IGNORE
                }
            })
            .collect();
        tokens.truncate(t);
        doc.truncate(t);
        let s = &mut self.stats;
        s.sequences += 1;
        s.tokens += used;
        s.pad_tokens += t + 1 - used;
        let seq = Sequence {
            ids: tokens,
            targets,
            doc_start: doc,
        };
        s.trained_tokens += seq.trained_tokens();
        seq
    }
}
