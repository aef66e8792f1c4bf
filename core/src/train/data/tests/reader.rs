use serde_json::{Value, json};

use super::fake::{TestRng, read_all, read_chunked};
use crate::train::data::reader::Item;
use crate::train::data::{BadRecord, RawRecord, RecordReader, SourceKind};

/// A pretty-printed array after a BOM: strings holding brackets, braces, commas, escaped quotes
/// and backslashes, nested containers, multi-byte UTF-8 and surrogate escapes, a bad element.
const ARRAY: &str = "\u{FEFF}[\n  {\"text\": \"brackets ] } [ { and a comma, inside\", \"n\": 1},\n  {\"text\": \"escaped \\\" quote and backslash \\\\\", \"nested\": {\"a\": [1, [2, {\"b\": \"}\"}]], \"c\": {}}, \"e\": \"\\\\\"},\n  {\"text\": \"unicode: ação 😀 \\u00e9 \\ud83d\\ude00 日本語\"},\n  {\"text\": \"backslash before the quote \\\\\\\\\"},\n  {\n    \"prompt\": \"multi-line\\nrecord\",\n    \"completion\": \"ok\"\n  },\n  {\"a\" 2},\n  [\"an\", \"array\", {\"x\": \"]\"}], 42, \"str,]\", null\n]\n";

fn goods(items: &[Item]) -> Vec<(usize, usize, Value)> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(|r| (r.line, r.index, r.value.clone()))
        .collect()
}

fn bads(items: &[Item]) -> Vec<BadRecord> {
    items
        .iter()
        .filter_map(|i| i.as_ref().err())
        .cloned()
        .collect()
}

fn assert_same_under_chunking(kind: SourceKind, data: &[u8]) {
    let reference = read_all(kind, data);
    for k in 0..=data.len() {
        let got = read_chunked(kind, data, &[k, usize::MAX]);
        assert_eq!(got, reference, "split at byte {k}");
    }
    let mut rng = TestRng(0x5eed);
    for _ in 0..200 {
        let sizes: Vec<usize> = (0..16).map(|_| rng.range(1, 9)).collect();
        assert_eq!(
            read_chunked(kind, data, &sizes),
            reference,
            "chunk sizes {sizes:?}"
        );
    }
    assert_eq!(read_chunked(kind, data, &[1]), reference, "1-byte chunks");
}

#[test]
fn json_array_tricky_strings_nesting_and_unicode() {
    let items = read_all(SourceKind::JsonArray, ARRAY.as_bytes());
    let got = goods(&items);
    let expected: Vec<Value> = vec![
        json!({"text": "brackets ] } [ { and a comma, inside", "n": 1}),
        json!({"text": "escaped \" quote and backslash \\", "nested": {"a": [1, [2, {"b": "}"}]], "c": {}}, "e": "\\"}),
        json!({"text": "unicode: ação 😀 é 😀 日本語"}),
        json!({"text": "backslash before the quote \\\\"}),
        json!({"prompt": "multi-line\nrecord", "completion": "ok"}),
        json!(["an", "array", {"x": "]"}]),
        json!(42),
        json!("str,]"),
        Value::Null,
    ];
    let values: Vec<Value> = got.iter().map(|g| g.2.clone()).collect();
    assert_eq!(values, expected);
    let lines: Vec<usize> = got.iter().map(|g| g.0).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6, 11, 11, 11, 11]);
    let indices: Vec<usize> = got.iter().map(|g| g.1).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4, 6, 7, 8, 9]);
    assert_eq!(
        bads(&items),
        [BadRecord {
            line: 10,
            index: 5,
            reason: "not valid JSON: expected `:` at column 8".into()
        }]
    );
}

#[test]
fn json_array_same_records_at_every_chunk_boundary() {
    assert_same_under_chunking(SourceKind::JsonArray, ARRAY.as_bytes());
    assert_same_under_chunking(SourceKind::Auto, ARRAY.as_bytes());
    let one_line = r#"[{"a":"x\\"},{"b":"\"]"} , {"c" 1},{"d":"é😀"}]"#;
    assert_same_under_chunking(SourceKind::Auto, one_line.as_bytes());
}

