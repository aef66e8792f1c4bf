//! Streaming a data file through the core's data pipeline, one chunk at a time.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use afinador_core::train::data::{DataConfig, DataPipeline, DataStats, Sequence, TextEncoder};
use anyhow::{Context, Result};

const CHUNK: usize = 1 << 20;

/// Every training (and validation) sequence of one pass over `path`, delivered to `sink` as it
/// is produced; the file is never held in memory whole.
pub fn stream(
    path: &Path,
    config: &DataConfig,
    epoch: u64,
    enc: &dyn TextEncoder,
    mut sink: impl FnMut(Sequence, bool) -> Result<bool>,
) -> Result<DataStats> {
    let mut file =
        File::open(path).with_context(|| format!("opening the data file {}", path.display()))?;
    let mut pipeline = DataPipeline::new(config, epoch)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        let batches = pipeline
            .push(&buf[..n], enc)
            .with_context(|| format!("in {}", path.display()))?;
        for s in batches.val {
            sink(s, true)?;
        }
        for s in batches.train {
            if !sink(s, false)? {
                return Ok(pipeline.stats());
            }
        }
    }
    let (batches, stats) = pipeline
        .finish(enc)
        .with_context(|| format!("in {}", path.display()))?;
    for s in batches.val {
        sink(s, true)?;
    }
    for s in batches.train {
        if !sink(s, false)? {
            break;
        }
    }
    Ok(stats)
}
