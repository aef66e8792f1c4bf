//! Multiple-choice answers: which letter A–E a generation chose.
//!
//! [`extract_choice`] tries these rules in order and returns the first letter found
//! (uppercase):
//!
//! 1. **Only a letter**: the whole text, stripped of spaces, markdown and punctuation, is one
//!    letter: `C`, `c`, `(C)`, `C)`, `C.`, `**C**`.
//! 2. **Leading letter**: the text (after leading `*`, `(`, `[`, quotes) starts with a letter
//!    followed by `)`, `]`, `.`, `:`, `*`, `-`, a line break or the end: `C) Porque ...`,
//!    `B. Porque ...`. B, C and D may also be followed by a space (`C porque ...`). A and E
//!    followed by a space are prose: the Portuguese article "a" / "A" and conjunction "e".
//! 3. **Answer marker**: `resposta`, `answer` or `gabarito`, followed within a few words by a
//!    letter, skipping filler words (`é`, `a`, `correta`, `letra`, `alternativa`, `is`, ...):
//!    `Resposta: C`, `Resposta correta: letra D`, `A resposta é a alternativa (B)`,
//!    `The answer is C`.
//! 4. **Choice marker**: `alternativa`, `letra`, `opção`, `option`, `choice`, `item`
//!    followed by a letter: `Alternativa C`, `alternativa c`, `Letra E`.
//! 5. **Marked letter anywhere**: `(C)`, `[C]`, `**C**`, or a standalone `C)`.
//! 6. **Bare capital**: a standalone capital B, C or D; or a capital A or E that does not open a
//!    sentence and is followed by punctuation or the end (`... é A.`).
//!
//! In rules 3 and 4 a lone `a` or `e` right after a filler word counts as a letter only when
//! punctuation, a line break or the end follows it, or it directly follows a choice keyword
//! (`letra e`); otherwise it is read as the article/conjunction and skipped. Prose such as
//! "a água é essencial" therefore yields `None`.
//!
//! The first match of the highest rule wins, so a text that names several letters
//! ("A está errada, a correta é C") may be scored by the first one.

use super::text::py_lower;

/// Letters a choice can have.
pub const CHOICES: [char; 5] = ['A', 'B', 'C', 'D', 'E'];

/// Words that introduce the final answer.
const ANSWER_KEYWORDS: &[&str] = &["resposta", "answer", "gabarito"];

/// Words that are directly followed by a choice letter.
const CHOICE_KEYWORDS: &[&str] = &[
    "alternativa",
    "letra",
    "opção",
    "opcao",
    "option",
    "choice",
    "item",
];

/// Words skipped between a marker and its letter.
const FILLERS: &[&str] = &[
    "é",
    "e",
    "eh",
    "a",
    "o",
    "the",
    "is",
    "correta",
    "correto",
    "certa",
    "certo",
    "correct",
    "final",
    "seria",
    "será",
    "sera",
    "letra",
    "alternativa",
    "opção",
    "opcao",
    "option",
    "choice",
    "item",
    "portanto",
    "logo",
    "my",
];

/// How many words after a marker are searched for its letter.
const MARKER_WINDOW: usize = 6;

/// Characters stripped around a bare answer (rule 1).
const WRAPPERS: &str = "*_()[]{}.:;,!?\"'`>#-–—";

/// One run of alphanumeric characters, as char indices into the text.
struct Word {
    start: usize,
    end: usize,
    lower: String,
}

/// The text as chars, with its words.
struct Scan {
    chars: Vec<char>,
    words: Vec<Word>,
}

impl Scan {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let mut words = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_alphanumeric() {
                let start = i;
                while i < chars.len() && chars[i].is_alphanumeric() {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                words.push(Word {
                    start,
                    end: i,
                    lower: py_lower(&word),
                });
            } else {
                i += 1;
            }
        }
        Self { chars, words }
    }

    /// The word's letter, uppercase, if the word is a single choice letter.
    fn letter(&self, word: &Word) -> Option<char> {
        if word.end - word.start != 1 {
            return None;
        }
        let upper = self.chars[word.start].to_ascii_uppercase();
        CHOICES.contains(&upper).then_some(upper)
    }

    /// The first non-space character after char index `i` (line breaks count as `'\n'`),
    /// `None` at the end of the text.
    fn next_after(&self, i: usize) -> Option<char> {
        self.chars[i..]
            .iter()
            .copied()
            .find(|&c| c == '\n' || !c.is_whitespace())
    }

    /// The last non-space character before char index `i`, `None` at the start.
    fn prev_before(&self, i: usize) -> Option<char> {
        self.chars[..i]
            .iter()
            .rev()
            .copied()
            .find(|&c| c == '\n' || !c.is_whitespace())
    }

    /// The word is followed by the end, a line break or closing punctuation.
    fn closed_after(&self, word: &Word) -> bool {
        self.next_after(word.end)
            .is_none_or(|c| "\n.,;:!?)]}*\"'".contains(c))
    }
}

/// The choice letter (A–E, uppercase) a generation picked, or `None`. See the module docs
/// for the rules.
pub fn extract_choice(text: &str) -> Option<char> {
    let scan = Scan::new(text);
    only_letter(text)
        .or_else(|| leading_letter(&scan))
        .or_else(|| after_marker(&scan, ANSWER_KEYWORDS))
        .or_else(|| after_marker(&scan, CHOICE_KEYWORDS))
        .or_else(|| marked_letter(&scan))
        .or_else(|| bare_capital(&scan))
}

