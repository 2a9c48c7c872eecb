//! SOQL: a parser for the subset Salesforce clients use, and its evaluation over the
//! org's objects, with Salesforce's error codes and the big-object query restrictions.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::model::{FieldType, ObjectSchema, Row, Storage, Value, object_schema};
use crate::org::Org;

/// A query failure, as Salesforce names it (`MALFORMED_QUERY`, `INVALID_FIELD`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct SoqlError {
    pub code: &'static str,
    pub message: String,
}

fn malformed(message: impl Into<String>) -> SoqlError {
    SoqlError { code: "MALFORMED_QUERY", message: message.into() }
}

fn invalid_field(message: impl Into<String>) -> SoqlError {
    SoqlError { code: "INVALID_FIELD", message: message.into() }
}

// ---------------------------------------------------------------------------------------
// Syntax

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    DateTime(i64),
    Date(i64),
    /// A relative date range such as `TODAY` or `LAST_N_DAYS:7`: [start, end) in ms.
    Range(String, i64, i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Compare { path: Vec<String>, op: CmpOp, value: Literal },
    Like { path: Vec<String>, pattern: String },
    In { path: Vec<String>, negated: bool, values: InValues },
}

#[derive(Debug, Clone, PartialEq)]
pub enum InValues {
    List(Vec<Literal>),
    Query(Box<Query>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub path: Vec<String>,
    pub descending: bool,
    pub nulls_last: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Field paths; empty for `SELECT COUNT()`.
    pub fields: Vec<Vec<String>>,
    pub count: bool,
    pub object: String,
    pub condition: Option<Condition>,
    pub order_by: Vec<OrderBy>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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

struct Lexed {
    toks: Vec<(Tok, usize)>,
}

fn lex(text: &str) -> Result<Lexed, SoqlError> {
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
fn syntax_error(text: &str, at: usize, token: &str) -> SoqlError {
    let before = &text[..at.min(text.len())];
    let row = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    malformed(format!(
        "\n{line}\n{caret:>width$}\nERROR at Row:{row}:Column:{column}\nunexpected token: '{token}'",
        caret = "^",
        width = column
    ))
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
    now_ms: i64,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) | Tok::Bare(w) | Tok::Op(w) => w.clone(),
        Tok::Text(s) => format!("'{s}'"),
        Tok::Comma => ",".into(),
        Tok::Dot => ".".into(),
        Tok::Colon => ":".into(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn unexpected(&self) -> SoqlError {
        match self.toks.get(self.pos) {
            Some((tok, at)) => syntax_error(self.text, *at, &describe(tok)),
            None => malformed("unexpected end of query"),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), SoqlError> {
        if self.keyword(word) { Ok(()) } else { Err(self.unexpected()) }
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), SoqlError> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn is_reserved(word: &str) -> bool {
        // `Group` is an object name, so GROUP is not reserved (there is no GROUP BY here).
        const RESERVED: [&str; 13] =
            ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET", "NULL"];
        RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
    }

    fn ident(&mut self) -> Result<String, SoqlError> {
        match self.peek() {
            Some(Tok::Word(w)) if !Self::is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn path(&mut self) -> Result<Vec<String>, SoqlError> {
        let mut path = vec![self.ident()?];
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            path.push(self.ident()?);
        }
        Ok(path)
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let mut fields = Vec::new();
        let mut count = false;
        loop {
            if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("COUNT"))
                && self.toks.get(self.pos + 1).map(|(t, _)| t) == Some(&Tok::Open)
            {
                self.pos += 2;
                self.expect(&Tok::Close)?;
                count = true;
            } else {
                fields.push(self.path()?);
            }
            if self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
            } else {
                break;
            }
        }
        if count && !fields.is_empty() {
            return Err(malformed("COUNT() cannot be combined with other fields"));
        }
        self.expect_keyword("FROM")?;
        let object = self.ident()?;
        let condition = if self.keyword("WHERE") { Some(self.or()?) } else { None };
        let mut order_by = Vec::new();
        if self.keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                let path = self.path()?;
                let descending = if self.keyword("DESC") {
                    true
                } else {
                    self.keyword("ASC");
                    false
                };
                let nulls_last = if self.keyword("NULLS") {
                    if self.keyword("LAST") {
                        true
                    } else {
                        self.expect_keyword("FIRST")?;
                        false
                    }
                } else {
                    descending
                };
                order_by.push(OrderBy { path, descending, nulls_last });
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        let limit = if self.keyword("LIMIT") { Some(self.count_value()?) } else { None };
        let offset = if self.keyword("OFFSET") { Some(self.count_value()?) } else { None };
        Ok(Query { fields, count, object, condition, order_by, limit, offset })
    }

    fn count_value(&mut self) -> Result<usize, SoqlError> {
        match self.peek() {
            Some(Tok::Bare(n)) => match n.parse() {
                Ok(n) => {
                    self.pos += 1;
                    Ok(n)
                }
                Err(_) => Err(self.unexpected()),
            },
            _ => Err(self.unexpected()),
        }
    }

    fn or(&mut self) -> Result<Condition, SoqlError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, SoqlError> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, SoqlError> {
        if self.keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(&Tok::Close)?;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Condition, SoqlError> {
        let path = self.path()?;
        if self.keyword("LIKE") {
            return match self.literal()? {
                Literal::Text(pattern) => Ok(Condition::Like { path, pattern }),
                _ => Err(malformed("LIKE needs a string pattern")),
            };
        }
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            self.expect(&Tok::Open)?;
            let values = if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("SELECT")) {
                InValues::Query(Box::new(self.query()?))
            } else {
                let mut list = vec![self.literal()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    list.push(self.literal()?);
                }
                InValues::List(list)
            };
            self.expect(&Tok::Close)?;
            return Ok(Condition::In { path, negated, values });
        }
        if negated {
            return Err(self.unexpected());
        }
        let op = match self.peek() {
            Some(Tok::Op(op)) => match op.as_str() {
                "=" => CmpOp::Eq,
                "!=" | "<>" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                _ => return Err(self.unexpected()),
            },
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        let value = self.literal()?;
        Ok(Condition::Compare { path, op, value })
    }

    fn literal(&mut self) -> Result<Literal, SoqlError> {
        let Some((tok, _)) = self.toks.get(self.pos).cloned() else { return Err(self.unexpected()) };
        let lit = match tok {
            Tok::Text(s) => Literal::Text(s),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Tok::Word(w) => return self.date_literal(&w),
            Tok::Bare(b) => {
                if let Some(ms) = parse_datetime(&b) {
                    Literal::DateTime(ms)
                } else if let Ok(d) = NaiveDate::parse_from_str(&b, "%Y-%m-%d") {
                    Literal::Date(day_start(d))
                } else if let Ok(n) = b.parse::<f64>() {
                    Literal::Number(n)
                } else {
                    return Err(self.unexpected());
                }
            }
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(lit)
    }

    /// `TODAY`, `YESTERDAY`, `LAST_N_DAYS:n`, `N_DAYS_AGO:n`, `LAST_N_HOURS:n`.
    fn date_literal(&mut self, word: &str) -> Result<Literal, SoqlError> {
        const DAY: i64 = 86_400_000;
        let today = self.now_ms - self.now_ms.rem_euclid(DAY);
        let upper = word.to_ascii_uppercase();
        let fixed = match upper.as_str() {
            "TODAY" => Some((today, today + DAY)),
            "YESTERDAY" => Some((today - DAY, today)),
            "TOMORROW" => Some((today + DAY, today + 2 * DAY)),
            _ => None,
        };
        if let Some((start, end)) = fixed {
            self.pos += 1;
            return Ok(Literal::Range(upper, start, end));
        }
        if !matches!(upper.as_str(), "LAST_N_DAYS" | "N_DAYS_AGO" | "LAST_N_HOURS") {
            return Err(self.unexpected());
        }
        self.pos += 1;
        self.expect(&Tok::Colon)?;
        let n = self.count_value()? as i64;
        let range = match upper.as_str() {
            "LAST_N_DAYS" => (today - n * DAY, today + DAY),
            "N_DAYS_AGO" => (today - n * DAY, today - (n - 1) * DAY),
            _ => (self.now_ms - n * 3_600_000, self.now_ms),
        };
        Ok(Literal::Range(format!("{upper}:{n}"), range.0, range.1))
    }
}

fn day_start(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t).timestamp_millis()).unwrap_or_default()
}

/// Parses SOQL and REST datetimes: `2026-01-02T03:04:05Z`, with optional fraction and a
/// `Z`, `+hh:mm` or `+hhmm` offset.
pub fn parse_datetime(text: &str) -> Option<i64> {
    if !text.contains('T') {
        return None;
    }
    let normalized = match text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        Some(rest) => format!("{rest}+00:00"),
        None => text.to_owned(),
    };
    DateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f%z").ok().map(|d| d.timestamp_millis())
}

/// Parses a SOQL query.
pub fn parse(text: &str, now_ms: i64) -> Result<Query, SoqlError> {
    let Lexed { toks } = lex(text)?;
    let mut parser = Parser { text, toks, pos: 0, now_ms };
    let query = parser.query()?;
    if parser.pos < parser.toks.len() {
        return Err(parser.unexpected());
    }
    Ok(query)
}

// ---------------------------------------------------------------------------------------
// Evaluation

/// A field path resolved against the schema: relationships to follow, then a field.
#[derive(Debug)]
struct Resolved {
    hops: Vec<(&'static str, &'static ObjectSchema)>,
    schema: &'static ObjectSchema,
    index: usize,
    /// Names as the schema spells them, for the JSON output.
    names: Vec<&'static str>,
}

impl Resolved {
    fn ty(&self) -> FieldType {
        self.schema.fields[self.index].ty
    }
}

fn resolve(schema: &'static ObjectSchema, path: &[String]) -> Result<Resolved, SoqlError> {
    let mut current = schema;
    let mut hops = Vec::new();
    let mut names = Vec::new();
    for (i, part) in path.iter().enumerate() {
        if i + 1 == path.len() {
            let index = current.field_index(part).ok_or_else(|| {
                invalid_field(format!(
                    "No such column '{part}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                    current.name
                ))
            })?;
            names.push(current.fields[index].name);
            return Ok(Resolved { hops, schema: current, index, names });
        }
        let rel = current.relationship(part).ok_or_else(|| {
            invalid_field(format!(
                "Didn't understand relationship '{part}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
            ))
        })?;
        let target = object_schema(rel.target).ok_or_else(|| malformed(format!("no object {}", rel.target)))?;
        names.push(rel.name);
        hops.push((rel.id_field, current));
        current = target;
    }
    Err(malformed("empty field path"))
}

fn rows_of<'a>(org: &'a Org, schema: &'static ObjectSchema) -> Box<dyn Iterator<Item = Row<'a>> + 'a> {
    match schema.storage {
        Storage::Table => Box::new(org.table(schema.name).rows().map(Row::Record)),
        Storage::ReportEvents => Box::new(org.report_events.iter().rev().map(Row::Report)),
        Storage::LoginEvents => Box::new(org.login_events.iter().rev().map(Row::Login)),
    }
}

