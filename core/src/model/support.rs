//! Whether afinador can run a model file, decided from its header alone (metadata and tensor
//! table, no tensor data): the one check `afinador inspect` prints and the browser runs before it
//! uploads anything — as soon as a download's header has arrived.

use std::fmt::Display;

use crate::formats::{GgmlType, Gguf, TensorInfo};
use crate::gpu::Gpu;
use crate::kernels::packed_words_u64;
use crate::model::ModelConfig;

/// The device limits every weight buffer must fit ([`Support::fit`]): a buffer is bound whole,
/// so it must be at most both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
}

impl DeviceLimits {
    /// The limits of the device `gpu` opened.
    pub fn of(gpu: &Gpu) -> DeviceLimits {
        DeviceLimits {
            max_storage_buffer_binding_size: gpu.limits.max_storage_buffer_binding_size,
            max_buffer_size: gpu.limits.max_buffer_size,
        }
    }

    /// The largest buffer afinador may ask for, and the name of the limit that sets it.
    fn largest_buffer(&self) -> (u64, &'static str) {
        match self.max_storage_buffer_binding_size <= self.max_buffer_size {
            true => (
                self.max_storage_buffer_binding_size,
                "maxStorageBufferBindingSize",
            ),
            false => (self.max_buffer_size, "maxBufferSize"),
        }
    }
}

/// The largest single buffer the loader must create for `tensor`, whatever the device: one row
/// of a matrix (matrices are split by rows across bindings when larger than one, never within a
/// row: [`crate::kernels::GpuWeight::upload`]), or a whole vector, which is decoded to f32 and
/// never split. `None` for a type the kernels do not read (a problem [`Support::of`] names) or
/// rows that are not whole blocks (a problem the loader names).
pub fn smallest_buffer(tensor: &TensorInfo) -> Option<u64> {
    let format = tensor.ty.weight_format()?;
    if tensor.dims.len() < 2 {
        return Some((4 * tensor.n_elements).next_multiple_of(4).max(4));
    }
    let cols = tensor.dims[0];
    let block = format.block_values() as u64;
    if cols == 0 || !cols.is_multiple_of(block) {
        return None;
    }
    // In u64: a header may claim a row no wasm32 `usize` holds.
    let (q, s) = packed_words_u64(format, cols / block);
    Some((4 * q.max(s)).max(4))
}

/// What afinador cannot run in a model, and its config when the architecture and keys are known.
#[derive(Debug, Clone)]
pub struct Support {
    /// The model's config; `None` when the architecture or a key it needs is missing.
    pub config: Option<ModelConfig>,
    /// One line per problem: the architecture or a key, each tensor of a type the kernels do not
    /// read, the tokenizer. Empty when the model is supported.
    pub problems: Vec<String>,
}

impl Support {
    /// The architecture and its keys ([`ModelConfig::from_gguf`]) and every tensor's type.
    /// The tokenizer is checked apart ([`Support::tokenizer`]): the CLI may take it from a
    /// `tokenizer.json` instead of the GGUF vocabulary.
    pub fn of(gguf: &Gguf) -> Support {
        let mut problems = Vec::new();
        let config = ModelConfig::from_gguf(gguf)
            .map_err(|e| problems.push(e.to_string()))
            .ok();
        for t in gguf.tensors() {
            if !t.ty.is_supported() {
                problems.push(format!(
                    "tensor '{}' has type {}, which afinador cannot read yet (it reads {})",
                    t.name,
                    t.ty.name(),
                    GgmlType::supported_names()
                ));
            }
        }
        Support { config, problems }
    }

    /// Record a tokenizer that could not be built as a problem; the tokenizer otherwise.
    pub fn tokenizer<T, E: Display>(&mut self, built: Result<T, E>) -> Option<T> {
        built
            .map_err(|e| self.problems.push(format!("tokenizer: {e}")))
            .ok()
    }

