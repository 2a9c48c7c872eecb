//! Forensic Search as SQL, once for both databases: the query model becomes a WHERE
//! clause, a sort and a keyset cursor, written in the dialect of the store that runs it.

use sfwire::id::SfId;

use crate::search::{Field, Filter, Op, QueryError, SearchQuery, like_pattern};

/// A bound value of a built statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param {
    Int(i64),
    Real(f64),
    Text(String),
}

/// What differs between the SQL of the two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Binds `value`, answering its placeholder (typed on PostgreSQL, which infers a
    /// parameter's type from its first use otherwise).
    pub(super) fn bind(self, params: &mut Vec<Param>, value: Param) -> String {
        let cast = match (&value, self) {
            (_, Dialect::Sqlite) => "",
            (Param::Int(_), Dialect::Postgres) => "::bigint",
            (Param::Real(_), Dialect::Postgres) => "::float8",
            (Param::Text(_), Dialect::Postgres) => "::text",
        };
        params.push(value);
        match self {
            Dialect::Sqlite => format!("?{}", params.len()),
            Dialect::Postgres => format!("${}{cast}", params.len()),
        }
    }

    fn truth(self, value: bool) -> &'static str {
        match (self, value) {
            (Dialect::Sqlite, true) => "1",
            (Dialect::Sqlite, false) => "0",
            (Dialect::Postgres, true) => "TRUE",
            (Dialect::Postgres, false) => "FALSE",
        }
    }

    /// Text equal ignoring case.
    fn same_text(self, column: &str, p: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{column} = {p} COLLATE NOCASE"),
            Dialect::Postgres => format!("lower({column}) = lower({p})"),
        }
    }

    fn text_in(self, column: &str, list: &[String]) -> String {
        match self {
            Dialect::Sqlite => format!("{column} COLLATE NOCASE IN ({})", list.join(", ")),
            Dialect::Postgres => format!(
                "lower({column}) IN ({})",
                list.iter().map(|p| format!("lower({p})")).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// LIKE ignoring case (SQLite's LIKE does already).
    fn like(self) -> &'static str {
        match self {
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        }
    }

    /// A text column as sorted and compared by cursors: absent as empty, bytewise.
    fn sort_text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("IFNULL({column}, '')"),
            Dialect::Postgres => format!("COALESCE({column}, '') COLLATE \"C\""),
        }
    }

    /// The `seq`s of the events an alert (given as SQL for its id) holds, as a subquery.
    pub(super) fn alert_seqs(self, alert_id: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "SELECT j.value FROM alert_event_blocks b, json_each(b.seqs) j
                 WHERE b.alert = (SELECT ord FROM alerts WHERE id = {alert_id})"
            ),
            Dialect::Postgres => format!(
                "SELECT unnest(b.seqs) FROM alert_event_blocks b
                 WHERE b.alert = (SELECT ord FROM alerts WHERE id = {alert_id})"
            ),
        }
    }
}

/// SQL for a filter, with its parameters.
fn filter_sql(d: Dialect, filter: &Filter, now: i64, params: &mut Vec<Param>) -> String {
    match filter {
        Filter::All(list) | Filter::Any(list) if list.is_empty() => d.truth(matches!(filter, Filter::All(_))).into(),
        Filter::All(list) => {
            format!("({})", list.iter().map(|f| filter_sql(d, f, now, params)).collect::<Vec<_>>().join(" AND "))
        }
        Filter::Any(list) => {
            format!("({})", list.iter().map(|f| filter_sql(d, f, now, params)).collect::<Vec<_>>().join(" OR "))
        }
        Filter::Term { field: field @ (Field::Username | Field::Email | Field::UserName), op }
            if !matches!(op, Op::Exists(_)) =>
        {
            // People are found by id: names resolve through the small known_users table,
            // then the (user_id, observed_at) index does the rest.
            let column = if *field == Field::UserName { "name" } else { field.column() };
            let (negate, positive) = match op {
                Op::IsNot(v) => ("NOT ", Op::Is(v.clone())),
                other => ("", other.clone()),
            };
            let inner = term_sql(d, column, false, &positive, now, params);
            format!("user_id {negate}IN (SELECT user_id FROM known_users WHERE {inner})")
        }
        Filter::Term { field: Field::UserId, op: Op::Is(v) } if SfId::parse(v).is_ok() => {
            // An id is exact (its 18-character form is how it is stored), so the
            // (user_id, observed_at) index answers it.
            let id = SfId::parse(v).map(|id| id.to_string()).unwrap_or_default();
            format!("user_id = {}", d.bind(params, Param::Text(id)))
        }
        Filter::Term { field: Field::Indicators, op } => {
            // A JSON array of indicator names: each name is matched whole, quotes and all.
            let like = d.like();
            let mut one = |v: &str| {
                let p = d.bind(params, Param::Text(format!("%\"{}\"%", v.replace(['%', '_', '\\'], ""))));
                format!("indicators {like} {p}")
            };
            match op {
                Op::Is(v) => one(v),
                Op::IsNot(v) => format!("NOT {}", one(v)),
                Op::AnyOf(vs) if !vs.is_empty() => {
                    format!("({})", vs.iter().map(|v| one(v)).collect::<Vec<_>>().join(" OR "))
                }
                Op::Exists(true) => "indicators != '[]'".into(),
                Op::Exists(false) => "indicators = '[]'".into(),
                other => term_sql(d, "indicators", false, other, now, params),
            }
        }
        Filter::Term { field: Field::Alert, op } => {
            let mut inner = |v: &str| {
                let p = d.bind(params, Param::Text(v.to_owned()));
                format!("seq IN ({})", d.alert_seqs(&p))
            };
            match op {
                Op::Is(v) => inner(v),
                Op::IsNot(v) => format!("NOT {}", inner(v)),
                Op::AnyOf(vs) if !vs.is_empty() => {
                    format!("({})", vs.iter().map(|v| inner(v)).collect::<Vec<_>>().join(" OR "))
                }
                // Refused by validation: an alert is named by its id.
                _ => d.truth(false).into(),
            }
        }
        Filter::Term { field, op } => term_sql(d, field.column(), field.is_numeric(), op, now, params),
    }
}