#[test]
fn jsonl_crlf_bom_blank_lines() {
    let data = "\u{FEFF}{\"text\": \"a\"}\r\n\r\n   \n{\"text\": \"b ç 😀\"}\r\n{\"text\": \"c\"}";
    let items = read_all(SourceKind::Jsonl, data.as_bytes());
    assert_eq!(
        goods(&items),
        [
            (1, 0, json!({"text": "a"})),
            (4, 1, json!({"text": "b ç 😀"})),
            (5, 2, json!({"text": "c"})),
        ]
    );
    assert_same_under_chunking(SourceKind::Jsonl, data.as_bytes());
    assert_same_under_chunking(SourceKind::Auto, data.as_bytes());
}

#[test]
fn jsonl_bad_records_have_exact_lines_and_reasons() {
    let data = concat!(
        "{\"prompt\": \"p1\", \"completion\": \"c1\"}\n",
        "{\"prompt\" \"p2\", \"completion\": \"c2\"}\n",
        "\n",
        "{\"prompt\": \"p3\", \"completion\": \"c3\"}\n",
        "{\"prompt\": \"p4\", \"completion\": \"c4\"\n",
        "{\n",
        "{\"prompt\": \"p5\", \"completion\": \"c5\"} x\n",
    );
    let items = read_all(SourceKind::Jsonl, data.as_bytes());
    let lines: Vec<usize> = goods(&items).iter().map(|g| g.0).collect();
    assert_eq!(lines, [1, 4]);
    let bad = bads(&items);
    let got: Vec<(usize, usize, &str)> = bad
        .iter()
        .map(|b| (b.line, b.index, b.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, 1, "not valid JSON: expected `:` at column 11"),
            (
                5,
                3,
                "not valid JSON: EOF while parsing an object at column 35"
            ),
            (
                6,
                4,
                "not valid JSON: EOF while parsing an object at column 1 (this looks like \
                 pretty-printed JSON: JSON Lines needs one whole record per line)"
            ),
            (7, 5, "not valid JSON: trailing characters at column 38"),
        ]
    );
    assert_eq!(
        bad[0].to_string(),
        "line 2: not valid JSON: expected `:` at column 11"
    );
    assert_same_under_chunking(SourceKind::Jsonl, data.as_bytes());
}

#[test]
fn json_array_bad_element_reports_source_line_and_column() {
    let data = "[\n  {\"a\": 1},\n  {\"a\": 2,\n   \"b\" 3},\n  {\"a\": 3}\n]";
    let items = read_all(SourceKind::Auto, data.as_bytes());
    let lines: Vec<usize> = goods(&items).iter().map(|g| g.0).collect();
    assert_eq!(lines, [2, 5]);
    assert_eq!(
        bads(&items),
        [BadRecord {
            line: 3,
            index: 1,
            reason: "not valid JSON: expected `:` at line 4 column 8".into()
        }]
    );
    let one_line = r#"[{"a":1}, {"a" 2}, {"a":3}]"#;
    let bad = bads(&read_all(SourceKind::Auto, one_line.as_bytes()));
    assert_eq!(bad[0].reason, "not valid JSON: expected `:` at column 16");
}

