//! A tiny C-like preprocessor for WGSL: `#ifdef`, `#ifndef`, `#else`, `#endif`, `#define`,
//! `#include "file"`. Flags only: it never substitutes text, so shapes cannot leak into shaders.

use std::collections::BTreeSet;

/// A malformed directive, a missing include or an unbalanced block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreprocessError {
    #[error("{file}:{line}: unknown directive '{directive}'")]
    UnknownDirective {
        file: String,
        line: usize,
        directive: String,
    },
    #[error("{file}:{line}: '{directive}' needs a name")]
    MissingName {
        file: String,
        line: usize,
        directive: String,
    },
    #[error("{file}:{line}: #else or #endif without #ifdef")]
    Unbalanced { file: String, line: usize },
    #[error("{file}: #ifdef opened on line {line} is never closed")]
    Unclosed { file: String, line: usize },
    #[error("{file}:{line}: include '{name}' not found")]
    MissingInclude {
        file: String,
        line: usize,
        name: String,
    },
    #[error("{file}:{line}: include '{name}' is recursive")]
    RecursiveInclude {
        file: String,
        line: usize,
        name: String,
    },
}

/// Preprocess `file` (looked up through `lookup`) with the given flags defined.
pub fn preprocess(
    file: &str,
    defines: &[&str],
    lookup: &dyn Fn(&str) -> Option<&'static str>,
) -> Result<String, PreprocessError> {
    let mut state = State {
        defines: defines.iter().map(|d| d.to_string()).collect(),
        stack: Vec::new(),
        out: String::new(),
    };
    let text = lookup(file).ok_or_else(|| PreprocessError::MissingInclude {
        file: "<root>".into(),
        line: 0,
        name: file.into(),
    })?;
    state.run(file, text, lookup)?;
    Ok(state.out)
}

struct State {
    defines: BTreeSet<String>,
    stack: Vec<String>,
    out: String,
}

/// One open `#ifdef` block: whether its current branch is emitted.
struct Block {
    line: usize,
    parent_active: bool,
    condition: bool,
    in_else: bool,
}

impl Block {
    fn active(&self) -> bool {
        self.parent_active && (self.condition != self.in_else)
    }
}

impl State {
    fn run(
        &mut self,
        file: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<&'static str>,
    ) -> Result<(), PreprocessError> {
        if self.stack.iter().any(|f| f == file) {
            return Err(PreprocessError::RecursiveInclude {
                file: self.stack.last().cloned().unwrap_or_default(),
                line: 0,
                name: file.into(),
            });
        }
        self.stack.push(file.to_string());
        let mut blocks: Vec<Block> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let active = blocks.last().is_none_or(Block::active);
            let trimmed = raw.trim_start();
            let Some(directive) = trimmed.strip_prefix('#') else {
                if active {
                    self.out.push_str(raw);
                    self.out.push('\n');
                }
                continue;
            };
            let mut words = directive.split_whitespace();
            let word = words.next().unwrap_or("");
            let arg = words.next();
            let err_file = || file.to_string();
            let name = |directive: &str| {
                arg.map(str::to_string)
                    .ok_or_else(|| PreprocessError::MissingName {
                        file: err_file(),
                        line,
                        directive: directive.into(),
                    })
            };
            match word {
                "ifdef" | "ifndef" => {
                    let flag = name(word)?;
                    let defined = self.defines.contains(&flag);
                    blocks.push(Block {
                        line,
                        parent_active: active,
                        condition: defined == (word == "ifdef"),
                        in_else: false,
                    });
                }
                "else" => match blocks.last_mut() {
                    Some(block) if !block.in_else => block.in_else = true,
                    _ => {
                        return Err(PreprocessError::Unbalanced {
                            file: err_file(),
                            line,
                        });
                    }
                },
                "endif" => {
                    if blocks.pop().is_none() {
                        return Err(PreprocessError::Unbalanced {
                            file: err_file(),
                            line,
                        });
                    }
                }
                "define" => {
                    let flag = name(word)?;
                    if active {
                        self.defines.insert(flag);
                    }
                }
                "include" => {
                    let target = name(word)?.trim_matches('"').to_string();
                    if active {
                        let included =
                            lookup(&target).ok_or_else(|| PreprocessError::MissingInclude {
                                file: err_file(),
                                line,
                                name: target.clone(),
                            })?;
                        self.run(&target, included, lookup)?;
                    }
                }
                other => {
                    return Err(PreprocessError::UnknownDirective {
                        file: err_file(),
                        line,
                        directive: other.into(),
                    });
                }
            }
        }
        if let Some(block) = blocks.pop() {
            return Err(PreprocessError::Unclosed {
                file: file.into(),
                line: block.line,
            });
        }
        self.stack.pop();
        Ok(())
    }
}
