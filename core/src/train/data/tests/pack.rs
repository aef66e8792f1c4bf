use super::fake::TestRng;
use crate::train::data::{Example, IGNORE, PackMode, Packer, Sequence};

const PAD: u32 = 9_999;

fn ex(ids: Vec<u32>, mask: Vec<bool>) -> Example {
    Example {
        ids,
        loss_mask: mask,
        record_line: 1,
        record_index: 0,
    }
}

/// An example of `len` tokens: a marker id, then ids `k*1000 + j`, all trained.
fn plain(k: u32, len: usize) -> Example {
    let ids = (0..len as u32).map(|j| k * 1000 + j).collect();
    let mut mask = vec![true; len];
    mask[0] = false;
    ex(ids, mask)
}

/// Shape and shift invariants every sequence must satisfy.
fn check_invariants(s: &Sequence, seq_len: usize) {
    assert_eq!(s.ids.len(), seq_len);
    assert_eq!(s.targets.len(), seq_len);
    assert_eq!(s.doc_start.len(), seq_len);
    for p in 0..seq_len {
        let d = s.doc_start[p] as usize;
        assert!(d <= p, "doc_start[{p}] = {d}");
        assert!(
            d == p || (p > 0 && s.doc_start[p - 1] as usize == d),
            "doc_start at {p}"
        );
        if s.targets[p] != IGNORE && p + 1 < seq_len {
            assert_eq!(
                s.targets[p],
                s.ids[p + 1],
                "targets are inputs shifted by one at {p}"
            );
            assert_eq!(
                s.doc_start[p + 1],
                s.doc_start[p],
                "target crosses documents at {p}"
            );
        }
        if s.ids[p] == PAD {
            assert_eq!(s.targets[p], IGNORE, "padding is trained at {p}");
        }
    }
}

/// The documents of a sequence with the trained flags of their tokens (the last window token,
/// seen only as a target, included when trained).
fn documents(s: &Sequence) -> Vec<(Vec<u32>, Vec<bool>)> {
    let t = s.ids.len();
    let mut docs = Vec::new();
    let mut p = 0;
    while p < t {
        let start = p;
        while p < t && s.doc_start[p] as usize == start {
            p += 1;
        }
        let mut ids = s.ids[start..p].to_vec();
        let mut mask = vec![false];
        mask.extend(s.targets[start..p - 1].iter().map(|&x| x != IGNORE));
        if p == t && s.targets[t - 1] != IGNORE {
            ids.push(s.targets[t - 1]);
            mask.push(true);
        }
        if ids[0] != PAD {
            docs.push((ids, mask));
        }
    }
    docs
}

#[test]
fn first_fit_in_arrival_order() {
    // seq_len 9: windows of 10 tokens.
    let mut p = Packer::new(9, PAD, PackMode::Packed);
    assert!(p.push(plain(1, 6)).is_empty()); // window A: 6
    assert!(p.push(plain(2, 5)).is_empty()); // window B: 5
    let out = p.push(plain(3, 4)); // A: 6 + 4 = 10, full
    assert_eq!(out.len(), 1);
    let a = &out[0];
    assert_eq!(
        a.ids,
        [1000, 1001, 1002, 1003, 1004, 1005, 3000, 3001, 3002]
    );
    assert_eq!(a.doc_start, [0, 0, 0, 0, 0, 0, 6, 6, 6]);
    let i = IGNORE;
    assert_eq!(
        a.targets,
        [1001, 1002, 1003, 1004, 1005, i, 3001, 3002, 3003]
    );
    assert!(p.push(plain(4, 3)).is_empty()); // B: 5 + 3 = 8, 2 free
    assert_eq!(p.pending_tokens(), 8);
    let rest = p.flush();
    assert_eq!(rest.len(), 1);
    let b = &rest[0];
    assert_eq!(b.ids, [2000, 2001, 2002, 2003, 2004, 4000, 4001, 4002, PAD]);
    assert_eq!(b.doc_start, [0, 0, 0, 0, 0, 5, 5, 5, 8]);
    assert_eq!(b.targets, [2001, 2002, 2003, 2004, i, 4001, 4002, i, i]);
    let st = p.stats();
    assert_eq!(
        (st.examples, st.sequences, st.tokens, st.pad_tokens),
        (4, 2, 18, 2)
    );
    assert_eq!(st.trained_tokens, 5 + 4 + 3 + 2);
    for s in out.iter().chain(&rest) {
        check_invariants(s, 9);
    }
}

#[test]
fn the_oldest_window_is_emitted_when_too_many_are_open() {
    let mut p = Packer::new(9, PAD, PackMode::Packed).with_max_open(2);
    assert!(p.push(plain(1, 7)).is_empty());
    assert!(p.push(plain(2, 7)).is_empty());
    let out = p.push(plain(3, 7));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ids[0], 1000);
    let rest = p.flush();
    assert_eq!(
        rest.iter().map(|s| s.ids[0]).collect::<Vec<_>>(),
        [2000, 3000]
    );
}

