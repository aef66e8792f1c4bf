//! A frozen projection with its LoRA term, forward and backward, and the projections of one
//! layer in one micro-batch ([`LayerProj`]).

use super::arena::{Arena, LayerActs};
use crate::gpu::Result;
use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::GpuWeight;
use crate::kernels::elementwise::dropout;
use crate::kernels::matmul::{MatView, matmul, matmul_weight, matmul_weight_t};
use crate::lora::Module;
use crate::model::ModelConfig;
use crate::model::block::Project;
use crate::train::lora_gpu::{GpuLora, LoraSlot};

/// LoRA dropout of one projection in one micro-batch of one step: the probability and the seed
/// of its mask (forward and backward use the same).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Drop {
    pub(crate) p: f32,
    pub(crate) seed: u32,
}

/// What the LoRA term of one projection needs: its slot, its saved `u = dropout(x)·Aᵀ`, and the
/// dropout of its input.
#[derive(Clone, Copy)]
pub(crate) struct Adapted<'a> {
    pub(crate) slot: LoraSlot,
    pub(crate) u: &'a GpuBuffer,
    pub(crate) drop: Option<Drop>,
}

/// `y[n, out] (+)= x·Wᵀ` plus the LoRA term `s·(dropout(x)·Aᵀ)·Bᵀ` when the projection is
/// adapted (saving `dropout(x)·Aᵀ` in `u`; `scratch` holds the dropped-out input); `y` from
/// element `y_off`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn adapted_linear(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    w: &GpuWeight,
    (y, y_off): (&GpuBuffer, u32),
    n: u32,
    accumulate: bool,
    lora: &GpuLora,
    adapted: Option<Adapted<'_>>,
    scratch: &GpuBuffer,
) -> Result<()> {
    let out = w.rows as u32;
    matmul_weight(rec, x, 0, w, y, y_off, out, n, 1.0, accumulate).await?;
    if let Some(Adapted { slot: s, u, drop }) = adapted {
        let (r, inp, p) = (lora.config.r as u32, s.in_features, &lora.params);
        let xin = match drop {
            Some(d) => {
                dropout(rec, n * inp, (x, 0), (scratch, 0), d.p, d.seed, false).await?;
                scratch
            }
            None => x,
        };
        // u[n, r] = dropout(x)[n, in] · Aᵀ   (A [r, in] read transposed)
        let (xv, av, uv) = (
            MatView::rows(xin, 0, inp),
            MatView::transposed(p, s.a_off, inp),
            MatView::rows(u, 0, r),
        );
        matmul(rec, xv, av, uv, (n, r, inp), 1.0, false).await?;
        // y += s · u · Bᵀ   (B [out, r] read transposed)
        let (bv, yv) = (
            MatView::transposed(p, s.b_off, r),
            MatView::rows(y, y_off, out),
        );
        matmul(
            rec,
            MatView::rows(u, 0, r),
            bv,
            yv,
            (n, out, r),
            lora.scale(),
            true,
        )
        .await?;
    }
    Ok(())
}

