//! SQuAD v1.1 exact match and token-level F1 (the official `evaluate-v1.1.py`), plus the
//! precision and recall its `f1_score` computes on the way.
//!
//! Normalization ([`normalize_answer`]): lowercase, delete the ASCII punctuation of Python's
//! `string.punctuation`, replace the whole words `a`, `an`, `the` by a space (`\b(a|an|the)\b`
//! with Unicode word boundaries, so the "a" of "água" stays), collapse whitespace. Accented
//! letters are kept. Tokens are the whitespace-separated pieces of the normalized text.
//!
//! As in v1.1 (unlike v2.0), F1 is 0 when there is no common token, even when both sides
//! normalize to nothing; exact match is then 1.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::text::{py_is_word, py_lower, py_split};

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Exact match, F1, precision and recall of one prediction against one gold answer, all 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SquadScore {
    /// 1.0 if the normalized texts are equal, else 0.0.
    pub exact_match: f64,
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
}

/// The official `normalize_answer`: `white_space_fix(remove_articles(remove_punc(lower(s))))`.
pub fn normalize_answer(s: &str) -> String {
    let lower = py_lower(s);
    let no_punct: String = lower
        .chars()
        .filter(|c| !PUNCTUATION.contains(*c))
        .collect();

    // `re.sub(r'\b(a|an|the)\b', ' ', text)`: a match is a maximal run of word characters
    // spelling one of the articles.
    let mut no_articles = String::with_capacity(no_punct.len());
    let mut rest = no_punct.as_str();
    while let Some(c) = rest.chars().next() {
        let is_word = py_is_word(c);
        let end = rest
            .find(|d: char| py_is_word(d) != is_word)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        if is_word && matches!(run, "a" | "an" | "the") {
            no_articles.push(' ');
        } else {
            no_articles.push_str(run);
        }
        rest = tail;
    }

    py_split(&no_articles).collect::<Vec<_>>().join(" ")
}

/// The official `exact_match_score`.
pub fn exact_match(prediction: &str, gold: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(gold)
}

/// Exact match and the official `f1_score` with its precision and recall
/// (`common = Counter(pred) & Counter(gold)`).
pub fn squad_score(prediction: &str, gold: &str) -> SquadScore {
    let pred_norm = normalize_answer(prediction);
    let gold_norm = normalize_answer(gold);
    let exact_match = if pred_norm == gold_norm { 1.0 } else { 0.0 };

    let pred_tokens: Vec<&str> = py_split(&pred_norm).collect();
    let gold_tokens: Vec<&str> = py_split(&gold_norm).collect();
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for token in &gold_tokens {
        *gold_counts.entry(token).or_insert(0) += 1;
    }
    let mut num_same = 0usize;
    for token in &pred_tokens {
        if let Some(count) = gold_counts.get_mut(token)
            && *count > 0
        {
            *count -= 1;
            num_same += 1;
        }
    }
    if num_same == 0 {
        return SquadScore {
            exact_match,
            ..SquadScore::default()
        };
    }
    let precision = num_same as f64 / pred_tokens.len() as f64;
    let recall = num_same as f64 / gold_tokens.len() as f64;
    let f1 = 2.0 * precision * recall / (precision + recall);
    SquadScore {
        exact_match,
        f1,
        precision,
        recall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_answer("The  Eiffel-Tower, in Paris!"),
            "eiffeltower in paris"
        );
        assert_eq!(normalize_answer("A água é a vida"), "água é vida");
        assert_eq!(normalize_answer("an answer, the end; A"), "answer end");
        assert_eq!(normalize_answer("Ça «marche» — thé"), "ça «marche» — thé");
        assert_eq!(normalize_answer("theater and a-n"), "theater and");
        assert_eq!(normalize_answer(""), "");
    }

    #[test]
    fn scores() {
        let s = squad_score("the cat sat", "A cat sat down");
        assert_eq!(s.exact_match, 0.0);
        assert!((s.precision - 1.0).abs() < 1e-12);
        assert!((s.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.f1 - 0.8).abs() < 1e-12);
        let same = squad_score("Paris.", "paris");
        assert_eq!((same.exact_match, same.f1), (1.0, 1.0));
        // Repeated tokens are clipped by the gold counts.
        let rep = squad_score("sim sim sim", "sim");
        assert!((rep.precision - 1.0 / 3.0).abs() < 1e-12 && rep.recall == 1.0);
    }

    #[test]
    fn empty_answers_follow_v1_1() {
        let s = squad_score("", "");
        assert_eq!((s.exact_match, s.f1), (1.0, 0.0));
        let s = squad_score("the", "a");
        assert_eq!((s.exact_match, s.f1), (1.0, 0.0));
        assert_eq!(squad_score("", "x"), SquadScore::default());
    }
}
