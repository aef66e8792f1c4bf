//! BLEU exactly as `sacrebleu` 2.x with its defaults: `corpus_bleu(hyps, [refs])` and
//! `sentence_bleu(hyp, [ref])` (tokenizer `13a`, no lowercasing, smoothing `exp`, maximum
//! n-gram order 4, scores on a 0–100 scale).
//!
//! Each segment is right-stripped and tokenized with [`tokenize_13a`] (mteval-v13a), which
//! keeps letters with accents inside words. Corpus BLEU sums the per-segment statistics
//! ([`BleuStats`]: clipped n-gram matches, n-gram totals, hypothesis length and closest
//! reference length) and computes `BP · exp(mean log pₙ)` once over the sums; sentence BLEU
//! does the same for one segment with sacrebleu's `use_effective_order=True` (only the orders
//! that have at least one hypothesis n-gram are averaged).
//!
//! Smoothing `exp` (NIST / mteval-v13a, "method 3" of Chen & Cherry 2014): the k-th order
//! with zero matches gets precision `100 / (2^k · total)`. If no n-gram of any order matches,
//! the score is 0; an order with no hypothesis n-gram at all contributes `log 0`, which
//! sacrebleu floors at `-9999999999` (so the corpus score is 0 when every hypothesis is
//! shorter than 4 tokens).

use std::collections::HashMap;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::text::{py_rstrip, py_split};

/// Highest n-gram order.
pub const MAX_ORDER: usize = 4;

/// `sacrebleu.utils.my_log`'s value for `log(0)`.
const LOG_ZERO: f64 = -9_999_999_999.0;

/// mteval-v13a tokenization as `sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a`
/// (without the caller's `rstrip`): drop `<skipped>`, join `-\n` hyphenations, newlines to
/// spaces, unescape `&quot; &amp; &lt; &gt;`, then split off punctuation and symbols, periods
/// and commas except inside numbers, and dashes after digits. Returns space-joined tokens.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let padded = format!(" {line} ");

    // r'([\{-\~\[-\` -\&\(-\+\:-\@\/])' -> r' \1 '
    let mut spaced = String::with_capacity(padded.len() * 2);
    for c in padded.chars() {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            spaced.push(' ');
            spaced.push(c);
            spaced.push(' ');
        } else {
            spaced.push(c);
        }
    }
    let is_digit = |c: char| c.is_ascii_digit();
    let is_period_comma = |c: char| c == '.' || c == ',';
    // r'([^0-9])([\.,])' -> r'\1 \2 '
    let s = sub_pairs(
        &spaced,
        |c| !is_digit(c),
        is_period_comma,
        |out, a, b| {
            out.extend([a, ' ', b, ' ']);
        },
    );
    // r'([\.,])([^0-9])' -> r' \1 \2'
    let s = sub_pairs(
        &s,
        is_period_comma,
        |c| !is_digit(c),
        |out, a, b| {
            out.extend([' ', a, ' ', b]);
        },
    );
    // r'([0-9])(-)' -> r'\1 \2 '
    let s = sub_pairs(
        &s,
        is_digit,
        |c| c == '-',
        |out, a, b| out.extend([a, ' ', b, ' ']),
    );
    py_split(&s).collect::<Vec<_>>().join(" ")
}