#[test]
fn truncation_keeps_the_beginning_and_is_counted() {
    let mut p = Packer::new(9, PAD, PackMode::Packed);
    let out = p.push(plain(1, 25));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ids, (1000..1009).collect::<Vec<_>>());
    assert_eq!(out[0].targets, (1001..1010).collect::<Vec<_>>());
    // A long prompt whose completion falls beyond the window: nothing left to train, dropped.
    let mut mask = vec![false; 30];
    mask[20..].fill(true);
    assert!(p.push(ex((0..30).collect(), mask)).is_empty());
    let st = p.stats();
    assert_eq!((st.truncated, st.dropped, st.sequences), (2, 1, 1));
    // Its first trained token is token 20, the target of position 19: seq_len 20 keeps it.
    assert_eq!(st.seq_len_to_keep, 20);
    let mut wider = Packer::new(20, PAD, PackMode::Packed);
    let mut mask = vec![false; 30];
    mask[20..].fill(true);
    assert!(!wider.push(ex((0..30).collect(), mask)).is_empty() || wider.pending_tokens() > 0);
    assert_eq!(wider.stats().dropped, 0);
    assert!(p.flush().is_empty());
}

#[test]
fn padded_mode_one_example_per_sequence() {
    let mut p = Packer::new(6, PAD, PackMode::Padded);
    let a = p.push(plain(1, 3));
    let b = p.push(plain(2, 2));
    assert_eq!(a.len() + b.len(), 2);
    assert_eq!(a[0].ids, [1000, 1001, 1002, PAD, PAD, PAD]);
    assert_eq!(a[0].doc_start, [0, 0, 0, 3, 3, 3]);
    let i = IGNORE;
    assert_eq!(a[0].targets, [1001, 1002, i, i, i, i]);
    assert_eq!(b[0].ids, [2000, 2001, PAD, PAD, PAD, PAD]);
    assert!(p.flush().is_empty());
    assert_eq!(p.stats().pad_tokens, 4 + 5);
}

#[test]
fn random_examples_pack_losslessly() {
    let mut rng = TestRng(42);
    for &(seq_len, max_open) in &[(17usize, 1usize), (64, 4), (127, 8), (256, 32)] {
        let mut p = Packer::new(seq_len, PAD, PackMode::Packed).with_max_open(max_open);
        let mut examples = Vec::new();
        let mut seqs = Vec::new();
        for k in 1..400u32 {
            let len = rng.range(2, seq_len + 2);
            let mut mask: Vec<bool> = (0..len).map(|_| !rng.next().is_multiple_of(3)).collect();
            mask[0] = false;
            mask[len - 1] = true;
            let ids = (0..len as u32).map(|j| k * 1000 + j).collect();
            let e = ex(ids, mask);
            examples.push((e.ids.clone(), e.loss_mask.clone()));
            seqs.extend(p.push(e));
        }
        seqs.extend(p.flush());
        for s in &seqs {
            check_invariants(s, seq_len);
        }
        let mut docs: Vec<_> = seqs.iter().flat_map(documents).collect();
        docs.sort();
        examples.sort();
        assert_eq!(docs, examples, "seq_len {seq_len}");
        let st = p.stats();
        let tokens: usize = examples.iter().map(|e| e.0.len()).sum();
        let trained: usize = examples
            .iter()
            .map(|e| e.1.iter().filter(|&&m| m).count())
            .sum();
        assert_eq!(
            (st.tokens, st.trained_tokens, st.truncated),
            (tokens, trained, 0)
        );
        assert_eq!(st.tokens + st.pad_tokens, st.sequences * (seq_len + 1));
        // Lengths uniform up to a whole window are the hard case for first fit.
        if max_open >= 8 {
            let fill = st.tokens as f64 / (st.sequences * (seq_len + 1)) as f64;
            assert!(fill > 0.85, "fill {fill:.3} with {max_open} open windows");
        }
    }
}

#[test]
fn short_examples_fill_windows_almost_completely() {
    let mut rng = TestRng(7);
    let seq_len = 512;
    let mut p = Packer::new(seq_len, PAD, PackMode::Packed);
    let mut n = 0;
    for k in 1..3000u32 {
        let e = plain(k, rng.range(20, 200));
        n += p.push(e).len();
    }
    n += p.flush().len();
    let st = p.stats();
    assert_eq!(st.sequences, n);
    let fill = st.tokens as f64 / (n * (seq_len + 1)) as f64;
    assert!(fill > 0.97, "fill {fill:.4}");
}
