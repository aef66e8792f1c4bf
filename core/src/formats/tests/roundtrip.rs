//! Writer → reader round trips, metadata getters and the ggml type table.

use std::borrow::Cow;

use super::*;

#[test]
fn every_metadata_type_round_trips_in_order() {
    let bytes = sample_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    assert_eq!(gguf.version(), 3);
    let expected = all_metadata();
    let found: Vec<(&str, &MetaValue)> = gguf.metadata().iter().collect();
    assert_eq!(found.len(), expected.len());
    for ((k, v), (ek, ev)) in found.iter().zip(&expected) {
        assert_eq!(k, ek);
        assert_eq!(*v, ev, "value of {k}");
        assert_eq!(gguf.metadata().get(k), Some(ev));
    }
    assert_eq!(gguf.architecture().unwrap(), "llama");
    assert_eq!(gguf.metadata().get("no.such.key"), None);
}

#[test]
fn every_supported_tensor_type_round_trips() {
    let supported: Vec<GgmlType> = GgmlType::ALL
        .iter()
        .copied()
        .filter(|t| t.can_encode())
        .collect();
    assert_eq!(supported.len(), 8);
    let mut w = GgufWriter::new();
    // Rows of 256: whole k-quant super-blocks.
    let dims: [u64; 3] = [256, 3, 1];
    let x = values(7, 256 * 3);
    for ty in &supported {
        w.add_tensor_f32(format!("t.{ty}"), &dims, *ty, &x).unwrap();
    }
    let bytes = w.to_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    assert_eq!(gguf.tensors().len(), supported.len());
    for ty in supported {
        let info = gguf.require_tensor(&format!("t.{ty}")).unwrap();
        assert_eq!(info.ty, ty);
        assert_eq!(info.dims, dims);
        assert_eq!(info.n_elements, 768);
        assert_eq!(info.n_bytes, ty.bytes_for(768).unwrap());
        assert_eq!(info.offset % 32, 0);
        let raw = gguf.tensor_bytes(info, &bytes).unwrap();
        assert_eq!(raw, quant::quantize(ty, &x).unwrap());
        let decoded = gguf.tensor_f32(info, &bytes).unwrap();
        assert_eq!(decoded, quant::dequantize(ty, raw, 768).unwrap());
        if ty == GgmlType::F32 {
            assert_eq!(decoded, x);
        }
    }
}

#[test]
fn sample_tensors_round_trip_raw_bytes() {
    let w = sample_writer();
    let bytes = w.to_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let names: Vec<&str> = gguf.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, SAMPLE_TENSORS.map(|t| t.0));
    let mut end = 0;
    for info in gguf.tensors() {
        assert!(info.offset >= end, "tensors do not overlap");
        end = info.offset + info.n_bytes;
    }
    // Each tensor is padded to the alignment, the last one included.
    assert_eq!(
        bytes.len() as u64,
        gguf.data_offset() + end.next_multiple_of(32)
    );
    assert_eq!(gguf.data_offset() % 32, 0);
}

