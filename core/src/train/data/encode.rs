//! Records → token ids with a loss mask, through [`TextEncoder`] (the model's tokenizer and chat
//! template, implemented by the caller).
//!
//! `loss_mask[i]` is true when predicting token `i` (from the tokens before it) is trained.
//! The first token of an example is never trained: nothing inside the example predicts it, and
//! in a packed sequence the token before it belongs to another document.
//!
//! * **text**: `[BOS] text EOS`, everything trained.
//! * **prompt-completion** (and instruction): `[BOS] prompt completion EOS`; prompt and completion
//!   are encoded separately and concatenated, so the boundary never falls inside a token; the
//!   completion and the EOS are trained, the prompt only with `train_on_prompt`.
//! * **messages**: the conversation rendered by the chat template, encoded as one text (the
//!   template writes the special tokens; BOS is prepended only when the tokenizer adds one and
//!   the template did not already write it). Assistant spans come from rendering prefixes: for
//!   assistant turn `i`, the span starts after `render(messages[..i], add_generation_prompt =
//!   true)` (so the `<|im_start|>assistant\n` header is not trained) and ends after
//!   `render(messages[..=i], false)` (so the end-of-turn token the template writes — `<|im_end|>`,
//!   `<|eot_id|>`, … — and whatever the template puts after it in that turn *is* trained: the
//!   model learns to stop). Positions are token counts of those renderings. The start must be
//!   exact: a turn whose `before` tokens are not a prefix of the whole conversation's tokens is
//!   left untrained. The end is the longest common prefix of the `after` tokens with the whole
//!   conversation's. So a template that renders prefixes differently (one that rewrites earlier
//!   assistant turns, or closes the conversation with an extra token) can only shrink or drop
//!   spans, never train prompt tokens; a record left with nothing to train is a bad record.
//!   No EOS is appended: the template's end-of-turn token plays that part.
//!   Cost: two renderings and encodings per assistant turn (quadratic in the number of turns,
//!   negligible for chat-sized conversations).

use super::format::Record;

/// The tokenizer and chat template the examples are built with.
pub trait TextEncoder {
    /// Token ids of `text`, without BOS/EOS added, with special-token text (`<|im_end|>`, …)
    /// mapped to the special ids (the chat template writes them as text).
    fn encode(&self, text: &str) -> Vec<u32>;
    /// The chat template applied to `(role, content)` turns; with `add_generation_prompt` the
    /// opening of an assistant turn is appended. The error is a human-readable reason.
    fn render_chat(
        &self,
        messages: &[(String, String)],
        add_generation_prompt: bool,
    ) -> Result<String, String>;
    fn bos(&self) -> Option<u32>;
    fn eos(&self) -> Option<u32>;
    /// Whether the model expects a BOS token at the start of every sequence.
    fn add_bos(&self) -> bool;
}

/// How examples are built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncodeOptions {
    /// Train on every token (prompt and template included), not only completions.
    pub train_on_prompt: bool,
}

/// One record as token ids and the loss mask over them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub ids: Vec<u32>,
    /// Per token: true when its prediction is trained (see the module docs).
    pub loss_mask: Vec<bool>,
    /// 1-based source line where the record starts.
    pub record_line: usize,
    /// 0-based record index in the source.
    pub record_index: usize,
}

impl Example {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens whose prediction is trained.
    pub fn trained_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
}

/// Builds the example of one record; the error is the bad record's reason.
pub fn encode_record<E: TextEncoder + ?Sized>(
    record: &Record,
    enc: &E,
    opts: EncodeOptions,
    record_line: usize,
    record_index: usize,
) -> Result<Example, String> {
    let (ids, mut loss_mask) = match record {
        Record::Text(text) => {
            let mut b = Builder::new(enc);
            b.push(enc.encode(text), true);
            b.push_eos(enc);
            (b.ids, b.mask)
        }
        Record::PromptCompletion { prompt, completion } => {
            let mut b = Builder::new(enc);
            b.push(enc.encode(prompt), opts.train_on_prompt);
            b.push(enc.encode(completion), true);
            b.push_eos(enc);
            (b.ids, b.mask)
        }
        Record::Messages(turns) => encode_messages(turns, enc, opts)?,
    };
    if let Some(first) = loss_mask.first_mut() {
        *first = false;
    }
    let ex = Example {
        ids,
        loss_mask,
        record_line,
        record_index,
    };
    if ex.trained_tokens() == 0 {
        return Err(format!(
            "no token to train on (the record encodes to {} tokens)",
            ex.len()
        ));
    }
    Ok(ex)
}

struct Builder {
    ids: Vec<u32>,
    mask: Vec<bool>,
}

impl Builder {
    fn new<E: TextEncoder + ?Sized>(enc: &E) -> Self {
        let mut b = Self {
            ids: Vec::new(),
            mask: Vec::new(),
        };
        if enc.add_bos()
            && let Some(bos) = enc.bos()
        {
            b.push(vec![bos], false);
        }
        b
    }

    fn push(&mut self, ids: Vec<u32>, trained: bool) {
        self.mask.resize(self.mask.len() + ids.len(), trained);
        self.ids.extend(ids);
    }

    fn push_eos<E: TextEncoder + ?Sized>(&mut self, enc: &E) {
        if let Some(eos) = enc.eos() {
            self.push(vec![eos], true);
        }
    }
}

fn encode_messages<E: TextEncoder + ?Sized>(
    turns: &[(String, String)],
    enc: &E,
    opts: EncodeOptions,
) -> Result<(Vec<u32>, Vec<bool>), String> {
    let render = |msgs: &[(String, String)], gen_prompt: bool| {
        enc.render_chat(msgs, gen_prompt)
            .map_err(|e| format!("chat template: {e}"))
    };
    let mut ids = enc.encode(&render(turns, false)?);
    let offset = match enc.bos() {
        Some(bos) if enc.add_bos() && ids.first() != Some(&bos) => {
            ids.insert(0, bos);
            1
        }
        _ => 0,
    };
    let full = &ids[offset..];
    let mut mask = vec![opts.train_on_prompt; ids.len()];
    if !opts.train_on_prompt {
        for (i, (role, _)) in turns.iter().enumerate() {
            if role != "assistant" {
                continue;
            }
            let before = enc.encode(&render(&turns[..i], true)?);
            if !full.starts_with(&before) {
                // Where the turn starts is unknown: leave it untrained.
                continue;
            }
            let after = enc.encode(&render(&turns[..=i], false)?);
            let (start, end) = (before.len(), common_prefix(full, &after));
            if end > start {
                mask[offset + start..offset + end].fill(true);
            }
        }
        if !mask.contains(&true) {
            return Err(
                "no assistant tokens found: the chat template renders the conversation's \
                 prefixes differently from the whole conversation"
                    .into(),
            );
        }
    }
    Ok((ids, mask))
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
