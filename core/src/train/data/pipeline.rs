//! [`DataPipeline`]: the stages wired together for one pass (epoch) over one source.
//!
//! Per record: read → (format detected from the first good record unless configured) → parse →
//! encode → split → train examples through the shuffle buffer into the train packer, validation
//! examples (not shuffled) into their own packer. Bad records are counted (the first few kept)
//! or, in strict mode, stop the pass. The split is assigned to good records only, after
//! encoding, so stratified shares are shares of usable records.
//!
//! Everything is a function of the bytes, the config, the seed and the epoch: the shuffle is
//! seeded with `hash(seed, epoch)` (a new order every epoch), the split with `seed` alone (the
//! same validation records every epoch). Exact resume mid-epoch = run the epoch's pipeline again
//! and skip the sequences already trained on.

use super::encode::{EncodeOptions, Example, TextEncoder, encode_record};
use super::format::{Record, RecordFormat};
use super::pack::{PackMode, Packer, Sequence};
use super::reader::{DEFAULT_MAX_RECORD_BYTES, Item, RecordReader, SourceKind};
use super::rng::hash2;
use super::shuffle::ShuffleBuffer;
use super::split::{Split, Subset};
use super::{BadRecord, DataError, DataStats};

/// Options of the data pipeline (the data part of the training config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DataConfig {
    pub source: SourceKind,
    /// `None`: detected from the first good record.
    pub format: Option<RecordFormat>,
    /// `--train-on-prompt`: train every token, not only completions.
    pub train_on_prompt: bool,
    /// `--strict`: the first bad record stops the pass.
    pub strict: bool,
    /// Positions per sequence (`--seq-len`).
    pub seq_len: usize,
    pub pack: PackMode,
    /// Token used for padding (never trained; EOS is the usual choice).
    pub pad_id: u32,
    /// Examples held by the shuffle buffer; 0 keeps the source order.
    pub shuffle_buffer: usize,
    pub seed: u64,
    /// `--val-ratio`: fraction of records held out for validation, in [0, 1).
    pub val_ratio: f64,
    /// `--stratify-field`: split each value of this field in `val_ratio`.
    pub stratify_field: Option<String>,
    /// Larger records are bad records (bounds memory).
    pub max_record_bytes: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::Auto,
            format: None,
            train_on_prompt: false,
            strict: false,
            seq_len: 512,
            pack: PackMode::Packed,
            pad_id: 0,
            shuffle_buffer: 10_000,
            seed: 0,
            val_ratio: 0.0,
            stratify_field: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Sequences completed by one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batches {
    pub train: Vec<Sequence>,
    /// Validation sequences (empty without a split).
    pub val: Vec<Sequence>,
}

/// Bytes in, packed sequences out, for one pass over one source.
pub struct DataPipeline {
    reader: RecordReader,
    format: Option<RecordFormat>,
    opts: EncodeOptions,
    strict: bool,
    split: Option<Split>,
    shuffle: ShuffleBuffer<Example>,
    train: Packer,
    val: Packer,
    stats: DataStats,
}