/// Rule 1.
fn only_letter(text: &str) -> Option<char> {
    let core = text.trim_matches(|c: char| c.is_whitespace() || WRAPPERS.contains(c));
    let mut chars = core.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return None;
    };
    let upper = c.to_ascii_uppercase();
    CHOICES.contains(&upper).then_some(upper)
}

/// Rule 2.
fn leading_letter(scan: &Scan) -> Option<char> {
    let first = scan.words.first()?;
    let before_is_markup = scan.chars[..first.start]
        .iter()
        .all(|&c| c.is_whitespace() || "*_([{\"'`>#".contains(c));
    if !before_is_markup {
        return None;
    }
    let letter = scan.letter(first)?;
    let next = scan.chars.get(first.end).copied();
    let strong = next.is_none_or(|c| c == '\n' || ")]}.:*-–—".contains(c))
        || (next.is_some_and(char::is_whitespace)
            && scan.next_after(first.end).is_none_or(|c| c == '\n'));
    let spaced_bcd = matches!(letter, 'B' | 'C' | 'D') && next.is_some_and(char::is_whitespace);
    (strong || spaced_bcd).then_some(letter)
}

/// Rules 3 and 4: the first marker word (one of `keywords`) that leads to a letter.
fn after_marker(scan: &Scan, keywords: &[&str]) -> Option<char> {
    for (k, marker) in scan.words.iter().enumerate() {
        if !keywords.contains(&marker.lower.as_str()) {
            continue;
        }
        for m in k + 1..scan.words.len().min(k + 1 + MARKER_WINDOW) {
            let word = &scan.words[m];
            let after_choice_keyword = CHOICE_KEYWORDS.contains(&scan.words[m - 1].lower.as_str());
            if let Some(letter) = scan.letter(word) {
                let ambiguous = matches!(letter, 'A' | 'E');
                if !ambiguous || after_choice_keyword || scan.closed_after(word) {
                    return Some(letter);
                }
            }
            if !FILLERS.contains(&word.lower.as_str()) {
                break;
            }
        }
    }
    None
}

/// Rule 5.
fn marked_letter(scan: &Scan) -> Option<char> {
    scan.words.iter().find_map(|word| {
        let letter = scan.letter(word)?;
        let prev = word.start.checked_sub(1).map(|i| scan.chars[i]);
        let next = scan.chars.get(word.end).copied();
        // "(C)" and "C)" both end in ')'.
        let marked = next == Some(')')
            || matches!(
                (prev, next),
                (Some('['), Some(']')) | (Some('*'), Some('*'))
            );
        marked.then_some(letter)
    })
}

/// Rule 6.
fn bare_capital(scan: &Scan) -> Option<char> {
    scan.words.iter().find_map(|word| {
        let letter = scan.letter(word)?;
        if !scan.chars[word.start].is_ascii_uppercase() {
            return None;
        }
        let next = scan.chars.get(word.end).copied();
        if matches!(letter, 'B' | 'C' | 'D') {
            let clean = next.is_none_or(|c| c.is_whitespace() || ".,;:!?)]}*\"'".contains(c));
            return clean.then_some(letter);
        }
        let opens_sentence = scan
            .prev_before(word.start)
            .is_none_or(|c| ".!?\n:".contains(c));
        let closed = next.is_none_or(|c| ".;:!?)]}*\"'\n".contains(c));
        (!opens_sentence && closed).then_some(letter)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_forms() {
        let cases = [
            ("(C)", Some('C')),
            ("C)", Some('C')),
            ("C.", Some('C')),
            ("C", Some('C')),
            ("c", Some('C')),
            ("Alternativa C", Some('C')),
            ("alternativa c", Some('C')),
            ("Resposta: C", Some('C')),
            ("Resposta correta: letra D", Some('D')),
            ("A resposta é a alternativa (B)", Some('B')),
            ("**C**", Some('C')),
            ("Letra E", Some('E')),
            ("C) Porque a água ferve a 100 graus.", Some('C')),
            ("a água é essencial para a vida e a saúde", None),
            ("A água é essencial para a vida.", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(extract_choice(text), expected, "{text:?}");
        }
    }

    #[test]
    fn ambiguous_a_and_e() {
        let cases = [
            ("Resposta: a", Some('A')),
            ("A resposta é E.", Some('E')),
            ("A resposta correta é a letra a, pois ...", Some('A')),
            ("Resposta: A água evapora.", None),
            ("E, portanto, não sei.", None),
            ("E) Nenhuma das anteriores", Some('E')),
            ("A. Porque sim", Some('A')),
            ("Acho que é A.", Some('A')),
            ("Letra e porque o texto diz", Some('E')),
            ("The answer is (a)", Some('A')),
        ];
        for (text, expected) in cases {
            assert_eq!(extract_choice(text), expected, "{text:?}");
        }
    }

    #[test]
    fn priorities() {
        // The leading letter beats a later choice marker.
        assert_eq!(extract_choice("C) A alternativa A está errada."), Some('C'));
        // An answer marker beats an earlier choice marker.
        assert_eq!(
            extract_choice("A alternativa A está errada. Resposta: D"),
            Some('D')
        );
        // Marked letters in the middle of prose.
        assert_eq!(
            extract_choice("Pelo enunciado, fica com (d) como correta."),
            Some('D')
        );
        assert_eq!(
            extract_choice("Considerando tudo, **B** é a melhor"),
            Some('B')
        );
        // C++ is not an answer.
        assert_eq!(extract_choice("C++ é uma linguagem"), None);
    }
}