    /// Check every tensor against the device's limits, from the header alone: a problem for each
    /// one whose smallest buffer ([`smallest_buffer`]: one row of a matrix, a whole vector) is
    /// larger than the device can bind, which no split can make run. Everything else fits,
    /// however large the tensor: it is split by rows. (Whether the whole model fits the GPU's
    /// memory cannot be known before trying: neither WebGPU nor wgpu reports it.)
    pub fn fit(&mut self, gguf: &Gguf, limits: &DeviceLimits) {
        const LISTED: usize = 3;
        let (largest, limit_name) = limits.largest_buffer();
        let too_wide: Vec<String> = gguf
            .tensors()
            .iter()
            .filter_map(|t| {
                smallest_buffer(t)
                    .filter(|&need| need > largest)
                    .map(|n| (t, n))
            })
            .map(|(t, need)| match t.dims.len() < 2 {
                true => format!(
                    "'{}' (a vector of {} values, {} as f32)",
                    t.name,
                    t.n_elements,
                    bytes(need)
                ),
                false => format!(
                    "'{}' (rows of {} values, {} each, {})",
                    t.name,
                    t.dims[0],
                    bytes(need),
                    t.ty.name()
                ),
            })
            .collect();
        if too_wide.is_empty() {
            return;
        }
        let subject = match too_wide.len() {
            1 => "a tensor is".to_string(),
            n => format!("{n} tensors are"),
        };
        let mut list = too_wide[..too_wide.len().min(LISTED)].join(", ");
        if too_wide.len() > LISTED {
            list += &format!(" and {} more", too_wide.len() - LISTED);
        }
        self.problems.push(format!(
            "{subject} wider than this GPU can bind ({limit_name}: {}): {list}. Weights are \
             split by rows across bindings, but never within a row or a vector: use a GPU or \
             browser with a larger {limit_name}, or a smaller model",
            bytes(largest)
        ));
    }

