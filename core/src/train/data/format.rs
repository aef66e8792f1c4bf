//! Record formats: how a JSON record becomes text to train on.
//!
//! | format | fields | becomes |
//! |---|---|---|
//! | `text` | `text` (or any field) | [`Record::Text`] |
//! | `prompt-completion` | `prompt`, `completion` (or any two fields) | [`Record::PromptCompletion`] |
//! | `messages` | `messages`: `[{role, content}, …]` | [`Record::Messages`] |
//! | `instruction` | `instruction`, optional `input`, `output` (Alpaca) | [`Record::PromptCompletion`] with prompt = instruction, plus `"\n\n" + input` when input is non-empty |
//!
//! Auto-detection looks at the keys of the first good record, in this order: `messages` →
//! messages; `instruction` and `output` → instruction; `prompt` and `completion` →
//! prompt-completion; `text` → text. Every required field must be a non-empty (not only
//! whitespace) string; roles must be `system`, `user` or `assistant`, and a conversation needs at
//! least one assistant turn. Anything else makes the record a bad record whose reason names the
//! field.

use serde_json::Value;

use super::DataError;

/// The roles a `messages` record may use.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// How records are interpreted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordFormat {
    /// Plain text in `field`; every token is trained.
    Text { field: String },
    /// A prompt and its completion; only the completion is trained by default.
    PromptCompletion {
        prompt_field: String,
        completion_field: String,
    },
    /// A conversation in `messages`, rendered with the model's chat template; only assistant
    /// turns are trained by default.
    Messages,
    /// Alpaca style `instruction`, optional `input`, `output`.
    Instruction,
}

/// One record, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Text(String),
    PromptCompletion {
        prompt: String,
        completion: String,
    },
    /// `(role, content)` turns.
    Messages(Vec<(String, String)>),
}

impl RecordFormat {
    /// `text` in field `"text"`.
    pub fn text() -> Self {
        Self::Text {
            field: "text".into(),
        }
    }

    /// Prompt-completion in fields `"prompt"` and `"completion"`.
    pub fn prompt_completion() -> Self {
        Self::PromptCompletion {
            prompt_field: "prompt".into(),
            completion_field: "completion".into(),
        }
    }

    /// The format named by `--format` (`text`, `prompt-completion` (also `completion`),
    /// `messages` (also `chat`), `instruction` (also `alpaca`)) with the field names of
    /// `--prompt-field` / `--completion-field`; `None` for auto-detection. Naming a field implies
    /// prompt-completion.
    pub fn from_flags(
        format: Option<&str>,
        prompt_field: Option<&str>,
        completion_field: Option<&str>,
    ) -> Result<Option<Self>, DataError> {
        let fields = prompt_field.is_some() || completion_field.is_some();
        let named = match format {
            None => None,
            Some(name) => Some(name.parse::<RecordFormat>()?),
        };
        match named {
            None if !fields => Ok(None),
            None | Some(Self::PromptCompletion { .. }) => Ok(Some(Self::PromptCompletion {
                prompt_field: prompt_field.unwrap_or("prompt").into(),
                completion_field: completion_field.unwrap_or("completion").into(),
            })),
            Some(f) if fields => Err(DataError::Config(format!(
                "--prompt-field/--completion-field apply to the prompt-completion format, not `{}`",
                f.name()
            ))),
            Some(f) => Ok(Some(f)),
        }
    }