impl std::fmt::Debug for DataPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPipeline")
            .field("reader", &self.reader)
            .field("format", &self.format)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DataPipeline {
    /// A pipeline for pass number `epoch` (0-based) over the data.
    pub fn new(config: &DataConfig, epoch: u64) -> Result<Self, DataError> {
        if config.seq_len == 0 {
            return Err(DataError::Config("--seq-len must be at least 1".into()));
        }
        if config.stratify_field.is_some() && config.val_ratio == 0.0 {
            return Err(DataError::Config(
                "--stratify-field needs a validation split: add --val-ratio, e.g. 0.1".into(),
            ));
        }
        let split = Split::new(config.val_ratio, config.seed, config.stratify_field.clone())?;
        let packer = || Packer::new(config.seq_len, config.pad_id, config.pack);
        Ok(Self {
            reader: RecordReader::new(config.source).with_max_record_bytes(config.max_record_bytes),
            format: config.format.clone(),
            opts: EncodeOptions {
                train_on_prompt: config.train_on_prompt,
            },
            strict: config.strict,
            split: (config.val_ratio > 0.0).then_some(split),
            shuffle: ShuffleBuffer::new(config.shuffle_buffer, hash2(config.seed, epoch + 1)),
            train: packer(),
            val: packer(),
            stats: DataStats::default(),
        })
    }

    /// The record format in use (configured, or detected; `None` before the first good record).
    pub fn format(&self) -> Option<&RecordFormat> {
        self.format.as_ref()
    }

    /// The source kind in use (`None` while `Auto` has seen only whitespace).
    pub fn source_kind(&self) -> Option<SourceKind> {
        self.reader.kind()
    }

    /// Counters so far.
    pub fn stats(&self) -> DataStats {
        let mut s = self.stats.clone();
        s.add_pack(self.train.stats());
        s.add_pack(self.val.stats());
        s
    }

    /// Feeds the next chunk of the source; returns the sequences it completed.
    pub fn push<E: TextEncoder + ?Sized>(
        &mut self,
        chunk: &[u8],
        enc: &E,
    ) -> Result<Batches, DataError> {
        let mut out = Batches::default();
        for item in self.reader.push(chunk) {
            self.take(item, enc, &mut out)?;
        }
        Ok(out)
    }

    /// Ends the pass: the last records, the shuffle buffer and the open sequences come out.
    pub fn finish<E: TextEncoder + ?Sized>(
        mut self,
        enc: &E,
    ) -> Result<(Batches, DataStats), DataError> {
        let mut out = Batches::default();
        let reader = std::mem::replace(&mut self.reader, RecordReader::new(SourceKind::Auto));
        for item in reader.finish() {
            self.take(item, enc, &mut out)?;
        }
        for ex in self.shuffle.drain() {
            out.train.extend(self.train.push(ex));
        }
        out.train.extend(self.train.flush());
        out.val.extend(self.val.flush());
        let stats = self.stats();
        Ok((out, stats))
    }

    fn take<E: TextEncoder + ?Sized>(
        &mut self,
        item: Item,
        enc: &E,
        out: &mut Batches,
    ) -> Result<(), DataError> {
        let raw = match item {
            Ok(raw) => raw,
            Err(bad) => return self.bad(bad),
        };
        let bad = |reason: String| BadRecord {
            line: raw.line,
            index: raw.index,
            reason,
        };
        let example = self
            .parse(&raw.value)
            .and_then(|rec| encode_record(&rec, enc, self.opts, raw.line, raw.index));
        let example = match example {
            Ok(ex) => ex,
            Err(reason) => return self.bad(bad(reason)),
        };
        let subset = match &mut self.split {
            Some(split) => split.assign(&raw),
            None => Subset::Train,
        };
        self.stats.records += 1;
        self.stats.lengths.add(example.len());
        match subset {
            Subset::Train => {
                if let Some(ex) = self.shuffle.push(example) {
                    out.train.extend(self.train.push(ex));
                }
            }
            Subset::Val => {
                self.stats.val_records += 1;
                out.val.extend(self.val.push(example));
            }
        }
        Ok(())
    }

    /// Interprets a record with the configured or detected format; until a record parses, each
    /// record is detected afresh (the format comes from the first *good* record).
    fn parse(&mut self, value: &serde_json::Value) -> Result<Record, String> {
        if let Some(f) = &self.format {
            return f.parse(value);
        }
        let f =
            RecordFormat::detect(value).ok_or_else(|| RecordFormat::undetected_reason(value))?;
        let record = f.parse(value)?;
        self.format = Some(f);
        Ok(record)
    }

    fn bad(&mut self, bad: BadRecord) -> Result<(), DataError> {
        if self.strict {
            return Err(DataError::BadRecord(bad));
        }
        self.stats.add_bad(bad);
        Ok(())
    }
}
