//! SOQL text to tokens.

use super::{SoqlError, malformed};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Text(String),
    /// A number, date or datetime, classified when used.
    Bare(String),
    Comma,
    Dot,
    Colon,
    Open,
    Close,
    Op(String),
}

pub(super) struct Lexed {
    pub(super) toks: Vec<(Tok, usize)>,
}

pub(super) fn lex(text: &str) -> Result<Lexed, SoqlError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                toks.push((Tok::Comma, at));
                i += 1;
            }
            '.' => {
                toks.push((Tok::Dot, at));
                i += 1;
            }
            ':' => {
                toks.push((Tok::Colon, at));
                i += 1;
            }
            '(' => {
                toks.push((Tok::Open, at));
                i += 1;
            }
            ')' => {
                toks.push((Tok::Close, at));
                i += 1;
            }
            '=' => {
                toks.push((Tok::Op("=".into()), at));
                i += 1;
            }
            '!' | '<' | '>' => {
                let next = chars.get(i + 1).map(|&(_, c)| c);
                let op = match (c, next) {
                    ('!', Some('=')) | ('<', Some('=')) | ('>', Some('=')) | ('<', Some('>')) => {
                        i += 2;
                        format!("{c}{}", next.unwrap_or_default())
                    }
                    ('!', _) => return Err(syntax_error(text, at, "!")),
                    _ => {
                        i += 1;
                        c.to_string()
                    }
                };
                toks.push((Tok::Op(op), at));
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&(_, c)) = chars.get(i) else {
                        return Err(malformed(format!("unterminated string literal starting at column {}", at + 1)));
                    };
                    i += 1;
                    match c {
                        '\'' => break,
                        '\\' => {
                            let Some(&(_, e)) = chars.get(i) else {
                                return Err(malformed("unterminated escape sequence at end of query"));
                            };
                            i += 1;
                            let unescaped = match e {
                                'n' => '\n',
                                'r' => '\r',
                                't' => '\t',
                                'b' => '\u{8}',
                                'f' => '\u{c}',
                                '%' | '_' => {
                                    // Escaped wildcards stay escaped for LIKE.
                                    s.push('\\');
                                    e
                                }
                                '\'' | '"' | '\\' => e,
                                other => {
                                    return Err(malformed(format!(
                                        "Invalid string literal: illegal escape sequence '\\{other}'"
                                    )));
                                }
                            };
                            s.push(unescaped);
                        }
                        c => s.push(c),
                    }
                }
                toks.push((Tok::Text(s), at));
            }
            c if c.is_ascii_digit()
                || (c == '-' || c == '+') && chars.get(i + 1).is_some_and(|&(_, d)| d.is_ascii_digit()) =>
            {
                let start = i;
                i += 1;
                while let Some(&(_, d)) = chars.get(i) {
                    if d.is_ascii_alphanumeric() || matches!(d, ':' | '.' | '+' | '-') {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let s: String = chars[start..i].iter().map(|&(_, c)| c).collect();
                toks.push((Tok::Bare(s), at));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while let Some(&(_, d)) = chars.get(i) {
                    if d.is_alphanumeric() || d == '_' {
                        i += 1;
                    } else {
                        break;
                    }
                }
                toks.push((Tok::Word(chars[start..i].iter().map(|&(_, c)| c).collect()), at));
            }
            other => return Err(syntax_error(text, at, &other.to_string())),
        }
    }
    Ok(Lexed { toks })
}

/// Salesforce's shape: the query, a caret under the problem, its row and column.
pub(super) fn syntax_error(text: &str, at: usize, token: &str) -> SoqlError {
    malformed(format!("{}\nunexpected token: '{token}'", pointer(text, at)))
}

/// The line of `text` holding byte `at`, a caret under it, and
/// `ERROR at Row:r:Column:c` (each line starting with a newline, as Salesforce's do).
pub(super) fn pointer(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let row = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    format!("\n{line}\n{caret:>width$}\nERROR at Row:{row}:Column:{column}", caret = "^", width = column)
}

/// Where the field path `path` is written in `text` (ignoring case; a whole path, not
/// part of a longer name).
pub(super) fn find_path(text: &str, path: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let wanted = path.to_ascii_lowercase();
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    lower.match_indices(&wanted).map(|(at, _)| at).find(|&at| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + wanted.len()..].chars().next();
        !before.is_some_and(name_char) && !after.is_some_and(name_char)
    })
}
