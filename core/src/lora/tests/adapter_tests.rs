//! Module names, the scale, and the adapter's invariants.

use super::super::{LoraConfig, LoraError, Module, QkOrder};
use super::{C, adapter};

#[test]
fn module_names_and_all_linear() {
    assert_eq!(Module::parse("all-linear").unwrap(), Module::ALL.to_vec());
    assert_eq!(Module::parse("q_proj").unwrap(), [Module::QProj]);
    assert_eq!(Module::parse("attn_output").unwrap(), [Module::OProj]);
    for m in Module::ALL {
        assert_eq!(Module::from_hf_name(m.hf_name()), Some(m));
        assert_eq!(Module::from_gguf_name(m.gguf_name()), Some(m));
    }
    let gguf: Vec<_> = Module::ALL.iter().map(|m| m.gguf_name()).collect();
    assert_eq!(
        gguf,
        [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down"
        ]
    );
    assert_eq!(Module::DownProj.hf_block(), "mlp");
    assert_eq!(Module::OProj.hf_block(), "self_attn");
    let list = Module::parse_list(&["v_proj", "q_proj", "all-linear", "q_proj"]).unwrap();
    assert_eq!(list, Module::ALL.to_vec());
    let err = Module::parse("lm_head").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown LoRA target module 'lm_head': afinador adapts q_proj, k_proj, v_proj, o_proj, \
         gate_proj, up_proj and down_proj (or 'all-linear' for all seven), and phi3's fused \
         qkv_proj and gate_up_proj"
    );
}

#[test]
fn fused_architectures_adapt_their_fused_modules() {
    use crate::model::arch::{LLAMA, PHI3};
    // all-linear and the usual attention list become phi3's fused modules; half of a fused
    // module is refused (its parts share one A), as is a fused module on llama.
    let all = PHI3.lora_modules(&Module::ALL).unwrap();
    assert_eq!(
        all,
        [
            Module::OProj,
            Module::DownProj,
            Module::QkvProj,
            Module::GateUpProj
        ]
    );
    let attn = Module::parse_list(&["q_proj", "k_proj", "v_proj", "o_proj"]).unwrap();
    assert_eq!(
        PHI3.lora_modules(&attn).unwrap(),
        [Module::OProj, Module::QkvProj]
    );
    assert_eq!(
        PHI3.lora_modules(&[Module::QProj, Module::VProj])
            .unwrap_err(),
        "phi3 computes q_proj, k_proj, v_proj as one qkv_proj with one LoRA A matrix: target all \
         of them, or qkv_proj"
    );
    assert_eq!(LLAMA.lora_modules(&attn).unwrap(), attn);
    assert_eq!(
        LLAMA.lora_modules(&[Module::QkvProj]).unwrap_err(),
        "llama has no qkv_proj (its modules: q_proj, k_proj, v_proj, o_proj, gate_proj, \
         up_proj, down_proj)"
    );
    assert_eq!(PHI3.module_by_gguf_name("ffn_up"), Some(Module::GateUpProj));
    assert_eq!(LLAMA.module_by_gguf_name("ffn_up"), Some(Module::UpProj));
    assert_eq!(
        Module::from_hf_name("gate_up_proj"),
        Some(Module::GateUpProj)
    );
}

#[test]
fn rope_heads_only_for_q_and_k_of_permuted_models() {
    let permuted = QkOrder::Permuted {
        n_head: 9,
        n_head_kv: 3,
    };
    assert_eq!(Module::QProj.rope_heads(permuted), Some(9));
    assert_eq!(Module::KProj.rope_heads(permuted), Some(3));
    assert_eq!(Module::QProj.rope_heads(QkOrder::Same), None);
    assert_eq!(Module::KProj.rope_heads(QkOrder::Same), None);
    for m in [
        Module::VProj,
        Module::OProj,
        Module::GateProj,
        Module::UpProj,
        Module::DownProj,
    ] {
        assert_eq!(m.rope_heads(permuted), None);
    }
}

#[test]
fn scale_is_alpha_over_r_or_over_sqrt_r() {
    let mut c = LoraConfig::new(8, 16.0, &[Module::QProj]);
    assert_eq!(c.scale(), 2.0);
    c.use_rslora = true;
    assert!((c.scale() - 16.0 / 8f32.sqrt()).abs() < 1e-6);
}

fn invalid(problem: &str) -> LoraError {
    LoraError::InvalidAdapter {
        problem: problem.to_owned(),
    }
}

#[test]
fn validate_accepts_a_well_formed_adapter() {
    adapter(3, 2, &Module::ALL).validate().unwrap();
}

#[test]
fn validate_names_what_is_wrong() {
    let good = adapter(3, 2, &[Module::QProj, Module::KProj]);

    let mut a = good.clone();
    a.tensors[1].a.pop();
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("layer 0 k_proj: a has 29 values, expected r×in = 3×10")
    );

    let mut a = good.clone();
    a.tensors[2].b.push(0.0);
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("layer 1 q_proj: b has 37 values, expected out×r = 12×3")
    );

    let mut a = good.clone();
    a.tensors[3].layer = 1;
    a.tensors[3].module = Module::QProj;
    a.tensors[3].out_features = 12;
    a.tensors[3].b = vec![0.0; 36];
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("layer 1 q_proj appears twice")
    );

    let mut a = good.clone();
    a.tensors[0].b[5] = f32::NAN;
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("layer 0 q_proj: a or b holds a non-finite value (NaN or infinity)")
    );

    let mut a = good.clone();
    a.config.target_modules = vec!["q_proj".into()];
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("layer 0 k_proj is adapted but target_modules is [\"q_proj\"]")
    );

    let mut a = good.clone();
    a.config.alpha = 0.0;
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("lora_alpha is 0, expected a positive number")
    );

    let mut a = good.clone();
    a.config.r = 0;
    assert_eq!(a.validate().unwrap_err(), invalid("the rank r is 0"));

    let mut a = good;
    a.config.target_modules = vec!["qkv".into()];
    assert!(matches!(a.validate(), Err(LoraError::UnknownModule { .. })));
}

#[test]
fn validate_checks_shapes_across_layers_and_modules() {
    // q_proj of layer 1 reads 12 inputs where layer 0's reads C = 10.
    let mut a = adapter(2, 2, &[Module::QProj]);
    a.tensors[1].in_features = 12;
    a.tensors[1].a = vec![0.0; 24];
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("layer 1 q_proj is [out 12, in 12] but layer 0 q_proj is [out 12, in 10]")
    );

    // k_proj's input is not the hidden size that q_proj reads.
    let mut a = adapter(2, 1, &[Module::QProj, Module::KProj]);
    a.tensors[1].in_features = C + 1;
    a.tensors[1].a = vec![0.0; 2 * (C + 1)];
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("the hidden size C disagrees: q_proj in = 10 but k_proj in = 11")
    );

    // down_proj's input is not gate_proj's output.
    let mut a = adapter(2, 1, &[Module::GateProj, Module::DownProj]);
    a.tensors[1].in_features = 5;
    a.tensors[1].a = vec![0.0; 10];
    assert_eq!(
        a.validate().unwrap_err(),
        invalid("the MLP width FF disagrees: gate_proj out = 14 but down_proj in = 5")
    );
}
