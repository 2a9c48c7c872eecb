//! File events: what Tripline records for each report download, and the pure rules
//! that fill one in (predicted file name, destination); risk is `risk`'s.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sfwire::id::SfId;

use crate::named::named_enum;
use crate::risk::{RiskIndicator, Severity};

named_enum! {
    /// How the user behind an export was identified.
    pub enum Attribution ("attribution") {
        /// The export's SessionKey matched a login event we saw.
        LoginSession = "login-session",
        /// The session was never seen (the user logged in before the connection
        /// existed): the user was identified by UserId from what the REST API says of
        /// them (the scope scan's User query, or a lookup of that one user).
        UserLookup = "user-lookup",
    }
}

named_enum! {
    /// Where the file went, judged by the source IP.
    pub enum Destination ("destination") {
        /// From an address in the configured corporate ranges.
        Corporate = "corporate",
        /// From anywhere else: possibly a personal device.
        Unmonitored = "unmonitored",
    }
}

named_enum! {
    /// Whether the exported report was saved in Salesforce or built on the fly.
    pub enum ReportType ("report type") {
        Saved = "saved",
        AdHoc = "ad-hoc",
    }
}

/// One report download: what Tripline records, searches and shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEvent {
    /// Ingest order (assigned by the store).
    pub seq: i64,
    /// Stable for the export: derived from its ExecutionIdentifier (else its
    /// EventIdentifier), so every chunk and replay finds the same event.
    pub id: String,
    pub connection_id: String,
    pub observed_at: i64,
    pub ingested_at: i64,
    pub attribution: Attribution,
    pub user_id: SfId,
    pub username: Option<String>,
    pub email: Option<String>,
    pub user_name: Option<String>,
    pub report_id: Option<String>,
    pub report_name: Option<String>,
    pub report_description: Option<String>,
    pub report_type: Option<ReportType>,
    pub report_format: Option<String>,
    pub export_format: Option<String>,
    pub operation: Option<String>,
    pub rows: i64,
    pub columns: Option<String>,
    pub column_count: Option<i64>,
    pub queried_entities: Option<String>,
    pub execution_id: Option<String>,
    pub chunk_count: i64,
    pub file_name: String,
    pub source_ip: Option<String>,
    pub browser: Option<String>,
    pub platform: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub session_key: Option<String>,
    pub destination: Destination,
    pub risk_score: i64,
    pub severity: Severity,
    pub indicators: Vec<RiskIndicator>,
    /// The Salesforce events (one per chunk), kept for evidence.
    pub raw: Vec<Evidence>,
}

/// A Salesforce event as Tripline read it, kept as JSON text for evidence: written
/// once when the event arrives, never parsed again on its way to the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Evidence(Box<serde_json::value::RawValue>);

impl Evidence {
    /// The fields of `event` (a JSON object).
    pub fn of<T: Serialize>(event: &T) -> Evidence {
        // Serialising a plain record to JSON cannot fail; null stands in should a type
        // ever make it.
        Evidence(
            serde_json::value::to_raw_value(event).unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
        )
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The event's `EventIdentifier`, if it has one.
    pub fn event_identifier(&self) -> Option<String> {
        #[derive(Deserialize)]
        #[allow(non_snake_case)]
        struct Identified {
            EventIdentifier: Option<String>,
        }
        serde_json::from_str::<Identified>(self.get()).ok()?.EventIdentifier
    }
}

impl PartialEq for Evidence {
    fn eq(&self, other: &Evidence) -> bool {
        self.get() == other.get()
    }
}

impl ReportType {
    /// Saved reports have ids with the Report key prefix; ad-hoc runs have none.
    pub fn of(report_id: Option<&str>) -> ReportType {
        match report_id {
            Some(id) if id.starts_with(sfwire::id::prefix::REPORT) => ReportType::Saved,
            _ => ReportType::AdHoc,
        }
    }
}

/// An IP range such as `10.20.0.0/16` or `2001:db8::/32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
        let network: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an IP range (like 10.0.0.0/8)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix =
            if prefix.is_empty() { max } else { prefix.parse().map_err(|_| format!("{text:?}: bad prefix length"))? };
        if prefix > max {
            return Err(format!("{text:?}: prefix length above {max}"));
        }
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

pub(crate) fn destination(source_ip: Option<&str>, corporate: &[Cidr]) -> Destination {
    let ip = source_ip.and_then(|s| s.parse::<IpAddr>().ok());
    match ip {
        Some(ip) if corporate.iter().any(|c| c.contains(ip)) => Destination::Corporate,
        _ => Destination::Unmonitored,
    }
}

/// The name the browser saves the download as: formatted Excel exports are named after
/// the report with a date and time; CSV and details-only exports `report<epoch ms>`.
pub(crate) fn predicted_file_name(report_name: &str, export_format: Option<&str>, at_ms: i64) -> String {
    let when = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
    match export_format.map(str::to_ascii_lowercase).as_deref() {
        Some("excel" | "xlsx") => {
            let safe: String = report_name
                .chars()
                .map(|c| if c.is_control() || "/\\:*?\"<>|".contains(c) { '_' } else { c })
                .collect();
            format!("{} {}.xlsx", safe.trim(), when.format("%Y-%m-%d-%H-%M-%S"))
        }
        Some("xls") => format!("report{at_ms:013}.xls"),
        _ => format!("report{at_ms:013}.csv"),
    }
}

#[cfg(test)]
impl FileEvent {
    /// A quiet export by a user, for tests.
    pub(crate) fn sample() -> FileEvent {
        FileEvent {
            seq: 0,
            id: "0".repeat(32),
            connection_id: "c".into(),
            observed_at: 0,
            ingested_at: 0,
            attribution: Attribution::LoginSession,
            user_id: SfId::generate(sfwire::id::prefix::USER, "0A", 1),
            username: None,
            email: None,
            user_name: None,
            report_id: None,
            report_name: None,
            report_description: None,
            report_type: None,
            report_format: None,
            export_format: None,
            operation: None,
            rows: 0,
            columns: None,
            column_count: None,
            queried_entities: None,
            execution_id: None,
            chunk_count: 1,
            file_name: String::new(),
            source_ip: None,
            browser: None,
            platform: None,
            city: None,
            country: None,
            session_key: None,
            destination: Destination::Corporate,
            risk_score: 0,
            severity: Severity::NoRisk,
            indicators: Vec::new(),
            raw: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let corp = vec![Cidr::parse("10.20.0.0/16").expect("v4"), Cidr::parse("2001:db8::/32").expect("v6")];
        assert_eq!(destination(Some("10.20.3.4"), &corp), Destination::Corporate);
        assert_eq!(destination(Some("10.21.3.4"), &corp), Destination::Unmonitored);
        assert_eq!(destination(Some("2001:db8::1"), &corp), Destination::Corporate);
        assert_eq!(destination(None, &corp), Destination::Unmonitored);
        assert_eq!(destination(Some("garbage"), &corp), Destination::Unmonitored);
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(Cidr::parse("0.0.0.0/0").expect("all").contains("8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn file_names() {
        let at = 1_764_190_711_123; // 2025-11-26T20:58:31.123Z
        assert_eq!(predicted_file_name("Pipeline", Some("CSV"), at), "report1764190711123.csv");
        assert_eq!(predicted_file_name("Q3 / Pipeline", Some("Excel"), at), "Q3 _ Pipeline 2025-11-26-20-58-31.xlsx");
        assert_eq!(predicted_file_name("x", Some("XLS"), at), "report1764190711123.xls");
    }
}
