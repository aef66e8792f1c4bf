//! Batched command recording: kernels are queued with their params and buffers, then encoded
//! into one compute pass with one uniform buffer and submitted together.

use super::pipeline::CachedPipeline;
use super::{Gpu, GpuBuffer, GpuError, KernelLayout, Result};
use crate::kernels::matmul::MatmulVariant;

/// A buffer argument of a dispatch, in binding order after the params (binding 0).
pub type Arg<'a> = &'a GpuBuffer;

struct Op {
    pipeline: CachedPipeline,
    buffers: Vec<wgpu::Buffer>,
    params_offset: u64,
    params_size: u64,
    groups: [u32; 3],
}

/// Collects dispatches and submits them as one command buffer.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    params: Vec<u8>,
    portable: bool,
    matmul: Option<MatmulVariant>,
    clears: Vec<wgpu::Buffer>,
}

impl<'g> Recorder<'g> {
    /// A recorder whose kernels use the fastest variants the device supports.
    pub fn new(gpu: &'g Gpu) -> Self {
        Recorder {
            gpu,
            ops: Vec::new(),
            params: Vec::new(),
            portable: false,
            matmul: None,
            clears: Vec::new(),
        }
    }

    /// A recorder whose kernels use only the portable variants (the reference the faster
    /// variants are tested against).
    pub fn portable(gpu: &'g Gpu) -> Self {
        Recorder {
            portable: true,
            ..Recorder::new(gpu)
        }
    }

    /// Zero `buf` when the batch starts, before any of its kernels run (for buffers that
    /// kernels later accumulate into).
    pub fn clear_first(&mut self, buf: &GpuBuffer) {
        self.clears.push(buf.buffer.clone());
    }

    /// Run matmuls as `variant` (kernel and tiles) instead of the adapter's choice: for tuning
    /// and for the tests that check every configuration.
    pub fn with_matmul(mut self, variant: MatmulVariant) -> Self {
        self.matmul = Some(variant);
        self
    }

    /// The matmul variant asked for with [`with_matmul`](Self::with_matmul).
    pub fn matmul(&self) -> Option<MatmulVariant> {
        self.matmul
    }

    /// Whether only portable kernel variants may be used.
    pub fn is_portable(&self) -> bool {
        self.portable
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Number of dispatches queued so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Queue one dispatch of `layout` built with `defines`.
    pub async fn dispatch<P: bytemuck::Pod>(
        &mut self,
        layout: &KernelLayout,
        defines: &[&'static str],
        params: &P,
        buffers: &[Arg<'_>],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_with(layout, (defines, &[]), params, buffers, groups)
            .await
    }

    /// Queue one dispatch of `layout` built with `defines` and the values of its `override`
    /// constants.
    pub async fn dispatch_with<P: bytemuck::Pod>(
        &mut self,
        layout: &KernelLayout,
        (defines, constants): (&[&'static str], &[(&'static str, u32)]),
        params: &P,
        buffers: &[Arg<'_>],
        groups: [u32; 3],
    ) -> Result<()> {
        debug_assert_eq!(
            buffers.len() + 1,
            layout.bindings.len(),
            "{:?}",
            layout.shader
        );
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(GpuError::Validation {
                context: format!("{:?} {defines:?}", layout.shader),
                message: format!(
                    "a grid of {groups:?} workgroups is more than the {max} per dimension this \
                     device allows (a kernel's grid does not split this shape; please report it)"
                ),
            });
        }
        let pipeline = self.gpu.pipeline(layout, defines, constants).await?;
        let align = self.gpu.limits.min_uniform_buffer_offset_alignment as usize;
        let offset = self.params.len().next_multiple_of(align.max(16));
        let bytes = bytemuck::bytes_of(params);
        self.params.resize(offset, 0);
        self.params.extend_from_slice(bytes);
        self.params
            .resize(self.params.len().next_multiple_of(16), 0);
        self.ops.push(Op {
            pipeline,
            buffers: buffers.iter().map(|b| b.buffer.clone()).collect(),
            params_offset: offset as u64,
            params_size: bytes.len().next_multiple_of(16) as u64,
            groups,
        });
        Ok(())
    }

    /// Encode everything queued into one compute pass and submit it.
    pub async fn submit(self) -> Result<()> {
        self.encode_and_submit(None).await.map(|_| ())
    }

    /// Like [`submit`](Self::submit), and measure the pass with GPU timestamps: returns the
    /// seconds the GPU spent on it, or `None` when the adapter has no timestamp queries.
    pub async fn submit_timed(self) -> Result<Option<f64>> {
        let gpu = self.gpu;
        if !gpu.has(wgpu::Features::TIMESTAMP_QUERY) {
            self.submit().await?;
            return Ok(None);
        }
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolved = GpuBuffer::zeroed(gpu, "timestamps", 16)?;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        self.encode_and_submit(Some((&queries, &resolve, &resolved)))
            .await?;
        let ticks = super::read_buffer_u32(gpu, &resolved, 0, 4).await?;
        let begin = ticks[0] as u64 | (ticks[1] as u64) << 32;
        let end = ticks[2] as u64 | (ticks[3] as u64) << 32;
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        Ok(Some(end.saturating_sub(begin) as f64 * period_ns * 1e-9))
    }

    async fn encode_and_submit(
        self,
        timestamps: Option<(&wgpu::QuerySet, &wgpu::Buffer, &GpuBuffer)>,
    ) -> Result<()> {
        if self.ops.is_empty() && self.clears.is_empty() {
            return Ok(());
        }
        let gpu = self.gpu;
        let ops = self.ops;
        let params = self.params;
        let clears = self.clears;
        gpu.checked("running kernels", move || {
            let uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: params.len().max(16) as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            if !params.is_empty() {
                gpu.queue.write_buffer(&uniform, 0, &params);
            }
            let groups: Vec<wgpu::BindGroup> = ops
                .iter()
                .map(|op| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniform,
                            offset: op.params_offset,
                            size: wgpu::BufferSize::new(op.params_size),
                        }),
                    }];
                    for (i, b) in op.buffers.iter().enumerate() {
                        entries.push(wgpu::BindGroupEntry {
                            binding: i as u32 + 1,
                            resource: b.as_entire_binding(),
                        });
                    }
                    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &op.pipeline.layout,
                        entries: &entries,
                    })
                })
                .collect();
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            for buf in &clears {
                encoder.clear_buffer(buf, 0, None);
            }
            {
                let timestamp_writes =
                    timestamps.map(|(q, _, _)| wgpu::ComputePassTimestampWrites {
                        query_set: q,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    });
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes,
                });
                for (op, bg) in ops.iter().zip(&groups) {
                    pass.set_pipeline(&op.pipeline.pipeline);
                    pass.set_bind_group(0, bg, &[]);
                    let [x, y, z] = op.groups;
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            if let Some((q, resolve, out)) = timestamps {
                encoder.resolve_query_set(q, 0..2, resolve, 0);
                encoder.copy_buffer_to_buffer(resolve, 0, &out.buffer, 0, 16);
            }
            gpu.queue.submit([encoder.finish()]);
        })
        .await
    }
}

/// Split `n` workgroups over x and y so neither exceeds the per-dimension limit (65535).
/// Kernels using it compute their flat index as `gid.x + gid.y · num_workgroups.x · size`.
pub fn grid_1d(n: u32) -> [u32; 3] {
    const MAX: u32 = 32768;
    if n <= MAX {
        [n.max(1), 1, 1]
    } else {
        [MAX, n.div_ceil(MAX), 1]
    }
}
