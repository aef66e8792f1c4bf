//! The streaming data pipeline: byte chunks in, packed training sequences out.
//!
//! ```text
//! bytes ─► RecordReader ─► RawRecord ─► RecordFormat ─► Record ─► encode_record ─► Example
//!          (jsonl, json array,          (text, prompt/completion,  (TextEncoder:     (ids, loss mask)
//!           text)                        messages, instruction)     tokenizer, chat template)
//! Example ─► Split ─┬─ train ─► ShuffleBuffer ─► Packer ─► Sequence (ids, targets, doc_start)
//!                   └─ val ───────────────────► Packer ─► Sequence
//! ```
//!
//! Nothing here touches the file system, threads or the clock: the caller (the native CLI reading
//! a file, the browser reading a `ReadableStream`) hands in chunks of any size, split anywhere —
//! inside a UTF-8 sequence, an escape, a CRLF — and gets back whatever became complete. Memory
//! stays flat: the reader holds at most one record's bytes (a multi-GB top-level JSON array is cut
//! into its elements by an incremental scanner and each element is parsed on its own), the shuffle
//! buffer holds `shuffle_buffer` examples and the packer a few open sequences.
//!
//! Every stage is deterministic from the bytes and a seed, so a pass over the data can be
//! replayed exactly (resume = replay the epoch and skip the sequences already trained on), and
//! the state that a mid-pass checkpoint would need ([`Split`], [`ShuffleBuffer`]) is serde.
//!
//! [`DataPipeline`] wires the stages together with one [`DataStats`]; the stages are public for
//! callers that need a different arrangement (an `--eval-data` file is a second pipeline with
//! `val_ratio = 0`).

mod encode;
mod format;
mod pack;
mod pipeline;
mod reader;
mod rng;
mod scan;
mod shuffle;
mod split;
#[cfg(test)]
mod tests;

use std::fmt;

pub use encode::{EncodeOptions, Example, TextEncoder, encode_record};
pub use format::{ROLES, Record, RecordFormat};
pub use pack::{DEFAULT_MAX_OPEN, IGNORE, PackMode, PackStats, Packer, Sequence};
pub use pipeline::{Batches, DataConfig, DataPipeline};
pub use reader::{DEFAULT_MAX_RECORD_BYTES, RecordReader, SourceKind};
pub use rng::{SplitMix64, mix64};
pub use shuffle::ShuffleBuffer;
pub use split::{Split, Subset};

/// One record as read from the source, before its format is interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// 1-based line of the source where the record starts.
    pub line: usize,
    /// 0-based ordinal of the record in the source, counting bad records too (so a bad record
    /// does not shift the train/validation split of the records after it).
    pub index: usize,
    pub value: serde_json::Value,
}

/// A record that was skipped, with the reason. Displays as `line 812: not valid JSON: …`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRecord {
    /// 1-based line of the source where the record starts.
    pub line: usize,
    /// 0-based ordinal of the record in the source (see [`RawRecord::index`]).
    pub index: usize,
    /// What is wrong, naming the field where one is at fault.
    pub reason: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// How many [`BadRecord`]s [`DataStats::first_bad`] keeps.
pub const FIRST_BAD_KEPT: usize = 10;

/// Counters of one pass over the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataStats {
    /// Good records (turned into examples), train and validation.
    pub records: usize,
    /// Of `records`, those the split sent to validation.
    pub val_records: usize,
    /// Records skipped: invalid JSON, missing/wrong-typed/empty fields, unknown roles, …
    pub bad_records: usize,
    /// Examples longer than `seq_len + 1` tokens, cut to their beginning.
    pub truncated: usize,
    /// Examples not packed because truncation left no trained token in them.
    pub dropped: usize,
    /// The shortest `seq_len` that keeps every dropped example (0: none dropped).
    #[serde(default)]
    pub seq_len_to_keep: usize,
    /// Tokens placed in sequences (after truncation, without padding).
    pub tokens: usize,
    /// Positions whose target is trained (`targets[p] != IGNORE`).
    pub trained_tokens: usize,
    /// Padding tokens placed in sequences.
    pub pad_tokens: usize,
    /// Sequences emitted, train and validation.
    pub sequences: usize,
    /// The first [`FIRST_BAD_KEPT`] bad records, in source order.
    pub first_bad: Vec<BadRecord>,
    /// Token lengths of the good records' examples, before truncation.
    #[serde(default)]
    pub lengths: LengthHistogram,
}

