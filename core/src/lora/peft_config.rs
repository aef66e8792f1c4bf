//! `adapter_config.json`: writing PEFT's LoRA config and reading one back, refusing the options
//! that change what the adapter computes.
//!
//! PEFT builds the config as `LoraConfig(**json)` (`src/peft/config.py`,
//! `PeftConfigMixin.from_peft_type`): a key the installed PEFT does not know is dropped with a
//! warning, a missing key takes its default (`src/peft/tuners/lora/config.py`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{LoraConfig, LoraError, Module};

/// The `peft_version` written: the PEFT release whose config format the export follows (0.18.0
/// added the key; older PEFT ignores it with a warning).
pub const PEFT_VERSION: &str = "0.18.0";

/// `adapter_config.json` for a plain LoRA adapter on a causal LM: the keys PEFT's `LoraConfig`
/// writes by default that every PEFT since 0.7 reads, plus `lora_bias` and `peft_version`,
/// sorted like PEFT's `sort_keys=True`.
///
/// `target_modules` lists the modules' names; for a multimodal model's decoder
/// (`language_model`) it is a pattern instead — PEFT full-matches a string against each module's
/// path — so that the vision tower's own `q_proj`, `k_proj`… are left alone.
pub(super) fn config_json(config: &LoraConfig, modules: &[Module], language_model: bool) -> String {
    let opt = |s: &Option<String>| s.as_deref().map_or(Value::Null, Value::from);
    let alpha = config.alpha;
    let alpha = if alpha.fract() == 0.0 && alpha.abs() < 1e9 {
        Value::from(alpha as i64)
    } else {
        float(alpha)
    };
    let entries: BTreeMap<&str, Value> = BTreeMap::from([
        ("alpha_pattern", Value::Object(Map::new())),
        ("auto_mapping", Value::Null),
        (
            "base_model_name_or_path",
            opt(&config.base_model_name_or_path),
        ),
        ("bias", "none".into()),
        ("fan_in_fan_out", false.into()),
        ("inference_mode", true.into()),
        ("init_lora_weights", true.into()),
        ("layers_pattern", Value::Null),
        ("layers_to_transform", Value::Null),
        ("lora_alpha", alpha),
        ("lora_bias", false.into()),
        ("lora_dropout", float(config.dropout)),
        ("modules_to_save", Value::Null),
        ("peft_type", "LORA".into()),
        ("peft_version", PEFT_VERSION.into()),
        ("r", config.r.into()),
        ("rank_pattern", Value::Object(Map::new())),
        ("revision", opt(&config.revision)),
        ("target_modules", target_modules(modules, language_model)),
        ("task_type", "CAUSAL_LM".into()),
        ("use_dora", false.into()),
        ("use_rslora", config.use_rslora.into()),
    ]);
    // Inserted in sorted order, so the output is sorted whether or not serde_json keeps
    // insertion order (its `preserve_order` feature).
    let object: Map<String, Value> = entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    // A Map of plain values always serialises.
    serde_json::to_string_pretty(&Value::Object(object)).unwrap_or_default()
}

fn target_modules(modules: &[Module], language_model: bool) -> Value {
    let names: Vec<&str> = modules.iter().map(|m| m.hf_name()).collect();
    match language_model {
        false => names.into(),
        true => format!(r"(.*\.)?language_model\..*\.({})", names.join("|")).into(),
    }
}

