//! The scope CSV an admin uploads (step 2): usernames or emails, or public groups by
//! name, developer name or id. UTF-8 with or without a BOM, header optional, blank
//! lines and duplicates tolerated; anything wrong is reported with its line number and
//! nothing is saved.

use std::collections::HashSet;

/// Largest file accepted.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Most entries accepted.
pub const MAX_ENTRIES: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvKind {
    Users,
    Groups,
}

/// The entries of a valid file, each with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCsv {
    pub kind: CsvKind,
    pub entries: Vec<(usize, String)>,
}

/// Everything wrong with a file, by line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the CSV file was not accepted: {}", .problems.iter().map(|(l, m)| if *l == 0 { m.clone() } else { format!("line {l}: {m}") }).collect::<Vec<_>>().join("; "))]
pub struct CsvError {
    /// (line number, 0 for the whole file; message)
    pub problems: Vec<(usize, String)>,
}

impl CsvError {
    /// Each problem as a person reads it: "people.csv, line 3: ...", or the file's name
    /// alone for the whole file.
    pub fn messages(&self, file_name: &str) -> Vec<String> {
        self.problems
            .iter()
            .map(
                |(line, m)| {
                    if *line == 0 { format!("{file_name}: {m}") } else { format!("{file_name}, line {line}: {m}") }
                },
            )
            .collect()
    }
}

fn whole(message: impl Into<String>) -> CsvError {
    CsvError { problems: vec![(0, message.into())] }
}

/// The fields of a CSV line (quotes and doubled quotes understood).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                field.push(c);
            }
        }
        fields.push(field.trim().to_owned());
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

/// The lines of a file with their fields, and the problems of the lines that could
/// not be read: bounded in size, UTF-8 (a BOM allowed), blank lines left out.
type Records = (Vec<(usize, Vec<String>)>, Vec<(usize, String)>);

fn records(bytes: &[u8]) -> Result<Records, CsvError> {
    if bytes.len() > MAX_BYTES {
        return Err(whole(format!("the file is {} bytes; at most {MAX_BYTES} are accepted", bytes.len())));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            return Err(CsvError { problems: vec![(line, "not UTF-8 text: save the file as UTF-8 CSV".into())] });
        }
    };
    let mut problems = Vec::new();
    let mut records = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        match fields(raw) {
            Ok(f) if f.iter().all(String::is_empty) => {}
            Ok(f) if f.iter().any(|v| v.chars().any(char::is_control)) => {
                problems.push((i + 1, "control characters are not allowed".into()))
            }
            Ok(f) if f.iter().any(|v| v.chars().count() > 255) => {
                problems.push((i + 1, "longer than 255 characters".into()))
            }
            Ok(f) => records.push((i + 1, f)),
            Err(m) => problems.push((i + 1, m)),
        }
    }
    Ok((records, problems))
}

/// What is wrong with a Salesforce username (or email) as a person may give one
/// (in a file, a form or the API), if anything.
pub(crate) fn username_problem(field: &str) -> Option<String> {
    (!field.contains('@') || field.contains(char::is_whitespace) || field.chars().count() > 255)
        .then(|| format!("{field:?} is not a Salesforce username or email"))
}

const HEADERS: [&str; 9] =
    ["username", "user", "email", "user name", "name", "group", "group name", "developername", "id"];

impl ScopeCsv {
    pub fn parse(bytes: &[u8], kind: CsvKind) -> Result<ScopeCsv, CsvError> {
        let (records, mut problems) = records(bytes)?;
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        for (line, fields) in records {
            let field = fields.into_iter().next().unwrap_or_default();
            if field.is_empty() {
                continue;
            }
            if entries.is_empty() && problems.is_empty() && HEADERS.contains(&field.to_lowercase().as_str()) {
                continue; // a header
            }
            if kind == CsvKind::Users
                && let Some(problem) = username_problem(&field)
            {
                problems.push((line, problem));
                continue;
            }
            if seen.insert(field.to_lowercase()) {
                entries.push((line, field));
            }
        }
        if entries.len() > MAX_ENTRIES {
            problems.push((0, format!("{} entries; at most {MAX_ENTRIES} are accepted", entries.len())));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|(line, _)| *line);
            return Err(CsvError { problems });
        }
        if entries.is_empty() {
            return Err(whole("the file names no users or groups"));
        }
        Ok(ScopeCsv { kind, entries })
    }

    pub fn values(&self) -> Vec<String> {
        self.entries.iter().map(|(_, e)| e.clone()).collect()
    }

    /// An error naming the lines of `unknown` entries (none: Ok).
    pub(crate) fn reject_unknown(&self, unknown: &[String]) -> Result<(), CsvError> {
        let problems: Vec<(usize, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| unknown.iter().any(|u| u.eq_ignore_ascii_case(e)))
            .map(|(l, e)| {
                let what = if self.kind == CsvKind::Users { "user" } else { "public group" };
                (*l, format!("no {what} {e:?} in this Salesforce org"))
            })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(CsvError { problems }) }
    }
}

