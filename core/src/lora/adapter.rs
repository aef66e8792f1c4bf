//! The in-memory LoRA adapter: its hyper-parameters ([`LoraConfig`]) and one A/B pair per
//! adapted linear module ([`LoraPair`]), with the shapes checked by [`LoraAdapter::validate`].

use std::collections::BTreeMap;
use std::fmt;

use super::LoraError;

/// A linear module of a llama decoder layer that LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Module {
    /// Attention query projection, `[NH·HS, C]`.
    QProj,
    /// Attention key projection, `[KVH·HS, C]`.
    KProj,
    /// Attention value projection, `[KVH·HS, C]`.
    VProj,
    /// Attention output projection, `[C, NH·HS]`.
    OProj,
    /// MLP gate projection, `[FF, C]`.
    GateProj,
    /// MLP up projection, `[FF, C]`.
    UpProj,
    /// MLP down projection, `[C, FF]`.
    DownProj,
    /// q, k and v in one projection, `[(NH + 2·KVH)·HS, C]` (phi3).
    QkvProj,
    /// Gate and up in one projection, `[2·FF, C]`, gate first (phi3).
    GateUpProj,
}

impl Module {
    /// The seven projections a layer computes, in layer order (attention, then MLP): what
    /// `all-linear` means (architectures with fused projections adapt them through
    /// [`Module::fused_into`]).
    pub const ALL: [Module; 7] = [
        Module::QProj,
        Module::KProj,
        Module::VProj,
        Module::OProj,
        Module::GateProj,
        Module::UpProj,
        Module::DownProj,
    ];

    /// PEFT's wildcard for every linear layer but the output head.
    pub const ALL_LINEAR: &'static str = "all-linear";

    /// The Hugging Face module name ("q_proj").
    pub fn hf_name(self) -> &'static str {
        match self {
            Module::QProj => "q_proj",
            Module::KProj => "k_proj",
            Module::VProj => "v_proj",
            Module::OProj => "o_proj",
            Module::GateProj => "gate_proj",
            Module::UpProj => "up_proj",
            Module::DownProj => "down_proj",
            Module::QkvProj => "qkv_proj",
            Module::GateUpProj => "gate_up_proj",
        }
    }

    /// The projections a fused module computes, in row order (itself for the others).
    pub fn parts(self) -> &'static [Module] {
        match self {
            Module::QkvProj => &[Module::QProj, Module::KProj, Module::VProj],
            Module::GateUpProj => &[Module::GateProj, Module::UpProj],
            Module::QProj => &[Module::QProj],
            Module::KProj => &[Module::KProj],
            Module::VProj => &[Module::VProj],
            Module::OProj => &[Module::OProj],
            Module::GateProj => &[Module::GateProj],
            Module::UpProj => &[Module::UpProj],
            Module::DownProj => &[Module::DownProj],
        }
    }

    /// The fused module a projection is part of where projections are fused.
    pub fn fused_into(self) -> Option<Module> {
        match self {
            Module::QProj | Module::KProj | Module::VProj => Some(Module::QkvProj),
            Module::GateProj | Module::UpProj => Some(Module::GateUpProj),
            _ => None,
        }
    }

    /// The GGUF tensor base name ("attn_q"): the tensor is `blk.{i}.attn_q.weight`.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Module::QProj => "attn_q",
            Module::KProj => "attn_k",
            Module::VProj => "attn_v",
            Module::OProj => "attn_output",
            Module::GateProj => "ffn_gate",
            Module::UpProj => "ffn_up",
            Module::DownProj => "ffn_down",
            Module::QkvProj => "attn_qkv",
            Module::GateUpProj => "ffn_up",
        }
    }

    /// The Hugging Face sub-module that holds it: `self_attn` or `mlp`.
    pub fn hf_block(self) -> &'static str {
        match self {
            Module::QProj | Module::KProj | Module::VProj | Module::OProj | Module::QkvProj => {
                "self_attn"
            }
            Module::GateProj | Module::UpProj | Module::DownProj | Module::GateUpProj => "mlp",
        }
    }

    /// The fused modules (phi3): each covers several projections ([`Module::parts`]).
    pub const FUSED: [Module; 2] = [Module::QkvProj, Module::GateUpProj];

    /// The module with this Hugging Face name ("q_proj", "qkv_proj").
    pub fn from_hf_name(name: &str) -> Option<Module> {
        Module::ALL
            .into_iter()
            .chain(Module::FUSED)
            .find(|m| m.hf_name() == name)
    }

    /// The module with this GGUF base name ("attn_q") in an architecture without fused
    /// projections (see `Architecture::module_by_gguf_name`: `ffn_up` is `gate_up_proj` in
    /// phi3), plus `attn_qkv`.
    pub fn from_gguf_name(name: &str) -> Option<Module> {
        Module::ALL
            .into_iter()
            .chain([Module::QkvProj])
            .find(|m| m.gguf_name() == name)
    }

    /// Parses one target-module name: a Hugging Face name ("q_proj"), a GGUF base name
    /// ("attn_q"), or `"all-linear"`, which expands to all seven.
    pub fn parse(name: &str) -> Result<Vec<Module>, LoraError> {
        let name = name.trim();
        if name == Module::ALL_LINEAR {
            return Ok(Module::ALL.to_vec());
        }
        Module::from_hf_name(name)
            .or_else(|| Module::from_gguf_name(name))
            .map(|m| vec![m])
            .ok_or_else(|| LoraError::UnknownModule {
                name: name.to_owned(),
            })
    }

    /// Parses a list of target-module names into a sorted list without repeats.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Module>, LoraError> {
        let mut modules = Vec::new();
        for name in names {
            modules.extend(Module::parse(name.as_ref())?);
        }
        modules.sort();
        modules.dedup();
        Ok(modules)
    }

    /// The number of heads its rows are grouped in for RoPE, for the modules whose rows GGUF
    /// stores in another order than Hugging Face: `n_head` for q_proj, `n_head_kv` for k_proj,
    /// `None` for the others.
    pub fn rope_heads(self, order: super::permute::QkOrder) -> Option<usize> {
        match (self, order) {
            (_, super::permute::QkOrder::Same) => None,
            (Module::QProj, super::permute::QkOrder::Permuted { n_head, .. }) => Some(n_head),
            (Module::KProj, super::permute::QkOrder::Permuted { n_head_kv, .. }) => Some(n_head_kv),
            _ => None,
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hf_name())
    }
}