fn value_at(org: &Org, row: Row<'_>, root: &'static ObjectSchema, path: &Resolved) -> Value {
    let mut row = row;
    let mut schema = root;
    for (id_field, from) in &path.hops {
        let Some(i) = from.field_index(id_field) else { return Value::Null };
        let id = row.value(schema, i);
        let rel = from.relationships.iter().find(|r| r.id_field == *id_field);
        let Some(target) = rel.and_then(|r| object_schema(r.target)) else { return Value::Null };
        let Some(record) = id.as_str().and_then(|id| org.table(target.name).get(id)) else { return Value::Null };
        row = Row::Record(record);
        schema = target;
    }
    row.value(schema, path.index)
}

/// The result of a query: matching records as REST JSON, and their count.
pub struct QueryResult {
    pub total_size: usize,
    pub records: Vec<serde_json::Value>,
}

/// Runs `query` against `org`. `api_version` goes into record URLs (`v62.0`).
pub fn execute(org: &Org, query: &Query, now_ms: i64, api_version: &str) -> Result<QueryResult, SoqlError> {
    let schema = object_schema(&query.object).ok_or_else(|| SoqlError {
        code: "INVALID_TYPE",
        message: format!(
            "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
            query.object
        ),
    })?;
    if schema.is_big_object() {
        check_big_object_query(schema, query)?;
    }
    let fields: Vec<Resolved> = query.fields.iter().map(|p| resolve(schema, p)).collect::<Result<_, _>>()?;
    let condition = query.condition.as_ref().map(|c| compile(org, schema, c, now_ms, api_version)).transpose()?;
    let order: Vec<(Resolved, &OrderBy)> =
        query.order_by.iter().map(|o| Ok((resolve(schema, &o.path)?, o))).collect::<Result<_, SoqlError>>()?;
    if query.offset.is_some_and(|o| o > 2000) {
        return Err(SoqlError {
            code: "NUMBER_OUTSIDE_VALID_RANGE",
            message: "Maximum SOQL offset allowed is 2000".into(),
        });
    }

    let mut matched: Vec<Row<'_>> =
        rows_of(org, schema).filter(|row| condition.as_ref().is_none_or(|c| c.test(org, schema, *row))).collect();
    if !order.is_empty() {
        let mut keyed: Vec<(Vec<Value>, Row<'_>)> = matched
            .into_iter()
            .map(|r| (order.iter().map(|(p, _)| value_at(org, r, schema, p)).collect(), r))
            .collect();
        keyed.sort_by(|(a, _), (b, _)| {
            for ((x, y), (_, o)) in a.iter().zip(b).zip(&order) {
                let ord = match (x, y) {
                    (Value::Null, Value::Null) => Ordering::Equal,
                    (Value::Null, _) => {
                        if o.nulls_last {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        }
                    }
                    (_, Value::Null) => {
                        if o.nulls_last {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        }
                    }
                    _ => {
                        let ord = compare_values(x, y).unwrap_or(Ordering::Equal);
                        if o.descending { ord.reverse() } else { ord }
                    }
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
        matched = keyed.into_iter().map(|(_, r)| r).collect();
    }
    let skip = query.offset.unwrap_or(0);
    let take = query.limit.unwrap_or(usize::MAX);
    let selected = matched.into_iter().skip(skip).take(take);
    if query.count {
        return Ok(QueryResult { total_size: selected.count(), records: Vec::new() });
    }
    let records: Vec<serde_json::Value> =
        selected.map(|row| record_json(org, row, schema, &fields, api_version)).collect();
    Ok(QueryResult { total_size: records.len(), records })
}

/// A record as the REST API returns it, relationship fields nested as objects.
fn record_json(
    org: &Org,
    row: Row<'_>,
    schema: &'static ObjectSchema,
    fields: &[Resolved],
    api_version: &str,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let id = row.value(schema, 0);
    out.insert("attributes".into(), attributes(schema.name, id.as_str(), api_version));
    for f in fields {
        let value = value_at(org, row, schema, f).to_json();
        // Walk/create nested relationship objects.
        let mut node = &mut out;
        let mut node_schema = schema;
        let mut row_here = Some(row);
        for (depth, name) in f.names.iter().enumerate() {
            if depth + 1 == f.names.len() {
                node.insert((*name).to_owned(), value);
                break;
            }
            let (id_field, _) = f.hops[depth];
            let target = node_schema.relationship(name).and_then(|r| object_schema(r.target));
            let related = row_here.and_then(|r| {
                let i = node_schema.field_index(id_field)?;
                let id = r.value(node_schema, i);
                let t = target?;
                id.as_str().and_then(|id| org.table(t.name).get(id)).map(Row::Record)
            });
            let Some(t) = target else { break };
            match related {
                None => {
                    node.insert((*name).to_owned(), serde_json::Value::Null);
                    break;
                }
                Some(r) => {
                    let entry = node.entry((*name).to_owned()).or_insert_with(|| {
                        let mut m = serde_json::Map::new();
                        m.insert("attributes".into(), attributes(t.name, r.value(t, 0).as_str(), api_version));
                        serde_json::Value::Object(m)
                    });
                    let Some(next) = entry.as_object_mut() else { break };
                    node = next;
                    node_schema = t;
                    row_here = Some(r);
                }
            }
        }
    }
    serde_json::Value::Object(out)
}

pub fn attributes(object: &str, id: Option<&str>, api_version: &str) -> serde_json::Value {
    let mut a = serde_json::json!({ "type": object });
    if let Some(id) = id {
        a["url"] = format!("/services/data/{api_version}/sobjects/{object}/{id}").into();
    }
    a
}

/// ReportEvent and LoginEvent are big objects: Salesforce allows filters only on their
/// index (`EventDate`, `EventDate` + `EventIdentifier`, `UserId` [+ `EventDate`]),
/// joined by AND, without `!=`; no ORDER BY except LoginEvent's `EventDate DESC`.
fn check_big_object_query(schema: &ObjectSchema, query: &Query) -> Result<(), SoqlError> {
    fn filters<'a>(c: &'a Condition, out: &mut Vec<(&'a str, CmpOp)>) -> Result<(), SoqlError> {
        match c {
            Condition::And(a, b) => {
                filters(a, out)?;
                filters(b, out)
            }
            Condition::Compare { path, op, .. } if path.len() == 1 => {
                if *op == CmpOp::Ne {
                    return Err(malformed("Big object queries do not support the != operator"));
                }
                out.push((path[0].as_str(), *op));
                Ok(())
            }
            Condition::In { negated: false, values: InValues::List(_), path } if path.len() == 1 => {
                out.push((path[0].as_str(), CmpOp::Eq));
                Ok(())
            }
            _ => Err(malformed(
                "Big object queries support only AND-joined filters on indexed fields; OR, NOT, LIKE, subqueries and relationship filters are not allowed",
            )),
        }
    }
    let mut used = Vec::new();
    if let Some(c) = &query.condition {
        filters(c, &mut used)?;
    }
    let names: HashSet<String> = used.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    let has = |n: &str| names.contains(&n.to_ascii_lowercase());
    let allowed = names.iter().all(|n| ["eventdate", "eventidentifier", "userid"].contains(&n.as_str()))
        && (!has("EventIdentifier") || has("EventDate"))
        && !(has("UserId") && has("EventIdentifier"));
    if !allowed {
        return Err(malformed(format!(
            "{} can be filtered only on EventDate, EventDate and EventIdentifier, or UserId (optionally with EventDate)",
            schema.name
        )));
    }
    let order_ok = match (schema.name, query.order_by.as_slice()) {
        (_, []) => true,
        ("LoginEvent", [o]) => o.path.len() == 1 && o.path[0].eq_ignore_ascii_case("EventDate") && o.descending,
        _ => false,
    };
    if !order_ok {
        return Err(malformed(format!(
            "{} does not support this ORDER BY{}",
            schema.name,
            if schema.name == "LoginEvent" { " (only EventDate DESC)" } else { "" }
        )));
    }
    Ok(())
}

/// A condition with paths resolved, literals type-checked and subqueries evaluated.
enum Test {
    And(Box<Test>, Box<Test>),
    Or(Box<Test>, Box<Test>),
    Not(Box<Test>),
    Compare(Resolved, CmpOp, Literal),
    Like(Resolved, Vec<LikePart>),
    In(Resolved, bool, Vec<Literal>),
}

enum LikePart {
    Any,
    One,
    Char(char),
}

fn compile(org: &Org, schema: &'static ObjectSchema, c: &Condition, now_ms: i64, v: &str) -> Result<Test, SoqlError> {
    Ok(match c {
        Condition::And(a, b) => {
            Test::And(Box::new(compile(org, schema, a, now_ms, v)?), Box::new(compile(org, schema, b, now_ms, v)?))
        }
        Condition::Or(a, b) => {
            Test::Or(Box::new(compile(org, schema, a, now_ms, v)?), Box::new(compile(org, schema, b, now_ms, v)?))
        }
        Condition::Not(a) => Test::Not(Box::new(compile(org, schema, a, now_ms, v)?)),
        Condition::Compare { path, op, value } => {
            let r = resolve(schema, path)?;
            check_literal(&r, value)?;
            if matches!(value, Literal::Null) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(malformed("null can only be compared with = or !="));
            }
            Test::Compare(r, *op, value.clone())
        }
        Condition::Like { path, pattern } => {
            let r = resolve(schema, path)?;
            if !matches!(r.ty(), FieldType::String | FieldType::Id | FieldType::Reference) {
                return Err(invalid_field(format!(
                    "invalid operator on {} field: LIKE",
                    r.schema.fields[r.index].name
                )));
            }
            let mut parts = Vec::new();
            let mut chars = pattern.chars();
            while let Some(ch) = chars.next() {
                parts.push(match ch {
                    '%' => LikePart::Any,
                    '_' => LikePart::One,
                    '\\' => LikePart::Char(chars.next().unwrap_or('\\')),
                    c => LikePart::Char(c),
                });
            }
            Test::Like(r, parts)
        }
        Condition::In { path, negated, values } => {
            let r = resolve(schema, path)?;
            let list = match values {
                InValues::List(list) => {
                    for l in list {
                        check_literal(&r, l)?;
                    }
                    list.clone()
                }
                InValues::Query(sub) => {
                    if !matches!(r.ty(), FieldType::Id | FieldType::Reference) || sub.fields.len() != 1 {
                        return Err(malformed(
                            "a semi-join subquery must select one id field and compare it with an id field",
                        ));
                    }
                    let sub_schema = object_schema(&sub.object).ok_or_else(|| SoqlError {
                        code: "INVALID_TYPE",
                        message: format!("sObject type '{}' is not supported.", sub.object),
                    })?;
                    let selected = resolve(sub_schema, &sub.fields[0])?;
                    if !matches!(selected.ty(), FieldType::Id | FieldType::Reference) {
                        return Err(malformed("a semi-join subquery must select an Id or reference field"));
                    }
                    let result = execute(org, sub, now_ms, v)?;
                    let name = selected.names.join(".");
                    let mut seen = HashSet::new();
                    result
                        .records
                        .iter()
                        .filter_map(|rec| name.split('.').try_fold(rec, |node, part| node.get(part)))
                        .filter_map(|v| v.as_str())
                        .filter(|id| seen.insert(id.get(..15).unwrap_or(id).to_owned()))
                        .map(|id| Literal::Text(id.to_owned()))
                        .collect()
                }
            };
            Test::In(r, *negated, list)
        }
    })
}

fn check_literal(r: &Resolved, lit: &Literal) -> Result<(), SoqlError> {
    let field = r.schema.fields[r.index].name;
    let ok = matches!(
        (r.ty(), lit),
        (_, Literal::Null)
            | (FieldType::Boolean, Literal::Bool(_))
            | (FieldType::String | FieldType::Id | FieldType::Reference, Literal::Text(_))
            | (FieldType::Int | FieldType::Double, Literal::Number(_))
            | (FieldType::DateTime, Literal::DateTime(_) | Literal::Range(..))
    );
    if ok {
        return Ok(());
    }
    let kind = match r.ty() {
        FieldType::Boolean => "boolean",
        FieldType::Int => "integer",
        FieldType::Double => "double",
        FieldType::DateTime => "dateTime",
        FieldType::Id | FieldType::Reference => "id",
        FieldType::String => "string",
    };
    let quoted = if r.ty() == FieldType::String || matches!(r.ty(), FieldType::Id | FieldType::Reference) {
        "should be enclosed in quotes"
    } else {
        "should not be enclosed in quotes"
    };
    Err(invalid_field(format!("value of filter criterion for field '{field}' must be of type {kind} and {quoted}")))
}

fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::DateTime(x), Value::DateTime(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Double(y)) => (*x as f64).partial_cmp(y),
        (Value::Double(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        _ => None,
    }
}

fn literal_matches(value: &Value, ty: FieldType, op: CmpOp, lit: &Literal) -> bool {
    if let Literal::Null = lit {
        return (op == CmpOp::Eq) == (*value == Value::Null);
    }
    if *value == Value::Null {
        return op == CmpOp::Ne;
    }
    if let (Literal::Range(_, start, end), Value::DateTime(t)) = (lit, value) {
        return match op {
            CmpOp::Eq => start <= t && t < end,
            CmpOp::Ne => !(start <= t && t < end),
            CmpOp::Lt => t < start,
            CmpOp::Le => t < end,
            CmpOp::Gt => t >= end,
            CmpOp::Ge => t >= start,
        };
    }
    let ord = match (value, lit) {
        (Value::Text(v), Literal::Text(l)) if matches!(ty, FieldType::Id | FieldType::Reference) => {
            // Ids compare by their case-sensitive 15-character form.
            let key = |s: &str| s.get(..15).unwrap_or(s).to_owned();
            Some(key(v).cmp(&key(l)))
        }
        (Value::Text(v), Literal::Text(l)) => Some(v.to_lowercase().cmp(&l.to_lowercase())),
        (Value::Bool(v), Literal::Bool(l)) => Some(v.cmp(l)),
        (Value::Int(v), Literal::Number(l)) => (*v as f64).partial_cmp(l),
        (Value::Double(v), Literal::Number(l)) => v.partial_cmp(l),
        (Value::DateTime(v), Literal::DateTime(l) | Literal::Date(l)) => Some(v.cmp(l)),
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

fn like(parts: &[LikePart], text: &[char]) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((LikePart::Any, rest)) => (0..=text.len()).any(|i| like(rest, &text[i..])),
        Some((LikePart::One, rest)) => !text.is_empty() && like(rest, &text[1..]),
        Some((LikePart::Char(c), rest)) => {
            text.first().is_some_and(|t| t.to_lowercase().eq(c.to_lowercase())) && like(rest, &text[1..])
        }
    }
}

impl Test {
    fn test(&self, org: &Org, schema: &'static ObjectSchema, row: Row<'_>) -> bool {
        match self {
            Test::And(a, b) => a.test(org, schema, row) && b.test(org, schema, row),
            Test::Or(a, b) => a.test(org, schema, row) || b.test(org, schema, row),
            Test::Not(a) => !a.test(org, schema, row),
            Test::Compare(r, op, lit) => literal_matches(&value_at(org, row, schema, r), r.ty(), *op, lit),
            Test::Like(r, parts) => match value_at(org, row, schema, r) {
                Value::Text(s) => like(parts, &s.chars().collect::<Vec<_>>()),
                _ => false,
            },
            Test::In(r, negated, list) => {
                let v = value_at(org, row, schema, r);
                if v == Value::Null {
                    return false;
                }
                let found = list.iter().any(|l| literal_matches(&v, r.ty(), CmpOp::Eq, l));
                found != *negated
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scope_query() {
        let q = parse(
            "SELECT Id, Username, Profile.Name FROM User WHERE IsActive = true AND Id IN (SELECT AssigneeId FROM PermissionSetAssignment WHERE PermissionSet.PermissionsExportReport = true) ORDER BY Username DESC NULLS LAST LIMIT 10",
            0,
        )
        .expect("parses");
        assert_eq!(q.fields.len(), 3);
        assert_eq!(q.fields[2], vec!["Profile".to_string(), "Name".to_string()]);
        assert_eq!(q.limit, Some(10));
        assert!(matches!(q.condition, Some(Condition::And(..))));
    }

    #[test]
    fn literals() {
        let q = parse(
            "SELECT Id FROM ReportEvent WHERE EventDate > 2026-01-02T03:04:05.250Z AND Name = 'O\\'Brien\\\\'",
            0,
        )
        .expect("parses");
        let Some(Condition::And(a, b)) = q.condition else { panic!("and") };
        assert_eq!(
            *a,
            Condition::Compare {
                path: vec!["EventDate".into()],
                op: CmpOp::Gt,
                value: Literal::DateTime(1_767_323_045_250)
            }
        );
        assert_eq!(
            *b,
            Condition::Compare { path: vec!["Name".into()], op: CmpOp::Eq, value: Literal::Text("O'Brien\\".into()) }
        );
        assert_eq!(parse_datetime("2026-01-02T03:04:05.250+0000"), Some(1_767_323_045_250));
        assert_eq!(parse_datetime("2026-01-02T04:04:05.250+01:00"), Some(1_767_323_045_250));
    }

    #[test]
    fn syntax_errors_point_at_the_token() {
        let e = parse("SELECT Id FORM User", 0).expect_err("bad");
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(e.message.contains("ERROR at Row:1:Column:11"), "{}", e.message);
        assert!(e.message.contains("unexpected token: 'FORM'"), "{}", e.message);
        assert!(parse("SELECT Id FROM User WHERE Name = 'x", 0).is_err());
        assert!(parse("SELECT Id FROM User LIMIT", 0).is_err());
        assert!(parse("SELECT FROM User", 0).is_err());
        assert!(parse("SELECT Id FROM User WHERE Name = 'a\\q'", 0).is_err());
    }

    #[test]
    fn like_patterns() {
        let parts = |p: &str| {
            p.chars()
                .map(|c| match c {
                    '%' => LikePart::Any,
                    '_' => LikePart::One,
                    c => LikePart::Char(c),
                })
                .collect::<Vec<_>>()
        };
        let t = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(like(&parts("%pipe%"), &t("Q3 Pipeline")));
        assert!(like(&parts("a_c"), &t("ABC")));
        assert!(!like(&parts("a_c"), &t("abbc")));
    }
}