/// Python `re.sub` for a pattern of exactly two single-character classes: scan left to right,
/// replace each non-overlapping match (leftmost first), continue after it.
fn sub_pairs(
    s: &str,
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    replace: impl Fn(&mut String, char, char),
) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            replace(&mut out, chars[i], chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Counts of every 1..=4-gram of `tokens`.
fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER.min(tokens.len()) {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// BLEU's sufficient statistics for one segment, or summed over a corpus (`+=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BleuStats {
    /// Hypothesis tokens.
    pub hyp_len: usize,
    /// Length of the reference closest to `hyp_len` (the shorter one on a tie).
    pub ref_len: usize,
    /// Clipped matching n-grams, orders 1..=4.
    pub correct: [usize; MAX_ORDER],
    /// Hypothesis n-grams, orders 1..=4.
    pub total: [usize; MAX_ORDER],
}

impl BleuStats {
    /// Statistics of one hypothesis against one or more references (sacrebleu's
    /// `_compute_segment_statistics`; reference n-gram counts are the maximum over references).
    /// With no reference at all nothing matches and `ref_len` is 0.
    pub fn segment(hypothesis: &str, references: &[&str]) -> Self {
        let ref_tokenized: Vec<String> = references
            .iter()
            .map(|r| tokenize_13a(py_rstrip(r)))
            .collect();
        let ref_tokens: Vec<Vec<&str>> = ref_tokenized
            .iter()
            .map(|r| py_split(r).collect())
            .collect();
        let mut ref_grams: HashMap<&[&str], usize> = HashMap::new();
        for tokens in &ref_tokens {
            for (gram, count) in ngram_counts(tokens) {
                let slot = ref_grams.entry(gram).or_insert(0);
                *slot = (*slot).max(count);
            }
        }

        let hyp_tokenized = tokenize_13a(py_rstrip(hypothesis));
        let hyp_tokens: Vec<&str> = py_split(&hyp_tokenized).collect();
        let hyp_len = hyp_tokens.len();

        let mut ref_len: Option<usize> = None;
        for len in ref_tokens.iter().map(Vec::len) {
            ref_len = Some(match ref_len {
                Some(best) if best.abs_diff(hyp_len) < len.abs_diff(hyp_len) => best,
                Some(best) if best.abs_diff(hyp_len) == len.abs_diff(hyp_len) => best.min(len),
                _ => len,
            });
        }

        let mut stats = Self {
            hyp_len,
            ref_len: ref_len.unwrap_or(0),
            ..Self::default()
        };
        for (gram, count) in ngram_counts(&hyp_tokens) {
            let order = gram.len() - 1;
            stats.total[order] += count;
            stats.correct[order] += count.min(ref_grams.get(gram).copied().unwrap_or(0));
        }
        stats
    }

    /// sacrebleu's `BLEU.compute_bleu` with smoothing `exp`. `effective_order` is `false` for
    /// corpus BLEU and `true` for sacrebleu's `sentence_bleu`.
    pub fn score(&self, effective_order: bool) -> BleuScore {
        let mut bp = 1.0;
        if self.hyp_len < self.ref_len {
            bp = if self.hyp_len > 0 {
                (1.0 - self.ref_len as f64 / self.hyp_len as f64).exp()
            } else {
                0.0
            };
        }
        let mut result = BleuScore {
            score: 0.0,
            precisions: [0.0; MAX_ORDER],
            bp,
            sys_len: self.hyp_len,
            ref_len: self.ref_len,
            counts: self.correct,
            totals: self.total,
        };
        if self.correct.iter().all(|&c| c == 0) {
            return result;
        }
        let mut smooth = 1.0f64;
        let mut eff_order = MAX_ORDER;
        for n in 0..MAX_ORDER {
            if self.total[n] == 0 {
                break;
            }
            if effective_order {
                eff_order = n + 1;
            }
            result.precisions[n] = if self.correct[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * self.total[n] as f64)
            } else {
                100.0 * self.correct[n] as f64 / self.total[n] as f64
            };
        }
        let log_sum: f64 = result.precisions[..eff_order]
            .iter()
            .map(|&p| if p == 0.0 { LOG_ZERO } else { p.ln() })
            .sum();
        result.score = bp * (log_sum / eff_order as f64).exp();
        result
    }
}

impl AddAssign for BleuStats {
    fn add_assign(&mut self, other: Self) {
        self.hyp_len += other.hyp_len;
        self.ref_len += other.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
    }
}

/// A BLEU score with its parts, as sacrebleu's `BLEUScore`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BleuScore {
    /// BLEU, 0–100.
    pub score: f64,
    /// Smoothed n-gram precisions, 0–100.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis tokens.
    pub sys_len: usize,
    /// Reference tokens (closest reference per segment).
    pub ref_len: usize,
    /// Clipped matching n-grams per order.
    pub counts: [usize; MAX_ORDER],
    /// Hypothesis n-grams per order.
    pub totals: [usize; MAX_ORDER],
}

