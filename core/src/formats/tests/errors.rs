//! Every `GgufError` variant, triggered from the input that causes it, with its message.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::*;

/// The variant's name; the match has no wildcard, so a new variant must be added here, and then
/// to [`cases`], or `cases_cover_every_variant` fails.
fn variant(e: &GgufError) -> &'static str {
    use GgufError::*;
    match e {
        NotGguf { .. } => "NotGguf",
        UnsupportedVersion { .. } => "UnsupportedVersion",
        Truncated { .. } => "Truncated",
        LengthPastEnd { .. } => "LengthPastEnd",
        CountTooLarge { .. } => "CountTooLarge",
        InvalidUtf8 { .. } => "InvalidUtf8",
        UnknownValueType { .. } => "UnknownValueType",
        ArrayTooDeep { .. } => "ArrayTooDeep",
        DuplicateKey { .. } => "DuplicateKey",
        BadAlignment { .. } => "BadAlignment",
        DuplicateTensor { .. } => "DuplicateTensor",
        TensorNameTooLong { .. } => "TensorNameTooLong",
        MissingTensor { .. } => "MissingTensor",
        TooManyDims { .. } => "TooManyDims",
        DimsOverflow { .. } => "DimsOverflow",
        UnknownTensorType { .. } => "UnknownTensorType",
        RowNotBlockAligned { .. } => "RowNotBlockAligned",
        MisalignedTensor { .. } => "MisalignedTensor",
        TensorOutOfBounds { .. } => "TensorOutOfBounds",
        TensorRead { .. } => "TensorRead",
        UnsupportedType { .. } => "UnsupportedType",
        CannotEncode { .. } => "CannotEncode",
        MissingKey { .. } => "MissingKey",
        WrongMetaType { .. } => "WrongMetaType",
        MetaOutOfRange { .. } => "MetaOutOfRange",
        SizeMismatch { .. } => "SizeMismatch",
        NotBlockMultiple { .. } => "NotBlockMultiple",
    }
}

const ALL_VARIANTS: usize = 27;

fn parse_err(bytes: &[u8]) -> GgufError {
    Gguf::parse(bytes).expect_err("the input is invalid")
}

/// A file with one metadata entry whose value is raw `value` bytes of GGUF type `ty`.
fn one_kv(key: &[u8], ty: u32, value: &[u8]) -> Vec<u8> {
    Raw::header(3, 0, 1).str(key).u32(ty).bytes(value).0
}

/// A file with one tensor and enough data for `n_bytes`.
fn one_tensor(dims: &[u64], ty: u32, offset: u64, n_bytes: usize) -> Vec<u8> {
    Raw::header(3, 1, 0)
        .tensor("t", dims, ty, offset)
        .data(32, n_bytes)
        .0
}

/// Arrays nested `depth` deep: array of array of … of one u8.
fn nested(depth: usize) -> Vec<u8> {
    let mut raw = Raw::header(3, 0, 1).str(b"deep").u32(9);
    for _ in 1..depth {
        raw = raw.u32(9).u64(1);
    }
    raw.u32(0).u64(1).bytes(&[42]).0
}