/// Backward of [`adapted_linear`] for the input and the LoRA matrices: `dx (+)= dy·W`
/// (+ `mask ⊙ s·(dy·B)·A`), `dB += s·dyᵀ·u`, `dA += (s·dy·B)ᵀ·dropout(x)`. `du` and the two
/// scratch buffers are temporaries.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn adapted_linear_backward(
    rec: &mut Recorder<'_>,
    dy: &GpuBuffer,
    w: &GpuWeight,
    x: &GpuBuffer,
    dx: &GpuBuffer,
    n: u32,
    lora: &GpuLora,
    adapted: Option<Adapted<'_>>,
    (du, scratch, scratch2): (&GpuBuffer, &GpuBuffer, &GpuBuffer),
    accumulate: bool,
) -> Result<()> {
    let inp = w.cols as u32;
    matmul_weight_t(rec, dy, 0, w, dx, 0, inp, n, 1.0, accumulate).await?;
    if let Some(Adapted { slot: s, u, drop }) = adapted {
        let (r, out, sc) = (lora.config.r as u32, s.out_features, lora.scale());
        let (p, g) = (&lora.params, &lora.grads);
        // dB[out, r] += s · dyᵀ · u
        let (dyt, uv, dbv) = (
            MatView::transposed(dy, 0, out),
            MatView::rows(u, 0, r),
            MatView::rows(g, s.b_off, r),
        );
        matmul(rec, dyt, uv, dbv, (out, r, n), sc, true).await?;
        // du[n, r] = s · dy · B
        let (dyv, bv, duv) = (
            MatView::rows(dy, 0, out),
            MatView::rows(p, s.b_off, r),
            MatView::rows(du, 0, r),
        );
        matmul(rec, dyv, bv, duv, (n, r, out), sc, false).await?;
        // dA[r, in] += duᵀ · dropout(x)   (the same mask as the forward pass)
        let xin = match drop {
            Some(d) => {
                dropout(rec, n * inp, (x, 0), (scratch, 0), d.p, d.seed, false).await?;
                scratch
            }
            None => x,
        };
        let (dut, xv, dav) = (
            MatView::transposed(du, 0, r),
            MatView::rows(xin, 0, inp),
            MatView::rows(g, s.a_off, inp),
        );
        matmul(rec, dut, xv, dav, (r, inp, n), 1.0, true).await?;
        // dx += mask ⊙ (du · A)
        let (duv, av) = (MatView::rows(du, 0, r), MatView::rows(p, s.a_off, inp));
        match drop {
            Some(d) => {
                matmul(
                    rec,
                    duv,
                    av,
                    MatView::rows(scratch2, 0, inp),
                    (n, inp, r),
                    1.0,
                    false,
                )
                .await?;
                dropout(rec, n * inp, (scratch2, 0), (dx, 0), d.p, d.seed, true).await?;
            }
            None => {
                matmul(
                    rec,
                    duv,
                    av,
                    MatView::rows(dx, 0, inp),
                    (n, inp, r),
                    1.0,
                    true,
                )
                .await?
            }
        }
    }
    Ok(())
}

/// The LoRA term of projection `p` of `layer`: its slot (a fused module's rows for `p`), the
/// module's saved `u` and its dropout.
pub(super) fn slot_of<'a>(
    model: &ModelConfig,
    lora: &'a GpuLora,
    acts: &'a LayerActs,
    layer: usize,
    p: Module,
    drop: Option<Drop>,
) -> Option<Adapted<'a>> {
    let slot = lora.projection_slot(model, layer, p)?;
    let module = slot.module;
    let u = acts
        .lora_u
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, u)| u)?;
    // A distinct mask per layer and module, from the step's seed (the same for the parts of a
    // fused module, which share its input).
    let drop = drop.map(|d| Drop {
        p: d.p,
        seed: crate::util::hash32(&[d.seed, layer as u32, module as u32]),
    });
    Some(Adapted { slot, u, drop })
}

/// The projections of one layer in one micro-batch: each is the base weight plus, when the
/// layer adapts it, its LoRA term (with the step's dropout and the arena's scratch buffers).
pub(super) struct LayerProj<'a> {
    pub(super) model: &'a ModelConfig,
    pub(super) lora: &'a GpuLora,
    pub(super) acts: &'a LayerActs,
    pub(super) arena: &'a Arena,
    pub(super) layer: usize,
    pub(super) drop: Option<Drop>,
    pub(super) n: u32,
}

impl LayerProj<'_> {
    fn adapted(&self, module: Module) -> Option<Adapted<'_>> {
        slot_of(
            self.model, self.lora, self.acts, self.layer, module, self.drop,
        )
    }

    /// `dx (+)= dy·W (+ LoRA)` for `module`, accumulating its LoRA gradients.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn backward(
        &self,
        rec: &mut Recorder<'_>,
        module: Module,
        dy: &GpuBuffer,
        w: &GpuWeight,
        x: &GpuBuffer,
        dx: &GpuBuffer,
        accumulate: bool,
    ) -> Result<()> {
        let a = self.arena;
        let scratch = (&a.du, &a.xdrop, &a.xdrop2);
        adapted_linear_backward(
            rec,
            dy,
            w,
            x,
            dx,
            self.n,
            self.lora,
            self.adapted(module),
            scratch,
            accumulate,
        )
        .await
    }
}

impl Project for LayerProj<'_> {
    /// `y (+)= x·Wᵀ (+ LoRA)` for `projection`, saving its LoRA input.
    async fn project(
        &self,
        rec: &mut Recorder<'_>,
        projection: Module,
        x: &GpuBuffer,
        w: &GpuWeight,
        y: (&GpuBuffer, u32),
        accumulate: bool,
    ) -> Result<()> {
        let adapted = self.adapted(projection);
        let xdrop = &self.arena.xdrop;
        adapted_linear(rec, x, w, y, self.n, accumulate, self.lora, adapted, xdrop).await
    }
}
