//! A 200 MB top-level JSON array, generated chunk by chunk and never materialized, streams
//! through the reader with a buffer the size of one record.

use crate::train::data::{RecordReader, SourceKind};

/// Bytes of the generated array.
const TOTAL: usize = 200 << 20;
const CHUNK: usize = 64 << 10;

/// Record `i` of the generated array: mostly prompt/completion pairs, every 1000th one with
/// nesting, brackets in strings, escapes and multi-byte characters.
fn record(i: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let r = if i % 1000 == 7 {
        write!(
            out,
            "  {{\"id\": {i}, \"prompt\": \"Questão {i}: \\\"[{{}}]\\\" ação 😀\\n\", \"completion\": \" \\\\ ok\", \"meta\": {{\"tags\": [\"a]\", \"{{b\"], \"n\": [[1], [2, [3]]]}}}}"
        )
    } else {
        write!(
            out,
            "  {{\"id\": {i}, \"prompt\": \"Pergunta {i}: quanto é {i} + {}?\", \"completion\": \" {}\"}}",
            i % 997,
            i + i % 997
        )
    };
    r.expect("writing to a Vec cannot fail");
}

#[test]
fn a_200_mb_json_array_streams_with_a_small_buffer() {
    let mut reader = RecordReader::new(SourceKind::Auto);
    let mut chunk = Vec::with_capacity(CHUNK + 1024);
    chunk.extend_from_slice(b"[\n");
    let (mut produced, mut generated, mut good) = (0usize, 0usize, 0usize);
    let mut max_buffered = 0;
    let check = |items: Vec<_>, good: &mut usize| {
        for item in items {
            let rec: crate::train::data::RawRecord = match item {
                Ok(r) => r,
                Err(b) => panic!("bad record {b}"),
            };
            assert_eq!(rec.index, *good);
            assert_eq!(rec.value["id"].as_u64(), Some(*good as u64));
            assert_eq!(rec.line, *good + 2);
            *good += 1;
        }
    };
    while produced < TOTAL {
        if generated > 0 {
            chunk.extend_from_slice(b",\n");
        }
        record(generated, &mut chunk);
        generated += 1;
        if chunk.len() >= CHUNK {
            produced += chunk.len();
            check(reader.push(&chunk), &mut good);
            max_buffered = max_buffered.max(reader.buffered_bytes());
            chunk.clear();
        }
    }
    chunk.extend_from_slice(b"\n]\n");
    check(reader.push(&chunk), &mut good);
    check(reader.finish(), &mut good);
    assert!(generated > 1_400_000, "{generated} records");
    assert_eq!(good, generated);
    assert!(max_buffered <= 4096, "the reader held {max_buffered} bytes");
}
