//! [`RecordReader`]: byte chunks in, JSON records out — JSON Lines, a top-level JSON array, or
//! plain text — with flat memory whatever the size of the source.
//!
//! * A UTF-8 byte order mark at the start is skipped; a UTF-16 one is reported (convert the file).
//! * **JSONL**: one record per line; blank lines are skipped; a `\r` before the `\n` is dropped.
//! * **JSON array**: `[rec, rec, …]`, pretty-printed or on one line; the scanner in `scan.rs`
//!   cuts out each top-level element and only that element is parsed. A trailing comma before
//!   `]` is tolerated.
//! * **Text**: each non-blank line is one record `{"text": line}` (`\r` dropped, the rest of the
//!   line kept as is). Lines rather than blank-line-separated paragraphs, as Hugging Face
//!   `datasets`' `text` loader does by default: one document per line is the common layout of
//!   plain-text corpora, and paragraphs would make a record's size unbounded by any line length.
//! * **Auto**: the first non-whitespace byte decides: `[` → JSON array, `{` → JSONL, else text.
//!
//! A record larger than `max_record_bytes` (default [`DEFAULT_MAX_RECORD_BYTES`]) is skipped as
//! a bad record without being buffered, which keeps memory bounded even for a JSONL file that is
//! one huge line.

use serde_json::Value;

use super::scan::ArrayScanner;
use super::{BadRecord, DataError, RawRecord};

/// What the byte stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// JSON Lines: one JSON object per line.
    Jsonl,
    /// One top-level JSON array of objects.
    JsonArray,
    /// Plain text: each non-blank line is a `{"text": …}` record.
    Text,
    /// Decided by the first non-whitespace byte: `[` array, `{` JSONL, anything else text.
    #[default]
    Auto,
}

impl std::str::FromStr for SourceKind {
    type Err = DataError;
    /// `auto`, `jsonl` (also `ndjson`), `json` (also `json-array`, `array`), `text` (also `txt`).
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            "json" | "json-array" | "json_array" | "array" => Ok(Self::JsonArray),
            "text" | "txt" => Ok(Self::Text),
            _ => Err(DataError::UnknownSource(s.to_string())),
        }
    }
}

/// Records above this size (bytes of source) are skipped as bad records: 64 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 << 20;

/// Buffers whose capacity grew above this are shrunk back after each record.
pub(crate) const SHRINK_ABOVE: usize = 1 << 20;
pub(crate) const SHRINK_TO: usize = 64 << 10;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) type Item = Result<RawRecord, BadRecord>;

/// Position shared by the stages of the reader: the current line and the next record index.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// 1-based line of the byte being scanned.
    pub line: usize,
    /// Index the next record (good or bad) gets.
    pub index: usize,
}

impl Cursor {
    pub fn bad(&mut self, line: usize, reason: impl Into<String>) -> Item {
        let index = self.index;
        self.index += 1;
        Err(BadRecord {
            line,
            index,
            reason: reason.into(),
        })
    }

    pub fn good(&mut self, line: usize, value: Value) -> Item {
        let index = self.index;
        self.index += 1;
        Ok(RawRecord { line, index, value })
    }

    /// Parses one record's bytes; `line`/`col` locate its first byte so that errors point into
    /// the source.
    pub fn parse(&mut self, bytes: &[u8], line: usize, col: usize) -> Item {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => self.good(line, v),
            Err(e) => {
                let reason = json_reason(&e, line, col, bytes);
                self.bad(line, reason)
            }
        }
    }
}

/// `not valid JSON: <serde's message> at column C` (or `at line L column C` when the error is
/// on another line than the record's first), with a hint for pretty-printed objects in JSONL.
fn json_reason(e: &serde_json::Error, line: usize, col: usize, bytes: &[u8]) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let mut s = format!("not valid JSON: {msg}");
    if e.line() == 1 {
        s.push_str(&format!(
            " at column {}",
            col + e.column().saturating_sub(1)
        ));
    } else if e.line() > 1 {
        s.push_str(&format!(
            " at line {} column {}",
            line + e.line() - 1,
            e.column()
        ));
    }
    let t = bytes.trim_ascii();
    if t == b"{" || t == b"[" {
        s.push_str(
            " (this looks like pretty-printed JSON: JSON Lines needs one whole record per line)",
        );
    }
    s
}

