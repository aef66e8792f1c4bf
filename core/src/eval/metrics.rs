//! A selection of metrics computed over (prediction, reference) records.
//!
//! [`Metrics::parse`] reads a comma list such as `"rouge,bleu,f1,em,accuracy"`; names are
//! case-insensitive and may be groups:
//!
//! | name | selects |
//! |---|---|
//! | `rouge` | `rouge1`, `rouge2`, `rougeL`, `rougeLsum` (F-measures) |
//! | `squad` | `exact_match`, `f1`, `precision`, `recall` |
//! | `em` | `exact_match` |
//! | `acc` | `accuracy` |
//! | `all` | everything |
//!
//! plus each key by itself. [`Metrics::evaluate`] returns [`Scores`], whose JSON has exactly the
//! selected keys: `rouge1`, `rouge2`, `rougeL`, `rougeLsum`, `exact_match`, `f1`, `precision`,
//! `recall`, `accuracy` (each 0–1, the mean over records of the per-record value) and `bleu`
//! (corpus BLEU, 0–100), along with one [`RecordScores`] per record, where `bleu` is sentence
//! BLEU (sacrebleu's `sentence_bleu`).
//!
//! Accuracy reads the letter of both sides with [`extract_choice`], so a reference may be `C`,
//! `(C)` or `C) text of the option`; a reference without a letter is an error.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::bleu::BleuStats;
use super::choice::extract_choice;
use super::rouge::rouge_lsum;
use super::squad::{SquadScore, squad_score};
use super::{EvalError, rouge};

/// One metric key of [`Scores`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricName {
    Rouge1,
    Rouge2,
    RougeL,
    RougeLsum,
    ExactMatch,
    F1,
    Precision,
    Recall,
    Accuracy,
    Bleu,
}

impl MetricName {
    /// Every metric, in output order.
    pub const ALL: [MetricName; 10] = [
        Self::Rouge1,
        Self::Rouge2,
        Self::RougeL,
        Self::RougeLsum,
        Self::ExactMatch,
        Self::F1,
        Self::Precision,
        Self::Recall,
        Self::Accuracy,
        Self::Bleu,
    ];

    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Rouge1 => "rouge1",
            Self::Rouge2 => "rouge2",
            Self::RougeL => "rougeL",
            Self::RougeLsum => "rougeLsum",
            Self::ExactMatch => "exact_match",
            Self::F1 => "f1",
            Self::Precision => "precision",
            Self::Recall => "recall",
            Self::Accuracy => "accuracy",
            Self::Bleu => "bleu",
        }
    }
}

const ROUGE: &[MetricName] = &[
    MetricName::Rouge1,
    MetricName::Rouge2,
    MetricName::RougeL,
    MetricName::RougeLsum,
];
const SQUAD: &[MetricName] = &[
    MetricName::ExactMatch,
    MetricName::F1,
    MetricName::Precision,
    MetricName::Recall,
];

/// Group names and aliases accepted by [`Metrics::parse`] besides the keys themselves.
const GROUPS: &[(&str, &[MetricName])] = &[
    ("rouge", ROUGE),
    ("squad", SQUAD),
    ("em", &[MetricName::ExactMatch]),
    ("acc", &[MetricName::Accuracy]),
    ("all", &MetricName::ALL),
];

fn valid_names() -> String {
    let mut names: Vec<&str> = GROUPS.iter().map(|(name, _)| *name).collect();
    names.extend(MetricName::ALL.iter().map(|m| m.key()));
    names.join(", ")
}

/// Scores keyed by metric; `None` fields (metrics not selected) are left out of the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rouge1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rouge2: Option<f64>,
    #[serde(rename = "rougeL", skip_serializing_if = "Option::is_none", default)]
    pub rouge_l: Option<f64>,
    #[serde(rename = "rougeLsum", skip_serializing_if = "Option::is_none", default)]
    pub rouge_lsum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exact_match: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub precision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recall: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bleu: Option<f64>,
    /// Likelihood of the references under the model ([`Scores::set_likelihood`]); only
    /// callers that have a model set these.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ppl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_accuracy: Option<f64>,
}

impl Scores {
    /// Adds `eval_loss`, `ppl` and `token_accuracy` (left out when there were no tokens).
    pub fn set_likelihood(&mut self, l: &super::Likelihood) {
        self.eval_loss = l.loss();
        self.ppl = l.ppl();
        self.token_accuracy = l.token_accuracy();
    }

