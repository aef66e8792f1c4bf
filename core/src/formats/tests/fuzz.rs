//! Mutation fuzzing of the reader: truncations, byte flips and u64/u32 overwrites of a small
//! file holding every metadata type. `Gguf::parse` must return `Ok` or `Err`, never panic; what
//! it accepts must be usable and must survive a write → read round trip.

use super::*;

/// Values that make counts, lengths, dims and offsets interesting.
const SPECIAL: [u64; 12] = [
    0,
    1,
    4,
    9,
    13,
    32,
    255,
    1 << 31,
    u32::MAX as u64,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

/// A mutated copy of `base`.
fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = base.to_vec();
    let n_ops = 1 + rng.below(3);
    for _ in 0..n_ops {
        if bytes.is_empty() {
            break;
        }
        match rng.below(6) {
            0 => bytes.truncate(rng.below(bytes.len())),
            1 => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
            3 | 4 => {
                let value = if rng.below(2) == 0 {
                    SPECIAL[rng.below(SPECIAL.len())]
                } else {
                    rng.next_u64() >> rng.below(64)
                };
                overwrite(&mut bytes, rng, &value.to_le_bytes());
            }
            _ => {
                let value =
                    (SPECIAL[rng.below(SPECIAL.len())] as u32).wrapping_add(rng.below(3) as u32);
                overwrite(&mut bytes, rng, &value.to_le_bytes());
            }
        }
    }
    bytes
}

fn overwrite(bytes: &mut [u8], rng: &mut Rng, value: &[u8]) {
    let i = rng.below(bytes.len());
    let end = (i + value.len()).min(bytes.len());
    bytes[i..end].copy_from_slice(&value[..end - i]);
}

/// Parses `bytes`; when that succeeds, uses everything that was parsed and checks that writing
/// it back out and reading it again is stable. Returns whether the parse succeeded.
fn check(bytes: &[u8]) -> bool {
    let Ok(gguf) = Gguf::parse(bytes) else {
        return false;
    };
    for info in gguf.tensors() {
        let data = gguf
            .tensor_bytes(info, bytes)
            .expect("parse checked the bounds");
        assert_eq!(data.len() as u64, info.n_bytes);
        if info.ty.is_supported() {
            let x = gguf
                .tensor_f32(info, bytes)
                .expect("a supported type decodes");
            assert_eq!(x.len() as u64, info.n_elements);
        }
    }
    let _ = gguf.architecture();
    let Some(first) = rewrite(&gguf, bytes) else {
        return true;
    };
    let again = Gguf::parse(&first).expect("the writer's output parses");
    let second = rewrite(&again, &first).expect("the same file writes again");
    assert_eq!(first, second, "write → read → write is stable");
    true
}

/// The parsed file written back out, or `None` when the writer refuses a name ggml would refuse.
fn rewrite(gguf: &Gguf, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut w = GgufWriter::new();
    for (key, value) in gguf.metadata().iter() {
        if key == KEY_ALIGNMENT {
            w.set_alignment(gguf.alignment() as u32)
                .expect("parse checked it");
        } else {
            w.add_metadata(key, value.clone()).expect("keys are unique");
        }
    }
    for info in gguf.tensors() {
        let data = gguf.tensor_bytes(info, bytes).ok()?.to_vec();
        match w.add_tensor(info.name.clone(), &info.dims, info.ty, data) {
            Ok(_) => {}
            Err(GgufError::TensorNameTooLong { .. }) => return None,
            Err(e) => panic!("a parsed tensor is refused by the writer: {e}"),
        }
    }
    Some(w.to_bytes())
}

#[test]
fn every_truncation_fails() {
    let bytes = sample_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let last = gguf.tensors().last().unwrap();
    let data_end = (gguf.data_offset() + last.offset + last.n_bytes) as usize;
    for len in 0..data_end {
        assert!(
            Gguf::parse(&bytes[..len]).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
    // Only the trailing padding of the last tensor may go.
    for len in data_end..=bytes.len() {
        assert!(check(&bytes[..len]));
    }
}

#[test]
fn random_mutations_never_panic() {
    const CASES: usize = 5000;
    let base = sample_bytes();
    let mut rng = Rng::new(0x6767_7566);
    let mut ok = 0;
    for _ in 0..CASES {
        let bytes = mutate(&base, &mut rng);
        ok += usize::from(check(&bytes));
    }
    // Both outcomes happen: flips in values parse, flips in structure fail.
    assert!(
        ok > CASES / 20 && ok < CASES * 19 / 20,
        "{ok} of {CASES} parsed"
    );
}

#[test]
fn every_header_byte_set_to_extremes() {
    let base = sample_bytes();
    let header_len = Gguf::parse(&base).unwrap().data_offset() as usize;
    for i in 0..header_len {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bytes = base.clone();
            bytes[i] = value;
            check(&bytes);
        }
    }
}

#[test]
fn arrays_nested_to_the_limit_round_trip() {
    let mut deep = MetaArray::Array(vec![]);
    for _ in 2..MAX_ARRAY_DEPTH {
        deep = MetaArray::Array(vec![deep, MetaArray::I16(vec![-1])]);
    }
    let mut w = GgufWriter::new();
    w.add_metadata("deep", deep.clone()).unwrap();
    let bytes = w.to_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    assert_eq!(gguf.metadata().get("deep"), Some(&MetaValue::Array(deep)));
    assert!(check(&bytes));
}
