//! Incremental scanner of a top-level JSON array: cuts out each element without parsing the
//! array as a whole, so a multi-GB array streams with memory for one element.
//!
//! The scanner tracks only what decides where an element ends: whether it is inside a string,
//! whether the previous byte was a backslash inside a string, and the bracket depth (`{`/`[`
//! open, `}`/`]` close) outside strings. An element ends at a `,` at depth 0 or at the `]` that
//! closes the array (a `]` seen at depth 0). All of that state lives in the struct, so a chunk may
//! end anywhere: inside a string, right after a backslash, inside a multi-byte UTF-8 character
//! (bytes ≥ 0x80 never equal `"`, `\`, brackets or `,`, so they pass through untouched and the
//! element's bytes are reassembled before serde_json parses them).
//!
//! Malformed JSON inside an element is serde_json's to report, with a line and column mapped back
//! to the source. Structural damage (an unbalanced bracket) can merge elements: the merged text
//! is reported as one bad record, and the record size limit bounds what is buffered meanwhile.

use super::reader::{Cursor, Item, SHRINK_ABOVE, SHRINK_TO, too_large};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    BeforeOpen,
    /// Inside the array, between or inside elements.
    InArray,
    /// After the closing `]`: only whitespace may follow.
    AfterClose,
    /// An error ended the scan; the rest is ignored.
    Failed,
}

pub(crate) struct ArrayScanner {
    state: State,
    /// The current element has begun (a non-whitespace byte was seen).
    started: bool,
    in_string: bool,
    escape: bool,
    depth: u64,
    /// Bytes of the current element (empty while `overflow`).
    buf: Vec<u8>,
    /// The current element exceeded the size limit: its bytes are being discarded.
    overflow: bool,
    /// Line and column of the current element's first byte.
    start_line: usize,
    start_col: usize,
    /// Offset, relative to the start of the chunk being scanned, of the first byte of the
    /// current line (negative when the line began in an earlier chunk). Gives columns.
    line_start: i64,
}

impl ArrayScanner {
    pub fn new() -> Self {
        Self {
            state: State::BeforeOpen,
            started: false,
            in_string: false,
            escape: false,
            depth: 0,
            buf: Vec::new(),
            overflow: false,
            start_line: 0,
            start_col: 0,
            line_start: 0,
        }
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buf.capacity()
    }

    pub fn push(&mut self, chunk: &[u8], cur: &mut Cursor, max: usize, out: &mut Vec<Item>) {
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                State::Failed => break,
                State::BeforeOpen | State::AfterClose => {
                    let b = chunk[i];
                    i += 1;
                    if b == b'\n' {
                        self.newline(cur, i - 1);
                    } else if b.is_ascii_whitespace() {
                    } else if b == b'[' && self.state == State::BeforeOpen {
                        self.state = State::InArray;
                    } else {
                        let col = self.col(i - 1);
                        let reason = if self.state == State::BeforeOpen {
                            format!(
                                "expected `[` at column {col} to open a JSON array, found `{}` \
                                 (is this JSON Lines? pick the source kind `jsonl` or `auto`)",
                                b.escape_ascii()
                            )
                        } else {
                            format!(
                                "unexpected `{}` at column {col} after the end of the JSON array \
                                 (the rest of the data is ignored)",
                                b.escape_ascii()
                            )
                        };
                        out.push(cur.bad(cur.line, reason));
                        self.state = State::Failed;
                    }
                }
                State::InArray if !self.started => {
                    let b = chunk[i];
                    if b == b'\n' {
                        self.newline(cur, i);
                        i += 1;
                    } else if b.is_ascii_whitespace() {
                        i += 1;
                    } else if b == b']' {
                        // `[]`, or a trailing comma before `]`.
                        i += 1;
                        self.state = State::AfterClose;
                    } else if b == b',' {
                        let reason = format!(
                            "empty array element at column {} (two commas in a row?)",
                            self.col(i)
                        );
                        out.push(cur.bad(cur.line, reason));
                        i += 1;
                    } else {
                        self.started = true;
                        self.start_line = cur.line;
                        self.start_col = self.col(i);
                    }
                }
                State::InArray => {
                    let start = i;
                    let mut closed = None;
                    while i < chunk.len() {
                        let b = chunk[i];
                        if b == b'\n' {
                            self.newline(cur, i);
                        }
                        if self.in_string {
                            if self.escape {
                                self.escape = false;
                            } else if b == b'\\' {
                                self.escape = true;
                            } else if b == b'"' {
                                self.in_string = false;
                            }
                        } else {
                            match b {
                                b'"' => self.in_string = true,
                                b'{' | b'[' => self.depth += 1,
                                b']' if self.depth == 0 => {
                                    closed = Some(State::AfterClose);
                                    break;
                                }
                                b',' if self.depth == 0 => {
                                    closed = Some(State::InArray);
                                    break;
                                }
                                // A stray `}` at depth 0 stays in the element: serde reports it.
                                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                                _ => {}
                            }
                        }
                        i += 1;
                    }
                    self.append(&chunk[start..i], max);
                    if let Some(next) = closed {
                        i += 1;
                        self.emit(cur, max, out);
                        self.state = next;
                    }
                }
            }
        }
        self.line_start -= chunk.len() as i64;
    }

    /// Ends the stream: an element in progress is parsed (serde reports it if incomplete) and an
    /// array that was never closed is reported.
    pub fn finish(&mut self, cur: &mut Cursor, max: usize, out: &mut Vec<Item>) {
        if self.state != State::InArray {
            return;
        }
        if self.started {
            self.emit(cur, max, out);
        }
        out.push(cur.bad(
            cur.line,
            "the JSON array is not closed with `]` (is the file truncated?)",
        ));
        self.state = State::Failed;
    }

    fn newline(&mut self, cur: &mut Cursor, at: usize) {
        cur.line += 1;
        self.line_start = at as i64 + 1;
    }

    /// 1-based column of the byte at `at` in the current chunk.
    fn col(&self, at: usize) -> usize {
        (at as i64 - self.line_start + 1).max(1) as usize
    }

    fn append(&mut self, piece: &[u8], max: usize) {
        if self.overflow || piece.is_empty() {
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

    fn emit(&mut self, cur: &mut Cursor, max: usize, out: &mut Vec<Item>) {
        let line = self.start_line;
        out.push(if self.overflow {
            cur.bad(line, too_large(max))
        } else {
            cur.parse(&self.buf, line, self.start_col)
        });
        self.buf.clear();
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(SHRINK_TO);
        }
        self.overflow = false;
        self.started = false;
        self.in_string = false;
        self.escape = false;
        self.depth = 0;
    }
}
