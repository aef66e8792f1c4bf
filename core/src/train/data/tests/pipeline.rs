use super::fake::{Fake, TestRng, decode};
use crate::train::data::{
    BadRecord, Batches, DataConfig, DataError, DataPipeline, DataStats, IGNORE, PackMode,
    RecordFormat, Sequence, SourceKind,
};

/// Runs a whole pass, feeding `data` in chunks of the given sizes (cycled).
fn run(
    config: &DataConfig,
    epoch: u64,
    data: &[u8],
    sizes: &[usize],
) -> Result<(Batches, DataStats), DataError> {
    let enc = Fake::chatml();
    let mut p = DataPipeline::new(config, epoch)?;
    let mut all = Batches::default();
    let mut pos = 0;
    let mut k = 0;
    while pos < data.len() {
        let n = sizes[k % sizes.len()].clamp(1, data.len() - pos);
        let b = p.push(&data[pos..pos + n], &enc)?;
        all.train.extend(b.train);
        all.val.extend(b.val);
        pos += n;
        k += 1;
    }
    let (b, stats) = p.finish(&enc)?;
    all.train.extend(b.train);
    all.val.extend(b.val);
    Ok((all, stats))
}

/// JSONL chat records, every 17th one bad in some way.
fn chat_jsonl(n: usize) -> String {
    let mut rng = TestRng(3);
    let mut s = String::new();
    for i in 0..n {
        let q = "pergunta ".repeat(rng.range(1, 6));
        let a = "resposta ".repeat(rng.range(1, 10));
        match i % 17 {
            5 => s.push_str("{\"messages\": [{\"role\": \"user\", \"content\": \"oi\"}\n"),
            11 => s.push_str(&format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"{q}\"}}, {{\"role\": \"assistant\", \"content\": 4}}]}}\r\n"
            )),
            _ => s.push_str(&format!(
                "{{\"subject\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"{q}{i}\"}}, {{\"role\": \"assistant\", \"content\": \"{a}\"}}]}}\r\n",
                ["math", "history"][i % 2]
            )),
        }
        if i % 13 == 0 {
            s.push('\n');
        }
    }
    s
}

fn docs_text(seqs: &[Sequence]) -> Vec<String> {
    seqs.iter()
        .map(|s| {
            let ids: Vec<u32> = s.ids.iter().copied().filter(|&t| t != 0).collect();
            decode(&ids)
        })
        .collect()
}

#[test]
fn same_output_whatever_the_chunking() {
    let data = chat_jsonl(300);
    let config = DataConfig {
        seq_len: 192,
        shuffle_buffer: 16,
        val_ratio: 0.2,
        stratify_field: Some("subject".into()),
        seed: 17,
        ..DataConfig::default()
    };
    let whole = run(&config, 0, data.as_bytes(), &[data.len()]).unwrap();
    for sizes in [&[1usize][..], &[7, 3, 1, 64], &[4096]] {
        let got = run(&config, 0, data.as_bytes(), sizes).unwrap();
        assert_eq!(got, whole, "chunks {sizes:?}");
    }
    let (batches, stats) = whole;
    let bad_expected = (0..300).filter(|i| i % 17 == 5 || i % 17 == 11).count();
    assert_eq!(stats.bad_records, bad_expected);
    assert_eq!(stats.records, 300 - bad_expected);
    assert_eq!(stats.first_bad.len(), 10);
    assert_eq!(stats.first_bad[0].line, 7); // record 5, after the blank line of record 0
    assert!(stats.first_bad[0].reason.starts_with("not valid JSON: EOF"));
    assert_eq!(
        stats.first_bad[1].reason,
        "messages[1]: field `content` must be a string, found a number"
    );
    assert!((stats.val_records as f64 / stats.records as f64 - 0.2).abs() < 0.02);
    assert_eq!(stats.sequences, batches.train.len() + batches.val.len());
    let trained: usize = batches
        .train
        .iter()
        .chain(&batches.val)
        .map(Sequence::trained_tokens)
        .sum();
    assert_eq!(stats.trained_tokens, trained);
    assert_eq!(stats.truncated, 0);
    // Only assistant text is trained.
    for s in batches.train.iter().chain(&batches.val) {
        let t: Vec<u32> = s.targets.iter().copied().filter(|&t| t != IGNORE).collect();
        let text = decode(&t);
        assert!(!text.contains("pergunta"), "{text}");
        assert!(text.contains("resposta"), "{text}");
    }
}

