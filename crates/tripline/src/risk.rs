//! Risk: what makes an export risky (indicators), how much each counts (the scores an
//! admin sets in Risk settings), the severity the total gives, and the watch lists of
//! people whose exports matter more. Pure rules: no storage, no Salesforce.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::named::named_enum;

named_enum! {
    /// Something about an export that makes it riskier.
    pub enum RiskIndicator ("risk indicator") {
        /// At least the configured number of rows.
        LargeExport = "large-export",
        /// From outside the corporate IP ranges.
        UnmonitoredDevice = "unmonitored-device",
        /// Outside the configured working hours (in the configured time zone).
        OffHours = "off-hours",
        /// The user's first stored export.
        FirstExportByUser = "first-export-by-user",
        /// From an address this user has not exported from before.
        NewSourceIp = "new-source-ip",
        /// The report queries one of the configured sensitive objects.
        SensitiveObjects = "sensitive-objects",
        /// Exported in the background (`ReportExportedAsynchronously`).
        AsyncExport = "async-export",
        /// Pulled into Excel by the Excel connector.
        ExcelConnector = "excel-connector",
        /// The user is on the departing employees watch list.
        DepartingEmployee = "departing-employee",
        /// The user is on the high-risk users watch list.
        HighRiskUser = "high-risk-user",
        /// The user is on the contractors watch list.
        Contractor = "contractor",
        /// A Salesforce transaction security policy blocked the export.
        PolicyBlocked = "policy-blocked",
        /// A Salesforce transaction security policy notified about the export.
        PolicyNotified = "policy-notified",
    }
}

named_enum! {
    /// How risky an export (or an alert) is; ordered from no risk to critical.
    pub enum Severity ("severity") {
        NoRisk = "no-risk",
        Low = "low",
        Moderate = "moderate",
        High = "high",
        Critical = "critical",
    }
}

named_enum! {
    /// The watch lists an admin keeps.
    pub enum WatchKind ("watch list") {
        Departing = "departing",
        HighRisk = "high-risk",
        Contractor = "contractor",
    }
}

impl RiskIndicator {
    /// How the console names it.
    pub fn label(self) -> &'static str {
        match self {
            RiskIndicator::LargeExport => "Large export",
            RiskIndicator::UnmonitoredDevice => "Unmonitored device",
            RiskIndicator::OffHours => "Off hours",
            RiskIndicator::FirstExportByUser => "First export by user",
            RiskIndicator::NewSourceIp => "New source IP for user",
            RiskIndicator::SensitiveObjects => "Sensitive objects",
            RiskIndicator::AsyncExport => "Exported asynchronously",
            RiskIndicator::ExcelConnector => "Excel connector",
            RiskIndicator::DepartingEmployee => "Departing employee",
            RiskIndicator::HighRiskUser => "High-risk user",
            RiskIndicator::Contractor => "Contractor",
            RiskIndicator::PolicyBlocked => "Blocked by a transaction security policy",
            RiskIndicator::PolicyNotified => "Transaction security policy notified",
        }
    }

    /// The score an installation starts with.
    fn default_score(self) -> u32 {
        match self {
            RiskIndicator::LargeExport => 3,
            RiskIndicator::UnmonitoredDevice => 3,
            RiskIndicator::OffHours => 2,
            RiskIndicator::FirstExportByUser => 1,
            RiskIndicator::NewSourceIp => 2,
            RiskIndicator::SensitiveObjects => 2,
            RiskIndicator::AsyncExport => 1,
            RiskIndicator::ExcelConnector => 1,
            RiskIndicator::DepartingEmployee => 5,
            RiskIndicator::HighRiskUser => 4,
            RiskIndicator::Contractor => 2,
            RiskIndicator::PolicyBlocked => 6,
            RiskIndicator::PolicyNotified => 3,
        }
    }
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::NoRisk => "No risk",
            Severity::Low => "Low",
            Severity::Moderate => "Moderate",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
}

impl WatchKind {
    /// The indicator an export by someone on this list carries.
    pub fn indicator(self) -> RiskIndicator {
        match self {
            WatchKind::Departing => RiskIndicator::DepartingEmployee,
            WatchKind::HighRisk => RiskIndicator::HighRiskUser,
            WatchKind::Contractor => RiskIndicator::Contractor,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            WatchKind::Departing => "Departing employees",
            WatchKind::HighRisk => "High-risk users",
            WatchKind::Contractor => "Contractors",
        }
    }
}

