//! Chat templates: the Jinja in `tokenizer.chat_template`, rendered with minijinja the way HF
//! `apply_chat_template` renders it (`trim_blocks`, `lstrip_blocks`, Python string methods via
//! `minijinja_contrib::pycompat`, `raise_exception(msg)`, `bos_token` / `eos_token` variables).
//! Without a template, the turn format the vocabulary has tokens for is used: Gemma's
//! (`<start_of_turn>`) or else ChatML ([`ChatTemplate::builtin`]).

use std::collections::BTreeMap;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::{Result, Tokenizer, TokenizerError};

/// ChatML, the fallback when the GGUF has no `tokenizer.chat_template`.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Gemma's turn format (its published template without the BOS, which the tokenizer adds): a
/// system message opens the first user turn, the assistant's role is `model`. The fallback for
/// vocabularies with `<start_of_turn>` (Gemma base models ship without a template).
pub const GEMMA_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}\
{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}\
{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}\
{% for message in loop_messages %}\
{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}\
{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `"system"`, `"user"` or `"assistant"` (templates may accept others).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A parsed chat template, ready to render.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

const NAME: &str = "chat_template";

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {msg}"),
    ))
}

/// minijinja's error with its cause chain and, where known, the template line.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

impl ChatTemplate {
    /// Parses `template` (Jinja); `bos`/`eos` are the texts of the BOS/EOS tokens, exposed to it
    /// as `bos_token` / `eos_token`.
    pub fn new(template: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TokenizerError::TemplateSyntax(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, template.to_string())
            .map_err(|e| TokenizerError::TemplateSyntax(describe(&e)))?;
        Ok(Self {
            env,
            source: template.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// The built-in ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`).
    pub fn chatml(bos: &str, eos: &str) -> Self {
        match Self::new(CHATML_TEMPLATE, bos, eos) {
            Ok(t) => t,
            // CHATML_TEMPLATE is a constant that the tests parse.
            Err(e) => unreachable!("built-in ChatML template: {e}"),
        }
    }

    /// The model's template, or the built-in one its vocabulary suits ([`Self::builtin`]).
    /// BOS/EOS texts come from `tok`.
    pub fn for_model(template: Option<&str>, tok: &Tokenizer) -> Result<Self> {
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        let (bos, eos) = (text(tok.bos_id()), text(tok.eos_id()));
        match template {
            Some(t) if !t.trim().is_empty() => Self::new(t, &bos, &eos),
            _ => Self::new(Self::builtin(tok).1, &bos, &eos),
        }
    }

    /// The built-in template for a model without one: Gemma's turns when the vocabulary has
    /// `<start_of_turn>`, ChatML otherwise. Returns (name, Jinja source).
    pub fn builtin(tok: &Tokenizer) -> (&'static str, &'static str) {
        match tok.token_id("<start_of_turn>") {
            Some(_) => ("Gemma's turn format", GEMMA_TEMPLATE),
            None => ("ChatML", CHATML_TEMPLATE),
        }
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the template appends the opening of an
    /// assistant turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut map = BTreeMap::new();
                map.insert("role".to_string(), Value::from(m.role.as_str()));
                map.insert("content".to_string(), Value::from(m.content.as_str()));
                Value::from(map)
            })
            .collect();
        let mut ctx = BTreeMap::new();
        ctx.insert("messages".to_string(), Value::from(msgs));
        ctx.insert(
            "add_generation_prompt".to_string(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("bos_token".to_string(), Value::from(self.bos.as_str()));
        ctx.insert("eos_token".to_string(), Value::from(self.eos.as_str()));
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| TokenizerError::TemplateRender(describe(&e)))?;
        tmpl.render(Value::from(ctx))
            .map_err(|e| TokenizerError::TemplateRender(describe(&e)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Expected strings are written out by hand from what transformers' `apply_chat_template` renders.

    use super::*;

    /// `tokenizer.chat_template` of SmolLM2-135M-Instruct (`tokenizer::tests` checks it against the GGUF).
    pub(crate) const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_renders_like_transformers() {
        let t = ChatTemplate::new(SMOLLM2_TEMPLATE, "<|im_start|>", "<|im_end|>").expect("parse");
        let with_system = [
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi!"),
            ChatMessage::assistant("Hello."),
        ];
        assert_eq!(
            t.render(&with_system, false).expect("render"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
        );
        assert_eq!(
            t.render(&with_system[..2], true).expect("render"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
        let no_system = [ChatMessage::user("What is 2+2?")];
        assert_eq!(
            t.render(&no_system, true).expect("render"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&no_system, false).expect("render"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        );
    }

    #[test]
    fn gemma_turns_render_like_gemmas_template() {
        // As transformers renders google/gemma-3-270m-it's template (minus the leading <bos>).
        let t = ChatTemplate::new(GEMMA_TEMPLATE, "<bos>", "<eos>").expect("parse");
        let chat = [
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi! "),
            ChatMessage::assistant("Hello."),
        ];
        assert_eq!(
            t.render(&chat, false).expect("render"),
            "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        );
        assert_eq!(
            t.render(&chat[1..2], true).expect("render"),
            "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn template_raise_exception() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with a user message') }}{% endif %}{{ messages[0]['content'] }}";
        let t = ChatTemplate::new(src, "", "").expect("parse");
        assert_eq!(
            t.render(&[ChatMessage::user("ok")], false).expect("render"),
            "ok"
        );
        let err = t
            .render(&[ChatMessage::assistant("no")], false)
            .expect_err("raises")
            .to_string();
        assert!(err.starts_with("chat template failed to render"), "{err}");
        assert!(
            err.contains("Conversation must start with a user message"),
            "{err}"
        );
    }

    #[test]
    fn template_python_methods_bos_eos_and_block_trimming() {
        // HF renders with trim_blocks + lstrip_blocks: the block lines leave no blank lines
        let src = "{{ bos_token }}\n{% for m in messages %}\n    {% if m.role == 'user' %}\n{{ m.role.upper() }}: {{ m.content.strip() }}\n    {% else %}\n{{ m.content.split(',')[0] }}{{ eos_token }}\n    {% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>").expect("parse");
        let out = t
            .render(
                &[
                    ChatMessage::user("  hi  "),
                    ChatMessage::assistant("yes, sure"),
                ],
                false,
            )
            .expect("render");
        assert_eq!(out, "<s>\nUSER: hi\nyes</s>\n");
        let err = ChatTemplate::new("{% for %}", "", "")
            .expect_err("bad syntax")
            .to_string();
        assert!(err.starts_with("chat template does not parse"), "{err}");
    }

    #[test]
    fn template_jinja_features_used_by_hf_templates() {
        // namespace(), tojson, loop.last, `is defined`, string slicing: as in Llama 3 / Qwen templates
        let src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}\
    {{ m.content[:2] | tojson }}{% if not loop.last %},{% endif %}{% endfor %}\
    {% if tools is defined %}T{% endif %}|{{ ns.n }}";
        let t = ChatTemplate::new(src, "", "").expect("parse");
        let out = t
            .render(
                &[ChatMessage::user("hello"), ChatMessage::assistant("x\"y")],
                false,
            )
            .expect("render");
        assert_eq!(out, "\"he\",\"x\\\"\"|2");
    }
}
