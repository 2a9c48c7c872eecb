//! Forensic Search: a query model shared by the command line and the JSON API.
//! Filters (is / is not / any of / exists / greater / less / within the last / matches)
//! grouped by AND/OR, a mandatory time range, sort, and keyset paging through every
//! result (no cap).

pub mod output;

use serde::{Deserialize, Serialize};

use crate::events::FileEvent;
use crate::named::named_enum;

named_enum! {
    /// A searchable, sortable field of a file event. Its name is also its column.
    pub enum Field ("search field") {
        ObservedAt = "observed_at",
        ConnectionId = "connection_id",
        Attribution = "attribution",
        UserId = "user_id",
        Username = "username",
        Email = "email",
        UserName = "user_name",
        ReportId = "report_id",
        ReportName = "report_name",
        ExportFormat = "export_format",
        Operation = "operation",
        Rows = "rows",
        QueriedEntities = "queried_entities",
        FileName = "file_name",
        SourceIp = "source_ip",
        Destination = "destination",
        Severity = "severity",
        RiskScore = "risk_score",
        /// A risk indicator the event carries (`large-export`, ...).
        Indicators = "indicators",
        /// The alert (id) the event contributed to.
        Alert = "alert",
    }
}

impl Field {
    /// The column: one of the fixed names above, so SQL is never built from input.
    pub fn column(self) -> &'static str {
        self.as_str()
    }

    /// Can results be sorted by it? (The alert is a filter only: not a column.)
    pub fn is_sortable(self) -> bool {
        self != Field::Alert
    }

    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, Field::ObservedAt | Field::Rows | Field::RiskScore)
    }

    /// The event's value of this field as the page cursor carries it: numbers in
    /// decimal, absent text as empty text (which is how the store orders it).
    pub(crate) fn cursor_value(self, e: &FileEvent) -> String {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        match self {
            Field::ObservedAt => e.observed_at.to_string(),
            Field::Rows => e.rows.to_string(),
            Field::RiskScore => e.risk_score.to_string(),
            Field::ConnectionId => e.connection_id.clone(),
            Field::Attribution => e.attribution.as_str().to_owned(),
            Field::UserId => e.user_id.to_string(),
            Field::Username => text(&e.username),
            Field::Email => text(&e.email),
            Field::UserName => text(&e.user_name),
            Field::ReportId => text(&e.report_id),
            Field::ReportName => text(&e.report_name),
            Field::ExportFormat => text(&e.export_format),
            Field::Operation => text(&e.operation),
            Field::QueriedEntities => text(&e.queried_entities),
            Field::FileName => e.file_name.clone(),
            Field::SourceIp => text(&e.source_ip),
            Field::Destination => e.destination.as_str().to_owned(),
            Field::Severity => e.severity.as_str().to_owned(),
            // As stored: the JSON array.
            Field::Indicators => serde_json::to_string(&e.indicators).unwrap_or_default(),
            Field::Alert => String::new(),
        }
    }
}

/// A comparison on one field. `Op::NAMES` lists the operators as JSON names them.
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

impl Op {
    /// Every operator's JSON name (`tests` checks each against serde's).
    pub const NAMES: [&str; 8] = ["is", "is_not", "any_of", "exists", "greater", "less", "within_last", "matches"];
}

/// How big a query may be. Beyond these a query is refused up front with a clear
/// error, never sent to the database.
pub const MAX_TERMS: usize = 100;
/// Values in all `any_of` lists together.
pub const MAX_VALUES: usize = 1_000;
/// Characters in one value or pattern.
pub const MAX_TEXT: usize = 500;
/// Groups within groups.
pub const MAX_DEPTH: usize = 8;

/// Filters grouped by AND (`all`) and OR (`any`). In JSON a term is
/// `{"term": {"field": ..., "op": ..., "value": ...}}`; any other key is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    #[serde(deserialize_with = "term")]
    Term {
        field: Field,
        #[serde(flatten)]
        op: Op,
    },
}

/// A term as written, before its operator and value are read together. (The derived
/// form flattens the operator, and serde cannot refuse unknown keys beside a flatten.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TermText {
    field: Field,
    op: String,
    #[serde(default)]
    value: Option<serde_json::Value>,
}

fn term<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<(Field, Op), D::Error> {
    let text = TermText::deserialize(deserializer)?;
    let mut op = serde_json::Map::new();
    op.insert("op".into(), text.op.into());
    if let Some(value) = text.value {
        op.insert("value".into(), value);
    }
    let op = Op::deserialize(serde_json::Value::Object(op)).map_err(serde::de::Error::custom)?;
    Ok((text.field, op))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sort {
    pub field: Field,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort { field: Field::ObservedAt, descending: true }
    }
}

