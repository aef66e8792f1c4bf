//! Deterministic train/validation split, decided record by record as the data streams.
//!
//! Every record draws `u = hash(seed, record index)`, uniform in [0, 1). The record index counts
//! every record of the source (bad ones too), so the decision does not depend on chunking, on
//! which other records are bad, or on anything but the source order and the seed.
//!
//! * **Plain**: validation iff `u < val_ratio`. Stateless: a record's side is known from its
//!   index alone, so resuming needs nothing saved. The validation size is binomial around
//!   `n · val_ratio`.
//! * **Stratified** by a field: per distinct value of the field (a stratum; a missing field is
//!   one stratum of its own) the split keeps `seen` and `val` counts. With the excess
//!   `e = seen · r − val`, a record goes to validation iff `u < clamp(e + r, 0, 1)`. The
//!   probability is `r` when the stratum is on target, higher when it is behind, lower when ahead;
//!   when `e + r ≥ 1` it is certain and when `e + r ≤ 0` impossible, which keeps
//!   `|seen · r − val| < 1` in every stratum at every point of the stream: each stratum's
//!   validation share is as close to `r` as whole records allow, rare values included, while the
//!   choice of *which* records stays random. The counts are the only state (16 bytes per distinct
//!   value, keyed by a 64-bit hash of the value); they are serde, so a mid-pass checkpoint can
//!   store them, and replaying the pass from its start rebuilds them exactly.
//!
//! One `Split` serves one pass over the data: start each pass (epoch) from a fresh one (or
//! [`Split::reset`]) and every pass gives the same sides.

use std::collections::BTreeMap;

use serde_json::Value;

use super::rng::{fnv1a, hash2, unit_f64};
use super::{DataError, RawRecord};

/// Which side of the split a record is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    Train,
    Val,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stratum {
    seen: u64,
    val: u64,
}

/// The split (see the module docs).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    val_ratio: f64,
    seed: u64,
    stratify_field: Option<String>,
    strata: BTreeMap<u64, Stratum>,
}

impl Split {
    /// `val_ratio` in [0, 1); with `stratify_field`, each value of that field is split in that
    /// ratio.
    pub fn new(
        val_ratio: f64,
        seed: u64,
        stratify_field: Option<String>,
    ) -> Result<Self, DataError> {
        if !(0.0..1.0).contains(&val_ratio) {
            return Err(DataError::Config(format!(
                "--val-ratio {val_ratio} is out of range: give a fraction in [0, 1), e.g. 0.1"
            )));
        }
        Ok(Self {
            val_ratio,
            seed,
            stratify_field,
            strata: BTreeMap::new(),
        })
    }

    pub fn val_ratio(&self) -> f64 {
        self.val_ratio
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn stratify_field(&self) -> Option<&str> {
        self.stratify_field.as_deref()
    }

    /// Distinct values of the stratify field seen so far.
    pub fn strata(&self) -> usize {
        self.strata.len()
    }

    /// Forgets the stratum counts, for a new pass over the same data.
    pub fn reset(&mut self) {
        self.strata.clear();
    }

    /// The side of one record. Call it once per record, in source order.
    pub fn assign(&mut self, record: &RawRecord) -> Subset {
        let u = unit_f64(hash2(self.seed, record.index as u64));
        let Some(field) = &self.stratify_field else {
            return side(u < self.val_ratio);
        };
        let key = stratum_key(record.value.get(field));
        let r = self.val_ratio;
        let s = self.strata.entry(key).or_default();
        let excess = s.seen as f64 * r - s.val as f64;
        let val = u < (excess + r).clamp(0.0, 1.0);
        s.seen += 1;
        s.val += val as u64;
        side(val)
    }
}

fn side(val: bool) -> Subset {
    if val { Subset::Val } else { Subset::Train }
}

/// Hash of a stratum value: strings by their text, other values by their JSON (tagged so that
/// `"1"` and `1` differ), a missing field as its own stratum.
fn stratum_key(v: Option<&Value>) -> u64 {
    match v {
        None => fnv1a(b"\x00missing"),
        Some(Value::String(s)) => fnv1a(s.as_bytes()),
        Some(v) => fnv1a(format!("\x01{v}").as_bytes()),
    }
}
