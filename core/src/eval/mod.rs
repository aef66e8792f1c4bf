//! Evaluation metrics for generated text: ROUGE, BLEU, SQuAD exact match / F1 and
//! multiple-choice accuracy, each reproducing the reference implementation users compare
//! against (`rouge-score`, `sacrebleu`, the SQuAD v1.1 script) on every input, accents and
//! odd whitespace included.
//!
//! | module | metric | reference |
//! |---|---|---|
//! | [`mod@rouge`] | ROUGE-1/2/L/Lsum precision, recall, F | `rouge-score` 0.1.2, `use_stemmer=False` |
//! | [`bleu`] | corpus and sentence BLEU, 0–100 | `sacrebleu` 2.6.0 defaults (13a, `exp`) |
//! | [`squad`] | exact match, token F1/precision/recall | SQuAD `evaluate-v1.1.py` |
//! | [`choice`] | letter A–E picked by a generation | hand-written rules, see the module |
//! | [`likelihood`] | eval loss, perplexity, token accuracy of references | a training run's eval loss |
//! | [`metrics`] | a selection of the above over many records, JSON out | — |
//!
//! `scripts/reference/eval_metrics.py` computes the expected values in
//! `tests/data/eval_expected.json` with the Python packages; the tests here agree to 1e-4.
//!
//! Pure computation: no file system, so it runs unchanged in WebAssembly. Callers read files
//! and hand over strings (for example [`Metrics::evaluate_jsonl`]).

pub mod bleu;
pub mod choice;
pub mod likelihood;
pub mod metrics;
pub mod rouge;
pub mod squad;
mod text;

#[cfg(test)]
mod tests;

pub use bleu::{BleuScore, BleuStats, corpus_bleu, sentence_bleu, tokenize_13a};
pub use choice::extract_choice;
pub use likelihood::Likelihood;
pub use metrics::{
    Evaluation, MetricName, Metrics, Record, RecordScores, Scores, SkippedMetric,
    parse_predictions_jsonl,
};
pub use rouge::{RougeScore, RougeScores, rouge, rouge_l, rouge_lsum, rouge_n};
pub use squad::{SquadScore, exact_match, normalize_answer, squad_score};

/// Errors of the evaluation layer. Each names what the caller has to change.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("unknown metric {name:?}; valid names: {valid}")]
    UnknownMetric { name: String, valid: String },
    #[error("no metric selected; valid names: {valid}")]
    NoMetrics { valid: String },
    #[error("nothing to evaluate: there are no (prediction, reference) records")]
    NoRecords,
    #[error("{predictions} predictions but {references} references: they must pair up one to one")]
    LengthMismatch {
        predictions: usize,
        references: usize,
    },
    #[error("predictions line {line}: {message}")]
    Jsonl { line: usize, message: String },
    #[error(
        "record {record}: accuracy needs a reference choice letter A–E, but the reference is \
         {reference:?}; drop `accuracy` from the metrics or fix the reference"
    )]
    NoReferenceChoice { record: usize, reference: String },
}