/// An IANA time zone (`Europe/Berlin`), kept and shown by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        TimeZone::parse(&name).map_err(serde::de::Error::custom)
    }
}

impl TimeZone {
    pub fn parse(name: &str) -> Result<TimeZone, String> {
        name.trim().parse::<chrono_tz::Tz>().map(TimeZone).map_err(|_| {
            format!("{name:?} is not a time zone (an IANA name such as Europe/Berlin or America/New_York)")
        })
    }
}

/// The lowest score of each severity above "no risk".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityThresholds {
    pub low: u32,
    pub moderate: u32,
    pub high: u32,
    pub critical: u32,
}

/// What Risk settings hold: the score of each indicator and what the indicators look
/// at. Changes apply to exports stored from then on; stored exports keep the risk
/// they were given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSettings {
    /// Every indicator's score (0 turns it off).
    pub scores: BTreeMap<RiskIndicator, u32>,
    /// Rows at or above this make an export large.
    pub large_export_rows: i64,
    pub time_zone: TimeZone,
    /// Working hours in `time_zone`: from `work_starts` (inclusive) to `work_ends`
    /// (exclusive), hours of the day.
    pub work_starts: u32,
    pub work_ends: u32,
    /// Saturdays and Sundays are off hours all day.
    pub weekends_off: bool,
    /// Queried objects (API names, any case) that make a report sensitive.
    pub sensitive_objects: Vec<String>,
    pub thresholds: SeverityThresholds,
}

impl Default for RiskSettings {
    fn default() -> Self {
        RiskSettings {
            scores: RiskIndicator::ALL.iter().map(|i| (*i, i.default_score())).collect(),
            large_export_rows: 10_000,
            time_zone: TimeZone(chrono_tz::UTC),
            work_starts: 7,
            work_ends: 19,
            weekends_off: true,
            sensitive_objects: ["Contact", "Lead", "Opportunity", "Account", "Case"].map(str::to_owned).to_vec(),
            thresholds: SeverityThresholds { low: 1, moderate: 3, high: 6, critical: 9 },
        }
    }
}

/// Most a single indicator may score.
pub const MAX_SCORE: u32 = 100;

impl RiskSettings {
    /// Everything wrong with these settings, worded for the person who set them.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for indicator in RiskIndicator::ALL {
            match self.scores.get(indicator) {
                None => problems.push(format!("{} has no score", indicator.label())),
                Some(s) if *s > MAX_SCORE => {
                    problems.push(format!("{}: a score is at most {MAX_SCORE}", indicator.label()))
                }
                Some(_) => {}
            }
        }
        if self.large_export_rows < 1 {
            problems.push("a large export is at least 1 row".into());
        }
        if self.work_starts >= self.work_ends || self.work_ends > 24 {
            problems.push("working hours must start before they end, within 0–24".into());
        }
        let t = self.thresholds;
        if !(1 <= t.low && t.low < t.moderate && t.moderate < t.high && t.high < t.critical) {
            problems.push("severity thresholds must rise: low ≥ 1 < moderate < high < critical".into());
        }
        if self
            .sensitive_objects
            .iter()
            .any(|o| o.trim().is_empty() || !o.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            problems.push("sensitive objects are API names such as Contact or Invoice__c".into());
        }
        problems
    }

    fn score(&self, indicator: RiskIndicator) -> u32 {
        self.scores.get(&indicator).copied().unwrap_or(0)
    }

    /// The severity of a total score.
    pub fn severity(&self, score: u32) -> Severity {
        let t = self.thresholds;
        match score {
            s if s >= t.critical => Severity::Critical,
            s if s >= t.high => Severity::High,
            s if s >= t.moderate => Severity::Moderate,
            s if s >= t.low => Severity::Low,
            _ => Severity::NoRisk,
        }
    }

    /// Is this instant outside working hours?
    pub fn off_hours(&self, at_ms: i64) -> bool {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(at_ms) else { return false };
        let local = utc.with_timezone(&self.time_zone.0);
        let weekend = matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
        (self.weekends_off && weekend) || !(self.work_starts..self.work_ends).contains(&local.hour())
    }
}

