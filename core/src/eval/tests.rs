//! Agreement with the Python reference packages: `tests/data/eval_expected.json`, written by
//! `scripts/reference/eval_metrics.py` (rouge-score, sacrebleu, the SQuAD v1.1 functions) from
//! the cases in `tests/data/eval_cases.jsonl`.

use std::collections::HashMap;

use serde::Deserialize;

use super::*;

const CASES_JSONL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/eval_cases.jsonl"
));
const EXPECTED_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/eval_expected.json"
));

/// Absolute tolerance on every value (metrics in 0–1, BLEU in 0–100).
const ATOL: f64 = 1e-4;

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    kind: String,
    prediction: String,
    reference: String,
    #[serde(default)]
    expected_choice: Option<char>,
}

#[derive(Debug, Deserialize)]
struct Sides {
    prediction: String,
    reference: String,
}

#[derive(Debug, Deserialize)]
struct ExpectedRecord {
    id: String,
    rouge1: RougeScore,
    rouge2: RougeScore,
    #[serde(rename = "rougeL")]
    rouge_l: RougeScore,
    #[serde(rename = "rougeLsum")]
    rouge_lsum: RougeScore,
    exact_match: f64,
    f1: f64,
    precision: f64,
    recall: f64,
    sentence_bleu: f64,
    tokens_13a: Sides,
    tokens_rouge: Sides,
}

#[derive(Debug, Deserialize)]
struct ExpectedBleu {
    score: f64,
    counts: [usize; 4],
    totals: [usize; 4],
    precisions: [f64; 4],
    bp: f64,
    sys_len: usize,
    ref_len: usize,
    ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Expected {
    records: Vec<ExpectedRecord>,
    corpus_bleu: HashMap<String, ExpectedBleu>,
    means: HashMap<String, f64>,
    accuracy: f64,
}

fn load() -> (Vec<Case>, Expected) {
    let cases: Vec<Case> = CASES_JSONL
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("eval_cases.jsonl line {}: {e}", i + 1))
        })
        .collect();
    let expected: Expected = serde_json::from_str(EXPECTED_JSON).unwrap_or_else(|e| {
        panic!("eval_expected.json: {e} (rerun scripts/reference/eval_metrics.py)")
    });
    assert_eq!(
        cases.len(),
        expected.records.len(),
        "cases and expected values out of step"
    );
    for (case, record) in cases.iter().zip(&expected.records) {
        assert_eq!(case.id, record.id, "cases and expected values out of step");
    }
    assert!(cases.len() >= 30);
    (cases, expected)
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= ATOL, "{what}: got {got}, want {want}");
}

fn assert_rouge(got: RougeScore, want: RougeScore, what: &str) {
    assert_close(got.precision, want.precision, &format!("{what} precision"));
    assert_close(got.recall, want.recall, &format!("{what} recall"));
    assert_close(got.fmeasure, want.fmeasure, &format!("{what} fmeasure"));
}

#[test]
fn rouge_matches_rouge_score() {
    let (cases, expected) = load();
    for (case, want) in cases.iter().zip(&expected.records) {
        let id = &case.id;
        assert_eq!(
            rouge::tokenize(&case.prediction).join(" "),
            want.tokens_rouge.prediction,
            "{id}"
        );
        assert_eq!(
            rouge::tokenize(&case.reference).join(" "),
            want.tokens_rouge.reference,
            "{id}"
        );
        let got = rouge(&case.prediction, &case.reference);
        assert_rouge(got.rouge1, want.rouge1, &format!("{id} rouge1"));
        assert_rouge(got.rouge2, want.rouge2, &format!("{id} rouge2"));
        assert_rouge(got.rouge_l, want.rouge_l, &format!("{id} rougeL"));
        assert_rouge(got.rouge_lsum, want.rouge_lsum, &format!("{id} rougeLsum"));
        // The single-variant entry points agree with the combined one.
        assert_eq!(
            rouge_n(&case.prediction, &case.reference, 2),
            got.rouge2,
            "{id}"
        );
        assert_eq!(
            rouge_l(&case.prediction, &case.reference),
            got.rouge_l,
            "{id}"
        );
    }
}

#[test]
fn squad_matches_official_script() {
    let (cases, expected) = load();
    for (case, want) in cases.iter().zip(&expected.records) {
        let got = squad_score(&case.prediction, &case.reference);
        let id = &case.id;
        assert_close(
            got.exact_match,
            want.exact_match,
            &format!("{id} exact_match"),
        );
        assert_close(got.f1, want.f1, &format!("{id} f1"));
        assert_close(got.precision, want.precision, &format!("{id} precision"));
        assert_close(got.recall, want.recall, &format!("{id} recall"));
        assert_eq!(
            exact_match(&case.prediction, &case.reference),
            got.exact_match == 1.0
        );
    }
}