/// (error, fragments its message must contain), one or more per variant.
fn cases() -> Vec<(GgufError, Vec<&'static str>)> {
    let sample = sample_bytes();
    let gguf = Gguf::parse(&sample).unwrap();
    let meta = gguf.metadata();
    let mut too_long = GgufWriter::new();
    let mut dup = GgufWriter::new();
    dup.add_tensor("a", &[1], GgmlType::F32, vec![0; 4])
        .unwrap();
    let mut deep = MetaArray::U8(vec![1]);
    for _ in 0..MAX_ARRAY_DEPTH {
        deep = MetaArray::Array(vec![deep]);
    }
    let info = gguf.tensors()[0].clone();
    let far = TensorInfo {
        offset: u64::MAX - 31,
        ..info.clone()
    };
    vec![
        (
            parse_err(b"PK\x03\x04\x14\x00\x00\x00"),
            vec!["not a GGUF file: the first 4 bytes are 'PK\\x03\\x04', expected 'GGUF'"],
        ),
        (parse_err(b"{}"), vec!["the first 4 bytes are '{}'"]),
        (
            parse_err(&Raw::header(1, 0, 0).0),
            vec!["GGUF version 1 is not supported", "32-bit counts"],
        ),
        (
            parse_err(&Raw::header(0x0300_0000, 0, 0).0),
            vec!["big-endian"],
        ),
        (parse_err(&Raw::header(4, 0, 0).0), vec!["versions 2 and 3"]),
        (
            parse_err(
                &Raw::header(3, 0, 2)
                    .kv_u32("general.key", 1)
                    .bytes(&[4, 0])
                    .0,
            ),
            vec![
                "GGUF file is truncated at byte 53 while reading the key of metadata entry 1 \
                 (the file may be incomplete: download it again)",
            ],
        ),
        (parse_err(b""), vec!["truncated at byte 0", "magic"]),
        (
            parse_err(&sample[..28]),
            vec!["the number of tensors at byte 8 is 3"],
        ),
        (
            parse_err(b"GGUF\x03\x00"),
            vec!["truncated at byte 6 while reading the GGUF version"],
        ),
        (
            parse_err(&one_kv(b"k", 5, &[1, 2])),
            vec!["while reading the value of metadata key 'k'"],
        ),
        (
            parse_err(&Raw::header(3, 0, 1).u64(u64::MAX).bytes(&[0; 20]).0),
            vec!["the key of metadata entry 0 at byte 24 is 18446744073709551615 bytes long"],
        ),
        (
            parse_err(&one_kv(b"k", 8, &Raw::default().u64(100).bytes(b"abc").0)),
            vec!["the value of metadata key 'k' at byte 37 is 100 bytes long, but only 3"],
        ),
        (
            parse_err(&Raw::header(3, u64::MAX, 0).0),
            vec![
                "the number of tensors at byte 8 is 18446744073709551615, more than the 8 bytes \
                 left in the file could hold (the file is corrupt or incomplete: download it again)",
            ],
        ),
        (
            parse_err(&Raw::header(3, 0, 1000).bytes(&[0; 100]).0),
            vec!["the number of metadata entries at byte 16 is 1000"],
        ),
        (
            parse_err(&one_kv(b"k", 9, &Raw::default().u32(8).u64(1 << 40).0)),
            vec![
                "the length of the array in metadata key 'k'",
                "1099511627776",
            ],
        ),
        (
            parse_err(&one_kv(b"k\xff", 0, &[1])),
            vec!["the key of metadata entry 0 at byte 24 is not valid UTF-8"],
        ),
        (
            parse_err(&one_kv(b"k", 8, &Raw::default().str(b"\xc3\x28").0)),
            vec!["the value of metadata key 'k'", "not valid UTF-8"],
        ),
        (
            parse_err(&Raw::header(3, 1, 0).str(b"\x80").bytes(&[0; 24]).0),
            vec!["the name of tensor 0 at byte 24 is not valid UTF-8"],
        ),
        (
            parse_err(&one_kv(b"k", 13, &[0; 8])),
            vec!["metadata key 'k' has unknown value type 13 at byte 33"],
        ),
        (
            parse_err(&one_kv(b"k", 9, &Raw::default().u32(99).u64(0).0)),
            vec!["unknown value type 99"],
        ),
        (
            parse_err(&nested(MAX_ARRAY_DEPTH + 1)),
            vec!["metadata key 'deep' has arrays nested more than 8 deep"],
        ),
        (
            too_long.add_metadata("deep", deep).unwrap_err(),
            vec!["nested more than 8 deep"],
        ),
        (
            parse_err(&Raw::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).0),
            vec!["metadata key 'k' appears twice"],
        ),
        (
            GgufWriter::new()
                .add_metadata("x", 1u8)
                .unwrap()
                .add_metadata("x", 2u8)
                .unwrap_err(),
            vec!["appears twice"],
        ),
        (
            parse_err(&Raw::header(3, 0, 1).kv_u32(KEY_ALIGNMENT, 48).0),
            vec!["general.alignment is 48; it must be a power of two"],
        ),
        (
            parse_err(&Raw::header(3, 0, 1).kv_u32(KEY_ALIGNMENT, 0).0),
            vec!["general.alignment is 0"],
        ),
        (
            GgufWriter::new().set_alignment(24).unwrap_err(),
            vec!["is 24"],
        ),
        (
            GgufWriter::new()
                .add_metadata(KEY_ALIGNMENT, 3u32)
                .unwrap_err(),
            vec!["is 3"],
        ),
        (
            parse_err(
                &Raw::header(3, 2, 0)
                    .tensor("t", &[1], 0, 0)
                    .tensor("t", &[1], 0, 0)
                    .data(32, 4)
                    .0,
            ),
            vec!["tensor 't' appears twice"],
        ),
        (
            dup.add_tensor("a", &[1], GgmlType::F32, vec![0; 4])
                .unwrap_err(),
            vec!["tensor 'a' appears twice"],
        ),
        (
            too_long
                .add_tensor("x".repeat(64), &[1], GgmlType::F32, vec![0; 4])
                .unwrap_err(),
            vec!["is 64 bytes long; ggml allows at most 63"],
        ),
        (
            gguf.require_tensor("output.weight").unwrap_err(),
            vec!["tensor 'output.weight' is missing from the GGUF file"],
        ),
        (
            parse_err(&one_tensor(&[1, 1, 1, 1, 1], 0, 0, 4)),
            vec!["tensor 't' has 5 dimensions; GGUF allows at most 4"],
        ),
        (
            parse_err(&one_tensor(&[1 << 32, 1 << 32], 0, 0, 0)),
            vec!["tensor 't' has dimensions [4294967296, 4294967296] whose product overflows"],
        ),
        (
            parse_err(&one_tensor(&[0, u64::MAX], 0, 0, 0)),
            vec!["whose product overflows"],
        ),
        (
            TensorInfo::new("big", vec![1 << 62], GgmlType::F32, 0).unwrap_err(),
            vec!["tensor 'big' has dimensions [4611686018427387904] whose product overflows"],
        ),
        (
            parse_err(&one_tensor(&[32], 4, 0, 32)),
            vec!["tensor 't' has unknown type id 4"],
        ),
        (
            parse_err(&one_tensor(&[32], 1000, 0, 32)),
            vec!["unknown type id 1000"],
        ),
        (
            parse_err(&one_tensor(&[33, 2], 2, 0, 100)),
            vec![
                "tensor 't' of type Q4_0 has a first dimension of 33, \
                 not a multiple of the block size 32",
            ],
        ),
        (
            parse_err(&one_tensor(&[4], 0, 16, 64)),
            vec!["tensor 't' has data offset 16, not a multiple of the alignment 32"],
        ),
        (
            parse_err(&one_tensor(&[8], 0, 0, 31)),
            vec!["tensor 't' data (bytes 64..96) runs past the end of the file (95 bytes"],
        ),
        (
            parse_err(&one_tensor(&[8], 0, u64::MAX - 31, 32)),
            vec!["runs past the end of the file"],
        ),
        (
            gguf.tensor_bytes(&far, &sample).unwrap_err(),
            vec!["18446744073709551615..18446744073709551615"],
        ),
        (
            gguf.tensor_bytes(&info, &sample[..100]).unwrap_err(),
            vec!["(100 bytes"],
        ),
        (
            quant::dequantize(GgmlType::IQ2_XS, &[0; 74], 256).unwrap_err(),
            vec![
                "tensor type IQ2_XS, which afinador cannot read yet (it reads F32, F16, Q4_0, \
                 Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16; re-quantize the \
                 model with llama-quantize to one of them)",
            ],
        ),
        (
            quant::quantize(GgmlType::IQ2_XS, &[0.0; 256]).unwrap_err(),
            vec!["afinador cannot write tensor type IQ2_XS ("],
        ),
        (
            quant::quantize(GgmlType::Q5_K, &[0.0; 256]).unwrap_err(),
            vec![
                "afinador cannot write tensor type Q5_K (it writes F32, F16, Q4_0, Q4_1, Q8_0, \
                 Q4_K, Q6_K, BF16)",
            ],
        ),
        (
            quant::dequantize_row(GgmlType::I8, &[0; 4], &mut [0.0; 4]).unwrap_err(),
            vec!["tensor type I8, which afinador cannot read yet ("],
        ),
        (
            GgufWriter::new()
                .add_tensor_f32("q", &[256], GgmlType::Q5_K, &[0.0; 256])
                .unwrap_err(),
            vec!["afinador cannot write tensor type Q5_K in tensor 'q'"],
        ),
        (
            meta.get_u32("llama.block_count").unwrap_err(),
            vec!["metadata key 'llama.block_count' is missing from the GGUF file"],
        ),
        (
            meta.get_u32("test.string").unwrap_err(),
            vec!["metadata key 'test.string' is of type string, expected an integer"],
        ),
        (
            meta.get_str("test.u8").unwrap_err(),
            vec!["type u8, expected a string"],
        ),
        (
            meta.get_f32("test.bool").unwrap_err(),
            vec!["type bool, expected a number"],
        ),
        (
            meta.get_bool("test.arr.u8").unwrap_err(),
            vec!["type array, expected a bool"],
        ),
        (
            meta.get_array("test.f32").unwrap_err(),
            vec!["type f32, expected an array"],
        ),
        (
            meta.get_str_array("test.arr.i32").unwrap_err(),
            vec!["type array of i32, expected an array of strings"],
        ),
        (
            meta.get_i32_array("test.arr.f64").unwrap_err(),
            vec!["array of f64, expected an array of integers"],
        ),
        (
            meta.get_f32_array("test.arr.nested").unwrap_err(),
            vec!["array of arrays, expected an array of floats"],
        ),
        (
            meta.get_u32("test.i32").unwrap_err(),
            vec!["metadata key 'test.i32' has value -2000000000, which does not fit in u32"],
        ),
        (
            meta.get_u64("test.i64").unwrap_err(),
            vec!["does not fit in u64"],
        ),
        (
            meta.get_i32_array("test.arr.u64").unwrap_err(),
            vec!["value 18446744073709551615, which does not fit in i32"],
        ),
        (
            quant::dequantize(GgmlType::Q8_0, &[0; 33], 32).unwrap_err(),
            vec!["Q8_0 data for 32 elements must be 34 bytes, got 33"],
        ),
        (
            quant::dequantize_row(GgmlType::F16, &[0; 4], &mut [0.0; 3]).unwrap_err(),
            vec!["F16 data for 3 elements must be 6 bytes, got 4"],
        ),
        (
            GgufWriter::new()
                .add_tensor("w", &[32], GgmlType::Q4_1, vec![0; 18])
                .unwrap_err(),
            vec!["Q4_1 data for 32 elements must be 20 bytes, got 18 in tensor 'w'"],
        ),
        (
            quant::dequantize(GgmlType::Q4_0, &[0; 18], 33).unwrap_err(),
            vec!["Q4_0 stores blocks of 32 elements; 33 elements is not a whole number of blocks"],
        ),
        (
            quant::quantize(GgmlType::Q8_0, &[0.0; 40]).unwrap_err(),
            vec!["40 elements is not a whole number"],
        ),
        (
            GgufWriter::new()
                .add_tensor_f32("v", &[40], GgmlType::Q4_0, &[0.0; 40])
                .unwrap_err(),
            vec!["not a whole number of blocks in tensor 'v'"],
        ),
        (
            Unreadable.tensor(&gguf, &info).unwrap_err(),
            vec![
                "reading tensor '",
                "failed: NotReadableError (is the model file still there, unchanged?)",
            ],
        ),
    ]
}