/// `sacrebleu.corpus_bleu(hypotheses, [references])` with one reference per hypothesis.
/// An empty corpus scores 0; lists of different lengths are an error (sacrebleu would
/// silently truncate to the shorter one).
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[R],
) -> Result<BleuScore, EvalError> {
    if hypotheses.len() != references.len() {
        return Err(EvalError::LengthMismatch {
            predictions: hypotheses.len(),
            references: references.len(),
        });
    }
    let mut stats = BleuStats::default();
    for (hyp, reference) in hypotheses.iter().zip(references) {
        stats += BleuStats::segment(hyp.as_ref(), &[reference.as_ref()]);
    }
    Ok(stats.score(false))
}

/// `sacrebleu.sentence_bleu(hypothesis, [reference])` (effective order, smoothing `exp`).
pub fn sentence_bleu(hypothesis: &str, reference: &str) -> BleuScore {
    BleuStats::segment(hypothesis, &[reference]).score(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_cases() {
        // Expected strings from sacrebleu 2.6.0's Tokenizer13a.
        let cases = [
            ("Hello, world!", "Hello , world !"),
            (
                "It costs $3.50, or 1,000.5 total.",
                "It costs $ 3.50 , or 1,000.5 total .",
            ),
            ("Ação: não é fácil...", "Ação : não é fácil . . ."),
            ("well-known 2019-2020 x-1", "well-known 2019 - 2020 x-1"),
            (
                "&quot;quoted&quot; &amp;amp; a&lt;b",
                "\" quoted \" & amp ; a < b",
            ),
            ("hyphen-\nated <skipped>line\ntwo", "hyphenated line two"),
            (
                "don't a.b,c (x) [y] {z} ~@#",
                "don't a . b , c ( x ) [ y ] { z } ~ @ #",
            ),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(tokenize_13a(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn identical_corpus_scores_100() {
        let text = [
            "the cat sat on the mat today",
            "a dog barked at the mailman loudly",
        ];
        let score = corpus_bleu(&text, &text).expect("same lengths");
        assert!((score.score - 100.0).abs() < 1e-9, "{score:?}");
        assert_eq!(score.bp, 1.0);
    }

    #[test]
    fn short_hypotheses_floor_to_zero_in_corpus_but_not_in_sentence_bleu() {
        let corpus = corpus_bleu(&["the cat"], &["the cat"]).expect("same lengths");
        assert!(corpus.score < 1e-300, "{corpus:?}");
        let sentence = sentence_bleu("the cat", "the cat");
        assert!((sentence.score - 100.0).abs() < 1e-9, "{sentence:?}");
    }

    #[test]
    fn exp_smoothing_and_brevity_penalty() {
        // hyp "a b c d", ref "a b x d e": 1-grams 3/4, 2-grams 1/3, 3-grams 0/2, 4-grams 0/1.
        let s = BleuStats::segment("a b c d", &["a b x d e"]);
        assert_eq!(s.correct, [3, 1, 0, 0]);
        assert_eq!(s.total, [4, 3, 2, 1]);
        let score = s.score(false);
        let p = [75.0, 100.0 / 3.0, 100.0 / (2.0 * 2.0), 100.0 / (4.0 * 1.0)];
        let bp = (1.0f64 - 5.0 / 4.0).exp();
        let expected = bp * (p.iter().map(|x: &f64| x.ln()).sum::<f64>() / 4.0).exp();
        assert!(
            (score.score - expected).abs() < 1e-9,
            "{score:?} vs {expected}"
        );
    }

    #[test]
    fn closest_reference_length_prefers_shorter_on_tie() {
        let s = BleuStats::segment("a b c", &["a b c d e", "a"]);
        assert_eq!(s.ref_len, 1);
        let s = BleuStats::segment("a b c", &["a b c d", "a b"]);
        assert_eq!(s.ref_len, 2);
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        assert!(matches!(
            corpus_bleu(&["a"], &["a", "b"]),
            Err(EvalError::LengthMismatch {
                predictions: 1,
                references: 2
            })
        ));
    }
}
