//! `afinador devices`: the adapters wgpu can reach.

use afinador_core::gpu::list_adapters;
use anyhow::Result;

use crate::common::{GpuArgs, print_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    gpu: GpuArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let backend = args.gpu.backend()?;
    let adapters = pollster::block_on(list_adapters(backend));
    if args.json {
        return print_json(&serde_json::json!({ "adapters": adapters }));
    }
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found for backend {backend}: {}",
            backend.no_adapter_hint()
        );
    }
    for a in adapters {
        println!(
            "[{}] {} ({}, {}, {})",
            a.index, a.name, a.backend, a.vendor, a.device_type
        );
        println!("    driver: {}", a.driver);
        println!(
            "    features: {}",
            if a.features.is_empty() {
                "-".into()
            } else {
                a.features.join(", ")
            }
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, {} invocations",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup
        );
    }
    Ok(())
}