    /// The value of one metric, if it was computed.
    pub fn get(&self, name: MetricName) -> Option<f64> {
        *self.slot(name)
    }

    fn slot(&self, name: MetricName) -> &Option<f64> {
        match name {
            MetricName::Rouge1 => &self.rouge1,
            MetricName::Rouge2 => &self.rouge2,
            MetricName::RougeL => &self.rouge_l,
            MetricName::RougeLsum => &self.rouge_lsum,
            MetricName::ExactMatch => &self.exact_match,
            MetricName::F1 => &self.f1,
            MetricName::Precision => &self.precision,
            MetricName::Recall => &self.recall,
            MetricName::Accuracy => &self.accuracy,
            MetricName::Bleu => &self.bleu,
        }
    }

    fn slot_mut(&mut self, name: MetricName) -> &mut Option<f64> {
        match name {
            MetricName::Rouge1 => &mut self.rouge1,
            MetricName::Rouge2 => &mut self.rouge2,
            MetricName::RougeL => &mut self.rouge_l,
            MetricName::RougeLsum => &mut self.rouge_lsum,
            MetricName::ExactMatch => &mut self.exact_match,
            MetricName::F1 => &mut self.f1,
            MetricName::Precision => &mut self.precision,
            MetricName::Recall => &mut self.recall,
            MetricName::Accuracy => &mut self.accuracy,
            MetricName::Bleu => &mut self.bleu,
        }
    }
}

/// One line of a predictions JSONL file: `{"prediction": "...", "reference": "..."}`, with an
/// optional `id` (any JSON value) copied to the per-record output. Other fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    pub prediction: String,
    pub reference: String,
}

impl Record {
    pub fn new(prediction: impl Into<String>, reference: impl Into<String>) -> Self {
        Self {
            id: None,
            prediction: prediction.into(),
            reference: reference.into(),
        }
    }
}

/// The per-record values of the selected metrics (`bleu` is sentence BLEU), with the record's
/// `id` and, when accuracy is selected, the extracted `choice` (a letter or `null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordScores {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    #[serde(flatten)]
    pub scores: Scores,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choice: Option<Option<char>>,
}

/// Aggregate scores and the per-record values they average.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub scores: Scores,
    pub records: Vec<RecordScores>,
}

/// A metric of a selection that does not apply to the data, and why
/// ([`Metrics::applicable`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMetric {
    pub metric: &'static str,
    pub reason: String,
}

/// At most `max` characters of `text`, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A non-empty selection of metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    selected: Vec<MetricName>,
}

impl Metrics {
    /// The given metrics, deduplicated, in output order.
    pub fn new(names: impl IntoIterator<Item = MetricName>) -> Result<Self, EvalError> {
        let mut selected: Vec<MetricName> = names.into_iter().collect();
        selected.sort();
        selected.dedup();
        if selected.is_empty() {
            return Err(EvalError::NoMetrics {
                valid: valid_names(),
            });
        }
        Ok(Self { selected })
    }

    /// Every metric.
    pub fn all() -> Self {
        Self {
            selected: MetricName::ALL.to_vec(),
        }
    }