/// An f32 as the JSON number with the shortest decimal form (0.05, not 0.05000000074505806).
fn float(x: f32) -> Value {
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Parses `adapter_config.json` into a [`LoraConfig`], refusing what afinador cannot apply.
/// Missing keys take PEFT's defaults (r 8, lora_alpha 8, lora_dropout 0).
pub(super) fn parse_config(json: &str) -> Result<LoraConfig, LoraError> {
    let value: Value = serde_json::from_str(json).map_err(|e| LoraError::ConfigJson {
        reason: e.to_string(),
    })?;
    let Value::Object(obj) = value else {
        return Err(LoraError::ConfigJson {
            reason: format!("the top level is {}, expected an object", kind(&value)),
        });
    };
    let field = |key: &str, problem: String| LoraError::ConfigField {
        key: key.to_owned(),
        problem,
    };
    match obj.get("peft_type") {
        Some(Value::String(t)) if t == "LORA" => {}
        Some(Value::String(t)) => {
            return Err(LoraError::NotLora {
                peft_type: t.clone(),
            });
        }
        Some(v) => return Err(field("peft_type", format!("is {v}, expected \"LORA\""))),
        None => return Err(field("peft_type", "is missing (expected \"LORA\")".into())),
    }
    check_unsupported(&obj)?;

    let number = |key: &str, default: f64| -> Result<f64, LoraError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| field(key, format!("is {n}, expected a number"))),
            Some(v) => Err(field(key, format!("is {v}, expected a number"))),
        }
    };
    let r = match obj.get("r") {
        None => 8,
        Some(v) => v
            .as_u64()
            .filter(|&r| r > 0)
            .and_then(|r| usize::try_from(r).ok())
            .ok_or_else(|| field("r", format!("is {v}, expected a positive integer")))?,
    };
    let alpha = number("lora_alpha", 8.0)?;
    let dropout = number("lora_dropout", 0.0)?;
    let use_rslora = match obj.get("use_rslora") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(field(
                "use_rslora",
                format!("is {v}, expected true or false"),
            ));
        }
    };
    let string = |key: &str| -> Result<Option<String>, LoraError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(field(key, format!("is {v}, expected a string or null"))),
        }
    };
    let target_modules = match obj.get("target_modules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                field(
                    "target_modules",
                    "holds a value that is not a string".into(),
                )
            })?,
        Some(v) => {
            return Err(field(
                "target_modules",
                format!("is {v}, expected a list of names or a string"),
            ));
        }
    };
    Ok(LoraConfig {
        r,
        alpha: alpha as f32,
        dropout: dropout as f32,
        target_modules,
        use_rslora,
        base_model_name_or_path: string("base_model_name_or_path")?,
        revision: string("revision")?,
    })
}

/// Refuses options that change what the adapter computes.
fn check_unsupported(obj: &Map<String, Value>) -> Result<(), LoraError> {
    const VARIANT: &str =
        "this LoRA variant changes the forward pass; afinador applies plain LoRA (W + s·B·A)";
    const RULES: [(&str, &str); 15] = [
        (
            "use_dora",
            "DoRA adapters are not supported: afinador applies plain LoRA (train with use_dora=False)",
        ),
        (
            "rank_pattern",
            "per-module ranks are not supported: afinador uses one rank r for every module",
        ),
        (
            "alpha_pattern",
            "per-module alphas are not supported: afinador uses one lora_alpha for every module",
        ),
        (
            "modules_to_save",
            "fully trained extra modules are not supported: afinador reads only LoRA matrices",
        ),
        (
            "lora_bias",
            "LoRA biases are not supported: afinador reads only lora_A/lora_B weights",
        ),
        (
            "trainable_token_indices",
            "trained token embeddings are not supported: afinador reads only LoRA matrices",
        ),
        (
            "target_parameters",
            "LoRA on raw parameters (e.g. MoE experts) is not supported: afinador adapts linear modules",
        ),
        (
            "layer_replication",
            "layer replication changes the model's layers and is not supported",
        ),
        ("use_qalora", VARIANT),
        ("velora_config", VARIANT),
        ("kasa_config", VARIANT),
        ("use_bdlora", VARIANT),
        ("arrow_config", VARIANT),
        ("monteclora_config", VARIANT),
        ("alora_invocation_tokens", VARIANT),
    ];
    let refuse = |key: &str, value: &Value, hint: &'static str| LoraError::UnsupportedOption {
        key: key.to_owned(),
        value: value.to_string(),
        hint,
    };
    for (key, hint) in RULES {
        if let Some(v) = obj.get(key).filter(|v| is_set(v)) {
            return Err(refuse(key, v, hint));
        }
    }
    if let Some(v) = obj
        .get("bias")
        .filter(|v| !v.is_null() && v.as_str() != Some("none"))
    {
        return Err(refuse(
            "bias",
            v,
            "trained bias vectors are not supported: afinador reads only LoRA matrices (train with bias=\"none\")",
        ));
    }
    if let Some(v @ Value::String(init)) = obj.get("init_lora_weights") {
        let modifies_base = ["pissa", "olora", "corda", "loftq", "lora_ga"];
        if modifies_base
            .iter()
            .any(|p| init.to_ascii_lowercase().starts_with(p))
        {
            return Err(refuse(
                "init_lora_weights",
                v,
                "this initialisation changes the base weights, so the adapter does not apply to the \
                 original model: save it with PEFT's path_initial_model_for_weight_conversion first",
            ));
        }
    }
    Ok(())
}

/// Whether an option is switched on: not null, false, 0, "" or an empty list/object.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
