//! Message templates an admin edits: the subject and the text of every message (email,
//! chat, syslog text), with `{placeholders}` for the alert's facts. A template naming
//! a placeholder that does not exist is refused when saved, never rendered half.

use serde::{Deserialize, Serialize};

/// The placeholders a template may use, with what each stands for.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("severity", "the alert's severity (High)"),
    ("rule", "the rule's name"),
    ("user", "the username (or the user id)"),
    ("downloads", "how many downloads, with the noun (3 downloads)"),
    ("rows", "rows in all (12,345)"),
    ("first", "the first download's time (UTC)"),
    ("last", "the last download's time (UTC)"),
    ("events", "one line per download listed (report, rows, format, address)"),
    ("link", "the alert's page in the console (empty when the address is not set)"),
];

/// The subject and text of messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    pub subject: String,
    pub body: String,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            subject: "[{severity}] {rule}: {user} ({downloads}, {rows} rows)".into(),
            body: "{rule} ({severity})\nUser: {user}\nDownloads: {downloads}, {rows} rows\nFirst: {first}\nLast: {last}\n\n{events}\n\n{link}"
                .into(),
        }
    }
}

/// Longest template.
const MAX_LENGTH: usize = 4_000;

/// The parts of a template: text, and placeholders by name (`{{` and `}}` are braces).
fn parts(template: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                if !PLACEHOLDERS.iter().any(|(p, _)| *p == name) {
                    let known: Vec<&str> = PLACEHOLDERS.iter().map(|(p, _)| *p).collect();
                    return Err(format!("{{{name}}} is not a placeholder (known: {})", known.join(", ")));
                }
                out.push((false, std::mem::take(&mut text)));
                out.push((true, name));
            }
            '}' => return Err("a lone } (write }} for a brace)".into()),
            c => text.push(c),
        }
    }
    out.push((false, text));
    Ok(out)
}

impl Templates {
    /// Everything wrong with the templates, worded for the admin.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (what, text) in [("subject", &self.subject), ("text", &self.body)] {
            if let Err(e) = parts(text) {
                problems.push(format!("The {what}: {e}"));
            }
            if text.chars().count() > MAX_LENGTH {
                problems.push(format!("The {what} is longer than {MAX_LENGTH} characters"));
            }
        }
        if self.subject.trim().is_empty() {
            problems.push("The subject cannot be empty".into());
        }
        if self.subject.contains(['\r', '\n']) {
            problems.push("The subject is one line".into());
        }
        problems
    }
}

/// The template with each placeholder replaced by `value(name)`. (A template that does
/// not check out renders as written: saving refuses it first.)
pub fn render(template: &str, value: impl Fn(&str) -> String) -> String {
    match parts(template) {
        Ok(parts) => parts.into_iter().map(|(placeholder, s)| if placeholder { value(&s) } else { s }).collect(),
        Err(_) => template.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_unknown_ones_are_refused() {
        let value = |name: &str| format!("<{name}>");
        assert_eq!(render("[{severity}] {rule} {{x}}", value), "[<severity>] <rule> {x}");
        let bad = Templates { subject: "{sevrity}".into(), body: "}".into() };
        let problems = bad.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("{sevrity} is not a placeholder"));
        assert!(Templates::default().problems().is_empty());
        let two_lines = Templates { subject: "a\nb".into(), ..Templates::default() };
        assert_eq!(two_lines.problems(), ["The subject is one line"]);
    }
}
