//! ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum, exactly as Google's `rouge-score` package
//! (`rouge_scorer.RougeScorer([...], use_stemmer=False)`, version 0.1.2).
//!
//! Tokenization ([`tokenize`]): lowercase, replace every character outside `[a-z0-9]` by a
//! space, split on whitespace. Letters with accents are therefore *dropped*, not kept or
//! folded: "ação" tokenizes to `["a", "o"]`. This is what users of `rouge-score` get on
//! Portuguese text, and it is replicated on purpose.
//!
//! * ROUGE-N: clipped n-gram overlap; precision = overlap / prediction n-grams,
//!   recall = overlap / reference n-grams (each denominator at least 1).
//! * ROUGE-L: longest common subsequence of the two token lists; 0 when either is empty.
//! * ROUGE-Lsum: both texts split on `'\n'` (empty lines dropped), the summary-level
//!   union-LCS of ROUGE 1.5.5 with its guard against counting a token more often than it
//!   occurs in either text.
//!
//! F-measure is `2PR / (P + R)` (0 when `P + R = 0`). Arguments are `(prediction, reference)`;
//! note that `rouge-score`'s own `score(target, prediction)` takes them in the other order.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Precision, recall and F-measure of one ROUGE variant for one (prediction, reference) pair.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl RougeScore {
    fn from_counts(hits: usize, prediction_total: usize, reference_total: usize) -> Self {
        let precision = hits as f64 / prediction_total as f64;
        let recall = hits as f64 / reference_total as f64;
        Self {
            precision,
            recall,
            fmeasure: fmeasure(precision, recall),
        }
    }
}

/// The four ROUGE variants for one pair.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScores {
    pub rouge1: RougeScore,
    pub rouge2: RougeScore,
    #[serde(rename = "rougeL")]
    pub rouge_l: RougeScore,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: RougeScore,
}

/// `rouge_score.scoring.fmeasure`.
fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// `rouge-score`'s default tokenizer without stemming: the maximal runs of `[a-z0-9]` in the
/// lowercased text (Python `str.lower()` semantics, so `İ` and the Kelvin sign `K` still yield
/// ASCII letters). Every other character, accented letters included, separates tokens.
pub fn tokenize(text: &str) -> Vec<String> {
    let lower = super::text::py_lower(text);
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
        .collect()
}

/// ROUGE-N for `n >= 1` (panics on `n == 0`, as `rouge-score` raises).
pub fn rouge_n(prediction: &str, reference: &str, n: usize) -> RougeScore {
    rouge_n_tokens(&tokenize(prediction), &tokenize(reference), n)
}

/// ROUGE-L (LCS over the whole token lists).
pub fn rouge_l(prediction: &str, reference: &str) -> RougeScore {
    rouge_l_tokens(&tokenize(prediction), &tokenize(reference))
}

/// ROUGE-Lsum (summary-level union LCS over newline-separated sentences).
pub fn rouge_lsum(prediction: &str, reference: &str) -> RougeScore {
    rouge_lsum_sentences(&sentences(prediction), &sentences(reference))
}