/// The adapter's hyper-parameters, as PEFT's `LoraConfig` names them.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// The rank R: lora_A is `[R, in]`, lora_B `[out, R]`.
    pub r: usize,
    /// PEFT's `lora_alpha`; the update is `scale() · B·A`.
    pub alpha: f32,
    /// Dropout on the adapter's input during training (recorded, not used at inference).
    pub dropout: f32,
    /// The adapted modules, as Hugging Face names ("q_proj") or `"all-linear"`.
    pub target_modules: Vec<String>,
    /// Rank-stabilised LoRA: the scale is `alpha / √r` instead of `alpha / r`.
    pub use_rslora: bool,
    /// The base model's Hugging Face id or path, if known.
    pub base_model_name_or_path: Option<String>,
    /// The base model's revision on the Hub, if known.
    pub revision: Option<String>,
}

impl LoraConfig {
    /// A config with no dropout, plain (not rank-stabilised) scaling and no base model name.
    pub fn new(r: usize, alpha: f32, target_modules: &[Module]) -> LoraConfig {
        LoraConfig {
            r,
            alpha,
            dropout: 0.0,
            target_modules: target_modules
                .iter()
                .map(|m| m.hf_name().to_owned())
                .collect(),
            use_rslora: false,
            base_model_name_or_path: None,
            revision: None,
        }
    }

    /// The factor the update `B·A` is multiplied by: `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scale(&self) -> f32 {
        let r = self.r as f32;
        if self.use_rslora {
            self.alpha / r.sqrt()
        } else {
            self.alpha / r
        }
    }

    /// The target modules, parsed (`"all-linear"` expanded), sorted, without repeats.
    pub fn modules(&self) -> Result<Vec<Module>, LoraError> {
        Module::parse_list(&self.target_modules)
    }
}

/// One adapted module of one layer: `W' = W + scale · B·A`.
///
/// Rows are in afinador's engine order, which is GGUF's: for llama q_proj and k_proj the rows of
/// `b` (output features) are in GGUF's RoPE order (see [`super::permute`]), not Hugging Face's.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// The decoder layer.
    pub layer: usize,
    /// The adapted module.
    pub module: Module,
    /// lora_A, `[R, in]` row-major.
    pub a: Vec<f32>,
    /// lora_B, `[out, R]` row-major.
    pub b: Vec<f32>,
    /// The module's input features (`in`).
    pub in_features: usize,
    /// The module's output features (`out`).
    pub out_features: usize,
}

impl LoraPair {
    /// The rank implied by `a`'s length (`a.len() / in_features`).
    pub fn rank(&self) -> usize {
        self.a.len().checked_div(self.in_features).unwrap_or(0)
    }

    /// The base weight's GGUF name: `blk.{layer}.{attn_q|…}.weight`.
    pub fn gguf_weight_name(&self) -> String {
        format!("blk.{}.{}.weight", self.layer, self.module.gguf_name())
    }

    fn label(&self) -> String {
        format!("layer {} {}", self.layer, self.module)
    }
}

/// A LoRA adapter for a llama-style model, rows in GGUF order.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    /// Hyper-parameters.
    pub config: LoraConfig,
    /// One pair per adapted (layer, module), in any order.
    pub tensors: Vec<LoraPair>,
}

impl LoraAdapter {
    /// The pair for `(layer, module)`, if adapted.
    pub fn pair(&self, layer: usize, module: Module) -> Option<&LoraPair> {
        self.tensors
            .iter()
            .find(|p| p.layer == layer && p.module == module)
    }

