//! Writing search results: a table for people, CSV (with spreadsheet formulas
//! neutralised), JSON and JSON Lines (nested as a file event). Salesforce text is
//! attacker-controlled: control characters never reach a terminal raw.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::events::FileEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Jsonl,
}

/// Columns of the flat formats (table, CSV).
pub const COLUMNS: &[&str] = &[
    "time",
    "username",
    "email",
    "user_name",
    "report_name",
    "report_id",
    "rows",
    "chunks",
    "export_format",
    "file_name",
    "destination",
    "source_ip",
    "severity",
    "risk_score",
    "indicators",
    "attribution",
    "operation",
    "execution_id",
    "connection_id",
    "id",
];

pub(crate) const TABLE_COLUMNS: &[&str] =
    &["time", "username", "report_name", "rows", "destination", "source_ip", "severity"];

pub fn time_text(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// A column's value as text.
pub(crate) fn cell(e: &FileEvent, column: &str) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    match column {
        "time" => time_text(e.observed_at),
        "username" => opt(&e.username),
        "email" => opt(&e.email),
        "user_name" => opt(&e.user_name),
        "user_id" => e.user_id.to_string(),
        "report_name" => opt(&e.report_name),
        "report_id" => opt(&e.report_id),
        "rows" => e.rows.to_string(),
        "chunks" => e.chunk_count.to_string(),
        "export_format" => opt(&e.export_format),
        "file_name" => e.file_name.clone(),
        "destination" => e.destination.to_string(),
        "source_ip" => opt(&e.source_ip),
        "severity" => e.severity.to_string(),
        "risk_score" => e.risk_score.to_string(),
        "indicators" => e.indicators.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(" "),
        "attribution" => e.attribution.to_string(),
        "operation" => opt(&e.operation),
        "execution_id" => opt(&e.execution_id),
        "connection_id" => e.connection_id.clone(),
        "id" => e.id.clone(),
        _ => String::new(),
    }
}

/// Checks a `--columns` list.
pub fn parse_columns(list: &str) -> Result<Vec<String>, String> {
    let columns: Vec<String> = list.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
    match columns.iter().find(|c| !COLUMNS.contains(&c.as_str()) && c.as_str() != "user_id") {
        Some(bad) => Err(format!("unknown column {bad:?}; columns are: {}", COLUMNS.join(", "))),
        None if columns.is_empty() => Err("no columns given".into()),
        None => Ok(columns),
    }
}

/// First characters that make a spreadsheet read a cell as a formula or command: the
/// ASCII ones, their full-width forms (which some spreadsheets fold to ASCII), the DDE
/// pipe, and tab and carriage return.
const FORMULA_STARTS: [char; 11] =
    ['=', '+', '-', '@', '|', '\t', '\r', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}'];

/// A CSV field: formula triggers neutralised with a leading quote, then RFC 4180 quoting.
pub fn csv_field(text: &str) -> String {
    let neutral = if text.starts_with(FORMULA_STARTS) { format!("'{text}") } else { text.to_owned() };
    if neutral.contains([',', '"', '\n', '\r']) { format!("\"{}\"", neutral.replace('"', "\"\"")) } else { neutral }
}

/// Unicode format characters (category Cf): invisible, and some reorder what a
/// terminal shows (U+202E turns `exe.txt` into `txt.exe`).
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{890}'..='\u{891}' | '\u{8e2}'
        | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}' | '\u{110bd}' | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}')
}

