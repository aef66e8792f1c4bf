//! Compute pipelines cached by a typed key, with explicit bind group layouts.

use afinador_shaders::Shader;

use super::{Gpu, Result};

/// How a kernel uses one binding, in binding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

/// A kernel family's shader and bindings (binding i is `bindings[i]`).
#[derive(Clone, Copy, Debug)]
pub struct KernelLayout {
    pub shader: Shader,
    pub bindings: &'static [Binding],
}

/// Identifies one compiled variant: the shader, its preprocessor flags and the values of its
/// pipeline-overridable constants (WGSL `override`, e.g. tile sizes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub shader: Shader,
    pub defines: Vec<&'static str>,
    pub constants: Vec<(&'static str, u32)>,
}

#[derive(Clone)]
pub(crate) struct CachedPipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

impl Gpu {
    /// The pipeline for `layout` built with `defines` and the `override` constants `constants`
    /// (the shader's defaults for those not given), compiled once and cached.
    pub(crate) async fn pipeline(
        &self,
        layout: &KernelLayout,
        defines: &[&'static str],
        constants: &[(&'static str, u32)],
    ) -> Result<CachedPipeline> {
        let key = PipelineKey {
            shader: layout.shader,
            defines: defines.to_vec(),
            constants: constants.to_vec(),
        };
        if let Some(hit) = self.pipelines.lock().expect("pipeline cache").get(&key) {
            return Ok(hit.clone());
        }
        let source = layout.shader.source(defines)?;
        let label = format!("{:?}{:?}{:?}", layout.shader, defines, constants);
        let constants: Vec<(&str, f64)> = constants.iter().map(|&(k, v)| (k, v as f64)).collect();
        let built = self
            .checked(&format!("compiling kernel {label}"), || {
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&label),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                let entries: Vec<wgpu::BindGroupLayoutEntry> = layout
                    .bindings
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: match b {
                            Binding::Uniform => wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Uniform,
                                has_dynamic_offset: false,
                                min_binding_size: None,
                            },
                            Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Storage {
                                    read_only: *b == Binding::Read,
                                },
                                has_dynamic_offset: false,
                                min_binding_size: None,
                            },
                        },
                        count: None,
                    })
                    .collect();
                let bgl = self
                    .device
                    .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: Some(&label),
                        entries: &entries,
                    });
                let pl = self
                    .device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(&label),
                        bind_group_layouts: &[Some(&bgl)],
                        immediate_size: 0,
                    });
                let pipeline =
                    self.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(&label),
                            layout: Some(&pl),
                            module: &module,
                            entry_point: Some("main"),
                            compilation_options: wgpu::PipelineCompilationOptions {
                                constants: &constants,
                                ..Default::default()
                            },
                            cache: None,
                        });
                CachedPipeline {
                    pipeline,
                    layout: bgl,
                }
            })
            .await?;
        self.pipelines
            .lock()
            .expect("pipeline cache")
            .insert(key, built.clone());
        Ok(built)
    }
}