#[test]
fn json_array_edges() {
    let read = |s: &str| read_all(SourceKind::JsonArray, s.as_bytes());
    assert!(read("").is_empty());
    assert!(read("  \n ").is_empty());
    assert!(read("[]").is_empty());
    assert!(read(" [ \n ] \n").is_empty());
    // Trailing comma tolerated.
    assert_eq!(goods(&read(r#"[{"a":1},]"#)).len(), 1);
    // Two commas in a row: an empty element.
    let items = read(r#"[{"a":1},,{"a":2}]"#);
    assert_eq!(goods(&items).len(), 2);
    assert!(
        bads(&items)[0]
            .reason
            .starts_with("empty array element at column 10")
    );
    // Not closed: the complete last element is kept, the truncation reported.
    let items = read("[{\"a\":1},\n {\"a\":2}");
    assert_eq!(goods(&items).len(), 2);
    let bad = bads(&items);
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].line, bad[0].index), (2, 2));
    assert!(
        bad[0].reason.contains("not closed with `]`"),
        "{}",
        bad[0].reason
    );
    // Cut inside an element.
    let items = read("[{\"a\":1}, {\"a\": \"unfinished");
    assert_eq!(goods(&items).len(), 1);
    let bad = bads(&items);
    assert_eq!(bad.len(), 2);
    assert!(
        bad[0]
            .reason
            .starts_with("not valid JSON: EOF while parsing a string")
    );
    // Data after the array.
    let items = read("[{\"a\":1}]\n x [{\"a\":2}]");
    assert_eq!(goods(&items).len(), 1);
    assert_eq!(
        bads(&items)[0].reason,
        "unexpected `x` at column 2 after the end of the JSON array (the rest of the data is ignored)"
    );
    // JSONL given as an array.
    let items = read("{\"a\":1}\n");
    assert!(goods(&items).is_empty());
    assert!(
        bads(&items)[0]
            .reason
            .starts_with("expected `[` at column 1")
    );
}

#[test]
fn auto_sniffs_the_first_non_whitespace_byte() {
    let mut r = RecordReader::new(SourceKind::Auto);
    assert!(r.push(b" \n\r\n\t").is_empty());
    assert_eq!(r.kind(), None);
    let items = r.push(b"[ {\"a\": 1} ]");
    assert_eq!(r.kind(), Some(SourceKind::JsonArray));
    assert_eq!(goods(&items), [(3, 0, json!({"a": 1}))]);

    let mut r = RecordReader::new(SourceKind::Auto);
    r.push(b"\n{\"a\": 1}\n");
    assert_eq!(r.kind(), Some(SourceKind::Jsonl));

    let items = read_all(SourceKind::Auto, b"\n  indented first line\nsecond\n");
    assert_eq!(
        goods(&items),
        [
            (2, 0, json!({"text": "  indented first line"})),
            (3, 1, json!({"text": "second"})),
        ]
    );
}

#[test]
fn text_lines_are_records() {
    let data = b"first line\r\n\r\nsecond \xC3\xA7\n\xff\xfe bad\n   \nthird";
    let items = read_all(SourceKind::Text, data);
    assert_eq!(
        goods(&items),
        [
            (1, 0, json!({"text": "first line"})),
            (3, 1, json!({"text": "second ç"})),
            (6, 3, json!({"text": "third"})),
        ]
    );
    assert_eq!(
        bads(&items),
        [BadRecord {
            line: 4,
            index: 2,
            reason: "not valid UTF-8 at byte 1 of the line".into()
        }]
    );
    assert_same_under_chunking(SourceKind::Text, data);
}

#[test]
fn utf16_is_reported() {
    let items = read_all(SourceKind::Auto, b"\xff\xfe{\0\"\0");
    assert_eq!(items.len(), 1);
    assert!(bads(&items)[0].reason.contains("UTF-16"));
}

#[test]
fn oversized_records_are_skipped_without_buffering() {
    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(10_000));
    for (kind, data, ok_line) in [
        (
            SourceKind::Jsonl,
            format!("{big}\n{{\"text\": \"ok\"}}\n"),
            2,
        ),
        (
            SourceKind::JsonArray,
            format!("[{big}, {{\"text\": \"ok\"}}]"),
            1,
        ),
    ] {
        let mut r = RecordReader::new(kind).with_max_record_bytes(100);
        let mut items = Vec::new();
        let mut max_buf = 0;
        for c in data.as_bytes().chunks(7) {
            items.extend(r.push(c));
            max_buf = max_buf.max(r.buffered_bytes());
        }
        items.extend(r.finish());
        assert!(max_buf <= 256, "{kind:?}: buffered {max_buf} bytes");
        assert_eq!(
            goods(&items),
            [(ok_line, 1, json!({"text": "ok"}))],
            "{kind:?}"
        );
        let bad = bads(&items);
        assert_eq!((bad[0].line, bad[0].index), (1, 0));
        assert!(bad[0].reason.starts_with("record is larger than 100 bytes"));
    }
}

#[test]
fn raw_record_fields() {
    let items = read_all(SourceKind::Jsonl, b"{\"x\": [1]}");
    assert_eq!(
        items,
        [Ok(RawRecord {
            line: 1,
            index: 0,
            value: json!({"x": [1]})
        })]
    );
}
