use serde_json::json;

use crate::train::data::{DataError, Record, RecordFormat};

#[test]
fn detection_by_keys_with_priority() {
    let d = |v: serde_json::Value| RecordFormat::detect(&v);
    assert_eq!(d(json!({"text": "x"})), Some(RecordFormat::text()));
    assert_eq!(
        d(json!({"prompt": "p", "completion": "c", "text": "t"})),
        Some(RecordFormat::prompt_completion())
    );
    assert_eq!(
        d(json!({"instruction": "i", "input": "", "output": "o", "text": "t"})),
        Some(RecordFormat::Instruction)
    );
    assert_eq!(
        d(json!({"messages": [], "prompt": "p", "completion": "c"})),
        Some(RecordFormat::Messages)
    );
    assert_eq!(d(json!({"prompt": "p"})), None);
    assert_eq!(d(json!({"instruction": "i"})), None);
    assert_eq!(d(json!([1, 2])), None);
    assert_eq!(
        RecordFormat::undetected_reason(&json!({"question": "q", "answer": "a"})),
        "cannot tell the record format from its keys [answer, question]: expected `text`, \
         `prompt`+`completion`, `messages` or `instruction`+`output` (or pass --format / \
         --prompt-field / --completion-field)"
    );
    assert_eq!(
        RecordFormat::undetected_reason(&json!(3)),
        "the record is a number, not a JSON object"
    );
}

#[test]
fn parse_each_format() {
    let pc = RecordFormat::prompt_completion();
    assert_eq!(
        pc.parse(&json!({"prompt": "2+2=", "completion": " 4", "extra": 1})),
        Ok(Record::PromptCompletion {
            prompt: "2+2=".into(),
            completion: " 4".into()
        })
    );
    let custom = RecordFormat::PromptCompletion {
        prompt_field: "question".into(),
        completion_field: "answer".into(),
    };
    assert_eq!(
        custom.parse(&json!({"question": "Q?", "answer": "A."})),
        Ok(Record::PromptCompletion {
            prompt: "Q?".into(),
            completion: "A.".into()
        })
    );
    let ins = RecordFormat::Instruction;
    assert_eq!(
        ins.parse(&json!({"instruction": "Translate.", "input": "olá", "output": "hello"})),
        Ok(Record::PromptCompletion {
            prompt: "Translate.\n\nolá".into(),
            completion: "hello".into()
        })
    );
    for input in [json!(""), json!(null), json!("  ")] {
        assert_eq!(
            ins.parse(&json!({"instruction": "Say hi.", "input": input, "output": "hi"})),
            Ok(Record::PromptCompletion {
                prompt: "Say hi.".into(),
                completion: "hi".into()
            })
        );
    }
    assert_eq!(
        ins.parse(&json!({"instruction": "Say hi.", "output": "hi"})),
        Ok(Record::PromptCompletion {
            prompt: "Say hi.".into(),
            completion: "hi".into()
        })
    );
    let msgs = json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}
    ]});
    assert_eq!(
        RecordFormat::Messages.parse(&msgs),
        Ok(Record::Messages(vec![
            ("system".into(), "Be brief.".into()),
            ("user".into(), "Hi".into()),
            ("assistant".into(), "Hello".into()),
        ]))
    );
    assert_eq!(
        RecordFormat::text().parse(&json!({"text": "abc"})),
        Ok(Record::Text("abc".into()))
    );
}

#[test]
fn bad_fields_are_named() {
    let pc = RecordFormat::prompt_completion();
    let cases = [
        (
            pc.parse(&json!({"prompt": "p"})),
            "missing field `completion`",
        ),
        (
            pc.parse(&json!({"prompt": "p", "completion": 4})),
            "field `completion` must be a string, found a number",
        ),
        (
            pc.parse(&json!({"prompt": " \n", "completion": "c"})),
            "field `prompt` is empty",
        ),
        (
            pc.parse(&json!(["p", "c"])),
            "the record is an array, not a JSON object",
        ),
        (
            RecordFormat::text().parse(&json!({"text": null})),
            "field `text` must be a string, found null",
        ),
        (
            RecordFormat::Instruction
                .parse(&json!({"instruction": "i", "input": 3, "output": "o"})),
            "field `input` must be a string, found a number",
        ),
        (
            RecordFormat::Instruction.parse(&json!({"instruction": "i", "output": ""})),
            "field `output` is empty",
        ),
        (
            RecordFormat::Messages.parse(&json!({"messages": "hi"})),
            "field `messages` must be an array, found a string",
        ),
        (
            RecordFormat::Messages.parse(&json!({"messages": []})),
            "field `messages` is empty",
        ),
        (
            RecordFormat::Messages.parse(&json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": "bot", "content": "hello"}
            ]})),
            "messages[1].role `bot` is not one of system, user, assistant",
        ),
        (
            RecordFormat::Messages.parse(&json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": ""}
            ]})),
            "messages[1]: field `content` is empty",
        ),
        (
            RecordFormat::Messages.parse(&json!({"messages": [
                {"role": "user"},
            ]})),
            "messages[0]: missing field `content`",
        ),
        (
            RecordFormat::Messages.parse(&json!({"messages": [
                {"role": "user", "content": "hi"}, "assistant: hello"
            ]})),
            "messages[1] must be an object, found a string",
        ),
        (
            RecordFormat::Messages.parse(&json!({"messages": [
                {"role": "user", "content": "hi"}
            ]})),
            "field `messages` has no assistant turn to train on",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want.to_string()));
    }
}

#[test]
fn names_and_flags() {
    assert_eq!(
        "text".parse::<RecordFormat>().unwrap(),
        RecordFormat::text()
    );
    assert_eq!(
        "prompt_completion".parse::<RecordFormat>().unwrap(),
        RecordFormat::prompt_completion()
    );
    assert_eq!(
        "chat".parse::<RecordFormat>().unwrap(),
        RecordFormat::Messages
    );
    assert_eq!(
        "Alpaca".parse::<RecordFormat>().unwrap(),
        RecordFormat::Instruction
    );
    assert!(matches!(
        "csv".parse::<RecordFormat>(),
        Err(DataError::UnknownFormat(s)) if s == "csv"
    ));
    assert_eq!(RecordFormat::from_flags(None, None, None).unwrap(), None);
    assert_eq!(
        RecordFormat::from_flags(None, Some("question"), None).unwrap(),
        Some(RecordFormat::PromptCompletion {
            prompt_field: "question".into(),
            completion_field: "completion".into()
        })
    );
    assert_eq!(
        RecordFormat::from_flags(Some("prompt-completion"), None, Some("answer")).unwrap(),
        Some(RecordFormat::PromptCompletion {
            prompt_field: "prompt".into(),
            completion_field: "answer".into()
        })
    );
    assert_eq!(
        RecordFormat::from_flags(Some("messages"), None, None).unwrap(),
        Some(RecordFormat::Messages)
    );
    let err = RecordFormat::from_flags(Some("messages"), Some("q"), None).unwrap_err();
    assert!(err.to_string().contains("not `messages`"), "{err}");
    // The config form round-trips through serde.
    let f = RecordFormat::prompt_completion();
    let s = serde_json::to_string(&f).unwrap();
    assert_eq!(
        s,
        r#"{"kind":"prompt_completion","prompt_field":"prompt","completion_field":"completion"}"#
    );
    assert_eq!(serde_json::from_str::<RecordFormat>(&s).unwrap(), f);
}