/// A search. The time range is mandatory; unknown keys are refused (a misspelled
/// `filter` must not quietly match everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    pub events: Vec<FileEvent>,
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
        if !self.sort.field.is_sortable() {
            return Err(QueryError(format!("{} filters results but does not sort them", self.sort.field)));
        }
        #[derive(Default)]
        struct Size {
            terms: usize,
            values: usize,
        }
        fn check(f: &Filter, depth: usize, size: &mut Size) -> Result<(), QueryError> {
            if depth > MAX_DEPTH {
                return Err(QueryError(format!("filters are nested more than {MAX_DEPTH} deep")));
            }
            match f {
                Filter::All(list) | Filter::Any(list) => list.iter().try_for_each(|f| check(f, depth + 1, size)),
                Filter::Term { field, op } => {
                    size.terms += 1;
                    let texts: Vec<&String> = match op {
                        Op::Is(v) | Op::IsNot(v) | Op::Matches(v) => vec![v],
                        Op::AnyOf(values) => values.iter().collect(),
                        _ => Vec::new(),
                    };
                    size.values += texts.len();
                    if size.terms > MAX_TERMS {
                        return Err(QueryError(format!("a query has at most {MAX_TERMS} terms")));
                    }
                    if size.values > MAX_VALUES {
                        return Err(QueryError(format!("a query has at most {MAX_VALUES} values")));
                    }
                    if texts.iter().any(|t| t.chars().count() > MAX_TEXT) {
                        return Err(QueryError(format!("a value or pattern has at most {MAX_TEXT} characters")));
                    }
                    check_term(*field, op)
                }
            }
        }
        fn check_term(field: Field, op: &Op) -> Result<(), QueryError> {
            match op {
                Op::Greater(_) | Op::Less(_) | Op::WithinLast(_) if !field.is_numeric() => {
                    Err(QueryError(format!("{} is not a number: use is, is not, any of or matches", field.column())))
                }
                Op::WithinLast(_) if field != Field::ObservedAt => {
                    Err(QueryError("within the last applies to the event time only".into()))
                }
                Op::WithinLast(ms) if *ms <= 0 => Err(QueryError("within the last needs a positive duration".into())),
                Op::AnyOf(values) if values.is_empty() => Err(QueryError("any of needs at least one value".into())),
                Op::Exists(_) | Op::Matches(_) if field == Field::Alert => {
                    Err(QueryError("alert takes alert ids: use is, is not or any of".into()))
                }
                _ => Ok(()),
            }
        }
        check(&self.filter, 0, &mut Size::default())
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
    fn unknown_keys_are_refused_by_name() {
        let parse = |text: &str| serde_json::from_str::<SearchQuery>(text).map_err(|e| e.to_string());
        let ok = r#"{"from_ms": 0, "to_ms": 5, "filter": {"all": [{"term": {"field": "rows", "op": "greater", "value": 3}}]},
                    "sort": {"field": "email", "descending": false}}"#;
        let query = parse(ok).expect("valid");
        assert_eq!(query.filter, Filter::All(vec![Filter::Term { field: Field::Rows, op: Op::Greater(3.0) }]));
        for (bad, key) in [
            (r#"{"from_ms": 0, "to_ms": 5, "filters": {"all": []}}"#, "filters"),
            (r#"{"from_ms": 0, "to_ms": 5, "sort": {"field": "rows", "desc": true}}"#, "desc"),
            (
                r#"{"from_ms": 0, "to_ms": 5, "filter": {"term": {"field": "rows", "op": "is", "value": "1", "negate": true}}}"#,
                "negate",
            ),
            (
                r#"{"from_ms": 0, "to_ms": 5, "filter": {"term": {"field": "rows", "op": "equals", "value": "1"}}}"#,
                "equals",
            ),
            (
                r#"{"from_ms": 0, "to_ms": 5, "filter": {"term": {"field": "password", "op": "is", "value": "1"}}}"#,
                "password",
            ),
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains(key), "{bad}: {error}");
        }
        let term = Filter::Term { field: Field::Email, op: Op::Exists(true) };
        let text = serde_json::to_string(&term).expect("json");
        assert_eq!(serde_json::from_str::<Filter>(&text).expect("round trip"), term);
    }

    #[test]
    fn operator_names_are_serdes() {
        for name in Op::NAMES {
            let value = if name == "exists" { serde_json::json!(true) } else { serde_json::json!(1) };
            let parsed = serde_json::from_value::<Op>(serde_json::json!({ "op": name, "value": value }));
            let number_or_text = parsed.is_ok()
                || serde_json::from_value::<Op>(serde_json::json!({ "op": name, "value": "x" })).is_ok()
                || serde_json::from_value::<Op>(serde_json::json!({ "op": name, "value": ["x"] })).is_ok();
            assert!(number_or_text, "{name} is an operator");
        }
    }

    #[test]
    fn oversized_queries_are_refused_up_front() {
        let q = |filter| SearchQuery {
            from_ms: 0,
            to_ms: 10,
            filter,
            sort: Sort::default(),
            page_size: 10,
            after: None,
            after_seq: None,
        };
        let term = |v: String| Filter::Term { field: Field::Username, op: Op::Is(v) };
        let many = q(Filter::Any((0..=MAX_TERMS).map(|i| term(i.to_string())).collect()));
        assert!(many.validate().expect_err("terms").0.contains("terms"));
        let values = q(Filter::Term { field: Field::Email, op: Op::AnyOf(vec!["x".into(); MAX_VALUES + 1]) });
        assert!(values.validate().expect_err("values").0.contains("values"));
        let long = q(Filter::Term { field: Field::ReportName, op: Op::Matches("*".repeat(60_000)) });
        assert!(long.validate().expect_err("pattern").0.contains("characters"));
        let mut deep = term("a".into());
        for _ in 0..=MAX_DEPTH {
            deep = Filter::All(vec![deep]);
        }
        assert!(q(deep).validate().expect_err("depth").0.contains("nested"));
        assert!(q(Filter::Any((0..MAX_TERMS).map(|i| term(i.to_string())).collect())).validate().is_ok());
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
