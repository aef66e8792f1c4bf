//! PEFT export and import: file layout, config keys, round trips and the q/k row order.

use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::Value;

use super::super::peft::peft_tensor_name;
use super::super::permute::{gguf_to_hf_rows, hf_to_gguf_rows};
use super::super::{HfModel, Module, PEFT_VERSION, QkOrder, from_peft, to_peft};
use super::{
    C, HF, KVH, NH, PREFIX, QK, adapter, config_json, dims, f32_bytes, safetensors_file, values,
};

fn read_f32(file: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = file.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn safetensors_layout_names_shapes_dtype_metadata() {
    let a = adapter(3, 2, &Module::ALL);
    let files = to_peft(&a, HF).unwrap();
    let bytes = &files.adapter_model_safetensors;

    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let info = meta.metadata().clone().unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info["format"], "pt");

    let file = SafeTensors::deserialize(bytes).unwrap();
    let mut names = file.names();
    names.sort_unstable();
    assert_eq!(names.len(), 2 * 2 * 7);
    assert!(names.contains(&"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert!(names.contains(&"base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight"));
    assert!(names.contains(&"base_model.model.model.layers.1.mlp.gate_proj.lora_A.weight"));
    assert!(names.contains(&"base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"));

    for p in &a.tensors {
        let (a_shape, a_vals) =
            read_f32(&file, &peft_tensor_name(PREFIX, p.layer, p.module, false));
        let (b_shape, b_vals) = read_f32(&file, &peft_tensor_name(PREFIX, p.layer, p.module, true));
        assert_eq!(a_shape, [3, p.in_features], "lora_A is [r, in]");
        assert_eq!(b_shape, [p.out_features, 3], "lora_B is [out, r]");
        assert_eq!(a_vals, p.a, "lora_A is written as is");
        let hf_b = match p.module {
            Module::QProj => gguf_to_hf_rows(&p.b, p.out_features, NH).unwrap(),
            Module::KProj => gguf_to_hf_rows(&p.b, p.out_features, KVH).unwrap(),
            _ => p.b.clone(),
        };
        assert_eq!(b_vals, hf_b, "layer {} {}", p.layer, p.module);
        if p.module == Module::QProj {
            assert_ne!(
                b_vals, p.b,
                "q_proj's lora_B must move to Hugging Face order"
            );
        }
    }
}

#[test]
fn adapter_config_has_peft_keys_sorted() {
    let mut a = adapter(4, 1, &[Module::VProj, Module::QProj]);
    a.config.alpha = 16.0;
    a.config.dropout = 0.05;
    a.config.base_model_name_or_path = Some("HuggingFaceTB/SmolLM2-135M-Instruct".into());
    let json = to_peft(&a, HF).unwrap().adapter_config_json;
    let v: Value = serde_json::from_str(&json).unwrap();
    let obj = v.as_object().unwrap();

    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let expected_keys = [
        "alpha_pattern",
        "auto_mapping",
        "base_model_name_or_path",
        "bias",
        "fan_in_fan_out",
        "inference_mode",
        "init_lora_weights",
        "layers_pattern",
        "layers_to_transform",
        "lora_alpha",
        "lora_bias",
        "lora_dropout",
        "modules_to_save",
        "peft_type",
        "peft_version",
        "r",
        "rank_pattern",
        "revision",
        "target_modules",
        "task_type",
        "use_dora",
        "use_rslora",
    ];
    assert_eq!(keys, expected_keys);
    // Written sorted, as PEFT's json.dumps(sort_keys=True).
    let positions: Vec<usize> = expected_keys
        .iter()
        .map(|k| json.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.is_sorted(), "keys out of order in:\n{json}");

    assert_eq!(obj["peft_type"], "LORA");
    assert_eq!(obj["task_type"], "CAUSAL_LM");
    assert_eq!(obj["r"], 4);
    assert!(
        obj["lora_alpha"].is_u64(),
        "an integral alpha is written as an integer"
    );
    assert_eq!(obj["lora_alpha"], 16);
    assert_eq!(obj["lora_dropout"].as_f64(), Some(0.05));
    assert_eq!(
        obj["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert_eq!(obj["bias"], "none");
    assert_eq!(obj["use_rslora"], false);
    assert_eq!(obj["fan_in_fan_out"], false);
    assert_eq!(obj["inference_mode"], true);
    assert_eq!(obj["init_lora_weights"], true);
    assert_eq!(obj["use_dora"], false);
    assert_eq!(obj["lora_bias"], false);
    assert_eq!(
        obj["base_model_name_or_path"],
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    );
    assert_eq!(obj["rank_pattern"], serde_json::json!({}));
    assert_eq!(obj["alpha_pattern"], serde_json::json!({}));
    for k in [
        "layers_to_transform",
        "layers_pattern",
        "modules_to_save",
        "revision",
    ] {
        assert!(obj[k].is_null(), "{k}");
    }
    assert_eq!(obj["peft_version"], PEFT_VERSION);
}

#[test]
fn fractional_alpha_and_rslora_are_written() {
    let mut a = adapter(2, 1, &[Module::UpProj]);
    a.config.alpha = 12.5;
    a.config.use_rslora = true;
    let v: Value = serde_json::from_str(&to_peft(&a, HF).unwrap().adapter_config_json).unwrap();
    assert_eq!(v["lora_alpha"].as_f64(), Some(12.5));
    assert!(!v["lora_alpha"].is_u64());
    assert_eq!(v["use_rslora"], true);
}

#[test]
fn export_then_import_gives_the_adapter_back() {
    let mut a = adapter(3, 3, &Module::ALL);
    a.config.alpha = 7.5;
    a.config.dropout = 0.1;
    a.config.use_rslora = true;
    a.config.base_model_name_or_path = Some("base".into());
    a.config.target_modules = vec!["all-linear".into()];
    let files = to_peft(&a, HF).unwrap();
    let back = from_peft(
        &files.adapter_config_json,
        &files.adapter_model_safetensors,
        QK,
    )
    .unwrap();
    let mut expected = a.clone();
    expected.config.target_modules = Module::ALL.iter().map(|m| m.hf_name().into()).collect();
    expected.sort();
    assert_eq!(
        back, expected,
        "values equal, q/k permutation undone and redone"
    );
    assert_eq!(back.config.scale(), a.config.scale());
}

#[test]
fn import_permutes_hugging_face_rows_into_gguf_order() {
    // A PEFT file as PEFT writes it: lora_B of q/k in Hugging Face row order.
    let r = 2;
    let mut parts = Vec::new();
    for m in [Module::QProj, Module::KProj, Module::VProj] {
        let (in_f, out_f) = dims(m);
        let seed = m as u64;
        parts.push((
            m,
            in_f,
            out_f,
            values(r * in_f, 10 + seed),
            values(out_f * r, 20 + seed),
        ));
    }
    let names: Vec<(String, String)> = parts
        .iter()
        .map(|(m, ..)| {
            (
                peft_tensor_name(PREFIX, 5, *m, false),
                peft_tensor_name(PREFIX, 5, *m, true),
            )
        })
        .collect();
    let mut tensors = Vec::new();
    for ((_, in_f, out_f, a, b), (a_name, b_name)) in parts.iter().zip(&names) {
        tensors.push((a_name.as_str(), Dtype::F32, vec![r, *in_f], f32_bytes(a)));
        tensors.push((b_name.as_str(), Dtype::F32, vec![*out_f, r], f32_bytes(b)));
    }
    let file = safetensors_file(&tensors);
    let got = from_peft(&config_json(r, ""), &file, QK).unwrap();
    assert_eq!(got.config.r, r);
    assert_eq!(got.config.alpha, 16.0);
    assert_eq!(got.config.target_modules, ["q_proj", "k_proj", "v_proj"]);
    for (m, _, out_f, a, b) in &parts {
        let p = got.pair(5, *m).unwrap();
        assert_eq!(&p.a, a, "{m}: lora_A unchanged");
        let expected = match m {
            Module::QProj => hf_to_gguf_rows(b, *out_f, NH).unwrap(),
            Module::KProj => hf_to_gguf_rows(b, *out_f, KVH).unwrap(),
            _ => b.clone(),
        };
        assert_eq!(p.b, expected, "{m}");
    }
}

#[test]
fn import_reads_f16_bf16_default_names_and_a_bare_prefix() {
    // Multiples of 1/8 in [-2, 2] are exact in f16 and bf16.
    let exact = |n: usize, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 + k) % 33) as f32 / 8.0 - 2.0)
            .collect()
    };
    let r = 2;
    let (a, b) = (exact(r * C, 1), exact(C * r, 2));
    let f16: Vec<u8> = a
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = b
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    let file = safetensors_file(&[
        (
            "base_model.model.layers.2.mlp.down_proj.lora_A.default.weight",
            Dtype::F16,
            vec![r, C],
            f16,
        ),
        (
            "base_model.model.layers.2.mlp.down_proj.lora_B.default.weight",
            Dtype::BF16,
            vec![C, r],
            bf16,
        ),
    ]);
    let got = from_peft(&config_json(r, ""), &file, QK).unwrap();
    assert_eq!(got.tensors.len(), 1);
    let p = &got.tensors[0];
    assert_eq!((p.layer, p.module), (2, Module::DownProj));
    assert_eq!((p.in_features, p.out_features), (C, C));
    assert_eq!((&p.a, &p.b), (&a, &b));
}