/// SQL for one comparison on `column` (a fixed name, never input).
fn term_sql(d: Dialect, column: &str, numeric: bool, op: &Op, now: i64, params: &mut Vec<Param>) -> String {
    let mut value = |v: &str| {
        let value = if numeric {
            v.parse::<f64>().map_or(Param::Text(v.to_owned()), Param::Real)
        } else {
            Param::Text(v.to_owned())
        };
        d.bind(params, value)
    };
    // Text comparisons ignore case, as analysts expect of usernames and names.
    match op {
        Op::Is(v) if numeric => format!("{column} = {}", value(v)),
        Op::Is(v) => d.same_text(column, &value(v)),
        Op::IsNot(v) if numeric => format!("({column} IS NULL OR {column} != {})", value(v)),
        Op::IsNot(v) => format!("({column} IS NULL OR NOT {})", d.same_text(column, &value(v))),
        Op::AnyOf(vs) => {
            let list: Vec<String> = vs.iter().map(|v| value(v)).collect();
            if numeric { format!("{column} IN ({})", list.join(", ")) } else { d.text_in(column, &list) }
        }
        Op::Exists(true) if numeric => format!("{column} IS NOT NULL"),
        Op::Exists(false) if numeric => format!("{column} IS NULL"),
        Op::Exists(true) => format!("({column} IS NOT NULL AND {column} != '')"),
        Op::Exists(false) => format!("({column} IS NULL OR {column} = '')"),
        Op::Greater(n) => format!("{column} > {}", d.bind(params, Param::Real(*n))),
        Op::Less(n) => format!("{column} < {}", d.bind(params, Param::Real(*n))),
        Op::WithinLast(ms) => format!("{column} >= {}", d.bind(params, Param::Int(now - ms))),
        Op::Matches(p) => {
            let p = d.bind(params, Param::Text(like_pattern(p)));
            format!("{column} {} {p} ESCAPE '\\'", d.like())
        }
    }
}

/// The WHERE clauses (and their parameters) of a query's time range, filter and
/// ingest sequence.
fn matching(d: Dialect, query: &SearchQuery, from_ms: i64, to_ms: i64, now: i64) -> (Vec<String>, Vec<Param>) {
    let mut params = Vec::new();
    let mut clauses = vec![
        format!("observed_at >= {}", d.bind(&mut params, Param::Int(from_ms))),
        format!("observed_at < {}", d.bind(&mut params, Param::Int(to_ms))),
    ];
    clauses.push(filter_sql(d, &query.filter, now, &mut params));
    if let Some(seq) = query.after_seq {
        clauses.push(format!("seq > {}", d.bind(&mut params, Param::Int(seq))));
    }
    (clauses, params)
}

