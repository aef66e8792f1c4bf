//! How well a model predicts the reference answers: mean negative log-likelihood of the
//! reference tokens given their prompt (`eval_loss`), its perplexity (`ppl`) and the fraction of
//! reference tokens that were the model's most likely next token (`token_accuracy`).

/// Counts over reference tokens; [`Likelihood::merge`] sums records into a corpus figure
/// (a token-weighted mean, as a training run's eval loss is).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Likelihood {
    pub tokens: usize,
    pub nll_sum: f64,
    pub correct: usize,
}

impl Likelihood {
    /// The reference part of one scored sequence `ids` = prompt ++ reference, where
    /// `token_logprobs[i]` is log p(`ids[i + 1]` | `ids[..=i]`) and `argmax[i]` the most likely
    /// token after `ids[..=i]` (as [`crate::model::Score`] gives them).
    pub fn of_reference(
        ids: &[u32],
        prompt_len: usize,
        token_logprobs: &[f32],
        argmax: &[u32],
    ) -> Likelihood {
        let mut l = Likelihood::default();
        // Token i is predicted from position i − 1; the first token of all has no prediction.
        for i in prompt_len.max(1)..ids.len() {
            l.tokens += 1;
            l.nll_sum -= f64::from(token_logprobs[i - 1]);
            l.correct += usize::from(argmax[i - 1] == ids[i]);
        }
        l
    }

    pub fn merge(&mut self, other: &Likelihood) {
        self.tokens += other.tokens;
        self.nll_sum += other.nll_sum;
        self.correct += other.correct;
    }

    /// Mean NLL per reference token (nats); `None` without tokens.
    pub fn loss(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.nll_sum / self.tokens as f64)
    }

    pub fn ppl(&self) -> Option<f64> {
        self.loss().map(f64::exp)
    }

    pub fn token_accuracy(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.correct as f64 / self.tokens as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reference_tokens_count() {
        // Prompt [7, 8], reference [9, 10]: predictions of 9 (from position 1) and 10 (from 2).
        let ids = [7, 8, 9, 10];
        let logprobs = [-5.0, -1.0, -3.0];
        let argmax = [1, 9, 4];
        let l = Likelihood::of_reference(&ids, 2, &logprobs, &argmax);
        assert_eq!(l.tokens, 2);
        assert!((l.loss().unwrap() - 2.0).abs() < 1e-12);
        assert!((l.ppl().unwrap() - 2f64.exp()).abs() < 1e-12);
        assert_eq!(l.token_accuracy(), Some(0.5));
        // Corpus figures weight records by their tokens.
        let mut all = l;
        all.merge(&Likelihood::of_reference(&[1, 2], 1, &[-8.0], &[2]));
        assert!((all.loss().unwrap() - 12.0 / 3.0).abs() < 1e-12);
        assert_eq!(all.token_accuracy(), Some(2.0 / 3.0));
        assert_eq!(Likelihood::default().loss(), None);
    }
}