/// An entry on a watch list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEntry {
    pub kind: WatchKind,
    /// The Salesforce username, in lower case.
    pub username: String,
    /// Departing employees: their last day.
    pub departure: Option<NaiveDate>,
    pub note: Option<String>,
    pub added_at: i64,
    pub added_by: String,
}

/// What the risk rules look at.
pub struct RiskInputs<'a> {
    pub rows: i64,
    /// From outside the corporate ranges.
    pub unmonitored: bool,
    pub at_ms: i64,
    pub first_export_by_user: bool,
    pub new_source_ip: bool,
    /// `QueriedEntities`: comma-separated API names.
    pub queried_entities: Option<&'a str>,
    pub operation: &'a str,
    pub policy_outcome: Option<&'a str>,
    pub watch: &'a [WatchKind],
}

/// Indicators and the resulting score and severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Risk {
    pub indicators: Vec<RiskIndicator>,
    pub score: i64,
    pub severity: Severity,
}

/// The risk of one export under `settings` (an indicator scored 0 is left off).
pub fn assess(inputs: &RiskInputs<'_>, settings: &RiskSettings) -> Risk {
    let sensitive = inputs.queried_entities.is_some_and(|entities| {
        entities.split(',').map(str::trim).any(|e| settings.sensitive_objects.iter().any(|s| s.eq_ignore_ascii_case(e)))
    });
    let present = |indicator: RiskIndicator| match indicator {
        RiskIndicator::LargeExport => inputs.rows >= settings.large_export_rows,
        RiskIndicator::UnmonitoredDevice => inputs.unmonitored,
        RiskIndicator::OffHours => settings.off_hours(inputs.at_ms),
        RiskIndicator::FirstExportByUser => inputs.first_export_by_user,
        RiskIndicator::NewSourceIp => inputs.new_source_ip,
        RiskIndicator::SensitiveObjects => sensitive,
        RiskIndicator::AsyncExport => inputs.operation == "ReportExportedAsynchronously",
        RiskIndicator::ExcelConnector => inputs.operation == "ReportExportedUsingExcelConnector",
        RiskIndicator::DepartingEmployee | RiskIndicator::HighRiskUser | RiskIndicator::Contractor => {
            inputs.watch.iter().any(|w| w.indicator() == indicator)
        }
        RiskIndicator::PolicyBlocked => inputs.policy_outcome == Some("Block"),
        RiskIndicator::PolicyNotified => inputs.policy_outcome == Some("Notified"),
    };
    let indicators: Vec<RiskIndicator> =
        RiskIndicator::ALL.iter().copied().filter(|i| settings.score(*i) > 0 && present(*i)).collect();
    let score: u32 = indicators.iter().map(|i| settings.score(*i)).sum();
    Risk { indicators, score: i64::from(score), severity: settings.severity(score) }
}

/// The risk settings and watch lists in force, shared by every connector of a server
/// and replaced as a whole when an admin changes either.
#[derive(Debug, Default)]
pub struct RiskPolicy {
    current: RwLock<Arc<PolicyState>>,
}

/// One version of the settings and watch lists.
#[derive(Debug, Default)]
pub struct PolicyState {
    pub settings: RiskSettings,
    /// Watch lists by lower-case username.
    watched: HashMap<String, Vec<WatchKind>>,
}

impl PolicyState {
    pub fn new(settings: RiskSettings, entries: &[WatchEntry]) -> PolicyState {
        let mut watched: HashMap<String, Vec<WatchKind>> = HashMap::new();
        for e in entries {
            watched.entry(e.username.to_lowercase()).or_default().push(e.kind);
        }
        PolicyState { settings, watched }
    }

    /// The lists this username is on.
    pub fn watch(&self, username: &str) -> &[WatchKind] {
        self.watched.get(&username.to_lowercase()).map_or(&[], Vec::as_slice)
    }
}

impl RiskPolicy {
    pub fn new(state: PolicyState) -> RiskPolicy {
        RiskPolicy { current: RwLock::new(Arc::new(state)) }
    }

