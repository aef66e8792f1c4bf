//! The model on the GPU: its architecture ([`arch`]) and config from GGUF metadata, named weight
//! structs, the forward pass over a prompt and incremental decode with a KV cache, scoring and
//! sampling.

pub mod arch;
pub(crate) mod block;
mod config;
mod forward;
mod sampling;
mod support;
pub mod tiny;
mod weights;

#[cfg(test)]
mod tests;

pub use arch::{ARCHITECTURES, Activation, Architecture, RopeStyle};
pub use config::{ModelConfig, RopeFactors};
pub use forward::{Forward, ForwardOutput, KvCache, LogitsWanted};
pub use sampling::{Sampler, SamplingConfig, argmax};
pub use support::{DeviceLimits, Support, smallest_buffer};
pub use weights::{LayerWeights, ModelWeights, PostNorms, QkNorm, QkvBias};

use crate::formats::{Gguf, GgufError, TensorSource, WholeFile};
use crate::gpu::{Gpu, GpuError};
use crate::kernels::logits::{NO_TARGET, RowStats};

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(
        "unsupported architecture '{0}': afinador runs {names}",
        names = Architecture::names()
    )]
    UnsupportedArchitecture(String),
    #[error("unsupported model feature: {0}")]
    Unsupported(String),
    #[error(
        "tensor '{tensor}' has type {ty}, which afinador cannot read on the GPU yet (supported: \
         {supported}; re-quantize the model with llama-quantize to one of them)",
        supported = crate::kernels::WeightFormat::names()
    )]
    UnsupportedWeightType { tensor: String, ty: &'static str },
    #[error("inconsistent model: {0}")]
    BadConfig(String),
    #[error("the context is full: {needed} positions needed, {capacity} allocated")]
    ContextFull { needed: usize, capacity: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
}

/// Result alias for the model layer.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// A loaded model: its config and weights on one GPU.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub weights: ModelWeights,
}

/// What scoring a token sequence gives.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Score {
    /// Tokens scored (n); n − 1 of them are predicted.
    pub tokens: usize,
    /// Mean negative log-likelihood (nats) of tokens 2..n, each given those before it.
    pub nll: f64,
    pub ppl: f64,
    /// The most likely next token at every position (length n).
    pub argmax: Vec<u32>,
    /// Mean predictive entropy (nats) over the predicting positions.
    pub entropy: f64,
    /// Log-probability of each predicted token (length n − 1).
    pub token_logprobs: Vec<f32>,
}

impl Model {
    /// Read the config and upload the weights of a GGUF file (`file` is its whole content).
    pub fn load(gpu: &Gpu, gguf: &Gguf, file: &[u8]) -> Result<Model> {
        Self::load_with_adapter(gpu, gguf, file, None)
    }

    /// [`load`](Self::load) with a LoRA adapter merged into the projections it adapts (those
    /// become f32 on the GPU; the rest stay quantized).
    pub fn load_with_adapter(
        gpu: &Gpu,
        gguf: &Gguf,
        file: &[u8],
        adapter: Option<&crate::lora::LoraAdapter>,
    ) -> Result<Model> {
        Self::load_from(gpu, gguf, &WholeFile(file), adapter)
    }

    /// [`load_with_adapter`](Self::load_with_adapter) reading the tensors one at a time from
    /// `source` (the file need never be in memory whole).
    pub fn load_from(
        gpu: &Gpu,
        gguf: &Gguf,
        file: &dyn TensorSource,
        adapter: Option<&crate::lora::LoraAdapter>,
    ) -> Result<Model> {
        let config = ModelConfig::from_gguf(gguf)?;
        if let Some(a) = adapter {
            a.validate()
                .map_err(|e| ModelError::BadConfig(e.to_string()))?;
        }
        let weights = ModelWeights::upload(gpu, &config, gguf, file, adapter)?;
        // The last writes reach the device now, not in the first forward pass.
        gpu.flush_writes();
        Ok(Model { config, weights })
    }

