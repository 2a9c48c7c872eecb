//! Running a [`Query`] over the org: rows, relationship paths, conditions, order,
//! limits, and the JSON records REST answers with.

use std::cmp::Ordering;
use std::collections::HashSet;

use sfwire::id::record_key;

use super::{CmpOp, Condition, InValues, Literal, OrderBy, Query, SoqlError, invalid_field, malformed};
use crate::model::{FieldType, ObjectSchema, Row, Storage, Value, object_schema};
use crate::org::Org;

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
                invalid_field(
                    format!(
                        "No such column '{part}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                        current.name
                    ),
                    path,
                )
            })?;
            names.push(current.fields[index].name);
            return Ok(Resolved { hops, schema: current, index, names });
        }
        let rel = current.relationship(part).ok_or_else(|| {
            invalid_field(
                format!(
                    "Didn't understand relationship '{part}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                ),
                path,
            )
        })?;
        let target = object_schema(rel.target).ok_or_else(|| malformed(format!("no object {}", rel.target)))?;
        names.push(rel.name);
        hops.push((rel.id_field, current));
        current = target;
    }
    Err(malformed("empty field path"))
}

/// What `query?q=...&columns=true` answers: the query's columns (Salesforce's
/// `columnMetadata`), without running it. Relationship paths nest as `joinColumns`.
pub fn columns(query: &Query) -> Result<serde_json::Value, SoqlError> {
    let schema = object_schema(&query.object).ok_or_else(|| SoqlError {
        code: "INVALID_TYPE",
        message: format!("sObject type '{}' is not supported.", query.object),
        near: None,
    })?;
    let mut top: Vec<serde_json::Value> = Vec::new();
    for path in &query.fields {
        let r = resolve(schema, path)?;
        let leaf = column(r.names.last().copied().unwrap_or_default(), &r.names.join("."), Some(r.ty()));
        // Each relationship on the way is a column holding the next as a join column.
        let mut node = leaf;
        for depth in (0..r.names.len() - 1).rev() {
            let name = r.names[depth];
            let display = r.names[..=depth].join(".");
            let mut parent = column(name, &display, None);
            parent["joinColumns"] = serde_json::json!([node]);
            node = parent;
        }
        // Fields under one relationship share its column.
        let is_relationship = r.names.len() > 1;
        let merged = top.iter_mut().find(|c| is_relationship && c["columnName"] == node["columnName"]);
        match merged {
            Some(existing) => {
                let more = node["joinColumns"].as_array().cloned().unwrap_or_default();
                if let Some(joins) = existing["joinColumns"].as_array_mut() {
                    joins.extend(more);
                }
            }
            None => top.push(node),
        }
    }
    Ok(serde_json::json!({
        "columnMetadata": top,
        "entityName": schema.name,
        "groupBy": false,
        "idSelected": query.fields.iter().any(|p| p.len() == 1 && p[0].eq_ignore_ascii_case("Id")),
        "keyPrefix": schema.key_prefix,
    }))
}

/// One column's metadata (`ty` none: a relationship).
fn column(name: &str, display: &str, ty: Option<FieldType>) -> serde_json::Value {
    let apex = ty.map(|t| match t {
        FieldType::Id | FieldType::Reference => "Id",
        FieldType::String => "String",
        FieldType::Boolean => "Boolean",
        FieldType::Int => "Integer",
        FieldType::Double => "Double",
        FieldType::DateTime => "Datetime",
    });
    serde_json::json!({
        "aggregate": false,
        "apexType": apex,
        "booleanType": ty == Some(FieldType::Boolean),
        "columnName": name,
        "custom": false,
        "displayName": display,
        "foreignKeyName": null,
        "insertable": false,
        "joinColumns": [],
        "numberType": matches!(ty, Some(FieldType::Int | FieldType::Double)),
        "textType": matches!(ty, Some(FieldType::String)),
        "updatable": false,
    })
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
        near: None,
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
            near: None,
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
                return Err(invalid_field(
                    format!("invalid operator on {} field: LIKE", r.schema.fields[r.index].name),
                    path,
                ));
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
                        near: None,
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
                        .filter(|id| seen.insert(record_key(id).to_owned()))
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
    Err(invalid_field(
        format!("value of filter criterion for field '{field}' must be of type {kind} and {quoted}"),
        &[],
    ))
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
            let key = |s: &str| record_key(s).to_owned();
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