/// Token lengths in power-of-two buckets: bucket 0 counts lengths 0–1, bucket `i` lengths in
/// `[2^i, 2^(i+1))`, the last one everything from 2^31 up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LengthHistogram {
    pub count: usize,
    pub total: usize,
    pub min: usize,
    pub max: usize,
    /// Counts per bucket, trailing empty buckets left out.
    pub buckets: Vec<usize>,
}

impl LengthHistogram {
    pub fn add(&mut self, len: usize) {
        let bucket = (usize::BITS - 1 - len.max(1).leading_zeros()).min(31) as usize;
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += 1;
        self.min = if self.count == 0 {
            len
        } else {
            self.min.min(len)
        };
        self.max = self.max.max(len);
        self.count += 1;
        self.total += len;
    }

    pub fn mean(&self) -> f64 {
        self.total as f64 / self.count.max(1) as f64
    }

    /// `(low, high)` bounds of bucket `i` (high exclusive).
    pub fn bucket_range(i: usize) -> (usize, usize) {
        if i == 0 {
            (0, 2)
        } else {
            (1 << i, 1 << (i + 1))
        }
    }
}

impl DataStats {
    /// Counts a bad record, keeping it if it is among the first [`FIRST_BAD_KEPT`].
    pub fn add_bad(&mut self, bad: BadRecord) {
        self.bad_records += 1;
        if self.first_bad.len() < FIRST_BAD_KEPT {
            self.first_bad.push(bad);
        }
    }

    /// Adds a packer's token counts.
    pub fn add_pack(&mut self, p: &PackStats) {
        self.truncated += p.truncated;
        self.dropped += p.dropped;
        self.seq_len_to_keep = self.seq_len_to_keep.max(p.seq_len_to_keep);
        self.tokens += p.tokens;
        self.trained_tokens += p.trained_tokens;
        self.pad_tokens += p.pad_tokens;
        self.sequences += p.sequences;
    }
}

impl fmt::Display for DataStats {
    /// One line, then the first bad records, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records ({} validation), {} bad, {} truncated ({} dropped); {} sequences, {} tokens, \
             {} trained, {} padding",
            self.records,
            self.val_records,
            self.bad_records,
            self.truncated,
            self.dropped,
            self.sequences,
            self.tokens,
            self.trained_tokens,
            self.pad_tokens
        )?;
        for b in &self.first_bad {
            write!(f, "\n  skipped {b}")?;
        }
        if self.bad_records > self.first_bad.len() {
            write!(
                f,
                "\n  … and {} more",
                self.bad_records - self.first_bad.len()
            )?;
        }
        Ok(())
    }
}

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A bad record in strict mode.
    #[error(
        "the data set {0} (strict mode stops at the first bad record; without --strict bad records are skipped and counted)"
    )]
    BadRecord(BadRecord),
    #[error(
        "unknown record format `{0}`: expected text, prompt-completion, messages or instruction"
    )]
    UnknownFormat(String),
    #[error("unknown data source kind `{0}`: expected auto, jsonl, json or text")]
    UnknownSource(String),
    /// An option out of range or a combination that does not make sense, with what to change.
    #[error("invalid data option: {0}")]
    Config(String),
}

#[cfg(test)]
mod length_tests {
    use super::LengthHistogram;

    #[test]
    fn lengths_fall_into_power_of_two_buckets() {
        let mut h = LengthHistogram::default();
        for len in [0, 1, 2, 3, 4, 7, 8, 300] {
            h.add(len);
        }
        assert_eq!(h.buckets, vec![2, 2, 2, 1, 0, 0, 0, 0, 1]);
        assert_eq!((h.count, h.min, h.max, h.total), (8, 0, 300, 325));
        assert_eq!(LengthHistogram::bucket_range(8), (256, 512));
        assert!((h.mean() - 325.0 / 8.0).abs() < 1e-12);
    }
}