#[test]
fn the_header_alone_parses_and_tensors_read_one_at_a_time() {
    // What the browser does with a `File`: parse the head, then read each tensor's range.
    let bytes = sample_writer().to_bytes();
    let whole = Gguf::parse(&bytes).unwrap();
    let len = bytes.len() as u64;
    let head = &bytes[..whole.data_offset() as usize];
    let gguf = Gguf::parse_header(head, len).unwrap();
    assert_eq!(gguf.tensors(), whole.tensors());
    for info in gguf.tensors() {
        let range = gguf.tensor_range(info).unwrap();
        let slice = &bytes[range.start as usize..range.end as usize];
        assert_eq!(WholeFile(&bytes).tensor(&gguf, info).unwrap(), slice);
        assert_eq!(
            gguf.decode_f32(info, slice).unwrap(),
            whole.tensor_f32(info, &bytes).unwrap()
        );
    }
    // A head cut anywhere (inside a string, an array, the tensor table) says it stopped too
    // early, never that the file is corrupt: a download checks its header as it arrives.
    // (A cut in the padding after the table parses: the table is whole.)
    let padding = whole.alignment() as usize;
    for cut in 4..head.len() {
        match Gguf::parse_header(&head[..cut], len) {
            Err(GgufError::Truncated { .. }) => {}
            Ok(_) if cut > head.len() - padding => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let err = Gguf::parse_header(head, len - 40).unwrap_err();
    assert!(matches!(err, GgufError::TensorOutOfBounds { .. }), "{err}");
}

#[test]
fn unsupported_types_parse_and_are_refused_when_decoded() {
    let mut w = GgufWriter::new();
    w.add_tensor(
        "blk.0.ffn_down.weight",
        &[256, 2],
        GgmlType::IQ2_XS,
        vec![0; 148],
    )
    .unwrap();
    w.add_tensor("mx", &[64], GgmlType::MXFP4, vec![3; 34])
        .unwrap();
    let bytes = w.to_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let info = gguf.require_tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!((info.ty, info.n_bytes), (GgmlType::IQ2_XS, 148));
    assert_eq!(gguf.tensor_bytes(info, &bytes).unwrap(), &[0; 148][..]);
    let err = gguf.tensor_f32(info, &bytes).unwrap_err();
    assert_eq!(
        err,
        GgufError::UnsupportedType {
            ty: "IQ2_XS",
            tensor: "blk.0.ffn_down.weight".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "tensor 'blk.0.ffn_down.weight' has type IQ2_XS, which afinador cannot read yet (it reads \
         F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16; re-quantize \
         the model with llama-quantize to one of them)"
    );
    let mx = gguf.require_tensor("mx").unwrap();
    assert_eq!(gguf.tensor_bytes(mx, &bytes).unwrap(), &[3; 34][..]);
}

#[test]
fn version_2_files_parse_like_version_3() {
    let mut bytes = sample_bytes();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let v2 = Gguf::parse(&bytes).unwrap();
    let v3 = Gguf::parse(&sample_bytes()).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.metadata(), v3.metadata());
    assert_eq!(v2.tensors(), v3.tensors());
}

#[test]
fn custom_alignments_round_trip() {
    for alignment in [1u32, 8, 64, 4096] {
        let mut w = sample_writer();
        w.set_alignment(alignment).unwrap();
        let bytes = w.to_bytes();
        let gguf = Gguf::parse(&bytes).unwrap();
        let a = u64::from(alignment);
        assert_eq!(gguf.alignment(), a);
        assert_eq!(gguf.metadata().get_u32(KEY_ALIGNMENT).unwrap(), alignment);
        assert_eq!(gguf.data_offset() % a, 0);
        for info in gguf.tensors() {
            assert_eq!(info.offset % a, 0, "{} at alignment {a}", info.name);
            let want = sample_writer().to_bytes();
            let reference = Gguf::parse(&want).unwrap();
            let ref_info = reference.require_tensor(&info.name).unwrap();
            assert_eq!(
                gguf.tensor_bytes(info, &bytes).unwrap(),
                reference.tensor_bytes(ref_info, &want).unwrap()
            );
        }
    }
    // Alignment given as metadata works the same way.
    let mut w = GgufWriter::new();
    w.add_metadata(KEY_ALIGNMENT, 16u32).unwrap();
    assert_eq!(w.alignment(), 16);
}

#[test]
fn empty_files_scalars_and_zero_sized_tensors() {
    let bytes = GgufWriter::new().to_bytes();
    assert_eq!(bytes.len(), 32, "24-byte header padded to the alignment");
    let gguf = Gguf::parse(&bytes).unwrap();
    assert!(gguf.metadata().is_empty() && gguf.tensors().is_empty());
    // The unpadded header alone is a valid file with no tensors.
    assert!(Gguf::parse(&bytes[..24]).is_ok());

    let mut w = GgufWriter::new();
    w.add_tensor("scalar", &[], GgmlType::F32, 2.5f32.to_le_bytes().to_vec())
        .unwrap();
    w.add_tensor("empty", &[0, 4], GgmlType::Q4_0, vec![])
        .unwrap();
    w.add_tensor("after", &[2], GgmlType::F16, vec![0, 0x3c, 0, 0xbc])
        .unwrap();
    let bytes = w.to_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let scalar = gguf.require_tensor("scalar").unwrap();
    assert_eq!((scalar.n_elements, scalar.n_bytes), (1, 4));
    assert_eq!(gguf.tensor_f32(scalar, &bytes).unwrap(), [2.5]);
    let empty = gguf.require_tensor("empty").unwrap();
    assert_eq!((empty.n_elements, empty.n_bytes), (0, 0));
    assert_eq!(gguf.tensor_f32(empty, &bytes).unwrap(), Vec::<f32>::new());
    let after = gguf.require_tensor("after").unwrap();
    assert_eq!(gguf.tensor_f32(after, &bytes).unwrap(), [1.0, -1.0]);
}

#[test]
fn integer_getters_accept_any_integer_type_that_fits() {
    let mut m = Metadata::new();
    m.insert("u8", 7u8).unwrap();
    m.insert("i64", 1i64 << 40).unwrap();
    m.insert("neg", -3i32).unwrap();
    m.insert("f64", 0.25f64).unwrap();
    m.insert("flag", false).unwrap();
    m.insert("tokens", vec!["<s>", "a"]).unwrap();
    m.insert("types", vec![1i32, 3]).unwrap();
    m.insert("types_u8", vec![1u8, 3]).unwrap();
    m.insert("scores", vec![-1.0f32, 0.5]).unwrap();
    m.insert("scores_f64", vec![-1.0f64, 0.5]).unwrap();
    assert_eq!(m.get_u32("u8").unwrap(), 7);
    assert_eq!(m.get_u64("i64").unwrap(), 1 << 40);
    assert_eq!(m.get_f32("f64").unwrap(), 0.25);
    assert_eq!(m.get_f32("u8").unwrap(), 7.0);
    assert!(!m.get_bool("flag").unwrap());
    assert_eq!(m.get_str_array("tokens").unwrap(), ["<s>", "a"]);
    assert!(matches!(
        m.get_i32_array("types").unwrap(),
        Cow::Borrowed(&[1, 3])
    ));
    assert_eq!(*m.get_i32_array("types_u8").unwrap(), [1, 3]);
    assert!(matches!(
        m.get_f32_array("scores").unwrap(),
        Cow::Borrowed(_)
    ));
    assert_eq!(*m.get_f32_array("scores_f64").unwrap(), [-1.0, 0.5]);
    assert_eq!(m.get_array("tokens").unwrap().len(), 2);
    assert_eq!(m.get_array("tokens").unwrap().elem_type_name(), "string");
    assert_eq!(m.get("neg").unwrap().as_integer(), Some(-3));
}

#[test]
fn metadata_set_replaces_in_place() {
    let mut m = Metadata::new();
    m.insert("a", 1u32).unwrap();
    m.insert("b", 2u32).unwrap();
    m.set("a", "one");
    m.set("c", 3u32);
    let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(m.get_str("a").unwrap(), "one");
    assert_eq!(m.len(), 3);
}

#[test]
fn ggml_type_table_matches_ggml() {
    assert_eq!(GgmlType::ALL.len(), 34);
    for &ty in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
        assert!(ty.type_size() > 0 && ty.block_size() > 0);
        assert_eq!(ty.to_string(), ty.name());
    }
    for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
        assert_eq!(GgmlType::from_id(id), None, "id {id}");
    }
    let expect = [
        (GgmlType::F32, 0, "F32", 1, 4),
        (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
        (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
        (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
        (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
        (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
        (GgmlType::BF16, 30, "BF16", 1, 2),
        (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
        (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    ];
    for (ty, id, name, block, size) in expect {
        assert_eq!(
            (ty.id(), ty.name(), ty.block_size(), ty.type_size()),
            (id, name, block, size)
        );
    }
    let supported: Vec<&str> = GgmlType::ALL
        .iter()
        .filter(|t| t.is_supported())
        .map(|t| t.name())
        .collect();
    assert_eq!(
        supported,
        [
            "F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
            "Q6_K", "BF16"
        ]
    );
    assert!(GgmlType::Q4_0.is_quantized() && !GgmlType::BF16.is_quantized());
    assert_eq!(GgmlType::Q4_0.bytes_for(64), Some(36));
    assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
}