    /// The `--format` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::PromptCompletion { .. } => "prompt-completion",
            Self::Messages => "messages",
            Self::Instruction => "instruction",
        }
    }

    /// The format a record's keys suggest (see the module docs), or `None`.
    pub fn detect(value: &Value) -> Option<Self> {
        let obj = value.as_object()?;
        if obj.contains_key("messages") {
            Some(Self::Messages)
        } else if obj.contains_key("instruction") && obj.contains_key("output") {
            Some(Self::Instruction)
        } else if obj.contains_key("prompt") && obj.contains_key("completion") {
            Some(Self::prompt_completion())
        } else if obj.contains_key("text") {
            Some(Self::text())
        } else {
            None
        }
    }

    /// Why [`RecordFormat::detect`] found nothing, for the bad record it makes.
    pub fn undetected_reason(value: &Value) -> String {
        match value.as_object() {
            None => format!("the record is {}, not a JSON object", kind_of(value)),
            Some(obj) => {
                let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                keys.sort_unstable();
                format!(
                    "cannot tell the record format from its keys [{}]: expected `text`, \
                     `prompt`+`completion`, `messages` or `instruction`+`output` \
                     (or pass --format / --prompt-field / --completion-field)",
                    keys.join(", ")
                )
            }
        }
    }

    /// Interprets one record; the error is the bad record's reason.
    pub fn parse(&self, value: &Value) -> Result<Record, String> {
        if !value.is_object() {
            return Err(format!(
                "the record is {}, not a JSON object",
                kind_of(value)
            ));
        }
        match self {
            Self::Text { field } => Ok(Record::Text(required(value, field)?.to_string())),
            Self::PromptCompletion {
                prompt_field,
                completion_field,
            } => Ok(Record::PromptCompletion {
                prompt: required(value, prompt_field)?.to_string(),
                completion: required(value, completion_field)?.to_string(),
            }),
            Self::Instruction => {
                let instruction = required(value, "instruction")?;
                let input = match value.get("input") {
                    None | Some(Value::Null) => "",
                    Some(Value::String(s)) => s.as_str(),
                    Some(v) => {
                        return Err(format!(
                            "field `input` must be a string, found {}",
                            kind_of(v)
                        ));
                    }
                };
                let output = required(value, "output")?;
                let prompt = if input.trim().is_empty() {
                    instruction.to_string()
                } else {
                    format!("{instruction}\n\n{input}")
                };
                Ok(Record::PromptCompletion {
                    prompt,
                    completion: output.to_string(),
                })
            }
            Self::Messages => parse_messages(value),
        }
    }
}

impl std::str::FromStr for RecordFormat {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "text" => Ok(Self::text()),
            "prompt-completion" | "completion" => Ok(Self::prompt_completion()),
            "messages" | "chat" => Ok(Self::Messages),
            "instruction" | "alpaca" => Ok(Self::Instruction),
            _ => Err(DataError::UnknownFormat(s.to_string())),
        }
    }
}

fn parse_messages(value: &Value) -> Result<Record, String> {
    let msgs = match value.get("messages") {
        None => return Err("missing field `messages`".into()),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(format!(
                "field `messages` must be an array, found {}",
                kind_of(v)
            ));
        }
    };
    if msgs.is_empty() {
        return Err("field `messages` is empty".into());
    }
    let mut turns = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        if !m.is_object() {
            return Err(format!(
                "messages[{i}] must be an object, found {}",
                kind_of(m)
            ));
        }
        let role = required(m, "role").map_err(|e| format!("messages[{i}]: {e}"))?;
        if !ROLES.contains(&role) {
            return Err(format!(
                "messages[{i}].role `{role}` is not one of {}",
                ROLES.join(", ")
            ));
        }
        let content = required(m, "content").map_err(|e| format!("messages[{i}]: {e}"))?;
        turns.push((role.to_string(), content.to_string()));
    }
    if !turns.iter().any(|(r, _)| r == "assistant") {
        return Err("field `messages` has no assistant turn to train on".into());
    }
    Ok(Record::Messages(turns))
}

/// A required, non-empty string field.
fn required<'a>(value: &'a Value, field: &str) -> Result<&'a str, String> {
    match value.get(field) {
        None => Err(format!("missing field `{field}`")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("field `{field}` is empty")),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(format!(
            "field `{field}` must be a string, found {}",
            kind_of(v)
        )),
    }
}

/// `a number`, `null`, … for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
