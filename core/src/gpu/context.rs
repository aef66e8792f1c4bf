//! Adapter selection and the [`Gpu`] context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::pipeline::CachedPipeline;
use super::{GpuError, MemoryCounter, PipelineKey, Result};
use crate::kernels::matmul::MatmulVariant;

/// Which graphics API to reach the GPU through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Every backend compiled in (Vulkan, Metal, DX12, GL natively; WebGPU in browsers).
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
    /// The browser's WebGPU.
    WebGpu,
}

impl Backend {
    /// Parse a user-supplied name (`auto`, `vulkan`, `metal`, `dx12`, `gl`, `webgpu`).
    pub fn parse(name: &str) -> Option<Backend> {
        Some(match name.to_ascii_lowercase().as_str() {
            "auto" => Backend::Auto,
            "vulkan" | "vk" => Backend::Vulkan,
            "metal" | "mtl" => Backend::Metal,
            "dx12" | "d3d12" => Backend::Dx12,
            "gl" | "gles" | "opengl" => Backend::Gl,
            "webgpu" | "browser" => Backend::WebGpu,
            _ => return None,
        })
    }

    fn backends(self) -> wgpu::Backends {
        match self {
            Backend::Auto => wgpu::Backends::all(),
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
            Backend::WebGpu => wgpu::Backends::BROWSER_WEBGPU,
        }
    }
}

impl Backend {
    /// Why no adapter was found through this backend, and what to do: a backend this platform
    /// does not have (Metal off Apple, DX12 off Windows) is said as such, otherwise the driver to
    /// install.
    pub fn no_adapter_hint(self) -> String {
        let apple = cfg!(any(target_os = "macos", target_os = "ios"));
        let windows = cfg!(target_os = "windows");
        let here = if apple {
            "auto or metal"
        } else if windows {
            "auto, dx12 or vulkan"
        } else {
            "auto, vulkan or gl"
        };
        match self {
            Backend::Metal if !apple => {
                format!("Metal exists only on macOS and iOS: on this system use --backend {here}")
            }
            Backend::Dx12 if !windows => {
                format!("DX12 exists only on Windows: on this system use --backend {here}")
            }
            Backend::WebGpu if !cfg!(target_arch = "wasm32") => {
                format!("WebGPU is the browser's backend: natively use --backend {here}")
            }
            _ if cfg!(target_arch = "wasm32") => "this browser offers no WebGPU adapter: use one \
                 with WebGPU (Chrome or Edge 113+) and hardware acceleration turned on"
                .into(),
            _ if cfg!(target_os = "linux") => "on Linux without a GPU driver, install Mesa's \
                 software Vulkan: apt-get install mesa-vulkan-drivers libvulkan1"
                .into(),
            _ => "install or update the GPU's driver".into(),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Backend::Auto => "auto",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Dx12 => "dx12",
            Backend::Gl => "gl",
            Backend::WebGpu => "webgpu",
        };
        f.write_str(name)
    }
}

/// How to pick the adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub backend: Backend,
    /// Index into [`list_adapters`]; `None` picks the best (a discrete GPU first).
    pub adapter_index: Option<usize>,
}

/// What a user needs to know about one adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub vendor: String,
    pub device_type: String,
    pub driver: String,
    pub features: Vec<String>,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

/// Features afinador can use when the adapter offers them.
const OPTIONAL_FEATURES: [wgpu::Features; 3] = [
    wgpu::Features::SHADER_F16,
    wgpu::Features::SUBGROUP,
    wgpu::Features::TIMESTAMP_QUERY,
];

fn vendor_name(id: u32) -> String {
    match id {
        0x10de => "NVIDIA".into(),
        0x1002 | 0x1022 => "AMD".into(),
        0x8086 => "Intel".into(),
        0x106b => "Apple".into(),
        0x5143 => "Qualcomm".into(),
        0x13b5 => "ARM".into(),
        0x10005 => "Mesa".into(),
        0 => "unknown".into(),
        other => format!("0x{other:04x}"),
    }
}

fn summarize(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    let mut names: Vec<String> = OPTIONAL_FEATURES
        .iter()
        .chain(std::iter::once(
            &wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
        ))
        .filter(|f| features.contains(**f))
        .flat_map(|f| f.iter_names().map(|(n, _)| n.to_ascii_lowercase()))
        .collect();
    names.dedup();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend).to_ascii_lowercase(),
        vendor: vendor_name(info.vendor),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        features: names,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
    }
}

fn instance(backend: Backend) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backend.backends();
    wgpu::Instance::new(desc)
}

/// Whether the adapter has cooperative matrices (tensor cores) in the configuration matmul.wgsl's
/// COOP build uses: 16×16×16, f16 inputs, f32 accumulators, with shader f16. Native only.
fn offers_coop_f16(adapter: &wgpu::Adapter) -> bool {
    use wgpu::CooperativeScalarType::{F16, F32};
    let needed = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
    !cfg!(target_arch = "wasm32")
        && adapter.features().contains(needed)
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16) && p.ab_type == F16 && p.cr_type == F32
        })
}

/// wgpu's experimental features, which cooperative matrices need.
#[allow(unsafe_code)]
fn experimental_features() -> wgpu::ExperimentalFeatures {
    // SAFETY: wgpu makes experimental features opt-in because its validation of them is
    // incomplete. afinador uses them only in matmul.wgsl's COOP build, which bounds-checks every
    // access itself (edges are staged through zero-padded workgroup memory), and only when the
    // adapter reports the 16×16×16 f16 → f32 configuration that build uses.
    unsafe { wgpu::ExperimentalFeatures::enabled() }
}