/// A watch list file: a username per line, then optionally the departure date
/// (YYYY-MM-DD) and a note; read with the same rules as scope files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchCsv {
    /// (line, username in lower case, departure, note)
    pub entries: Vec<(usize, String, Option<chrono::NaiveDate>, Option<String>)>,
}

impl WatchCsv {
    pub fn parse(bytes: &[u8]) -> Result<WatchCsv, CsvError> {
        let (records, mut problems) = records(bytes)?;
        let mut entries: Vec<(usize, String, Option<chrono::NaiveDate>, Option<String>)> = Vec::new();
        for (line, fields) in records {
            let username = fields[0].to_lowercase();
            if entries.is_empty() && problems.is_empty() && HEADERS.contains(&username.as_str()) {
                continue; // a header
            }
            if let Some(problem) = username_problem(&username) {
                problems.push((line, problem));
                continue;
            }
            let departure = match fields.get(1).map(String::as_str).filter(|d| !d.is_empty()) {
                None => None,
                Some(text) => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                    Ok(date) => Some(date),
                    Err(_) => {
                        problems.push((line, format!("{text:?} is not a date (YYYY-MM-DD)")));
                        continue;
                    }
                },
            };
            let note = fields.get(2).filter(|n| !n.is_empty()).cloned();
            match entries.iter_mut().find(|e| e.1 == username) {
                Some(known) => *known = (known.0, username, departure, note),
                None => entries.push((line, username, departure, note)),
            }
        }
        if entries.len() > MAX_ENTRIES {
            problems.push((0, format!("{} entries; at most {MAX_ENTRIES} are accepted", entries.len())));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|(line, _)| *line);
            return Err(CsvError { problems });
        }
        if entries.is_empty() {
            return Err(whole("the file names no users"));
        }
        Ok(WatchCsv { entries })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn problems_read_as_file_and_line() {
        let e = CsvError { problems: vec![(0, "empty".into()), (3, "not a username".into())] };
        assert_eq!(e.messages("people.csv"), ["people.csv: empty", "people.csv, line 3: not a username"]);
    }

    use super::*;

    #[test]
    fn accepts_the_usual_shapes() {
        let csv = ScopeCsv::parse(
            b"\xEF\xBB\xBFUsername\r\nana@x.example\r\n\r\nANA@x.example\n\"bo@x.example\",extra\n",
            CsvKind::Users,
        )
        .expect("valid");
        assert_eq!(csv.entries, vec![(2, "ana@x.example".into()), (5, "bo@x.example".into())]);
        let groups = ScopeCsv::parse(b"All Sales\nEMEA_Sales\n00G2A000000000AAAA\n", CsvKind::Groups).expect("valid");
        assert_eq!(groups.values().len(), 3);
    }

    #[test]
    fn watch_list_files_carry_dates_and_notes() {
        let csv = WatchCsv::parse(
            b"username,departure,note\nAna@x.example,2026-12-31,\"Leaves, to a rival\"\nbo@x.example\n",
        )
        .expect("valid");
        assert_eq!(csv.entries.len(), 2);
        assert_eq!(csv.entries[0].1, "ana@x.example");
        assert_eq!(csv.entries[0].2, chrono::NaiveDate::from_ymd_opt(2026, 12, 31));
        assert_eq!(csv.entries[0].3.as_deref(), Some("Leaves, to a rival"));
        let e = WatchCsv::parse(b"ana@x.example,31/12/2026\nnobody\n").expect_err("bad");
        assert_eq!(e.problems.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn refuses_with_line_numbers() {
        let e = ScopeCsv::parse(b"ana@x.example\nnot a user\n\"open@x.example\n", CsvKind::Users).expect_err("bad");
        assert_eq!(e.problems.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 3]);
        let e = ScopeCsv::parse(b"ok@x.example\n\xff\xfe\n", CsvKind::Users).expect_err("latin-1");
        assert_eq!(e.problems[0].0, 2);
        assert!(ScopeCsv::parse(&vec![b'a'; MAX_BYTES + 1], CsvKind::Groups).is_err());
        assert!(ScopeCsv::parse(b"\n\n", CsvKind::Groups).is_err());
        let csv = ScopeCsv::parse(b"a@x.example\nb@x.example\n", CsvKind::Users).expect("valid");
        let e = csv.reject_unknown(&["B@X.example".into()]).expect_err("unknown");
        assert_eq!(e.problems, vec![(2, "no user \"b@x.example\" in this Salesforce org".into())]);
        assert!(e.to_string().contains("line 2"));
    }
}
