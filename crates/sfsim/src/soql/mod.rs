//! SOQL: a parser for the subset Salesforce clients use, and its evaluation over the
//! org's objects, with Salesforce's error codes and the big-object query restrictions.
//! `lexer` splits the text into tokens, `parser` builds the [`Query`], `eval` runs it.

mod eval;
mod lexer;
mod parser;

pub use eval::{attributes, columns, execute};
pub use parser::parse;

/// A query failure, as Salesforce names it (`MALFORMED_QUERY`, `INVALID_FIELD`, ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SoqlError {
    pub code: &'static str,
    pub message: String,
    /// The field path the error is about, as written (so the message can point at it).
    pub near: Option<String>,
}

impl SoqlError {
    /// Salesforce's message for a query that names a bad field: the query, a caret
    /// under the field, its row and column, then the reason.
    pub fn located(&self, text: &str) -> String {
        let at = self.near.as_deref().and_then(|near| lexer::find_path(text, near));
        match at {
            Some(at) => format!("{}\n{}", lexer::pointer(text, at), self.message),
            None => self.message.clone(),
        }
    }
}

pub(crate) fn malformed(message: impl Into<String>) -> SoqlError {
    SoqlError { code: "MALFORMED_QUERY", message: message.into(), near: None }
}

/// A bad field; `path` (if any) is where the message points.
pub(crate) fn invalid_field(message: impl Into<String>, path: &[String]) -> SoqlError {
    SoqlError { code: "INVALID_FIELD", message: message.into(), near: (!path.is_empty()).then(|| path.join(".")) }
}

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
        use crate::model::parse_datetime;
        assert_eq!(parse_datetime("2026-01-02T03:04:05.250+0000"), Some(1_767_323_045_250));
        assert_eq!(parse_datetime("2026-01-02T04:04:05.250+01:00"), Some(1_767_323_045_250));
    }

    #[test]
    fn syntax_errors_point_at_the_token() {
        let e = parse("SELECT Id FORM User", 0).expect_err("bad");
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(e.message.contains("ERROR at Row:1:Column:11"), "{}", e.message);
        assert!(e.message.contains("unexpected token: 'FORM'"), "{}", e.message);
        let text = "SELECT Id,\n  Profile.Nope FROM User";
        let bad = SoqlError { near: Some("Profile.Nope".into()), ..invalid_field("No such column", &[]) };
        assert_eq!(bad.located(text), "\n  Profile.Nope FROM User\n  ^\nERROR at Row:2:Column:3\nNo such column");
        assert!(parse("SELECT Id FROM User WHERE Name = 'x", 0).is_err());
        assert!(parse("SELECT Id FROM User LIMIT", 0).is_err());
        assert!(parse("SELECT FROM User", 0).is_err());
        assert!(parse("SELECT Id FROM User WHERE Name = 'a\\q'", 0).is_err());
    }
}
