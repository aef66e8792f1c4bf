//! PEFT import and export errors: each names the file, key or tensor and what was expected.

use safetensors::tensor::Dtype;

use super::super::{HfModel, LoraError, Module, from_peft, to_peft};
use super::{HF, KVH, QK, adapter, config_json, f32_bytes, safetensors_file, values};

const A: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
const B: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

/// A valid rank-2 q_proj pair for the tiny shape (in 10, out 12).
fn q_pair() -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    vec![
        (A, Dtype::F32, vec![2, 10], f32_bytes(&values(20, 1))),
        (B, Dtype::F32, vec![12, 2], f32_bytes(&values(24, 2))),
    ]
}

fn import_err(config: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> String {
    from_peft(config, &safetensors_file(tensors), QK)
        .unwrap_err()
        .to_string()
}

#[test]
fn the_valid_base_case_imports() {
    from_peft(&config_json(2, ""), &safetensors_file(&q_pair()), QK).unwrap();
}

#[test]
fn refuses_other_peft_types_and_bad_json() {
    let cfg = r#"{"peft_type": "IA3", "target_modules": ["k_proj"]}"#;
    assert_eq!(
        import_err(cfg, &q_pair()),
        "adapter_config.json: peft_type is 'IA3', afinador reads LORA adapters \
         (train or convert a plain LoRA adapter)"
    );
    let err = import_err("{\"peft_type\": \"LORA\",", &q_pair());
    assert!(
        err.starts_with("adapter_config.json is not a valid JSON object: "),
        "{err}"
    );
    assert_eq!(
        import_err("[1]", &q_pair()),
        "adapter_config.json is not a valid JSON object: the top level is an array, expected an object"
    );
    assert_eq!(
        import_err("{}", &q_pair()),
        "adapter_config.json: peft_type is missing (expected \"LORA\")"
    );
    assert_eq!(
        import_err(r#"{"peft_type": "LORA", "r": 0}"#, &q_pair()),
        "adapter_config.json: r is 0, expected a positive integer"
    );
    assert_eq!(
        import_err(r#"{"peft_type": "LORA", "lora_alpha": "16"}"#, &q_pair()),
        "adapter_config.json: lora_alpha is \"16\", expected a number"
    );
}

#[test]
fn refuses_options_that_change_the_computation() {
    let cases = [
        (
            ", \"use_dora\": true",
            "use_dora = true: DoRA adapters are not supported",
        ),
        (
            ", \"rank_pattern\": {\"q_proj\": 4}",
            "rank_pattern = {\"q_proj\":4}: per-module ranks",
        ),
        (
            ", \"alpha_pattern\": {\"q_proj\": 4}",
            "alpha_pattern = {\"q_proj\":4}: per-module alphas",
        ),
        (
            ", \"modules_to_save\": [\"lm_head\"]",
            "modules_to_save = [\"lm_head\"]: fully trained",
        ),
        (
            ", \"bias\": \"all\"",
            "bias = \"all\": trained bias vectors",
        ),
        (", \"lora_bias\": true", "lora_bias = true: LoRA biases"),
        (
            ", \"layer_replication\": [[0, 2]]",
            "layer_replication = [[0,2]]: layer replication",
        ),
        (
            ", \"alora_invocation_tokens\": [5]",
            "alora_invocation_tokens = [5]: this LoRA variant",
        ),
        (
            ", \"init_lora_weights\": \"pissa_niter_4\"",
            "init_lora_weights = \"pissa_niter_4\": this initialisation changes the base weights",
        ),
    ];
    for (extra, expected) in cases {
        let err = import_err(&config_json(2, extra), &q_pair());
        assert!(
            err.starts_with(&format!("adapter_config.json: {expected}")),
            "{extra}: {err}"
        );
    }
    // Off or default values of the same keys are fine.
    let off = ", \"use_dora\": false, \"rank_pattern\": {}, \"modules_to_save\": null, \
               \"bias\": \"none\", \"init_lora_weights\": \"gaussian\", \"fan_in_fan_out\": false";
    from_peft(&config_json(2, off), &safetensors_file(&q_pair()), QK).unwrap();
}

#[test]
fn names_a_tensor_of_the_wrong_shape() {
    let mut t = q_pair();
    t[0].2 = vec![4, 5];
    assert_eq!(
        import_err(&config_json(2, ""), &t),
        format!(
            "adapter tensor {A} has shape [4, 5], expected [r, in] = [2, in] \
             (r = 2 from adapter_config.json)"
        )
    );
    let mut t = q_pair();
    t[1].2 = vec![6, 4];
    assert_eq!(
        import_err(&config_json(2, ""), &t),
        format!(
            "adapter tensor {B} has shape [6, 4], expected [out, r] = [out, 2] \
             (r = 2 from adapter_config.json)"
        )
    );
    // Right rank, but 10 output rows of q_proj do not split into 3 heads.
    let mut t = q_pair();
    t[1].2 = vec![10, 2];
    t[1].3 = f32_bytes(&values(20, 3));
    assert_eq!(
        import_err(&config_json(2, ""), &t),
        "q_proj: 10 output rows cannot be split into 3 heads of an even size (is the head count \
         right? q_proj uses the attention heads, k_proj the KV heads)"
    );
}

#[test]
fn names_missing_duplicate_and_foreign_tensors() {
    let t = q_pair();
    assert_eq!(
        import_err(&config_json(2, ""), &t[..1]),
        "layer 0 q_proj: the adapter has lora_A but no lora_B"
    );
    assert_eq!(
        import_err(&config_json(2, ""), &t[1..]),
        "layer 0 q_proj: the adapter has lora_B but no lora_A"
    );

    let mut t = q_pair();
    let dup = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight";
    t.push((dup, Dtype::F32, vec![2, 10], f32_bytes(&values(20, 4))));
    assert_eq!(
        import_err(&config_json(2, ""), &t),
        format!("adapter tensor '{A}' appears twice in the file (as '{dup}' too)")
    );

    let cases = [
        (
            "base_model.model.lm_head.weight",
            "is not a lora_A/lora_B matrix",
        ),
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
            "is a DoRA magnitude vector",
        ),
        (
            "base_model.model.model.embed_tokens.lora_embedding_A",
            "adapts an embedding",
        ),
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
            "is a LoRA bias",
        ),
        (
            "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
            "is not a lora_A/lora_B matrix",
        ),
        (
            "base_model.model.vision.layers.0.self_attn.q_proj.lora_A.weight",
            "is not a lora_A/lora_B matrix",
        ),
        (
            "base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight",
            "is not a lora_A/lora_B matrix",
        ),
    ];
    for (name, expected) in cases {
        let mut t = q_pair();
        t.push((name, Dtype::F32, vec![2], f32_bytes(&[0.0, 0.0])));
        let err = import_err(&config_json(2, ""), &t);
        let prefix = format!("adapter tensor '{name}' {expected}");
        assert!(err.starts_with(&prefix), "{err}");
    }
}

#[test]
fn refuses_other_dtypes_and_broken_files() {
    let mut t = q_pair();
    t[0].1 = Dtype::I32;
    assert_eq!(
        import_err(&config_json(2, ""), &t),
        format!("adapter tensor '{A}' has dtype I32, expected F32, F16 or BF16")
    );
    let err = from_peft(&config_json(2, ""), b"not a safetensors file", QK).unwrap_err();
    assert!(matches!(err, LoraError::Safetensors { .. }), "{err}");
    let empty = safetensors_file(&[]);
    assert_eq!(
        from_peft(&config_json(2, ""), &empty, QK)
            .unwrap_err()
            .to_string(),
        "adapter_model.safetensors holds no LoRA matrices"
    );
}

#[test]
fn export_refuses_bad_adapters_and_head_counts() {
    let a = adapter(2, 1, &[Module::QProj]);
    assert_eq!(
        to_peft(
            &a,
            HfModel {
                qk_order: crate::lora::QkOrder::Permuted {
                    n_head: 4,
                    n_head_kv: KVH
                },
                language_model: false,
            }
        )
        .unwrap_err(),
        LoraError::HeadSplit {
            module: "q_proj",
            rows: 12,
            n_head: 4
        }
    );
    let mut bad = a.clone();
    bad.tensors[0].a.pop();
    assert!(matches!(
        to_peft(&bad, HF),
        Err(LoraError::InvalidAdapter { .. })
    ));
    let mut empty = a;
    empty.tensors.clear();
    assert_eq!(
        to_peft(&empty, HF).unwrap_err().to_string(),
        "the adapter holds no LoRA matrices"
    );
}
