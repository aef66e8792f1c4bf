//! The forward pass: embedding → L × (attention block, SwiGLU block) → norm → logits statistics,
//! recorded as one batch of kernels per call, with a KV cache for incremental decode.

use super::block::{
    BlockBuffers, Frozen, HeadNormed, Placement, PostNormed, Stream, block_forward, frozen_linear,
};
use super::{ModelConfig, ModelWeights, Result};
use crate::gpu::{Gpu, GpuBuffer, Recorder, read_buffer_f32};
use crate::kernels::embedding::embedding;
use crate::kernels::logits::{NO_TARGET, RowStats, logit_stats};
use crate::kernels::rmsnorm::rmsnorm;

/// Keys and values of every layer for positions `0..len` of one sequence.
#[derive(Debug)]
pub struct KvCache {
    pub k: Vec<GpuBuffer>,
    pub v: Vec<GpuBuffer>,
    /// Positions the buffers hold.
    pub capacity: usize,
    /// Positions filled so far.
    pub len: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, config: &ModelConfig, capacity: usize) -> Result<KvCache> {
        let bytes = (capacity * config.kv_dim() * 4) as u64;
        let make = |what: &str| -> Result<Vec<GpuBuffer>> {
            (0..config.n_layer)
                .map(|l| Ok(GpuBuffer::zeroed(gpu, &format!("{what} cache {l}"), bytes)?))
                .collect()
        };
        Ok(KvCache {
            k: make("k")?,
            v: make("v")?,
            capacity,
            len: 0,
        })
    }
}

/// Scratch buffers for up to `capacity` tokens per call.
#[derive(Debug)]
struct Activations {
    capacity: usize,
    logit_rows: usize,
    ids: GpuBuffer,
    targets: GpuBuffer,
    x: GpuBuffer,
    xn: GpuBuffer,
    /// A block's output before its post norm (gemma3).
    tmp: GpuBuffer,
    q: GpuBuffer,
    /// Q and K before the per-head norms (qwen3), and the norms' 1/rms (unused here).
    q_raw: GpuBuffer,
    k_raw: GpuBuffer,
    rstd_heads: GpuBuffer,
    att: GpuBuffer,
    gate: GpuBuffer,
    up: GpuBuffer,
    hidden: GpuBuffer,
    rstd: GpuBuffer,
    lse: GpuBuffer,
    logits: GpuBuffer,
    stats: GpuBuffer,
}

impl Activations {
    fn new(gpu: &Gpu, c: &ModelConfig, t: usize) -> Result<Activations> {
        let f = |name: &str, n: usize| GpuBuffer::zeroed(gpu, name, (n * 4) as u64);
        // Logits are computed a chunk of rows at a time so [T, V] never has to fit one binding.
        let max_rows =
            (gpu.limits.max_storage_buffer_binding_size as usize / (c.vocab_size * 4)).max(1);
        let logit_rows = t.min(max_rows).min(256);
        Ok(Activations {
            capacity: t,
            logit_rows,
            ids: f("ids", t)?,
            targets: f("targets", t)?,
            x: f("x", t * c.n_embd)?,
            xn: f("xn", t * c.n_embd)?,
            tmp: f(
                "block output",
                if c.arch.post_norms { t * c.n_embd } else { 1 },
            )?,
            q: f("q", t * c.q_dim())?,
            q_raw: f(
                "q before norm",
                if c.arch.qk_norm { t * c.q_dim() } else { 1 },
            )?,
            k_raw: f(
                "k before norm",
                if c.arch.qk_norm { t * c.kv_dim() } else { 1 },
            )?,
            rstd_heads: f("head rstd", if c.arch.qk_norm { t * c.n_head } else { 1 })?,
            att: f("att", t * c.q_dim())?,
            gate: f("gate", t * c.n_ff)?,
            up: f("up", t * c.n_ff)?,
            hidden: f("hidden", t * c.n_ff)?,
            rstd: f("rstd", t)?,
            lse: f("lse", t * c.n_head)?,
            logits: f("logits", logit_rows * c.vocab_size)?,
            stats: f("stats", t * 4)?,
        })
    }
}

/// Which logits a forward call reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted<'a> {
    /// Statistics of every position; `targets[t]` is the id whose log-probability row t reports.
    All { targets: &'a [u32] },
    /// Statistics of the last position, and its full logit row when `row` is set.
    Last { row: bool },
}

/// What a forward call returns.
#[derive(Clone, Debug, Default)]
pub struct ForwardOutput {
    /// Per reported position.
    pub stats: Vec<RowStats>,
    /// The last position's logits, when asked for.
    pub last_logits: Option<Vec<f32>>,
}

/// Build every pipeline [`Forward::run`] may use with these weights.
pub(crate) async fn compile_kernels(
    gpu: &Gpu,
    config: &ModelConfig,
    weights: &ModelWeights,
) -> Result<()> {
    use crate::kernels::{attention, elementwise, embedding, gemv, logits, matmul, rmsnorm, rope};
    let mut formats: Vec<_> = weights
        .layers
        .iter()
        .flat_map(|l| {
            [
                &l.attn_q,
                &l.attn_k,
                &l.attn_v,
                &l.attn_output,
                &l.ffn_gate,
                &l.ffn_up,
                &l.ffn_down,
            ]
        })
        .chain([weights.output()])
        .map(|w| w.format)
        .collect();
    formats.sort_by_key(|f| f.define());
    formats.dedup();
    let rec = Recorder::new(gpu);
    let (mv, gv) = (
        matmul::MatmulVariant::for_recorder(&rec),
        gemv::GemvVariant::for_recorder(&rec),
    );
    for f in formats {
        gpu.pipeline(&matmul::LAYOUT, &mv.defines(f.define()), &mv.constants(gpu))
            .await?;
        gpu.pipeline(&gemv::LAYOUT, &gv.defines(f.define()), &[])
            .await?;
    }
    gpu.pipeline(
        &embedding::LAYOUT,
        &[weights.token_embd.format.define()],
        &[],
    )
    .await?;
    gpu.pipeline(&rmsnorm::LAYOUT, &[], &[]).await?;
    gpu.pipeline(&rope::LAYOUT, &[], &[]).await?;
    gpu.pipeline(&attention::LAYOUT, &[], &[]).await?;
    let glu = elementwise::Op::Glu(config.arch.activation).defines();
    gpu.pipeline(&elementwise::LAYOUT, &glu, &[]).await?;
    if config.arch.qkv_bias || config.arch.post_norms {
        gpu.pipeline(&elementwise::LAYOUT, &["OP_BIAS"], &[])
            .await?;
    }
    gpu.pipeline(&logits::LAYOUT, &[], &[]).await?;
    Ok(())
}