/// All four variants, tokenizing each text once (plus once per line for Lsum).
pub fn rouge(prediction: &str, reference: &str) -> RougeScores {
    let pred = tokenize(prediction);
    let refr = tokenize(reference);
    RougeScores {
        rouge1: rouge_n_tokens(&pred, &refr, 1),
        rouge2: rouge_n_tokens(&pred, &refr, 2),
        rouge_l: rouge_l_tokens(&pred, &refr),
        rouge_lsum: rouge_lsum(prediction, reference),
    }
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

pub(crate) fn rouge_n_tokens(pred: &[String], refr: &[String], n: usize) -> RougeScore {
    assert!(n >= 1, "ROUGE-N needs n >= 1");
    let pred_grams = ngram_counts(pred, n);
    let ref_grams = ngram_counts(refr, n);
    let overlap: usize = ref_grams
        .iter()
        .map(|(gram, &count)| count.min(pred_grams.get(gram).copied().unwrap_or(0)))
        .sum();
    let pred_total: usize = pred_grams.values().sum();
    let ref_total: usize = ref_grams.values().sum();
    RougeScore::from_counts(overlap, pred_total.max(1), ref_total.max(1))
}

pub(crate) fn rouge_l_tokens(pred: &[String], refr: &[String]) -> RougeScore {
    if pred.is_empty() || refr.is_empty() {
        return RougeScore::default();
    }
    RougeScore::from_counts(lcs_length(refr, pred), pred.len(), refr.len())
}

/// Length of the longest common subsequence, in O(len(can)) memory (the same recurrence as
/// [`LcsTable`], two rows at a time).
fn lcs_length(refr: &[String], can: &[String]) -> usize {
    let mut prev = vec![0usize; can.len() + 1];
    let mut row = vec![0usize; can.len() + 1];
    for r in refr {
        for j in 1..=can.len() {
            row[j] = if *r == can[j - 1] {
                prev[j - 1] + 1
            } else {
                prev[j].max(row[j - 1])
            };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[can.len()]
}

/// The `(rows + 1) × (cols + 1)` dynamic-programming table of `rouge_scorer._lcs_table`,
/// rows indexing the reference and columns the candidate. Only ROUGE-Lsum needs the whole
/// table (to backtrack), and only per pair of lines.
struct LcsTable {
    cols: usize,
    cells: Vec<u32>,
}

impl LcsTable {
    fn new(refr: &[String], can: &[String]) -> Self {
        let cols = can.len() + 1;
        let mut cells = vec![0u32; (refr.len() + 1) * cols];
        for i in 1..=refr.len() {
            for j in 1..=can.len() {
                cells[i * cols + j] = if refr[i - 1] == can[j - 1] {
                    cells[(i - 1) * cols + j - 1] + 1
                } else {
                    cells[(i - 1) * cols + j].max(cells[i * cols + j - 1])
                };
            }
        }
        Self { cols, cells }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.cols + j]
    }
}

/// Reference indices of one LCS, chosen by `rouge_scorer._backtrack_norec`'s tie-breaking
/// (prefer moving up in the reference unless moving left in the candidate keeps a longer LCS).
/// The choice matters: ROUGE-Lsum takes the union of these index sets.
fn lcs_indices(refr: &[String], can: &[String]) -> Vec<usize> {
    let table = LcsTable::new(refr, can);
    let (mut i, mut j) = (refr.len(), can.len());
    let mut indices = Vec::new();
    while i > 0 && j > 0 {
        if refr[i - 1] == can[j - 1] {
            indices.push(i - 1);
            i -= 1;
            j -= 1;
        } else if table.at(i, j - 1) > table.at(i - 1, j) {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    indices.reverse();
    indices
}

/// Lines of `text` (split on `'\n'` only, empty lines dropped, as `rouge-score` does without
/// `split_summaries`), each tokenized. A line of only punctuation stays as an empty sentence.
fn sentences(text: &str) -> Vec<Vec<String>> {
    text.split('\n')
        .filter(|line| !line.is_empty())
        .map(tokenize)
        .collect()
}

/// `rouge_scorer._summary_level_lcs`.
fn rouge_lsum_sentences(pred: &[Vec<String>], refr: &[Vec<String>]) -> RougeScore {
    let pred_total: usize = pred.iter().map(Vec::len).sum();
    let ref_total: usize = refr.iter().map(Vec::len).sum();
    if pred_total == 0 || ref_total == 0 {
        return RougeScore::default();
    }
    let mut pred_counts: HashMap<&str, usize> = HashMap::new();
    for token in pred.iter().flatten() {
        *pred_counts.entry(token).or_insert(0) += 1;
    }
    let mut ref_counts: HashMap<&str, usize> = HashMap::new();
    for token in refr.iter().flatten() {
        *ref_counts.entry(token).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    for ref_sentence in refr {
        let union: BTreeSet<usize> = pred
            .iter()
            .flat_map(|can| lcs_indices(ref_sentence, can))
            .collect();
        for index in union {
            let token = ref_sentence[index].as_str();
            let (Some(p), Some(r)) = (pred_counts.get_mut(token), ref_counts.get_mut(token)) else {
                continue;
            };
            if *p > 0 && *r > 0 {
                hits += 1;
                *p -= 1;
                *r -= 1;
            }
        }
    }
    RougeScore::from_counts(hits, pred_total, ref_total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn tokenizer_drops_accented_letters() {
        assert_eq!(tokenize("Ação, coração!"), ["a", "o", "cora", "o"]);
        assert_eq!(tokenize("R$ 3,50 e 10%"), ["r", "3", "50", "e", "10"]);
        assert_eq!(
            tokenize("İstanbul \u{212a}elvin"),
            ["i", "stanbul", "kelvin"]
        );
        assert!(tokenize("  ... çã ").is_empty());
    }

    #[test]
    fn rouge_n_clips_repeated_ngrams() {
        // reference "the cat the cat", prediction "the the the": overlap of "the" is min(2,3).
        let s = rouge_n("the the the", "the cat the cat", 1);
        assert!(close(s.precision, 2.0 / 3.0));
        assert!(close(s.recall, 2.0 / 4.0));
        assert!(close(
            s.fmeasure,
            2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5)
        ));
        let s2 = rouge_n("the cat sat", "the cat", 2);
        assert!(close(s2.precision, 0.5) && close(s2.recall, 1.0));
    }

    #[test]
    fn empty_sides_score_zero() {
        for s in [
            rouge_n("", "a b", 1),
            rouge_l("a b", ""),
            rouge_lsum("", ""),
            rouge_n("", "", 2),
        ] {
            assert_eq!(s, RougeScore::default());
        }
        // A single token has no bigram: both denominators fall back to 1.
        assert_eq!(rouge_n("word", "word", 2), RougeScore::default());
    }

    #[test]
    fn rouge_l_uses_lcs() {
        // LCS("a b c d e", "a c e x") = "a c e".
        let s = rouge_l("a c e x", "a b c d e");
        assert!(close(s.precision, 3.0 / 4.0) && close(s.recall, 3.0 / 5.0));
    }

    #[test]
    fn backtrack_tie_breaking_matches_rouge_score() {
        // Where several LCSs exist, the chosen one is rouge-score's `lcs_ind` output.
        let cases: [(&str, &str, &[usize]); 3] = [
            ("a b", "b a", &[0]),
            ("a b a", "a b a b", &[0, 1, 2]),
            ("x y z x", "z x y", &[0, 1]),
        ];
        for (r, c, expected) in cases {
            assert_eq!(
                lcs_indices(&tokenize(r), &tokenize(c)),
                expected,
                "{r:?} vs {c:?}"
            );
        }
    }

    #[test]
    fn lsum_counts_each_token_at_most_once() {
        // Two candidate sentences both match "a" of the single reference sentence: one hit.
        let s = rouge_lsum("a\na", "a b");
        assert!(close(s.recall, 0.5) && close(s.precision, 0.5));
        // Without newlines Lsum equals ROUGE-L.
        let text = ("the quick brown fox", "the fox is quick and brown");
        assert_eq!(rouge_lsum(text.0, text.1), rouge_l(text.0, text.1));
    }
}
