//! Python string semantics the reference implementations rely on.
//!
//! `rouge-score`, `sacrebleu` and the SQuAD script are Python; their behaviour on unusual
//! whitespace or case depends on `str.isspace`, `str.split()` and `str.lower()`. The helpers
//! here reproduce those so that the metrics agree on every input, not only on ASCII.

/// Python's `str.isspace` for one character.
///
/// Rust's [`char::is_whitespace`] is the Unicode `White_Space` property; Python also counts the
/// four ASCII information separators U+001C..U+001F (bidirectional class B/S) as space.
pub(crate) fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` (no argument): split on runs of whitespace, drop empty pieces.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_is_space).filter(|piece| !piece.is_empty())
}

/// Python's `s.rstrip()` (no argument).
pub(crate) fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_is_space)
}

/// Python's `str.lower()`: full Unicode lowercase mapping (`İ` becomes `i` + U+0307, a final
/// `Σ` becomes `ς`). [`str::to_lowercase`] implements the same mapping.
pub(crate) fn py_lower(s: &str) -> String {
    s.to_lowercase()
}

/// A word character for Python's `re` module on `str` patterns (`\w`, and so `\b`):
/// `str.isalnum()` or `_`.
///
/// Approximated with [`char::is_alphanumeric`], which differs from Python only on combining
/// marks with the `Other_Alphabetic` property (Indic vowel signs and a few others), which Rust
/// counts as alphabetic and Python does not.
pub(crate) fn py_is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_python_whitespace() {
        // Python: "a\x1cb\x85c\u3000d\u200be  f".split() == ['a', 'b', 'c', 'd\u200be', 'f']
        let pieces: Vec<&str> = py_split("a\u{1c}b\u{85}c\u{3000}d\u{200b}e  f").collect();
        assert_eq!(pieces, ["a", "b", "c", "d\u{200b}e", "f"]);
        assert_eq!(py_split(" \t\n ").count(), 0);
    }

    #[test]
    fn rstrip_and_lower() {
        assert_eq!(py_rstrip("abc \u{a0}\n\u{1f}"), "abc");
        assert_eq!(py_rstrip("  abc"), "  abc");
        assert_eq!(py_lower("AÇÃO İ"), "ação i\u{307}");
        assert_eq!(py_lower("ΟΔΟΣ"), "οδο\u{3c2}");
    }

    #[test]
    fn word_characters() {
        assert!(py_is_word('á'));
        assert!(py_is_word('_'));
        assert!(py_is_word('7'));
        assert!(!py_is_word('-'));
        assert!(!py_is_word('\u{301}'));
    }
}