#[test]
fn epochs_reshuffle_train_but_keep_validation() {
    let data = chat_jsonl(200);
    let config = DataConfig {
        seq_len: 256,
        pack: PackMode::Padded,
        shuffle_buffer: 32,
        val_ratio: 0.25,
        ..DataConfig::default()
    };
    let (e0, s0) = run(&config, 0, data.as_bytes(), &[100]).unwrap();
    let (e1, s1) = run(&config, 1, data.as_bytes(), &[100]).unwrap();
    assert_eq!(e0.val, e1.val);
    assert_ne!(e0.train, e1.train);
    let (mut a, mut b) = (docs_text(&e0.train), docs_text(&e1.train));
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(s0, s1);
    // Padded: one record per sequence.
    assert_eq!(e0.train.len() + e0.val.len(), s0.records);
    assert_eq!(e0.val.len(), s0.val_records);
}

#[test]
fn strict_mode_stops_at_the_first_bad_record() {
    let data = chat_jsonl(40);
    let config = DataConfig {
        strict: true,
        ..DataConfig::default()
    };
    for sizes in [&[1usize][..], &[data.len()]] {
        let err = run(&config, 0, data.as_bytes(), sizes).unwrap_err();
        let DataError::BadRecord(bad) = &err else {
            panic!("{err}")
        };
        assert_eq!((bad.line, bad.index), (7, 5));
        assert!(
            err.to_string()
                .starts_with("the data set line 7: not valid JSON: EOF while parsing"),
            "{err}"
        );
    }
}

#[test]
fn format_is_detected_from_the_first_good_record() {
    let data = concat!(
        "{\"question\": \"q\", \"answer\": \"a\"}\n",
        "not json\n",
        "{\"prompt\": \"Q: um\", \"completion\": \" A: dois\"}\n",
        "{\"text\": \"plain\"}\n",
        "{\"prompt\": \"Q: três\", \"completion\": \" A: quatro\"}\n",
    );
    let config = DataConfig {
        shuffle_buffer: 0,
        seq_len: 128,
        ..DataConfig::default()
    };
    let enc = Fake::chatml();
    let mut p = DataPipeline::new(&config, 0).unwrap();
    assert_eq!(p.format(), None);
    p.push(data.as_bytes(), &enc).unwrap();
    assert_eq!(p.format(), Some(&RecordFormat::prompt_completion()));
    assert_eq!(p.source_kind(), Some(SourceKind::Jsonl));
    let (b, stats) = p.finish(&enc).unwrap();
    assert_eq!((stats.records, stats.bad_records), (2, 3));
    let lines: Vec<usize> = stats.first_bad.iter().map(|b| b.line).collect();
    assert_eq!(lines, [1, 2, 4]);
    assert!(
        stats.first_bad[0]
            .reason
            .starts_with("cannot tell the record format")
    );
    assert_eq!(stats.first_bad[2].reason, "missing field `prompt`");
    assert_eq!(b.train.len(), 1);
    let t: Vec<u32> = b.train[0]
        .targets
        .iter()
        .copied()
        .filter(|&t| t != IGNORE)
        .collect();
    assert_eq!(decode(&t), " A: dois<|im_end|> A: quatro<|im_end|>");

    // The format comes from the first good record: a bad one with known keys does not fix it.
    let first_bad = "{\"prompt\": \"p\", \"completion\": 4}\n{\"text\": \"ok\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n";
    let mut p = DataPipeline::new(&config, 0).unwrap();
    p.push(first_bad.as_bytes(), &enc).unwrap();
    assert_eq!(p.format(), Some(&RecordFormat::text()));
    let (_, stats) = p.finish(&enc).unwrap();
    assert_eq!((stats.records, stats.bad_records), (1, 2));
    assert_eq!(
        stats.first_bad[0].reason,
        "field `completion` must be a string, found a number"
    );
    assert_eq!(stats.first_bad[1].reason, "missing field `text`");

    // A configured format is not overridden by detection.
    let config = DataConfig {
        format: Some(RecordFormat::PromptCompletion {
            prompt_field: "question".into(),
            completion_field: "answer".into(),
        }),
        ..config
    };
    let (_, stats) = run(&config, 0, data.as_bytes(), &[9]).unwrap();
    assert_eq!((stats.records, stats.bad_records), (1, 4));
}

