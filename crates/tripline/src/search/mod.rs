//! Forensic Search: a query model shared by the command line and the JSON API.
//! Filters (is / is not / any of / exists / greater / less / within the last / matches)
//! grouped by AND/OR, a mandatory time range, sort, and keyset paging through every
//! result (no cap).

pub mod output;

use serde::{Deserialize, Serialize};

/// A searchable field of a file event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    ObservedAt,
    ConnectionId,
    Attribution,
    UserId,
    Username,
    Email,
    UserName,
    ReportId,
    ReportName,
    ExportFormat,
    Operation,
    Rows,
    QueriedEntities,
    FileName,
    SourceIp,
    Destination,
    Severity,
    RiskScore,
}

impl Field {
    /// The column; fixed strings only, so SQL is never built from input.
    pub fn column(self) -> &'static str {
        match self {
            Field::ObservedAt => "observed_at",
            Field::ConnectionId => "connection_id",
            Field::Attribution => "attribution",
            Field::UserId => "user_id",
            Field::Username => "username",
            Field::Email => "email",
            Field::UserName => "user_name",
            Field::ReportId => "report_id",
            Field::ReportName => "report_name",
            Field::ExportFormat => "export_format",
            Field::Operation => "operation",
            Field::Rows => "rows",
            Field::QueriedEntities => "queried_entities",
            Field::FileName => "file_name",
            Field::SourceIp => "source_ip",
            Field::Destination => "destination",
            Field::Severity => "severity",
            Field::RiskScore => "risk_score",
        }
    }

    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, Field::ObservedAt | Field::Rows | Field::RiskScore)
    }
}

/// A comparison on one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op", content = "value")]
pub enum Op {
    Is(String),
    IsNot(String),
    AnyOf(Vec<String>),
    Exists(bool),
    Greater(f64),
    Less(f64),
    /// Within the last N milliseconds (of now).
    WithinLast(i64),
    /// A wildcard pattern: `*` any run of characters, `?` one; case-insensitive.
    Matches(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Term {
        field: Field,
        #[serde(flatten)]
        op: Op,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    pub field: Field,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort { field: Field::ObservedAt, descending: true }
    }
}

/// A search. The time range is mandatory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    #[serde(default = "no_filter")]
    pub filter: Filter,
    #[serde(default)]
    pub sort: Sort,
    #[serde(default = "default_page")]
    pub page_size: usize,
    /// Where the previous page ended (`next` of a [`SearchPage`]).
    #[serde(default)]
    pub after: Option<String>,
    /// Only events stored after this ingest sequence (incremental pulls).
    #[serde(default)]
    pub after_seq: Option<i64>,
}

fn no_filter() -> Filter {
    Filter::All(Vec::new())
}

fn default_page() -> usize {
    500
}

/// Most events in one page.
pub const MAX_PAGE: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchPage {
    pub events: Vec<crate::events::FileEvent>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<String>,
}

/// Why a search cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

impl SearchQuery {
    pub fn validate(&self) -> Result<(), QueryError> {
        if self.from_ms >= self.to_ms {
            return Err(QueryError("the time range is empty: its start must be before its end".into()));
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE {
            return Err(QueryError(format!("page size must be between 1 and {MAX_PAGE}")));
        }
        fn check(f: &Filter) -> Result<(), QueryError> {
            match f {
                Filter::All(list) | Filter::Any(list) => list.iter().try_for_each(check),
                Filter::Term { field, op } => match op {
                    Op::Greater(_) | Op::Less(_) | Op::WithinLast(_) if !field.is_numeric() => Err(QueryError(
                        format!("{} is not a number: use is, is not, any of or matches", field.column()),
                    )),
                    Op::WithinLast(_) if *field != Field::ObservedAt => {
                        Err(QueryError("within the last applies to the event time only".into()))
                    }
                    Op::WithinLast(ms) if *ms <= 0 => {
                        Err(QueryError("within the last needs a positive duration".into()))
                    }
                    Op::AnyOf(values) if values.is_empty() => Err(QueryError("any of needs at least one value".into())),
                    _ => Ok(()),
                },
            }
        }
        check(&self.filter)
    }
}

/// Parses `7d`, `24h`, `30m`, `90s`, `2w` into milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, QueryError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| QueryError(format!("{text:?} is not a duration like 7d or 24h")))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(QueryError(format!("{text:?}: the unit is one of s, m, h, d, w"))),
    };
    n.checked_mul(unit_ms).filter(|ms| *ms > 0).ok_or_else(|| QueryError(format!("{text:?} is out of range")))
}

/// A wildcard pattern as a SQL LIKE pattern with `\` as the escape.
pub(crate) fn like_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_patterns() {
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_duration("24h"), Ok(86_400_000));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
        assert_eq!(like_pattern("*Pipe_line 100%*"), "%Pipe\\_line 100\\%%");
    }

    #[test]
    fn validation() {
        let q = |filter| SearchQuery {
            from_ms: 0,
            to_ms: 10,
            filter,
            sort: Sort::default(),
            page_size: 10,
            after: None,
            after_seq: None,
        };
        assert!(q(Filter::All(vec![])).validate().is_ok());
        assert!(q(Filter::Term { field: Field::Username, op: Op::Greater(3.0) }).validate().is_err());
        assert!(q(Filter::Term { field: Field::Rows, op: Op::AnyOf(vec![]) }).validate().is_err());
        let mut empty = q(Filter::All(vec![]));
        empty.to_ms = 0;
        assert!(empty.validate().is_err());
    }
}
