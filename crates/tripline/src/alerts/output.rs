//! Writing alerts for the terminal and for files: a table, CSV (formulas neutralised),
//! JSON and JSON Lines, in the same formats as `tripline search`.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::{Alert, AlertNote};
use crate::events::FileEvent;
use crate::search::output::{Format, csv_field, nested, terminal_safe, time_text};

/// The columns of the flat formats, with the table's widths.
const COLUMNS: &[(&str, usize)] = &[
    ("created", 24),
    ("severity", 9),
    ("state", 14),
    ("rule", 32),
    ("username", 32),
    ("events", 7),
    ("rows", 9),
    ("first", 24),
    ("last", 24),
    ("assignee", 16),
    ("id", 24),
];

/// The table leaves out the first/last times.
const TABLE: &[&str] = &["created", "severity", "state", "rule", "username", "events", "rows", "assignee", "id"];

fn cell(a: &Alert, column: &str) -> String {
    match column {
        "created" => time_text(a.created_at),
        "severity" => a.severity.as_str().to_owned(),
        "state" => a.state.as_str().to_owned(),
        "rule" => a.rule_name.clone(),
        "username" => a.username.clone().unwrap_or_else(|| a.user_id.clone()),
        "events" => a.events.to_string(),
        "rows" => a.rows.to_string(),
        "first" => time_text(a.first_at),
        "last" => time_text(a.last_at),
        "assignee" => a.assignee.clone().unwrap_or_default(),
        "id" => a.id.clone(),
        _ => String::new(),
    }
}

/// An alert as JSON (the API and the CLI), with its notes and events when given.
pub fn alert_json(a: &Alert, notes: Option<&[AlertNote]>, events: Option<&[FileEvent]>) -> Value {
    let mut v = json!({
        "id": a.id,
        "seq": a.seq,
        "rule": { "id": a.rule_id, "name": a.rule_name },
        "severity": a.severity,
        "state": a.state,
        "assignee": a.assignee,
        "user": { "id": a.user_id, "username": a.username },
        "connection_id": a.connection_id,
        "first_at": time_text(a.first_at),
        "last_at": time_text(a.last_at),
        "events": a.events,
        "rows": a.rows,
        "created_at": time_text(a.created_at),
        "updated_at": time_text(a.updated_at),
    });
    if let Some(notes) = notes {
        v["notes"] =
            notes.iter().map(|n| json!({ "at": time_text(n.at), "author": n.author, "text": n.text })).collect();
    }
    if let Some(events) = events {
        v["file_events"] = events.iter().map(nested).collect();
    }
    v
}

/// Writes alerts page by page.
pub struct AlertWriter<W: Write> {
    out: W,
    format: Format,
    written: usize,
}

impl<W: Write> AlertWriter<W> {
    pub fn new(out: W, format: Format) -> AlertWriter<W> {
        AlertWriter { out, format, written: 0 }
    }

    fn columns(&self) -> Vec<(&'static str, usize)> {
        match self.format {
            Format::Table => COLUMNS.iter().copied().filter(|(c, _)| TABLE.contains(c)).collect(),
            _ => COLUMNS.to_vec(),
        }
    }

    pub fn header(&mut self) -> io::Result<()> {
        let columns = self.columns();
        match self.format {
            Format::Table => {
                let line: Vec<String> = columns.iter().map(|(c, w)| format!("{:<w$}", c.to_uppercase())).collect();
                writeln!(self.out, "{}", line.join("  ").trim_end())
            }
            Format::Csv => writeln!(self.out, "{}", columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(",")),
            Format::Json => write!(self.out, "["),
            Format::Jsonl => Ok(()),
        }
    }

    pub fn rows(&mut self, alerts: &[Alert]) -> io::Result<()> {
        let columns = self.columns();
        for a in alerts {
            match self.format {
                Format::Table => {
                    let line: Vec<String> = columns
                        .iter()
                        .map(|(c, w)| format!("{:<w$}", terminal_safe(&cell(a, c), *w), w = *w))
                        .collect();
                    writeln!(self.out, "{}", line.join("  ").trim_end())?;
                }
                Format::Csv => {
                    let line: Vec<String> = columns.iter().map(|(c, _)| csv_field(&cell(a, c))).collect();
                    writeln!(self.out, "{}", line.join(","))?;
                }
                Format::Json => {
                    let sep = if self.written == 0 { "\n" } else { ",\n" };
                    write!(self.out, "{sep}{}", alert_json(a, None, None))?;
                }
                Format::Jsonl => writeln!(self.out, "{}", alert_json(a, None, None))?,
            }
            self.written += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<usize> {
        match self.format {
            Format::Json => writeln!(self.out, "{}]", if self.written == 0 { "" } else { "\n" })?,
            Format::Table => writeln!(self.out, "{} alert(s)", self.written)?,
            _ => {}
        }
        self.out.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertState;
    use crate::risk::Severity;

    #[test]
    fn every_format_and_salesforce_text_kept_inert() {
        let a = Alert {
            seq: 1,
            id: "abc".into(),
            rule_id: 1,
            rule_name: "Mass export".into(),
            severity: Severity::High,
            connection_id: "c".into(),
            user_id: "005".into(),
            username: Some("=cmd|' /C calc'!A0\u{1b}[31m".into()),
            state: AlertState::Open,
            assignee: None,
            first_at: 0,
            last_at: 0,
            events: 3,
            rows: 42,
            created_at: 0,
            updated_at: 0,
        };
        for format in [Format::Table, Format::Csv, Format::Json, Format::Jsonl] {
            let mut out = Vec::new();
            let mut w = AlertWriter::new(&mut out, format);
            w.header().expect("header");
            w.rows(std::slice::from_ref(&a)).expect("rows");
            assert_eq!(w.finish().expect("finish"), 1);
            let text = String::from_utf8(out).expect("utf-8");
            match format {
                Format::Table => assert!(!text.contains('\u{1b}') && text.contains("1 alert(s)"), "{text}"),
                Format::Csv => assert!(text.contains(",'=cmd|"), "{text}"),
                Format::Json => assert_eq!(serde_json::from_str::<Value>(&text).expect("json")[0]["rows"], 42),
                Format::Jsonl => assert_eq!(serde_json::from_str::<Value>(text.trim()).expect("line")["events"], 3),
            }
        }
    }
}
