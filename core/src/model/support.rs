//! Whether afinador can run a model file, decided from its header alone (metadata and tensor
//! table, no tensor data): the one check `afinador inspect` prints and the browser runs before it
//! uploads anything — as soon as a download's header has arrived.

use std::fmt::Display;

use crate::formats::{GgmlType, Gguf};
use crate::model::ModelConfig;

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
}
