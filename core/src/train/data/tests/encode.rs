use super::fake::{BOS, EOS_TEXT, Fake, IM_END, IM_START, Template, decode};
use crate::train::data::{EncodeOptions, Example, Record, TextEncoder, encode_record};

const COMPLETION_ONLY: EncodeOptions = EncodeOptions {
    train_on_prompt: false,
};
const ALL: EncodeOptions = EncodeOptions {
    train_on_prompt: true,
};

fn ids(s: &str) -> Vec<u32> {
    s.chars().map(|c| c as u32).collect()
}

/// The trained tokens, as text, one string per contiguous run.
fn trained_spans(ex: &Example) -> Vec<String> {
    let mut spans = Vec::new();
    let mut cur: Vec<u32> = Vec::new();
    for (&id, &m) in ex.ids.iter().zip(&ex.loss_mask) {
        if m {
            cur.push(id);
        } else if !cur.is_empty() {
            spans.push(decode(&std::mem::take(&mut cur)));
        }
    }
    if !cur.is_empty() {
        spans.push(decode(&cur));
    }
    spans
}

fn conversation() -> Record {
    Record::Messages(
        [
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello"),
            ("user", "Bye?"),
            ("assistant", "Bye"),
        ]
        .iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect(),
    )
}

#[test]
fn text_trains_everything_but_the_first_token() {
    let rec = Record::Text("hi".into());
    let ex = encode_record(&rec, &Fake::with_bos(), COMPLETION_ONLY, 7, 3).unwrap();
    assert_eq!(ex.ids, [BOS, 'h' as u32, 'i' as u32, EOS_TEXT]);
    assert_eq!(ex.loss_mask, [false, true, true, true]);
    assert_eq!((ex.record_line, ex.record_index), (7, 3));
    let ex = encode_record(&rec, &Fake::chatml(), COMPLETION_ONLY, 1, 0).unwrap();
    assert_eq!(ex.ids, [ids("hi"), vec![IM_END]].concat());
    assert_eq!(ex.loss_mask, [false, true, true]);
}

#[test]
fn prompt_completion_masks_the_prompt() {
    let rec = Record::PromptCompletion {
        prompt: "Q: 2+2?".into(),
        completion: " 4".into(),
    };
    let enc = Fake::with_bos();
    let ex = encode_record(&rec, &enc, COMPLETION_ONLY, 1, 0).unwrap();
    assert_eq!(
        ex.ids,
        [vec![BOS], ids("Q: 2+2? 4"), vec![EOS_TEXT]].concat()
    );
    assert_eq!(trained_spans(&ex), [" 4</s>"]);
    assert_eq!(ex.trained_tokens(), 3);
    let ex = encode_record(&rec, &enc, ALL, 1, 0).unwrap();
    assert_eq!(trained_spans(&ex), ["Q: 2+2? 4</s>"]);
    assert!(!ex.loss_mask[0]);
}

#[test]
fn messages_train_assistant_turns_and_their_end_of_turn() {
    let enc = Fake::chatml();
    let ex = encode_record(&conversation(), &enc, COMPLETION_ONLY, 1, 0).unwrap();
    let Record::Messages(turns) = conversation() else {
        unreachable!()
    };
    assert_eq!(decode(&ex.ids), enc.render_chat(&turns, false).unwrap());
    assert_eq!(ex.ids[0], IM_START);
    assert_eq!(trained_spans(&ex), ["Hello<|im_end|>\n", "Bye<|im_end|>\n"]);
    // The header of each assistant turn is not trained.
    let text = decode(&ex.ids);
    assert!(text.contains("<|im_start|>assistant\nHello"));

    let ex = encode_record(&conversation(), &enc, ALL, 1, 0).unwrap();
    assert_eq!(ex.trained_tokens(), ex.len() - 1);
}

#[test]
fn messages_bos_is_added_once() {
    // The tokenizer adds BOS, the template does not write it: prepended.
    let enc = Fake::with_bos();
    let ex = encode_record(&conversation(), &enc, COMPLETION_ONLY, 1, 0).unwrap();
    assert_eq!(&ex.ids[..2], [BOS, IM_START]);
    assert_eq!(trained_spans(&ex), ["Hello<|im_end|>\n", "Bye<|im_end|>\n"]);
    // The template writes BOS itself: not doubled, spans unchanged.
    let enc = Fake {
        template: Template::ChatMlWithBos,
        ..Fake::with_bos()
    };
    let ex = encode_record(&conversation(), &enc, COMPLETION_ONLY, 1, 0).unwrap();
    assert_eq!(&ex.ids[..2], [BOS, IM_START]);
    assert_eq!(trained_spans(&ex), ["Hello<|im_end|>\n", "Bye<|im_end|>\n"]);
}

#[test]
fn messages_starting_with_the_assistant() {
    let rec = Record::Messages(vec![
        ("assistant".into(), "Welcome!".into()),
        ("user".into(), "Thanks".into()),
    ]);
    let ex = encode_record(&rec, &Fake::chatml(), COMPLETION_ONLY, 1, 0).unwrap();
    assert_eq!(trained_spans(&ex), ["Welcome!<|im_end|>\n"]);
}

#[test]
fn template_problems_are_bad_records() {
    let unstable = Fake {
        template: Template::Unstable,
        ..Fake::chatml()
    };
    let err = encode_record(&conversation(), &unstable, COMPLETION_ONLY, 1, 0).unwrap_err();
    assert!(err.starts_with("no assistant tokens found"), "{err}");
    // Training on everything needs no spans.
    assert!(encode_record(&conversation(), &unstable, ALL, 1, 0).is_ok());

    // A template that closes the conversation with an extra token: spans end where the
    // renderings agree, the final token is trained with the last turn.
    let trailing = Fake {
        template: Template::TrailingEos,
        ..Fake::chatml()
    };
    let ex = encode_record(&conversation(), &trailing, COMPLETION_ONLY, 1, 0).unwrap();
    assert_eq!(
        trained_spans(&ex),
        ["Hello<|im_end|>\n", "Bye<|im_end|>\n</s>"]
    );

    // A template that rewrites earlier assistant turns: only the turn rendered the same way in
    // the whole conversation is trained, and no prompt token ever is.
    let strip = Fake {
        template: Template::StripEarlier,
        ..Fake::chatml()
    };
    let ex = encode_record(&conversation(), &strip, COMPLETION_ONLY, 1, 0).unwrap();
    assert_eq!(trained_spans(&ex), ["Bye<|im_end|>\n"]);

    let broken = Fake {
        template: Template::Broken,
        ..Fake::chatml()
    };
    assert_eq!(
        encode_record(&conversation(), &broken, COMPLETION_ONLY, 1, 0).unwrap_err(),
        "chat template: raise_exception: roles must alternate"
    );
}

#[test]
fn nothing_to_train_is_a_bad_record() {
    let enc = Fake {
        eos: None,
        ..Fake::chatml()
    };
    assert_eq!(
        encode_record(&Record::Text("x".into()), &enc, COMPLETION_ONLY, 1, 0).unwrap_err(),
        "no token to train on (the record encodes to 1 tokens)"
    );
}