#[test]
fn peft_defaults_apply_to_missing_keys() {
    let r = 8;
    let (in_f, out_f) = dims(Module::VProj);
    let file = safetensors_file(&[
        (
            "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
            Dtype::F32,
            vec![r, in_f],
            f32_bytes(&values(r * in_f, 1)),
        ),
        (
            "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
            Dtype::F32,
            vec![out_f, r],
            f32_bytes(&values(out_f * r, 2)),
        ),
    ]);
    let got = from_peft(r#"{"peft_type": "LORA"}"#, &file, QK).unwrap();
    let c = &got.config;
    assert_eq!(
        (c.r, c.alpha, c.dropout, c.use_rslora),
        (8, 8.0, 0.0, false)
    );
    assert_eq!(c.base_model_name_or_path, None);
}

#[test]
fn models_whose_gguf_keeps_hugging_face_order_export_lora_b_as_is() {
    // qwen2's GGUF keeps Q/K rows in Hugging Face order: lora_B of q_proj and k_proj goes out
    // and comes back untouched; for llama's permuted rows it goes out un-permuted.
    let a = adapter(3, 2, &Module::ALL);
    let same = to_peft(
        &a,
        HfModel {
            qk_order: QkOrder::Same,
            language_model: false,
        },
    )
    .unwrap();
    let permuted = to_peft(&a, HF).unwrap();
    let file = SafeTensors::deserialize(&same.adapter_model_safetensors).unwrap();
    let file_p = SafeTensors::deserialize(&permuted.adapter_model_safetensors).unwrap();
    for (module, layer) in [(Module::QProj, 0), (Module::KProj, 1), (Module::VProj, 1)] {
        let pair = a.pair(layer, module).unwrap();
        let name = peft_tensor_name(PREFIX, layer, module, true);
        let (_, b) = read_f32(&file, &name);
        assert_eq!(b, pair.b, "{module}");
        let (_, bp) = read_f32(&file_p, &name);
        assert_eq!(bp == pair.b, module == Module::VProj, "{module}");
    }
    let back = from_peft(
        &same.adapter_config_json,
        &same.adapter_model_safetensors,
        QkOrder::Same,
    )
    .unwrap();
    assert_eq!(back.tensors, a.tensors);
}

#[test]
fn a_multimodal_models_decoder_is_named_under_its_language_model() {
    // Gemma 3 4B-27B (Gemma3ForConditionalGeneration): the decoder's modules sit under
    // model.language_model, and target_modules must not reach the vision tower's q_proj & co.
    let a = adapter(2, 2, &Module::ALL);
    let hf = HfModel {
        language_model: true,
        ..HF
    };
    let files = to_peft(&a, hf).unwrap();
    let file = SafeTensors::deserialize(&files.adapter_model_safetensors).unwrap();
    let mut names = file.names();
    names.sort_unstable();
    assert_eq!(names.len(), 2 * 2 * 7);
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("base_model.model.model.language_model.layers.")),
        "{names:?}"
    );
    let config: Value = serde_json::from_str(&files.adapter_config_json).unwrap();
    assert_eq!(
        config["target_modules"],
        r"(.*\.)?language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    );
    // Read back — from either transformers layout of the names — it is the same adapter.
    let back = from_peft(
        &files.adapter_config_json,
        &files.adapter_model_safetensors,
        QK,
    )
    .unwrap();
    assert_eq!(back.tensors, a.tensors);
    let old_layout: Vec<_> = names
        .iter()
        .map(|n| {
            let (shape, values) = read_f32(&file, n);
            let renamed = n.replace(
                "base_model.model.model.language_model.",
                "base_model.model.language_model.model.",
            );
            (renamed, Dtype::F32, shape, f32_bytes(&values))
        })
        .collect();
    let refs: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = old_layout
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    let back = from_peft(&files.adapter_config_json, &safetensors_file(&refs), QK).unwrap();
    assert_eq!(back.tensors, a.tensors);
}
