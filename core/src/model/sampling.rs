//! Next-token choice: greedy, or temperature / top-k / top-p sampling from a seeded RNG.

use crate::util::Rng;

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingConfig {
    /// 0 is greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1: all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// Samples tokens from logit rows.
#[derive(Clone, Debug)]
pub struct Sampler {
    pub config: SamplingConfig,
    rng: Rng,
}

impl Sampler {
    pub fn new(config: SamplingConfig) -> Sampler {
        let rng = Rng::new(config.seed);
        Sampler { config, rng }
    }

    /// Pick a token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.config.is_greedy() {
            return argmax(logits);
        }
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        idx.sort_unstable_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        if self.config.top_k > 0 {
            idx.truncate(self.config.top_k);
        }
        let inv_t = 1.0 / self.config.temperature as f64;
        let top = logits[idx[0] as usize] as f64;
        let mut probs: Vec<f64> = idx
            .iter()
            .map(|&i| ((logits[i as usize] as f64 - top) * inv_t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        let mut keep = probs.len();
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= self.config.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        let kept: f64 = probs[..keep].iter().sum();
        let mut r = self.rng.next_f64() * kept;
        for (i, p) in probs[..keep].iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return idx[i];
            }
        }
        idx[keep - 1]
    }
}

/// Index of the first maximum.
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_top_p_behave() {
        let logits = [0.0, 5.0, 4.9, -3.0, 5.0];
        let mut greedy = Sampler::new(SamplingConfig::default());
        assert_eq!(greedy.sample(&logits), 1);
        // top_k 1 is greedy whatever the temperature.
        let mut k1 = Sampler::new(SamplingConfig {
            temperature: 2.0,
            top_k: 1,
            top_p: 1.0,
            seed: 3,
        });
        assert!((0..50).all(|_| k1.sample(&logits) == 1));
        // top_p small keeps only the best token.
        let mut p = Sampler::new(SamplingConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.01,
            seed: 3,
        });
        assert!((0..50).all(|_| p.sample(&logits) == 1));
        // With everything allowed at high temperature every token shows up, and seeds replay.
        let cfg = SamplingConfig {
            temperature: 100.0,
            top_k: 0,
            top_p: 1.0,
            seed: 9,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone());
            (0..400).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..400).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        for id in 0..5 {
            assert!(a.contains(&id), "token {id} never sampled");
        }
    }
}