    /// The modules adapted in at least one layer, sorted.
    pub fn modules(&self) -> Vec<Module> {
        let mut modules: Vec<Module> = self.tensors.iter().map(|p| p.module).collect();
        modules.sort();
        modules.dedup();
        modules
    }

    /// Sorts the pairs by layer, then module.
    pub fn sort(&mut self) {
        self.tensors.sort_by_key(|p| (p.layer, p.module));
    }

    /// Checks the adapter's invariants:
    /// - `r > 0`, `alpha` finite and positive, `dropout` in `[0, 1)`;
    /// - every pair has `in, out > 0`, `a.len() = r·in`, `b.len() = out·r`, finite values;
    /// - every pair's module among `target_modules`, no (layer, module) twice;
    /// - one shape per module across layers, and shapes that fit one llama model:
    ///   `in` of q/k/v/gate/up = `out` of o/down (C), `out` of q = `in` of o,
    ///   `out` of k = `out` of v, `out` of gate = `out` of up = `in` of down (FF).
    pub fn validate(&self) -> Result<(), LoraError> {
        let bad = |problem: String| Err(LoraError::InvalidAdapter { problem });
        let c = &self.config;
        if c.r == 0 {
            return bad("the rank r is 0".into());
        }
        if !(c.alpha.is_finite() && c.alpha > 0.0) {
            return bad(format!(
                "lora_alpha is {}, expected a positive number",
                c.alpha
            ));
        }
        if !(0.0..1.0).contains(&c.dropout) {
            return bad(format!("lora_dropout is {}, expected 0 ≤ p < 1", c.dropout));
        }
        let targets = c.modules()?;
        let mut seen = BTreeMap::new();
        for p in &self.tensors {
            if p.in_features == 0 || p.out_features == 0 {
                return bad(format!(
                    "{}: in_features {} and out_features {} must be positive",
                    p.label(),
                    p.in_features,
                    p.out_features
                ));
            }
            for (what, len, rows, cols) in [
                ("a", p.a.len(), c.r, p.in_features),
                ("b", p.b.len(), p.out_features, c.r),
            ] {
                if rows.checked_mul(cols) != Some(len) {
                    let letters = if what == "a" { "r×in" } else { "out×r" };
                    return bad(format!(
                        "{}: {what} has {len} values, expected {letters} = {rows}×{cols}",
                        p.label()
                    ));
                }
            }
            if p.a.iter().chain(&p.b).any(|v| !v.is_finite()) {
                return bad(format!(
                    "{}: a or b holds a non-finite value (NaN or infinity)",
                    p.label()
                ));
            }
            if !targets.contains(&p.module) {
                return bad(format!(
                    "{} is adapted but target_modules is {:?}",
                    p.label(),
                    c.target_modules
                ));
            }
            if seen.insert((p.layer, p.module), ()).is_some() {
                return bad(format!("{} appears twice", p.label()));
            }
        }
        self.check_model_dims()
    }

    /// One (in, out) per module across layers, and the cross-module equalities of a llama layer.
    fn check_model_dims(&self) -> Result<(), LoraError> {
        let mut dims: BTreeMap<Module, (usize, usize, usize)> = BTreeMap::new();
        for p in &self.tensors {
            let (in_f, out_f, layer) =
                *dims
                    .entry(p.module)
                    .or_insert((p.in_features, p.out_features, p.layer));
            if (in_f, out_f) != (p.in_features, p.out_features) {
                return Err(LoraError::InvalidAdapter {
                    problem: format!(
                        "{} is [out {}, in {}] but layer {layer} {} is [out {out_f}, in {in_f}]",
                        p.label(),
                        p.out_features,
                        p.in_features,
                        p.module
                    ),
                });
            }
        }
        use Module::*;
        let get = |m: Module, input: bool| dims.get(&m).map(|d| if input { d.0 } else { d.1 });
        // Each group lists (module, is-input-side) sizes that must agree.
        let groups: [(&str, &[(Module, bool)]); 4] = [
            (
                "hidden size C",
                &[
                    (QProj, true),
                    (KProj, true),
                    (VProj, true),
                    (GateProj, true),
                    (UpProj, true),
                    (OProj, false),
                    (DownProj, false),
                ],
            ),
            ("attention width NH·HS", &[(QProj, false), (OProj, true)]),
            ("KV width KVH·HS", &[(KProj, false), (VProj, false)]),
            (
                "MLP width FF",
                &[(GateProj, false), (UpProj, false), (DownProj, true)],
            ),
        ];
        for (what, members) in groups {
            let mut first: Option<(Module, bool, usize)> = None;
            for &(m, input) in members {
                let Some(n) = get(m, input) else { continue };
                match first {
                    None => first = Some((m, input, n)),
                    Some((m0, input0, n0)) if n0 != n => {
                        let side = |i: bool| if i { "in" } else { "out" };
                        return Err(LoraError::InvalidAdapter {
                            problem: format!(
                                "the {what} disagrees: {m0} {} = {n0} but {m} {} = {n}",
                                side(input0),
                                side(input)
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}
