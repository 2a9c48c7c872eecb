//! Tokens to a [`Query`].

use chrono::NaiveDate;

use super::lexer::{Lexed, Tok, lex, syntax_error};
use super::{CmpOp, Condition, InValues, Literal, OrderBy, Query, SoqlError, malformed};
use crate::model::{day_start, parse_datetime};

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
