//! `file_events` is partitioned by calendar month (UTC) of `observed_at`: a month's
//! partition is made before its first event is stored, and retention drops months
//! whole.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{Datelike, TimeZone, Utc};

use super::Tx;
use crate::store::Result;

/// One month's partition: `[start, end)` in epoch ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Month {
    pub start: i64,
    pub end: i64,
    pub name: String,
}

fn month_starting(year: i32, month: u32) -> i64 {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().map_or(0, |t| t.timestamp_millis())
}

/// The month `at_ms` falls in.
pub(super) fn month_of(at_ms: i64) -> Month {
    let t = Utc.timestamp_millis_opt(at_ms).single().unwrap_or_default();
    let (year, month) = (t.year(), t.month());
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    Month {
        start: month_starting(year, month),
        end: month_starting(next_year, next_month),
        name: format!("file_events_{year:04}_{month:02}"),
    }
}

/// The month a partition's name stands for.
pub(super) fn month_named(name: &str) -> Option<Month> {
    let rest = name.strip_prefix("file_events_")?;
    let (year, month) = rest.split_once('_')?;
    let start = month_starting(year.parse().ok()?, month.parse().ok()?);
    (month_of(start).name == name).then(|| month_of(start))
}

/// The months known to have a partition, so that a commit asks only for new ones.
#[derive(Default)]
pub(super) struct Partitions(Mutex<HashSet<i64>>);

impl Partitions {
    /// Makes the partitions of the months of `times` that may not exist yet (the
    /// caller holds the numbering lock, so nodes do not race to make one), and
    /// answers them: the caller marks them `known` once its transaction committed.
    pub(super) fn ensure(&self, tx: &mut Tx<'_, '_>, times: impl IntoIterator<Item = i64>) -> Result<Vec<i64>> {
        let mut wanted: Vec<Month> = Vec::new();
        {
            let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for at in times {
                let month = month_of(at);
                if !known.contains(&month.start) && !wanted.contains(&month) {
                    wanted.push(month);
                }
            }
        }
        for m in &wanted {
            tx.batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF file_events FOR VALUES FROM ({}) TO ({})",
                m.name, m.start, m.end
            ))?;
        }
        Ok(wanted.iter().map(|m| m.start).collect())
    }

    /// Months whose partitions were made in a committed transaction.
    pub(super) fn known(&self, starts: Vec<i64>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(starts);
    }

    pub(super) fn forget(&self, month: &Month) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&month.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_named_and_bounded_in_utc() {
        let m = month_of(1_795_000_000_000); // 2026-11-18
        assert_eq!(m.name, "file_events_2026_11");
        assert_eq!((m.start, m.end), (month_starting(2026, 11), month_starting(2026, 12)));
        assert_eq!(month_of(m.end - 1), m);
        assert_eq!(month_of(month_starting(2026, 12)).name, "file_events_2026_12");
        assert_eq!(month_of(month_starting(2027, 1) - 1).end, month_starting(2027, 1));
        assert_eq!(month_of(0).name, "file_events_1970_01");
        assert_eq!(month_named("file_events_2026_11"), Some(m));
        assert_eq!(month_named("file_events_2026_13"), None);
        assert_eq!(month_named("file_events_default"), None);
    }
}