/// Text safe for a terminal: control and format characters replaced by U+FFFD, long
/// text cut.
pub fn terminal_safe(text: &str, width: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() || is_format(c) { '\u{fffd}' } else { c }).collect();
    if clean.chars().count() > width {
        let mut cut: String = clean.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

/// The nested form of a file event (JSON, JSON Lines, the API).
pub fn nested(e: &FileEvent) -> Value {
    json!({
        "event": {
            "id": e.id,
            "action": "salesforce-report-download",
            "observed": time_text(e.observed_at),
            "ingested": time_text(e.ingested_at),
            "connection_id": e.connection_id,
            "attribution": e.attribution,
        },
        "user": { "id": e.user_id, "username": e.username, "email": e.email, "name": e.user_name },
        "report": {
            "id": e.report_id,
            "name": e.report_name,
            "description": e.report_description,
            "type": e.report_type,
            "format": e.report_format,
            "export_file_format": e.export_format,
            "operation": e.operation,
            "rows": e.rows,
            "columns": e.columns.as_deref().map(|c| c.split(',').collect::<Vec<_>>()),
            "column_count": e.column_count,
            "queried_entities": e.queried_entities,
            "execution_id": e.execution_id,
            "chunk_count": e.chunk_count,
        },
        "file": { "name": e.file_name, "category": "spreadsheet" },
        "source": {
            "name": "Salesforce",
            "ip": e.source_ip,
            "browser": e.browser,
            "platform": e.platform,
            "city": e.city,
            "country": e.country,
            "session_key": e.session_key,
        },
        "destination": { "category": e.destination },
        "risk": { "indicators": e.indicators, "score": e.risk_score, "severity": e.severity },
        "raw": e.raw,
    })
}

/// Writes pages of results as they come, so memory stays flat for any result size.
pub struct Writer<W: Write> {
    out: W,
    format: Format,
    columns: Vec<String>,
    written: usize,
    widths: Vec<usize>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, format: Format, columns: Option<Vec<String>>) -> Writer<W> {
        let default = if format == Format::Table { TABLE_COLUMNS } else { COLUMNS };
        let columns = columns.unwrap_or_else(|| default.iter().map(|c| (*c).to_owned()).collect());
        let widths = columns
            .iter()
            .map(|c| match c.as_str() {
                "time" => 24,
                "rows" | "chunks" | "risk_score" => 9,
                "severity" | "destination" => 11,
                "source_ip" => 15,
                _ => 32,
            })
            .collect();
        Writer { out, format, columns, written: 0, widths }
    }

    /// One table line: each column's text, terminal-safe, padded to its width.
    fn table_line(&mut self, text: impl Fn(&str) -> String) -> io::Result<()> {
        let line: Vec<String> = self
            .columns
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!("{:<w$}", terminal_safe(&text(c), *w), w = *w))
            .collect();
        writeln!(self.out, "{}", line.join("  ").trim_end())
    }

    pub fn header(&mut self) -> io::Result<()> {
        match self.format {
            Format::Table => self.table_line(str::to_uppercase),
            Format::Csv => writeln!(self.out, "{}", self.columns.join(",")),
            Format::Json => write!(self.out, "["),
            Format::Jsonl => Ok(()),
        }
    }

    pub fn rows(&mut self, events: &[FileEvent]) -> io::Result<()> {
        for e in events {
            match self.format {
                Format::Table => self.table_line(|c| cell(e, c))?,
                Format::Csv => {
                    let line: Vec<String> = self.columns.iter().map(|c| csv_field(&cell(e, c))).collect();
                    writeln!(self.out, "{}", line.join(","))?;
                }
                Format::Json => {
                    let sep = if self.written == 0 { "\n" } else { ",\n" };
                    write!(self.out, "{sep}{}", nested(e))?;
                }
                Format::Jsonl => writeln!(self.out, "{}", nested(e))?,
            }
            self.written += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<usize> {
        match self.format {
            Format::Json => writeln!(self.out, "{}]", if self.written == 0 { "" } else { "\n" })?,
            Format::Table => writeln!(self.out, "{} file event(s)", self.written)?,
            _ => {}
        }
        self.out.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_neutralises_formulas_and_quotes() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        for start in ["\u{ff1d}", "\u{ff0b}", "\u{ff0d}", "\u{ff20}", "|"] {
            let cell = format!("{start}cmd|' /C calc'!A0");
            assert!(csv_field(&cell).starts_with(&format!("'{start}")), "{start:?} is neutralised");
        }
    }

    #[test]
    fn terminal_text_loses_control_characters() {
        assert_eq!(terminal_safe("a\u{1b}[31mred", 40), "a\u{fffd}[31mred");
        assert_eq!(terminal_safe("abcdef", 4), "abc…");
        assert_eq!(terminal_safe("invoice\u{202e}fdp.exe", 40), "invoice\u{fffd}fdp.exe");
        for c in ['\u{200b}', '\u{2066}', '\u{feff}', '\u{61c}', '\u{e0041}'] {
            assert_eq!(terminal_safe(&format!("a{c}b"), 40), "a\u{fffd}b", "{c:?}");
        }
    }

    #[test]
    fn writes_every_format() {
        let e = FileEvent {
            report_name: Some("=cmd|' /C calc'!A0".into()),
            rows: 5,
            file_name: "report1.csv".into(),
            ..FileEvent::sample()
        };
        for format in [Format::Table, Format::Csv, Format::Json, Format::Jsonl] {
            let mut out = Vec::new();
            let mut w = Writer::new(&mut out, format, None);
            w.header().expect("header");
            w.rows(std::slice::from_ref(&e)).expect("rows");
            assert_eq!(w.finish().expect("finish"), 1);
            let text = String::from_utf8(out).expect("utf-8");
            match format {
                Format::Csv => assert!(text.contains(",'=cmd|' /C calc'!A0,"), "{text}"),
                Format::Json => {
                    let v: Value = serde_json::from_str(&text).expect("valid JSON");
                    assert_eq!(v[0]["report"]["rows"], 5);
                }
                Format::Jsonl => {
                    assert_eq!(serde_json::from_str::<Value>(text.trim()).expect("line")["file"]["name"], "report1.csv")
                }
                Format::Table => assert!(text.contains("1 file event(s)")),
            }
        }
    }
}