    /// No problem found.
    pub fn is_supported(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems as one message ("afinador cannot run this model: …"), the first `max` of
    /// them and how many more.
    pub fn message(&self, max: usize) -> String {
        let mut text = format!(
            "afinador cannot run this model: {}",
            self.problems
                .iter()
                .take(max)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        if self.problems.len() > max {
            text += &format!(" (and {} more)", self.problems.len() - max);
        }
        text
    }
}

/// "1.5 GiB", "144.0 MiB", "12.0 KiB", "100 bytes".
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tiny::{TinySpec, make_tiny_gguf};
    use crate::tokenizer::Tokenizer;

    #[test]
    fn a_tiny_model_is_supported_and_an_unknown_architecture_is_named() {
        let bytes = make_tiny_gguf(&TinySpec::default(), None).unwrap();
        let gguf = Gguf::parse(&bytes).unwrap();
        let mut support = Support::of(&gguf);
        assert!(support.is_supported(), "{:?}", support.problems);
        assert_eq!(
            support.config.as_ref().unwrap().n_layer,
            TinySpec::default().n_layer
        );
        // Without `tokenizer_from` the file has no vocabulary: a problem of its own.
        assert!(support.tokenizer(Tokenizer::from_gguf(&gguf)).is_none());
        assert!(
            support.problems[0].starts_with("tokenizer: "),
            "{:?}",
            support.problems
        );

        // The same file with its architecture renamed (same length, so the header still parses).
        let arch = TinySpec::default().arch.name.as_bytes();
        let at = bytes
            .windows(arch.len())
            .position(|w| w == arch)
            .expect("the architecture's name is in the header");
        let mut renamed = bytes.clone();
        renamed[at + arch.len() - 1] = b'#';
        let gguf = Gguf::parse(&renamed).unwrap();
        let support = Support::of(&gguf);
        assert!(!support.is_supported() && support.config.is_none());
        let message = support.message(3);
        assert!(
            message.starts_with("afinador cannot run this model: unsupported architecture"),
            "{message}"
        );
    }

    fn limits(binding: u64, buffer: u64) -> DeviceLimits {
        DeviceLimits {
            max_storage_buffer_binding_size: binding,
            max_buffer_size: buffer,
        }
    }

    /// Every tensor of the tiny model with its smallest buffer, the largest first.
    fn needs(gguf: &Gguf) -> Vec<(String, u64)> {
        let mut needs: Vec<(String, u64)> = gguf
            .tensors()
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    smallest_buffer(t).expect("a supported type"),
                )
            })
            .collect();
        needs.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        needs
    }

    #[test]
    fn only_a_row_or_a_vector_larger_than_a_binding_is_refused() {
        let bytes = make_tiny_gguf(&TinySpec::default(), None).unwrap();
        let gguf = Gguf::parse(&bytes).unwrap();
        let needs = needs(&gguf);
        let most = needs[0].1;
        // A device that binds exactly the widest row runs the model: every larger tensor is
        // split by rows (the tiny model's tensors are all larger than one row of theirs).
        let whole: u64 = gguf.tensors().iter().map(|t| t.n_bytes).max().unwrap();
        assert!(whole > most, "the test needs a tensor of several rows");
        let mut support = Support::of(&gguf);
        support.fit(&gguf, &limits(most, most));
        assert!(support.is_supported(), "{:?}", support.problems);
        support.fit(&gguf, &limits(128 << 20, 256 << 20));
        assert!(support.is_supported(), "{:?}", support.problems);

        // One word less: one problem, naming the tensors whose row (or vector) is that wide,
        // their size and the limit; the others are not named.
        let mut support = Support::of(&gguf);
        support.fit(&gguf, &limits(most - 4, u64::MAX));
        assert_eq!(support.problems.len(), 1, "{:?}", support.problems);
        let refused: Vec<&String> = needs
            .iter()
            .filter(|(_, n)| *n == most)
            .map(|(t, _)| t)
            .collect();
        let problem = &support.problems[0];
        let named = |t: &str| problem.contains(&format!("'{t}' ("));
        assert!(named(refused[0]), "{problem}");
        assert!(
            needs
                .iter()
                .filter(|(_, n)| *n < most)
                .all(|(t, _)| !named(t)),
            "{problem}"
        );
        let head = match refused.len() {
            1 => "a tensor is".to_string(),
            n => format!("{n} tensors are"),
        };
        assert!(
            problem.starts_with(&format!(
                "{head} wider than this GPU can bind (maxStorageBufferBindingSize: {}): ",
                bytes_text(most - 4)
            )) && problem.contains(&bytes_text(most))
                && problem.ends_with("or a smaller model"),
            "{problem}"
        );
        assert!(
            support
                .message(4)
                .starts_with("afinador cannot run this model: ")
        );

        // The smaller of the two limits is the one named.
        let mut support = Support::of(&gguf);
        support.fit(&gguf, &limits(u64::MAX, most - 4));
        assert!(
            support.problems[0].contains("(maxBufferSize: "),
            "{:?}",
            support.problems
        );
    }

    fn bytes_text(n: u64) -> String {
        super::bytes(n)
    }

    /// The check's figure is the buffer the loader really asks for: a weight of every format
    /// uploaded one row per part has parts of exactly [`smallest_buffer`] bytes at most.
    #[test]
    fn smallest_buffer_is_the_loaders_one_row_part() {
        use crate::kernels::{GpuWeight, WeightFormat, random_blocks, testing::gpu};
        use crate::util::Rng;
        let gpu = gpu();
        let mut rng = Rng::new(15);
        for &format in WeightFormat::ALL {
            let (rows, cols) = (3, 2 * format.k_multiple().max(format.block_values()));
            let raw = random_blocks(format, rows * cols, &mut rng);
            let ty = GgmlType::from(format);
            let info = TensorInfo {
                name: "w".into(),
                dims: vec![cols as u64, rows as u64],
                ty,
                offset: 0,
                n_elements: (rows * cols) as u64,
                n_bytes: raw.len() as u64,
            };
            let weight =
                GpuWeight::upload_in_parts(gpu, "w", format, &raw, (rows, cols), 1).unwrap();
            assert_eq!(weight.parts.len(), rows, "{format:?}: one row per part");
            let part = weight
                .parts
                .iter()
                .map(|p| p.q.size.max(p.s.size))
                .max()
                .unwrap();
            assert_eq!(smallest_buffer(&info), Some(part), "{format:?}");
        }
    }
}