/// Runs forward passes, owning the scratch buffers.
#[derive(Debug, Default)]
pub struct Forward {
    acts: Option<Activations>,
}

impl Forward {
    /// Run `ids` (at positions `cache.len..`) through the model, extend the cache, and report the
    /// logits asked for. One submission, one or two readbacks.
    pub async fn run(
        &mut self,
        gpu: &Gpu,
        config: &ModelConfig,
        weights: &ModelWeights,
        cache: &mut KvCache,
        ids: &[u32],
        wanted: LogitsWanted<'_>,
    ) -> Result<ForwardOutput> {
        let t = ids.len();
        if t == 0 {
            return Ok(ForwardOutput::default());
        }
        if cache.len + t > cache.capacity {
            return Err(super::ModelError::ContextFull {
                needed: cache.len + t,
                capacity: cache.capacity,
            });
        }
        if self.acts.as_ref().is_none_or(|a| a.capacity < t) {
            self.acts = None; // free the old buffers first
            self.acts = Some(Activations::new(gpu, config, t)?);
        }
        let a = self.acts.as_ref().expect("allocated above");
        let c = config.n_embd as u32;
        let (tt, pos0) = (t as u32, cache.len as u32);
        a.ids.write(gpu, 0, ids);

        let mut rec = Recorder::new(gpu);
        let embd_scale = config.embedding_scale();
        embedding(
            &mut rec,
            &a.ids,
            tt,
            &weights.token_embd,
            (&a.x, 0),
            embd_scale,
        )
        .await?;
        let at = Placement::decode(tt, pos0, cache.capacity as u32);
        for (l, lw) in weights.layers.iter().enumerate() {
            // One scratch set: the two norms share xn and rstd, K and V go into the cache.
            let io = BlockBuffers {
                stream: Stream::InPlace(&a.x),
                xn1: &a.xn,
                rstd1: &a.rstd,
                q: &a.q,
                k: &cache.k[l],
                v: &cache.v[l],
                head_norm: lw.qk_norm.as_ref().map(|_| HeadNormed {
                    q_raw: &a.q_raw,
                    k_raw: &a.k_raw,
                    rstd_q: &a.rstd_heads,
                    rstd_k: &a.rstd_heads,
                }),
                att: &a.att,
                lse: &a.lse,
                xn2: &a.xn,
                rstd2: &a.rstd,
                gate: &a.gate,
                up: &a.up,
                hidden: &a.hidden,
                post: lw.post_norms.as_ref().map(|_| PostNormed {
                    attn_out: &a.tmp,
                    attn_rstd: &a.rstd,
                    ffn_out: &a.tmp,
                    ffn_rstd: &a.rstd,
                }),
                sum: &a.xn,
            };
            let frozen = Frozen { n: tt };
            block_forward(
                &mut rec,
                config,
                lw,
                &weights.rope_factors,
                l,
                at,
                &io,
                &frozen,
            )
            .await?;
        }
        rmsnorm(
            &mut rec,
            &a.x,
            &weights.output_norm,
            &a.xn,
            &a.rstd,
            (tt, c),
            config.rms_eps,
        )
        .await?;

        // Logits, a chunk of rows at a time, reduced to statistics.
        let v = config.vocab_size as u32;
        let (first, targets): (usize, Vec<u32>) = match wanted {
            LogitsWanted::All { targets } => (0, targets.to_vec()),
            LogitsWanted::Last { .. } => (t - 1, vec![NO_TARGET; t]),
        };
        a.targets.write(gpu, 0, &targets[..t.min(targets.len())]);
        let out = weights.output();
        let mut row = first;
        while row < t {
            let rows = (t - row).min(a.logit_rows);
            let x_off = (row * config.n_embd) as u32;
            let logits = (&a.logits, 0);
            frozen_linear(&mut rec, (&a.xn, x_off), out, logits, rows as u32, false).await?;
            logit_stats(
                &mut rec,
                &a.logits,
                &a.targets,
                &a.stats,
                (rows as u32, v),
                row as u32,
            )
            .await?;
            row += rows;
        }
        rec.submit().await?;
        cache.len += t;

        let stats = read_buffer_f32(gpu, &a.stats, first * 4, (t - first) * 4).await?;
        let last_logits = match wanted {
            LogitsWanted::Last { row: true } => {
                // The last chunk holds row t − 1 at its end.
                let last_in_chunk = (t - 1 - first) % a.logit_rows;
                Some(
                    read_buffer_f32(
                        gpu,
                        &a.logits,
                        last_in_chunk * config.vocab_size,
                        config.vocab_size,
                    )
                    .await?,
                )
            }
            _ => None,
        };
        Ok(ForwardOutput {
            stats: RowStats::decode(&stats),
            last_logits,
        })
    }
}
