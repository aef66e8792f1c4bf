use serde_json::json;

use crate::train::data::{RawRecord, ShuffleBuffer, Split, SplitMix64, Subset};

fn shuffled(n: u32, capacity: usize, seed: u64) -> Vec<u32> {
    let mut b = ShuffleBuffer::new(capacity, seed);
    let mut out: Vec<u32> = (0..n).filter_map(|i| b.push(i)).collect();
    out.extend(b.drain());
    out
}

#[test]
fn splitmix_reference_values() {
    // First outputs of SplitMix64 seeded with 1234567 (Vigna's reference implementation).
    let mut r = SplitMix64::new(1234567);
    let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    assert_eq!(
        got,
        [
            6457827717110365317,
            3203168211198807973,
            9817491932198370423
        ]
    );
}

#[test]
fn shuffle_is_a_deterministic_permutation() {
    let a = shuffled(1000, 64, 7);
    assert_eq!(a, shuffled(1000, 64, 7));
    assert_ne!(a, shuffled(1000, 64, 8));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_ne!(a, sorted);
    // Nothing moves earlier by more than the capacity.
    for (pos, &v) in a.iter().enumerate() {
        assert!(pos + 64 >= v as usize, "{v} came out at {pos}");
    }
    assert_eq!(shuffled(50, 0, 7), (0..50).collect::<Vec<_>>());
}

#[test]
fn shuffle_is_uniform_when_the_buffer_holds_everything() {
    // Where item 0 lands, over many seeds: every position about equally often.
    let n = 8;
    let trials = 16_000;
    let mut counts = vec![0usize; n];
    for seed in 0..trials {
        let out = shuffled(n as u32, n, seed);
        counts[out.iter().position(|&v| v == 0).unwrap()] += 1;
    }
    let expected = trials as f64 / n as f64;
    for (pos, &c) in counts.iter().enumerate() {
        assert!(
            (c as f64 - expected).abs() < 0.08 * expected,
            "position {pos}: {c} vs {expected}"
        );
    }
    // A full buffer emits the new item or any buffered one with equal probability.
    let mut counts = vec![0usize; 5];
    for seed in 0..10_000 {
        let mut b = ShuffleBuffer::new(4, seed);
        for i in 0..4u32 {
            assert_eq!(b.push(i), None);
        }
        counts[b.push(4).unwrap() as usize] += 1;
    }
    for &c in &counts {
        assert!((c as f64 - 2000.0).abs() < 200.0, "{counts:?}");
    }
}

#[test]
fn shuffle_state_round_trips() {
    let mut a = ShuffleBuffer::new(16, 3);
    let mut first: Vec<u32> = (0..40).filter_map(|i| a.push(i)).collect();
    let saved = serde_json::to_string(&a).unwrap();
    let mut b: ShuffleBuffer<u32> = serde_json::from_str(&saved).unwrap();
    let finish = |buf: &mut ShuffleBuffer<u32>| {
        let mut out: Vec<u32> = (40..100).filter_map(|i| buf.push(i)).collect();
        out.extend(buf.drain());
        out
    };
    let rest_a = finish(&mut a);
    let rest_b = finish(&mut b);
    assert_eq!(rest_a, rest_b);
    first.extend(rest_a);
    assert_eq!(first.len(), 100);
}

fn rec(index: usize, value: serde_json::Value) -> RawRecord {
    RawRecord {
        line: index + 1,
        index,
        value,
    }
}