enum Mode {
    /// Collecting the first 3 bytes to recognize a byte order mark.
    Head(Vec<u8>),
    /// Auto: looking for the first non-whitespace byte; holds the whitespace of the current line.
    Sniff(Vec<u8>),
    Lines(LineSplitter),
    Array(ArrayScanner),
    /// Nothing more will be read (an unrecoverable error was reported).
    Done,
}

/// Streaming reader of records from byte chunks. See the module docs for the formats.
pub struct RecordReader {
    requested: SourceKind,
    resolved: Option<SourceKind>,
    mode: Mode,
    cur: Cursor,
    max_record_bytes: usize,
}

impl std::fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader")
            .field("requested", &self.requested)
            .field("resolved", &self.resolved)
            .field("line", &self.cur.line)
            .field("index", &self.cur.index)
            .field("buffered_bytes", &self.buffered_bytes())
            .finish()
    }
}

impl RecordReader {
    pub fn new(kind: SourceKind) -> Self {
        Self {
            requested: kind,
            resolved: None,
            mode: Mode::Head(Vec::with_capacity(3)),
            cur: Cursor { line: 1, index: 0 },
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Sets the largest record (in source bytes) that is parsed; larger ones are bad records.
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max.max(1);
        self
    }

    /// The kind in use: the requested one, or what `Auto` decided (`None` until it has seen a
    /// non-whitespace byte).
    pub fn kind(&self) -> Option<SourceKind> {
        self.resolved
    }

    /// Records (good and bad) emitted so far.
    pub fn records_read(&self) -> usize {
        self.cur.index
    }

    /// Bytes of memory the reader retains in its buffers (their capacity): at most about one
    /// record, whatever the size of the source.
    pub fn buffered_bytes(&self) -> usize {
        match &self.mode {
            Mode::Head(h) | Mode::Sniff(h) => h.capacity(),
            Mode::Lines(l) => l.buf.capacity(),
            Mode::Array(a) => a.buffered_bytes(),
            Mode::Done => 0,
        }
    }

    /// Feeds the next chunk (any size, split anywhere); returns the records it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        self.feed(chunk, &mut out);
        out
    }

    /// Ends the stream: returns the last record (a final line without `\n`) and reports a JSON
    /// array that was not closed.
    pub fn finish(mut self) -> Vec<Item> {
        let mut out = Vec::new();
        if let Mode::Head(head) = &mut self.mode {
            let head = std::mem::take(head);
            self.end_head(head, &mut out);
        }
        match std::mem::replace(&mut self.mode, Mode::Done) {
            Mode::Lines(mut l) => l.finish(&mut self.cur, self.max_record_bytes, &mut out),
            Mode::Array(mut a) => a.finish(&mut self.cur, self.max_record_bytes, &mut out),
            Mode::Head(_) | Mode::Sniff(_) | Mode::Done => {}
        }
        out
    }

    fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Item>) {
        if let Mode::Head(head) = &mut self.mode {
            let take = (3 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if head.len() < 3 {
                return;
            }
            let head = std::mem::take(head);
            self.end_head(head, out);
        }
        self.feed_body(chunk, out);
    }

    /// Decides about a byte order mark and feeds the head bytes on.
    fn end_head(&mut self, head: Vec<u8>, out: &mut Vec<Item>) {
        if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
            out.push(self.cur.bad(
                1,
                "the file is UTF-16 (it starts with a UTF-16 byte order mark): convert it to UTF-8",
            ));
            self.mode = Mode::Done;
            return;
        }
        self.mode = match self.requested {
            SourceKind::Auto => Mode::Sniff(Vec::new()),
            k => self.start(k),
        };
        let body = head.strip_prefix(UTF8_BOM).unwrap_or(&head);
        self.feed_body(body, out);
    }

    fn start(&mut self, kind: SourceKind) -> Mode {
        self.resolved = Some(kind);
        match kind {
            SourceKind::JsonArray => Mode::Array(ArrayScanner::new()),
            SourceKind::Text => Mode::Lines(LineSplitter::new(LineKind::Text)),
            SourceKind::Jsonl | SourceKind::Auto => Mode::Lines(LineSplitter::new(LineKind::Jsonl)),
        }
    }

    fn feed_body(&mut self, chunk: &[u8], out: &mut Vec<Item>) {
        let max = self.max_record_bytes;
        match &mut self.mode {
            Mode::Head(_) | Mode::Done => {}
            Mode::Lines(l) => l.push(chunk, &mut self.cur, max, out),
            Mode::Array(a) => a.push(chunk, &mut self.cur, max, out),
            Mode::Sniff(pending) => {
                let Some(pos) = chunk.iter().position(|b| !b.is_ascii_whitespace()) else {
                    for &b in chunk {
                        if b == b'\n' {
                            self.cur.line += 1;
                            pending.clear();
                        } else {
                            pending.push(b);
                        }
                    }
                    return;
                };
                for &b in &chunk[..pos] {
                    if b == b'\n' {
                        self.cur.line += 1;
                        pending.clear();
                    } else {
                        pending.push(b);
                    }
                }
                let pending = std::mem::take(pending);
                let kind = match chunk[pos] {
                    b'[' => SourceKind::JsonArray,
                    b'{' => SourceKind::Jsonl,
                    _ => SourceKind::Text,
                };
                self.mode = self.start(kind);
                self.feed_body(&pending, out);
                self.feed_body(&chunk[pos..], out);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum LineKind {
    Jsonl,
    Text,
}

/// Splits the stream into lines and turns each non-blank one into a record.
struct LineSplitter {
    kind: LineKind,
    buf: Vec<u8>,
    /// The current line exceeded the record limit: its bytes are being discarded.
    overflow: bool,
    /// The current line has bytes (possibly discarded).
    any: bool,
}

impl LineSplitter {
    fn new(kind: LineKind) -> Self {
        Self {
            kind,
            buf: Vec::new(),
            overflow: false,
            any: false,
        }
    }

    fn push(&mut self, mut chunk: &[u8], cur: &mut Cursor, max: usize, out: &mut Vec<Item>) {
        while !chunk.is_empty() {
            let (piece, rest, eol) = match chunk.iter().position(|&b| b == b'\n') {
                Some(p) => (&chunk[..p], &chunk[p + 1..], true),
                None => (chunk, &[][..], false),
            };
            self.append(piece, max);
            if eol {
                self.end_line(cur, max, out);
                cur.line += 1;
            }
            chunk = rest;
        }
    }

    fn append(&mut self, piece: &[u8], max: usize) {
        if piece.is_empty() {
            return;
        }
        self.any = true;
        if self.overflow {
            return;
        }
        if self.buf.len() + piece.len() > max {
            self.overflow = true;
            self.buf.clear();
            self.buf.shrink_to(SHRINK_TO);
        } else {
            self.buf.extend_from_slice(piece);
        }
    }

    fn end_line(&mut self, cur: &mut Cursor, max: usize, out: &mut Vec<Item>) {
        let line = cur.line;
        if self.overflow {
            out.push(cur.bad(line, too_large(max)));
        } else if self.any {
            let mut bytes = &self.buf[..];
            if let Some(b) = bytes.strip_suffix(b"\r") {
                bytes = b;
            }
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                out.push(match self.kind {
                    LineKind::Jsonl => cur.parse(bytes, line, 1),
                    LineKind::Text => match std::str::from_utf8(bytes) {
                        Ok(s) => cur.good(line, serde_json::json!({ "text": s })),
                        Err(e) => cur.bad(
                            line,
                            format!(
                                "not valid UTF-8 at byte {} of the line",
                                e.valid_up_to() + 1
                            ),
                        ),
                    },
                });
            }
        }
        self.buf.clear();
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(SHRINK_TO);
        }
        self.overflow = false;
        self.any = false;
    }

    fn finish(&mut self, cur: &mut Cursor, max: usize, out: &mut Vec<Item>) {
        if self.any {
            self.end_line(cur, max, out);
        }
    }
}

/// The reason given for a record above the size limit.
pub(crate) fn too_large(max: usize) -> String {
    format!(
        "record is larger than {max} bytes and was skipped without reading it \
         (RecordReader::with_max_record_bytes raises the limit)"
    )
}