#[test]
fn bleu_tokenizer_and_sentence_bleu_match_sacrebleu() {
    let (cases, expected) = load();
    for (case, want) in cases.iter().zip(&expected.records) {
        let id = &case.id;
        let rstrip = |s: &str| s.trim_end_matches(text::py_is_space).to_owned();
        assert_eq!(
            tokenize_13a(&rstrip(&case.prediction)),
            want.tokens_13a.prediction,
            "{id}"
        );
        assert_eq!(
            tokenize_13a(&rstrip(&case.reference)),
            want.tokens_13a.reference,
            "{id}"
        );
        let got = sentence_bleu(&case.prediction, &case.reference).score;
        assert_close(got, want.sentence_bleu, &format!("{id} sentence BLEU"));
    }
}

#[test]
fn corpus_bleu_matches_sacrebleu() {
    let (cases, expected) = load();
    assert_eq!(expected.corpus_bleu.len(), 3);
    for (subset, want) in &expected.corpus_bleu {
        let chosen: Vec<&Case> = cases.iter().filter(|c| want.ids.contains(&c.id)).collect();
        assert_eq!(chosen.len(), want.ids.len(), "{subset}: unknown ids");
        let hyps: Vec<&str> = chosen.iter().map(|c| c.prediction.as_str()).collect();
        let refs: Vec<&str> = chosen.iter().map(|c| c.reference.as_str()).collect();
        let got = corpus_bleu(&hyps, &refs).expect("same lengths");
        assert_eq!(
            (got.counts, got.totals),
            (want.counts, want.totals),
            "{subset}"
        );
        assert_eq!(
            (got.sys_len, got.ref_len),
            (want.sys_len, want.ref_len),
            "{subset}"
        );
        for n in 0..4 {
            assert_close(
                got.precisions[n],
                want.precisions[n],
                &format!("{subset} p{}", n + 1),
            );
        }
        assert_close(got.bp, want.bp, &format!("{subset} bp"));
        assert_close(got.score, want.score, &format!("{subset} BLEU"));
    }
}

#[test]
fn choice_extraction_matches_hand_labels() {
    let (cases, _) = load();
    let choice: Vec<&Case> = cases.iter().filter(|c| c.kind == "choice").collect();
    assert!(choice.len() >= 20);
    for case in choice {
        assert_eq!(
            extract_choice(&case.prediction),
            case.expected_choice,
            "{}: {:?}",
            case.id,
            case.prediction
        );
    }
}

#[test]
fn metrics_over_the_cases_file_match_the_means() {
    let (cases, expected) = load();
    let metrics = Metrics::parse("rouge,squad,bleu").expect("valid names");
    // The cases file is itself predictions JSONL (extra fields are ignored).
    let evaluation = metrics.evaluate_jsonl(CASES_JSONL).expect("valid records");
    assert_eq!(evaluation.records.len(), cases.len());
    for name in metrics.selected() {
        let got = evaluation.scores.get(*name).expect("selected");
        let want = match name {
            MetricName::Bleu => expected.corpus_bleu["all"].score,
            other => expected.means[other.key()],
        };
        assert_close(got, want, name.key());
    }
    assert_eq!(evaluation.scores.accuracy, None);
    for ((record, want), case) in evaluation.records.iter().zip(&expected.records).zip(&cases) {
        assert_eq!(record.id, Some(serde_json::Value::String(case.id.clone())));
        assert_close(
            record.scores.rouge_lsum.unwrap_or(f64::NAN),
            want.rouge_lsum.fmeasure,
            &case.id,
        );
        assert_close(record.scores.f1.unwrap_or(f64::NAN), want.f1, &case.id);
        assert_close(
            record.scores.bleu.unwrap_or(f64::NAN),
            want.sentence_bleu,
            &case.id,
        );
    }
}

#[test]
fn accuracy_over_choice_cases() {
    let (cases, expected) = load();
    let records: Vec<Record> = cases
        .iter()
        .filter(|c| c.kind == "choice")
        .map(|c| Record::new(c.prediction.clone(), c.reference.clone()))
        .collect();
    let evaluation = Metrics::parse("acc")
        .expect("valid")
        .evaluate(&records)
        .expect("letters");
    assert_close(
        evaluation.scores.accuracy.unwrap_or(f64::NAN),
        expected.accuracy,
        "accuracy",
    );
    let json = serde_json::to_value(evaluation.scores).expect("serializable");
    assert_eq!(json.as_object().map(|o| o.len()), Some(1), "{json}");
}