#[test]
fn text_and_json_array_sources() {
    let config = DataConfig {
        seq_len: 10,
        shuffle_buffer: 0,
        ..DataConfig::default()
    };
    let (b, stats) = run(
        &config,
        0,
        b"ola mundo\n\nsegunda linha longa demais\n",
        &[5],
    )
    .unwrap();
    assert_eq!((stats.records, stats.truncated), (2, 1));
    assert_eq!(decode(&b.train[0].ids), "ola mundo<|im_end|>");
    assert_eq!(decode(&b.train[1].ids), "segunda li");
    let array = br#"[{"instruction": "Diga oi.", "output": "oi"}, {"instruction": "x", "input": "y", "output": "z"}]"#;
    let config = DataConfig {
        seq_len: 64,
        ..config
    };
    let (b, stats) = run(&config, 0, array, &[3]).unwrap();
    assert_eq!(stats.records, 2);
    assert_eq!(
        decode(&b.train[0].ids).trim_end_matches('\0'),
        "Diga oi.oi<|im_end|>x\n\nyz<|im_end|>"
    );
}

#[test]
fn config_errors_and_defaults() {
    let bad = |c: DataConfig| DataPipeline::new(&c, 0).unwrap_err().to_string();
    assert!(
        bad(DataConfig {
            seq_len: 0,
            ..DataConfig::default()
        })
        .contains("--seq-len")
    );
    assert!(
        bad(DataConfig {
            stratify_field: Some("label".into()),
            ..DataConfig::default()
        })
        .contains("--val-ratio")
    );
    assert!(
        bad(DataConfig {
            val_ratio: 1.5,
            ..DataConfig::default()
        })
        .contains("[0, 1)")
    );
    let parsed: DataConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(parsed, DataConfig::default());
    let parsed: DataConfig = serde_json::from_str(
        r#"{"source": "json_array", "format": {"kind": "messages"}, "seq_len": 256}"#,
    )
    .unwrap();
    assert_eq!(parsed.source, SourceKind::JsonArray);
    assert_eq!(parsed.format, Some(RecordFormat::Messages));
    assert_eq!("json".parse::<SourceKind>().unwrap(), SourceKind::JsonArray);
    assert!("xml".parse::<SourceKind>().is_err());
}

#[test]
fn stats_display() {
    let mut s = DataStats {
        records: 1000,
        val_records: 100,
        truncated: 3,
        dropped: 1,
        tokens: 50_000,
        trained_tokens: 20_000,
        pad_tokens: 700,
        sequences: 99,
        ..DataStats::default()
    };
    for i in 0..12 {
        s.add_bad(BadRecord {
            line: 10 + i,
            index: i,
            reason: "field `completion` is empty".into(),
        });
    }
    let text = s.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "1000 records (100 validation), 12 bad, 3 truncated (1 dropped); 99 sequences, 50000 \
         tokens, 20000 trained, 700 padding"
    );
    assert_eq!(lines[1], "  skipped line 10: field `completion` is empty");
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[11], "  … and 2 more");
}