    pub fn current(&self) -> Arc<PolicyState> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, state: PolicyState) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(rows: i64, at_ms: i64) -> RiskInputs<'static> {
        RiskInputs {
            rows,
            unmonitored: false,
            at_ms,
            first_export_by_user: false,
            new_source_ip: false,
            queried_entities: None,
            operation: "ReportExported",
            policy_outcome: None,
            watch: &[],
        }
    }

    // 2025-11-26 (a Wednesday) 12:00 UTC and 02:00 UTC.
    const NOON: i64 = 1_764_158_400_000;
    const NIGHT: i64 = 1_764_122_400_000;

    #[test]
    fn quiet_and_loud_exports() {
        let settings = RiskSettings::default();
        let quiet = assess(&inputs(10, NOON), &settings);
        assert_eq!((quiet.score, quiet.severity), (0, Severity::NoRisk));
        let loud = assess(
            &RiskInputs {
                unmonitored: true,
                first_export_by_user: true,
                queried_entities: Some("Opportunity, Account"),
                watch: &[WatchKind::Departing],
                ..inputs(200_000, NIGHT)
            },
            &settings,
        );
        assert_eq!(loud.severity, Severity::Critical);
        assert_eq!(
            loud.indicators,
            [
                RiskIndicator::LargeExport,
                RiskIndicator::UnmonitoredDevice,
                RiskIndicator::OffHours,
                RiskIndicator::FirstExportByUser,
                RiskIndicator::SensitiveObjects,
                RiskIndicator::DepartingEmployee
            ]
        );
        assert_eq!(loud.score, 3 + 3 + 2 + 1 + 2 + 5);
    }

    #[test]
    fn working_hours_follow_the_time_zone_and_weekends() {
        let mut settings = RiskSettings::default();
        assert!(!settings.off_hours(NOON));
        assert!(settings.off_hours(NIGHT));
        // 02:00 UTC is 11:00 in Tokyo.
        settings.time_zone = TimeZone::parse("Asia/Tokyo").expect("zone");
        assert!(!settings.off_hours(NIGHT));
        // Saturday 2025-11-29 12:00 UTC.
        assert!(settings.off_hours(NOON + 3 * 86_400_000));
        settings.weekends_off = false;
        assert!(!settings.off_hours(NOON + 3 * 86_400_000 - 9 * 3_600_000));
    }

    #[test]
    fn a_zero_score_turns_an_indicator_off_and_thresholds_set_severity() {
        let mut settings = RiskSettings::default();
        settings.scores.insert(RiskIndicator::LargeExport, 0);
        assert!(assess(&inputs(50_000, NOON), &settings).indicators.is_empty());
        settings.scores.insert(RiskIndicator::LargeExport, 6);
        assert_eq!(assess(&inputs(50_000, NOON), &settings).severity, Severity::High);
        let policy = RiskInputs { policy_outcome: Some("Block"), ..inputs(1, NOON) };
        assert_eq!(assess(&policy, &settings).indicators, [RiskIndicator::PolicyBlocked]);
    }

    #[test]
    fn settings_are_checked_and_refuse_unknown_fields() {
        let mut settings = RiskSettings::default();
        assert!(settings.problems().is_empty());
        settings.work_starts = 20;
        settings.thresholds.high = 2;
        settings.sensitive_objects.push("Bad Name".into());
        assert_eq!(settings.problems().len(), 3);
        let json = serde_json::to_value(RiskSettings::default()).expect("json");
        assert_eq!(json["time_zone"], "UTC");
        let mut extra = json.clone();
        extra["surprise"] = 1.into();
        assert!(serde_json::from_value::<RiskSettings>(extra).is_err());
        let mut zone = json;
        zone["time_zone"] = "Mars/Olympus".into();
        assert!(serde_json::from_value::<RiskSettings>(zone).is_err());
    }

    #[test]
    fn watch_lists_match_usernames_in_any_case() {
        let entry = WatchEntry {
            kind: WatchKind::HighRisk,
            username: "ann@example.com".into(),
            departure: None,
            note: None,
            added_at: 0,
            added_by: "admin".into(),
        };
        let state = PolicyState::new(RiskSettings::default(), &[entry]);
        assert_eq!(state.watch("Ann@Example.com"), [WatchKind::HighRisk]);
        assert!(state.watch("bob@example.com").is_empty());
    }
}