/// A page of a search: `page_size + 1` rows of `columns`, so that a further row
/// says there is a next page.
pub(super) fn search(
    d: Dialect,
    query: &SearchQuery,
    columns: &str,
    now: i64,
) -> Result<(String, Vec<Param>), QueryError> {
    query.validate()?;
    // Paging by time narrows the time range itself to the cursor, so the index seeks
    // straight to the page (SQLite does not pick the tighter of two bounds it cannot
    // compare; measured: every page rescanned the range, quadratic exports).
    let (mut from_ms, mut to_ms) = (query.from_ms, query.to_ms);
    if query.sort.field == Field::ObservedAt
        && let Some(at) = query.after.as_deref().and_then(|a| a.split('|').next()).and_then(|v| v.parse::<i64>().ok())
    {
        if query.sort.descending {
            to_ms = to_ms.min(at.saturating_add(1));
        } else {
            from_ms = from_ms.max(at);
        }
    }
    let (mut clauses, mut params) = matching(d, query, from_ms, to_ms, now);
    // Absent text sorts as empty text, so that the cursor comparison below sees
    // the same order as ORDER BY (a NULL compares as neither less nor greater).
    let column = if query.sort.field.is_numeric() {
        query.sort.field.column().to_owned()
    } else {
        d.sort_text(query.sort.field.column())
    };
    let (cmp, dir) = if query.sort.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(after) = &query.after {
        // Keyset paging: (sort value, seq) strictly after the last row of the previous page.
        let not_a_cursor = || QueryError(format!("{after:?} is not a page cursor"));
        let (value, seq) = after
            .rsplit_once('|')
            .and_then(|(v, s)| Some((v.to_owned(), s.parse::<i64>().ok()?)))
            .ok_or_else(not_a_cursor)?;
        let value = if query.sort.field.is_numeric() {
            value.parse::<f64>().map(Param::Real).map_err(|_| not_a_cursor())?
        } else {
            Param::Text(value)
        };
        let v = d.bind(&mut params, value);
        let s = d.bind(&mut params, Param::Int(seq));
        clauses.push(format!("({column} {cmp} {v} OR ({column} = {v} AND seq {cmp} {s}))"));
    }
    let limit = d.bind(&mut params, Param::Int(query.page_size as i64 + 1));
    let sql = format!(
        "SELECT {columns} FROM file_events WHERE {} ORDER BY {column} {dir}, seq {dir} LIMIT {limit}",
        clauses.join(" AND "),
    );
    Ok((sql, params))
}

/// Counts a query's matches up to `cap`.
pub(super) fn count(d: Dialect, query: &SearchQuery, cap: u64, now: i64) -> Result<(String, Vec<Param>), QueryError> {
    query.validate()?;
    let (clauses, mut params) = matching(d, query, query.from_ms, query.to_ms, now);
    let limit = d.bind(&mut params, Param::Int(cap.min(i64::MAX as u64) as i64));
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM file_events WHERE {} LIMIT {limit}) matched",
        clauses.join(" AND ")
    );
    Ok((sql, params))
}

/// The next page's cursor, when `rows` holds one more event than a page.
pub(super) fn next_cursor(query: &SearchQuery, events: &mut Vec<crate::events::FileEvent>) -> Option<String> {
    if events.len() > query.page_size {
        events.truncate(query.page_size);
        events.last().map(|e| format!("{}|{}", query.sort.field.cursor_value(e), e.seq))
    } else {
        None
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Param::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Param::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Param::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Sort;

    /// The same query in both dialects binds the same values, only the placeholders
    /// and case-insensitive comparisons differ.
    #[test]
    fn both_dialects_bind_the_same_values() {
        let query = SearchQuery {
            from_ms: 1,
            to_ms: 2,
            filter: Filter::All(vec![
                Filter::Term { field: Field::Username, op: Op::Is("Ann".into()) },
                Filter::Term { field: Field::Rows, op: Op::Greater(10.0) },
                Filter::Term { field: Field::ReportName, op: Op::Matches("*pipe*".into()) },
            ]),
            sort: Sort { field: Field::Username, descending: false },
            page_size: 5,
            after: Some("ann|7".into()),
            after_seq: None,
        };
        let (lite, lite_params) = search(Dialect::Sqlite, &query, "seq", 0).expect("sql");
        let (pg, pg_params) = search(Dialect::Postgres, &query, "seq", 0).expect("sql");
        assert_eq!(lite_params, pg_params);
        assert!(lite.contains("username = ?3 COLLATE NOCASE"), "{lite}");
        assert!(pg.contains("lower(username) = lower($3::text)"), "{pg}");
        assert!(pg.contains("report_name ILIKE $5::text"), "{pg}");
        assert!(pg.contains("ORDER BY COALESCE(username, '') COLLATE \"C\" ASC"), "{pg}");
    }
}