    /// Compile every kernel variant the forward pass uses, so the first call is not slowed by
    /// shader compilation (seconds on software drivers).
    pub async fn compile_kernels(&self, gpu: &Gpu) -> Result<()> {
        forward::compile_kernels(gpu, &self.config, &self.weights).await
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            Some(&id) => Err(ModelError::BadToken {
                id,
                vocab: self.config.vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// Score `ids`: each token's log-probability given the ones before it.
    pub async fn score(&self, gpu: &Gpu, ids: &[u32]) -> Result<Score> {
        let mut pass = Generation::new(gpu, self, ids.len(), SamplingConfig::default())?;
        pass.score_and_keep(gpu, ids, 0).await
    }
}

/// Mean NLL, perplexity and entropy from per-position statistics (the last position predicts
/// nothing).
pub fn score_from_stats(stats: &[RowStats]) -> Score {
    let n = stats.len();
    let predicting = &stats[..n.saturating_sub(1)];
    let token_logprobs: Vec<f32> = predicting.iter().map(|s| s.target_logprob).collect();
    let count = predicting.len().max(1) as f64;
    let nll = -token_logprobs.iter().map(|&x| x as f64).sum::<f64>() / count;
    let entropy = predicting.iter().map(|s| s.entropy as f64).sum::<f64>() / count;
    Score {
        tokens: n,
        nll: if predicting.is_empty() { 0.0 } else { nll },
        ppl: if predicting.is_empty() {
            1.0
        } else {
            nll.exp()
        },
        argmax: stats.iter().map(|s| s.argmax).collect(),
        entropy,
        token_logprobs,
    }
}

/// Incremental generation over a KV cache.
#[derive(Debug)]
pub struct Generation<'m> {
    model: &'m Model,
    cache: KvCache,
    forward: Forward,
    sampler: Sampler,
    next: Option<u32>,
}

impl<'m> Generation<'m> {
    /// Prepare to generate up to `capacity` positions (prompt + new tokens).
    pub fn new(
        gpu: &Gpu,
        model: &'m Model,
        capacity: usize,
        sampling: SamplingConfig,
    ) -> Result<Self> {
        let capacity = capacity.min(model.config.context_length).max(1);
        Ok(Generation {
            model,
            cache: KvCache::new(gpu, &model.config, capacity)?,
            forward: Forward::default(),
            sampler: Sampler::new(sampling),
            next: None,
        })
    }

    /// Positions used so far.
    pub fn len(&self) -> usize {
        self.cache.len
    }

    pub fn is_empty(&self) -> bool {
        self.cache.len == 0
    }

    /// Positions left before the cache is full.
    pub fn remaining(&self) -> usize {
        self.cache.capacity - self.cache.len
    }

    /// Generate after `prompt`: up to `max_new` tokens, stopping before the first one `stop`
    /// accepts (end of generation) or when the cache is full; `on_token` sees each new token as
    /// it is chosen (for streaming). Returns the new tokens.
    pub async fn generate(
        &mut self,
        gpu: &Gpu,
        prompt: &[u32],
        max_new: usize,
        stop: impl Fn(u32) -> bool,
        mut on_token: impl FnMut(u32),
    ) -> Result<Vec<u32>> {
        let mut new_ids = Vec::new();
        if max_new == 0 {
            return Ok(new_ids);
        }
        let mut next = self.feed(gpu, prompt).await?;
        while !stop(next) {
            new_ids.push(next);
            on_token(next);
            if new_ids.len() == max_new || self.remaining() == 0 {
                break;
            }
            next = self.feed(gpu, &[next]).await?;
        }
        Ok(new_ids)
    }

    /// Score `ids` after what the cache holds (each token's log-probability given everything
    /// before it, as [`Model::score`]), then keep only the first `keep` positions in the cache.
    /// Scoring prompt + reference and then generating after the prompt so costs one prefill.
    pub async fn score_and_keep(&mut self, gpu: &Gpu, ids: &[u32], keep: usize) -> Result<Score> {
        let mut targets: Vec<u32> = ids.iter().skip(1).copied().collect();
        targets.push(NO_TARGET);
        let out = self
            .run(gpu, ids, LogitsWanted::All { targets: &targets })
            .await?;
        // Positions past `keep` are overwritten by the next tokens fed.
        self.cache.len = self.cache.len.min(keep);
        Ok(score_from_stats(&out.stats))
    }

    async fn run(
        &mut self,
        gpu: &Gpu,
        ids: &[u32],
        wanted: LogitsWanted<'_>,
    ) -> Result<ForwardOutput> {
        self.model.check_ids(ids)?;
        self.forward
            .run(
                gpu,
                &self.model.config,
                &self.model.weights,
                &mut self.cache,
                ids,
                wanted,
            )
            .await
    }

    /// Feed tokens (the prompt, or the token just chosen) and choose the next one.
    pub async fn feed(&mut self, gpu: &Gpu, ids: &[u32]) -> Result<u32> {
        let greedy = self.sampler.config.is_greedy();
        let out = self
            .run(gpu, ids, LogitsWanted::Last { row: !greedy })
            .await?;
        let next = match &out.last_logits {
            Some(row) => self.sampler.sample(row),
            None => out.stats.last().map(|s| s.argmax).unwrap_or(0),
        };
        self.next = Some(next);
        Ok(next)
    }
}
