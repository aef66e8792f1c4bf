//! The data pipeline's [`TextEncoder`] over the model's tokenizer and chat template.

use super::data::TextEncoder;
use crate::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

/// Encodes training text with a model's tokenizer (special tokens in the text become their ids;
/// BOS/EOS are left to the pipeline) and renders conversations with its chat template.
#[derive(Debug)]
pub struct ModelTextEncoder<'t> {
    pub tokenizer: &'t Tokenizer,
    pub template: ChatTemplate,
}

impl<'t> ModelTextEncoder<'t> {
    /// Use `template` (the GGUF's `tokenizer.chat_template`), or ChatML when there is none.
    pub fn new(
        tokenizer: &'t Tokenizer,
        template: Option<&str>,
    ) -> Result<Self, crate::tokenizer::TokenizerError> {
        Ok(ModelTextEncoder {
            tokenizer,
            template: ChatTemplate::for_model(template, tokenizer)?,
        })
    }
}

impl TextEncoder for ModelTextEncoder<'_> {
    fn encode(&self, text: &str) -> Vec<u32> {
        // Encoding without special additions cannot fail for the BPE and SentencePiece models
        // afinador builds; an error would mean a broken vocabulary, caught when it was loaded.
        self.tokenizer.encode(text, false).unwrap_or_default()
    }

    fn render_chat(
        &self,
        messages: &[(String, String)],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        let messages: Vec<ChatMessage> = messages
            .iter()
            .map(|(r, c)| ChatMessage::new(r.clone(), c.clone()))
            .collect();
        self.template
            .render(&messages, add_generation_prompt)
            .map_err(|e| e.to_string())
    }

    fn bos(&self) -> Option<u32> {
        self.tokenizer.bos_id()
    }

    fn eos(&self) -> Option<u32> {
        self.tokenizer.eos_id()
    }

    fn add_bos(&self) -> bool {
        self.tokenizer.add_bos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Gguf;
    use crate::train::data::{DataConfig, DataPipeline, IGNORE};

    /// The ENEM example through the real SmolLM2 tokenizer and ChatML template: only the
    /// assistant's answer (and the end-of-turn token that closes it) is trained.
    #[test]
    fn enem_messages_train_only_the_assistant_answer() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let model = format!("{root}/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let bytes = std::fs::read(&model)
            .unwrap_or_else(|e| panic!("{model}: {e} (run scripts/fetch-model)"));
        let gguf = Gguf::parse(&bytes).unwrap();
        let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
        let template = gguf.metadata().get_str("tokenizer.chat_template").ok();
        let enc = ModelTextEncoder::new(&tokenizer, template).unwrap();
        let data = std::fs::read(format!("{root}/examples/enem/train.jsonl")).unwrap();
        let head: Vec<u8> = data
            .split(|&b| b == b'\n')
            .take(20)
            .collect::<Vec<_>>()
            .join(&b'\n');
        let config = DataConfig {
            seq_len: 512,
            shuffle_buffer: 0,
            pad_id: 2,
            ..Default::default()
        };
        let mut pipeline = DataPipeline::new(&config, 0).unwrap();
        let mut seqs = pipeline.push(&head, &enc).unwrap().train;
        let (rest, stats) = pipeline.finish(&enc).unwrap();
        seqs.extend(rest.train);
        assert_eq!(stats.records, 20);
        assert_eq!(stats.bad_records, 0);
        let mut answers = 0;
        for seq in &seqs {
            // Runs of trained targets decode to "Resposta: X. …<|im_end|>".
            let mut run = Vec::new();
            for &t in seq.targets.iter().chain([IGNORE].iter()) {
                if t == IGNORE {
                    if !run.is_empty() {
                        let text = tokenizer.decode(&run);
                        assert!(text.starts_with("Resposta: "), "trained span {text:?}");
                        assert!(
                            text.trim_end().ends_with("<|im_end|>"),
                            "trained span {text:?}"
                        );
                        answers += 1;
                        run.clear();
                    }
                } else {
                    run.push(t);
                }
            }
        }
        assert_eq!(answers, 20, "one trained answer per record");
    }
}