    /// Parses a comma list of metric keys and groups (see the module docs); empty items are
    /// ignored, unknown names are an error listing the valid ones.
    pub fn parse(list: &str) -> Result<Self, EvalError> {
        let mut names = Vec::new();
        for item in list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            if let Some((_, group)) = GROUPS.iter().find(|(g, _)| g.eq_ignore_ascii_case(item)) {
                names.extend_from_slice(group);
            } else if let Some(name) = MetricName::ALL
                .iter()
                .find(|m| m.key().eq_ignore_ascii_case(item))
            {
                names.push(*name);
            } else {
                return Err(EvalError::UnknownMetric {
                    name: item.to_owned(),
                    valid: valid_names(),
                });
            }
        }
        Self::new(names)
    }

    /// The part of this selection that applies to `references`, and what was left out and
    /// why: accuracy needs a choice letter (A–E) in every reference, so free-text references
    /// leave it out. `None` when nothing applies. [`Metrics::evaluate`] stays strict: use this
    /// for a default selection, not for metrics the user named.
    pub fn applicable<'a>(
        &self,
        references: impl IntoIterator<Item = &'a str>,
    ) -> (Option<Metrics>, Vec<SkippedMetric>) {
        let mut skipped = Vec::new();
        if self.contains(MetricName::Accuracy)
            && let Some((i, reference)) = references
                .into_iter()
                .enumerate()
                .find(|(_, r)| extract_choice(r).is_none())
        {
            skipped.push(SkippedMetric {
                metric: MetricName::Accuracy.key(),
                reason: format!(
                    "record {}'s reference {:?} names no choice letter A–E",
                    i + 1,
                    shorten(reference, 60)
                ),
            });
        }
        let kept = self
            .selected
            .iter()
            .copied()
            .filter(|m| !skipped.iter().any(|s| s.metric == m.key()));
        (Metrics::new(kept).ok(), skipped)
    }

    /// The selected metrics, in output order.
    pub fn selected(&self) -> &[MetricName] {
        &self.selected
    }

    pub fn contains(&self, name: MetricName) -> bool {
        self.selected.contains(&name)
    }

    /// The selected metrics for one pair (`bleu` is sentence BLEU, 0–100). `record` (1-based)
    /// only labels the error when accuracy is selected and the reference names no letter.
    pub fn score_record(
        &self,
        prediction: &str,
        reference: &str,
        record: usize,
    ) -> Result<RecordScores, EvalError> {
        Ok(self.score_pair(prediction, reference, record)?.0)
    }

    /// [`Metrics::score_record`] and, when BLEU is selected, the pair's BLEU statistics.
    fn score_pair(
        &self,
        prediction: &str,
        reference: &str,
        record: usize,
    ) -> Result<(RecordScores, BleuStats), EvalError> {
        let mut bleu = BleuStats::default();
        let mut scores = Scores::default();
        let mut choice = None;
        // Work shared by several metrics, done only when one of them is selected.
        let uses = |group: &[MetricName]| self.selected.iter().any(|m| group.contains(m));
        let (pred_tokens, ref_tokens) =
            if uses(&[MetricName::Rouge1, MetricName::Rouge2, MetricName::RougeL]) {
                (rouge::tokenize(prediction), rouge::tokenize(reference))
            } else {
                (Vec::new(), Vec::new())
            };
        let squad = if uses(SQUAD) {
            squad_score(prediction, reference)
        } else {
            SquadScore::default()
        };
        for &name in &self.selected {
            let value = match name {
                MetricName::Rouge1 => rouge::rouge_n_tokens(&pred_tokens, &ref_tokens, 1).fmeasure,
                MetricName::Rouge2 => rouge::rouge_n_tokens(&pred_tokens, &ref_tokens, 2).fmeasure,
                MetricName::RougeL => rouge::rouge_l_tokens(&pred_tokens, &ref_tokens).fmeasure,
                MetricName::RougeLsum => rouge_lsum(prediction, reference).fmeasure,
                MetricName::ExactMatch => squad.exact_match,
                MetricName::F1 => squad.f1,
                MetricName::Precision => squad.precision,
                MetricName::Recall => squad.recall,
                MetricName::Accuracy => {
                    let Some(expected) = extract_choice(reference) else {
                        return Err(EvalError::NoReferenceChoice {
                            record,
                            reference: reference.to_owned(),
                        });
                    };
                    let got = extract_choice(prediction);
                    choice = Some(got);
                    if got == Some(expected) { 1.0 } else { 0.0 }
                }
                MetricName::Bleu => {
                    bleu = BleuStats::segment(prediction, &[reference]);
                    bleu.score(true).score
                }
            };
            *scores.slot_mut(name) = Some(value);
        }
        let scored = RecordScores {
            id: None,
            scores,
            choice,
        };
        Ok((scored, bleu))
    }

    /// Scores every record: per-record values, their means and corpus BLEU.
    pub fn evaluate(&self, records: &[Record]) -> Result<Evaluation, EvalError> {
        self.evaluate_labelled(records.iter().enumerate().map(|(i, r)| (i + 1, r)))
    }

    /// [`Metrics::evaluate`] over [`parse_predictions_jsonl`]; errors name the JSONL line.
    pub fn evaluate_jsonl(&self, jsonl: &str) -> Result<Evaluation, EvalError> {
        let lines = parse_jsonl_lines(jsonl)?;
        self.evaluate_labelled(lines.iter().map(|(line, record)| (*line, record)))
            .map_err(|e| match e {
                EvalError::NoReferenceChoice { record, reference } => EvalError::Jsonl {
                    line: record,
                    message: format!(
                        "accuracy needs a reference choice letter A–E, but the reference is \
                         {reference:?}"
                    ),
                },
                other => other,
            })
    }

    fn evaluate_labelled<'a>(
        &self,
        records: impl Iterator<Item = (usize, &'a Record)>,
    ) -> Result<Evaluation, EvalError> {
        let mut per_record = Vec::new();
        let mut bleu = BleuStats::default();
        for (label, record) in records {
            let (mut scored, stats) =
                self.score_pair(&record.prediction, &record.reference, label)?;
            scored.id = record.id.clone();
            per_record.push(scored);
            bleu += stats;
        }
        if per_record.is_empty() {
            return Err(EvalError::NoRecords);
        }
        let mut scores = Scores::default();
        for &name in &self.selected {
            let value = if name == MetricName::Bleu {
                bleu.score(false).score
            } else {
                let sum: f64 = per_record.iter().filter_map(|r| r.scores.get(name)).sum();
                sum / per_record.len() as f64
            };
            *scores.slot_mut(name) = Some(value);
        }
        Ok(Evaluation {
            scores,
            records: per_record,
        })
    }
}