/// Rank adapters: discrete GPUs first, then integrated, virtual, CPU.
fn rank(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

async fn adapters(backend: Backend) -> Vec<wgpu::Adapter> {
    let instance = instance(backend);
    if cfg!(target_arch = "wasm32") {
        let opts = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        return instance.request_adapter(&opts).await.into_iter().collect();
    }
    let mut list = instance.enumerate_adapters(backend.backends()).await;
    list.sort_by_key(|a| rank(&a.get_info()));
    list
}

/// Every adapter reachable through `backend`, best first.
pub async fn list_adapters(backend: Backend) -> Vec<AdapterSummary> {
    adapters(backend)
        .await
        .iter()
        .enumerate()
        .map(|(i, a)| summarize(i, a))
        .collect()
}

/// The GPU context: device, queue, what the adapter offers, and the pipeline cache.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// The smallest and largest subgroup the adapter may run.
    pub subgroup_size: (u32, u32),
    /// The matmul build to run instead of the adapter's default (a tuning result, or the user's
    /// choice); see `MatmulVariant::for_recorder`.
    matmul: Mutex<Option<MatmulVariant>>,
    pub(super) pipelines: Mutex<HashMap<PipelineKey, CachedPipeline>>,
    /// Storage-buffer bytes alive on the device, and their peak.
    pub memory: Arc<MemoryCounter>,
    /// Bytes written with [`Gpu::write_streamed`] since the last flush.
    unflushed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.adapter.name)
            .finish()
    }
}

impl Gpu {
    /// Open the chosen adapter with its full limits and the optional features it offers.
    pub async fn new(options: &GpuOptions) -> Result<Gpu> {
        let list = adapters(options.backend).await;
        if list.is_empty() {
            return Err(GpuError::NoAdapter {
                backend: options.backend.to_string(),
                hint: options.backend.no_adapter_hint(),
            });
        }
        let index = options.adapter_index.unwrap_or(0);
        let adapter = list.get(index).ok_or(GpuError::BadAdapterIndex {
            index,
            count: list.len(),
        })?;
        let summary = summarize(index, adapter);
        let offered = adapter.features();
        let features = OPTIONAL_FEATURES
            .iter()
            .fold(wgpu::Features::empty(), |acc, f| {
                if offered.contains(*f) { acc | *f } else { acc }
            });
        let coop_f16 = offers_coop_f16(adapter);
        let (features, experimental) = if coop_f16 {
            (
                features | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
                experimental_features(),
            )
        } else {
            (features, wgpu::ExperimentalFeatures::disabled())
        };
        let limits = adapter.limits();
        let info = adapter.get_info();
        let desc = wgpu::DeviceDescriptor {
            label: Some("afinador"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) =
            adapter
                .request_device(&desc)
                .await
                .map_err(|e| GpuError::RequestDevice {
                    adapter: summary.name.clone(),
                    message: e.to_string(),
                })?;
        Ok(Gpu {
            device,
            queue,
            adapter: summary,
            features,
            limits,
            subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
            matmul: Mutex::new(None),
            pipelines: Mutex::new(HashMap::new()),
            memory: Arc::new(MemoryCounter::default()),
            unflushed: Default::default(),
        })
    }

    /// Hand queued buffer writes to the device and wait for them, so the host copies wgpu keeps
    /// for `write_buffer` until the next submission are freed. In the browser `writeBuffer`
    /// copies at once.
    pub fn flush_writes(&self) {
        self.unflushed
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.queue.submit([]);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// Write `data` into `buffer` at `offset` as part of a long stream of writes (a model
    /// upload: gigabytes with no other submission in between), flushing every 16 MiB so the
    /// host holds at most that much in wgpu's staging copies, not the whole stream.
    pub fn write_streamed<T: bytemuck::Pod>(
        &self,
        buffer: &super::GpuBuffer,
        offset: u64,
        data: &[T],
    ) {
        const FLUSH_BYTES: u64 = 16 << 20;
        buffer.write(self, offset, data);
        let bytes = std::mem::size_of_val(data) as u64;
        let pending = self
            .unflushed
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        if pending + bytes >= FLUSH_BYTES {
            self.flush_writes();
        }
    }

    /// Whether the adapter is a CPU implementation (lavapipe, SwiftShader, WARP).
    pub fn is_cpu(&self) -> bool {
        self.adapter.device_type == "Cpu"
    }

    /// Run matmuls as `variant` from now on (`None`: the adapter's default), e.g. the winner of
    /// `afinador bench tune` for this adapter. Portable recorders keep the portable tiles.
    pub fn set_matmul(&self, variant: Option<MatmulVariant>) {
        *self.matmul.lock().expect("matmul choice") = variant;
    }

    /// The matmul build set with [`set_matmul`](Self::set_matmul).
    pub fn matmul(&self) -> Option<MatmulVariant> {
        *self.matmul.lock().expect("matmul choice")
    }

    /// Whether shaders may use f16 (`SHADER_F16`).
    pub fn has_f16(&self) -> bool {
        self.has(wgpu::Features::SHADER_F16)
    }

    /// Whether passes can be timed on the GPU (`TIMESTAMP_QUERY`; a browser may round them).
    pub fn has_timestamps(&self) -> bool {
        self.has(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Whether the device was opened with `feature`.
    pub fn has(&self, feature: wgpu::Features) -> bool {
        self.features.contains(feature)
    }

    /// Run `f` inside validation and out-of-memory error scopes and turn what they catch into
    /// errors naming `context`.
    pub async fn checked<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = validation.pop().await;
        let oom = oom.pop().await;
        if let Some(e) = validation {
            return Err(GpuError::Validation {
                context: context.into(),
                message: e.to_string(),
            });
        }
        if let Some(e) = oom {
            return Err(GpuError::OutOfMemory {
                context: context.into(),
                message: e.to_string(),
            });
        }
        Ok(value)
    }
}
