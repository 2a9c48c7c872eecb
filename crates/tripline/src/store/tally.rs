//! The dashboard's counts of a run of file events, summed in memory before they are
//! added to the `agg_*` tables: one upsert per (hour, ...) key, not per event. Both
//! stores fill a `Tally` from the events after their saved position and write it with
//! the new position in one transaction.

use std::collections::HashMap;

/// Downloads and rows under one key.
#[derive(Default)]
pub(super) struct Sum {
    pub downloads: i64,
    pub rows: i64,
    /// The newest name seen for the key (username, report name).
    pub name: Option<String>,
    pub last_at: i64,
    /// The highest severity's rank.
    pub worst: i64,
}

impl Sum {
    fn add(&mut self, rows: i64, name: &Option<String>, at: i64, worst: i64) {
        self.downloads += 1;
        self.rows += rows;
        if name.is_some() {
            self.name.clone_from(name);
        }
        self.last_at = self.last_at.max(at);
        self.worst = self.worst.max(worst);
    }
}

/// What the aggregator reads of one file event.
pub(super) struct Counted {
    pub observed_at: i64,
    pub connection_id: String,
    pub destination: String,
    pub severity: crate::risk::Severity,
    pub rows: i64,
    pub user_id: String,
    pub username: Option<String>,
    pub report_id: Option<String>,
    pub report_name: Option<String>,
}

/// The columns `Counted` is read from, after `seq`.
pub(super) const COUNTED_COLUMNS: &str =
    "seq, observed_at, connection_id, destination, severity, rows, user_id, username, report_id, report_name";

#[derive(Default)]
pub(super) struct Tally {
    /// (hour, connection, destination, severity)
    pub hourly: HashMap<(i64, String, String, String), Sum>,
    /// (hour, user) and (day, user)
    pub user_hours: HashMap<(i64, String), Sum>,
    pub user_days: HashMap<(i64, String), Sum>,
    /// (hour, report id or name) and (day, ...)
    pub report_hours: HashMap<(i64, String), Sum>,
    pub report_days: HashMap<(i64, String), Sum>,
    pub users: HashMap<String, Sum>,
    /// Each connection's newest event.
    pub connections: HashMap<String, i64>,
}

impl Tally {
    pub(super) fn add(&mut self, e: Counted) {
        let at = e.observed_at;
        let (hour, day) = (at.div_euclid(3_600_000) * 3_600_000, at.div_euclid(86_400_000) * 86_400_000);
        // The declaration order of severities is their rank.
        let rank = e.severity as i64;
        let report = e.report_id.or_else(|| e.report_name.clone()).unwrap_or_default();
        let newest = self.connections.entry(e.connection_id.clone()).or_default();
        *newest = (*newest).max(at);
        self.hourly
            .entry((hour, e.connection_id, e.destination, e.severity.as_str().to_owned()))
            .or_default()
            .add(e.rows, &None, at, rank);
        self.user_hours.entry((hour, e.user_id.clone())).or_default().add(e.rows, &e.username, at, rank);
        self.user_days.entry((day, e.user_id.clone())).or_default().add(e.rows, &e.username, at, rank);
        self.report_hours.entry((hour, report.clone())).or_default().add(e.rows, &e.report_name, at, rank);
        self.report_days.entry((day, report)).or_default().add(e.rows, &e.report_name, at, rank);
        self.users.entry(e.user_id).or_default().add(e.rows, &e.username, at, rank);
    }
}