#[test]
fn plain_split_ratio_and_statelessness() {
    let n = 100_000;
    let mut s = Split::new(0.1, 11, None).unwrap();
    let sides: Vec<Subset> = (0..n).map(|i| s.assign(&rec(i, json!({})))).collect();
    let val = sides.iter().filter(|&&x| x == Subset::Val).count();
    assert!((val as f64 / n as f64 - 0.1).abs() < 0.004, "{val}");
    // A record's side depends on its index only: any order, any fresh split, same answer.
    let mut other = Split::new(0.1, 11, None).unwrap();
    for i in (0..n).rev().step_by(7) {
        assert_eq!(other.assign(&rec(i, json!({"x": i}))), sides[i]);
    }
    // Another seed, other records.
    let mut s2 = Split::new(0.1, 12, None).unwrap();
    let same = (0..n)
        .filter(|&i| s2.assign(&rec(i, json!({}))) == sides[i])
        .count();
    assert!(same < n - 1000);
    // Edges.
    let mut none = Split::new(0.0, 1, None).unwrap();
    assert!((0..1000).all(|i| none.assign(&rec(i, json!({}))) == Subset::Train));
    assert!(Split::new(1.0, 1, None).is_err());
    assert!(Split::new(-0.1, 1, None).is_err());
    assert!(Split::new(f64::NAN, 1, None).is_err());
}

#[test]
fn stratified_split_keeps_every_stratum_near_the_ratio() {
    // Skewed labels, arriving sorted by label (the worst case for a running count).
    let r = 0.15;
    let labels: Vec<(String, usize)> = vec![
        ("A".into(), 9000),
        ("B".into(), 900),
        ("C".into(), 90),
        ("D".into(), 9),
        ("E".into(), 1),
    ];
    let mut records = Vec::new();
    for (label, count) in &labels {
        for _ in 0..*count {
            records.push(json!({ "label": label }));
        }
    }
    records.push(json!({"other": 1})); // missing field: its own stratum
    records.push(json!({"label": 3}));
    let mut split = Split::new(r, 5, Some("label".into())).unwrap();
    let mut seen = std::collections::HashMap::<String, (f64, f64)>::new();
    let mut sides = Vec::new();
    for (i, v) in records.iter().enumerate() {
        let side = split.assign(&rec(i, v.clone()));
        sides.push(side);
        let e = seen
            .entry(v.get("label").map_or("-".into(), |l| l.to_string()))
            .or_default();
        e.0 += 1.0;
        e.1 += (side == Subset::Val) as u8 as f64;
        assert!(
            (e.0 * r - e.1).abs() < 1.0,
            "record {i}: seen {} val {}",
            e.0,
            e.1
        );
    }
    assert_eq!(split.strata(), 7);
    assert_eq!(seen["\"A\""].1, 1350.0);
    assert_eq!(seen["\"B\""].1, 135.0);
    assert!((13.0..=14.0).contains(&seen["\"C\""].1));
    // Same seed, same records: same sides; a fresh pass after reset too.
    split.reset();
    let again: Vec<Subset> = records
        .iter()
        .enumerate()
        .map(|(i, v)| split.assign(&rec(i, v.clone())))
        .collect();
    assert_eq!(again, sides);
    // Which records go to validation is random, not periodic: the gaps between validation
    // records of stratum A vary.
    let val_a: Vec<usize> = (0..9000).filter(|&i| sides[i] == Subset::Val).collect();
    let gaps: std::collections::BTreeSet<usize> = val_a.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 5, "{gaps:?}");
}

const SUBJECTS: [&str; 3] = ["math", "history", "biology"];

#[test]
fn stratified_split_resumes_from_saved_state() {
    let records: Vec<_> = (0..5000)
        .map(|i| json!({ "subject": SUBJECTS[(i % 3 + (i % 7 == 0) as usize) % 3] }))
        .collect();
    let run = |split: &mut Split, range: std::ops::Range<usize>| -> Vec<Subset> {
        range
            .map(|i| split.assign(&rec(i, records[i].clone())))
            .collect()
    };
    let mut whole = Split::new(0.2, 9, Some("subject".into())).unwrap();
    let all = run(&mut whole, 0..5000);
    let mut first = Split::new(0.2, 9, Some("subject".into())).unwrap();
    let mut got = run(&mut first, 0..2345);
    let saved = serde_json::to_string(&first).unwrap();
    let mut resumed: Split = serde_json::from_str(&saved).unwrap();
    got.extend(run(&mut resumed, 2345..5000));
    assert_eq!(got, all);
}