/// A tensor source whose reads fail, as a browser `File` removed from the disk does.
struct Unreadable;

impl TensorSource for Unreadable {
    fn tensor(&self, _: &Gguf, info: &TensorInfo) -> Result<Cow<'_, [u8]>, GgufError> {
        Err(GgufError::TensorRead {
            tensor: info.name.clone(),
            reason: "NotReadableError".into(),
        })
    }
}

#[test]
fn each_error_has_a_clear_message() {
    for (err, fragments) in cases() {
        let msg = err.to_string();
        for fragment in fragments {
            assert!(
                msg.contains(fragment),
                "{} message\n  {msg}\nlacks\n  {fragment}",
                variant(&err)
            );
        }
    }
}

#[test]
fn cases_cover_every_variant() {
    let seen: BTreeSet<&str> = cases().iter().map(|(e, _)| variant(e)).collect();
    assert_eq!(seen.len(), ALL_VARIANTS, "covered: {seen:?}");
}

#[test]
fn structured_fields_are_filled() {
    let err = parse_err(&one_kv(
        b"general.name",
        8,
        &Raw::default().u64(9).bytes(b"abc").0,
    ));
    assert_eq!(
        err,
        GgufError::LengthPastEnd {
            what: "the value of metadata key 'general.name'".into(),
            offset: 48,
            len: 9,
            remaining: 3,
        }
    );
    let err = parse_err(&one_tensor(&[8], 0, 0, 31));
    assert_eq!(
        err,
        GgufError::TensorOutOfBounds {
            tensor: "t".into(),
            start: 64,
            end: 96,
            file_len: 95,
        }
    );
}