impl FromStr for Metrics {
    type Err = EvalError;

    fn from_str(list: &str) -> Result<Self, EvalError> {
        Self::parse(list)
    }
}

/// Parses predictions JSONL (one [`Record`] per non-blank line).
pub fn parse_predictions_jsonl(jsonl: &str) -> Result<Vec<Record>, EvalError> {
    Ok(parse_jsonl_lines(jsonl)?
        .into_iter()
        .map(|(_, record)| record)
        .collect())
}

/// Records with their 1-based line numbers; blank lines are skipped.
fn parse_jsonl_lines(jsonl: &str) -> Result<Vec<(usize, Record)>, EvalError> {
    let mut records = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line).map_err(|e| EvalError::Jsonl {
            line: i + 1,
            message: format!(
                "not a prediction record ({e}); expected {{\"prediction\": \"...\", \
                 \"reference\": \"...\"}} with an optional \"id\""
            ),
        })?;
        records.push((i + 1, record));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applicable_leaves_out_accuracy_for_free_text_references() {
        let all = Metrics::all();
        let (kept, skipped) = all.applicable(["C", "o gato dorme no sofá", "B"]);
        let kept = kept.expect("the text metrics apply");
        assert!(!kept.contains(MetricName::Accuracy));
        assert_eq!(kept.selected().len(), MetricName::ALL.len() - 1);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].metric, "accuracy");
        assert!(
            skipped[0].reason.contains("record 2"),
            "{}",
            skipped[0].reason
        );
        let (kept, skipped) = all.applicable(["C", "(A)", "E) Friedrich Nietzsche."]);
        assert_eq!(kept, Some(Metrics::all()));
        assert!(skipped.is_empty());
        let only = Metrics::parse("accuracy").unwrap();
        assert_eq!(only.applicable(["free text"]).0, None);
    }

    #[test]
    fn parse_groups_aliases_and_case() {
        let m = Metrics::parse(" rouge, BLEU ,f1,em,accuracy,,").expect("valid");
        let keys: Vec<&str> = m.selected().iter().map(|n| n.key()).collect();
        assert_eq!(
            keys,
            [
                "rouge1",
                "rouge2",
                "rougeL",
                "rougeLsum",
                "exact_match",
                "f1",
                "accuracy",
                "bleu"
            ]
        );
        let m: Metrics = "rougel,ROUGELSUM,squad,acc".parse().expect("valid");
        assert!(m.contains(MetricName::RougeL) && m.contains(MetricName::Recall));
        assert_eq!(m.selected().len(), 7);
        assert_eq!(Metrics::parse("all").expect("valid"), Metrics::all());
        // Duplicates collapse.
        assert_eq!(
            Metrics::parse("f1,f1,squad")
                .expect("valid")
                .selected()
                .len(),
            4
        );
    }

    #[test]
    fn unknown_and_empty_selections_are_errors_naming_valid_names() {
        let err = Metrics::parse("rouge,meteor").expect_err("unknown");
        let message = err.to_string();
        assert!(message.contains("\"meteor\""), "{message}");
        for name in [
            "rouge",
            "rougeLsum",
            "exact_match",
            "em",
            "bleu",
            "accuracy",
        ] {
            assert!(message.contains(name), "{message} lacks {name}");
        }
        assert!(matches!(
            Metrics::parse(" , "),
            Err(EvalError::NoMetrics { .. })
        ));
        assert!(matches!(Metrics::new([]), Err(EvalError::NoMetrics { .. })));
    }

    #[test]
    fn json_has_exactly_the_selected_keys() {
        let records = [Record::new("Resposta: B", "B"), Record::new("(A)", "B")];
        let evaluation = Metrics::parse("accuracy,bleu,em")
            .expect("valid")
            .evaluate(&records);
        let evaluation = evaluation.expect("valid records");
        let json = serde_json::to_value(&evaluation).expect("serializable");
        let scores = json["scores"].as_object().expect("object");
        let mut keys: Vec<&str> = scores.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["accuracy", "bleu", "exact_match"]);
        assert_eq!(scores["accuracy"], 0.5);
        assert_eq!(json["records"][0]["choice"], "B");
        assert_eq!(json["records"][1]["choice"], "A");
        assert_eq!(json["records"][0]["accuracy"], 1.0);
        assert!(json["records"][0].get("id").is_none());
        let none = Metrics::parse("acc")
            .expect("valid")
            .score_record("?", "C", 1);
        let none = serde_json::to_value(none.expect("reference letter")).expect("serializable");
        assert_eq!(none["choice"], serde_json::Value::Null);
        assert_eq!(none["accuracy"], 0.0);
    }

    #[test]
    fn means_and_corpus_bleu() {
        let records = [
            Record::new("the cat sat on the mat", "the cat sat on the mat"),
            Record::new("", "something else entirely here"),
        ];
        let scores = Metrics::parse("rouge1,f1,bleu")
            .expect("valid")
            .evaluate(&records);
        let scores = scores.expect("valid records").scores;
        assert_eq!(scores.rouge1, Some(0.5));
        assert_eq!(scores.f1, Some(0.5));
        // Corpus BLEU: every n-gram of the first hypothesis matches, the brevity penalty
        // counts both references.
        let bp = (1.0f64 - 10.0 / 6.0).exp();
        let bleu = scores.bleu.expect("selected");
        assert!((bleu - 100.0 * bp).abs() < 1e-9, "{bleu}");
    }

    #[test]
    fn jsonl_records_errors_and_ids() {
        let jsonl = "{\"id\": 7, \"prediction\": \"C\", \"reference\": \"C\", \"x\": 1}\n\n\
                     {\"prediction\": \"a\", \"reference\": \"B\"}\n";
        let records = parse_predictions_jsonl(jsonl).expect("valid");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].id, Some(serde_json::json!(7)));
        let evaluation = Metrics::parse("acc").expect("valid").evaluate_jsonl(jsonl);
        let evaluation = evaluation.expect("valid");
        assert_eq!(evaluation.records[0].id, Some(serde_json::json!(7)));
        assert_eq!(evaluation.scores.accuracy, Some(0.5));

        let bad = "{\"prediction\": \"x\", \"reference\": \"y\"}\n{\"prediction\": \"x\"}\n";
        let err = parse_predictions_jsonl(bad).expect_err("missing field");
        assert!(matches!(err, EvalError::Jsonl { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("reference"), "{err}");
        let err = parse_predictions_jsonl("not json").expect_err("invalid");
        assert!(matches!(err, EvalError::Jsonl { line: 1, .. }), "{err}");

        // Accuracy on a reference without a letter names the line.
        let no_letter = "\n{\"prediction\": \"C\", \"reference\": \"Paris\"}";
        let err = Metrics::parse("accuracy")
            .expect("valid")
            .evaluate_jsonl(no_letter);
        let err = err.expect_err("no reference letter");
        assert!(matches!(err, EvalError::Jsonl { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("Paris"), "{err}");
        let err = Metrics::all()
            .evaluate(&[Record::new("C", "Paris")])
            .expect_err("no letter");
        assert!(
            matches!(err, EvalError::NoReferenceChoice { record: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn no_records_is_an_error() {
        assert!(matches!(
            Metrics::all().evaluate(&[]),
            Err(EvalError::NoRecords)
        ));
        assert!(matches!(
            Metrics::all().evaluate_jsonl("\n\n"),
            Err(EvalError::NoRecords)
        ));
    }
}
