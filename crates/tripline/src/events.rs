//! File events: what Tripline records for each report download, and the pure rules
//! that fill one in (predicted file name, destination, risk).

use std::net::IpAddr;

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// How the user behind an export was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attribution {
    /// The export's SessionKey matched a login event we saw.
    LoginSession,
    /// The session was never seen (the user logged in before the connection existed):
    /// the user was looked up by UserId through the REST API.
    UserLookup,
}

impl Attribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Attribution::LoginSession => "login-session",
            Attribution::UserLookup => "user-lookup",
        }
    }

    pub fn parse(text: &str) -> Option<Attribution> {
        match text {
            "login-session" => Some(Attribution::LoginSession),
            "user-lookup" => Some(Attribution::UserLookup),
            _ => None,
        }
    }
}

/// Where the file went, judged by the source IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Destination {
    /// From an address in the configured corporate ranges.
    Corporate,
    /// From anywhere else: possibly a personal device.
    Unmonitored,
}

impl Destination {
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Corporate => "corporate",
            Destination::Unmonitored => "unmonitored",
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

pub fn destination(source_ip: Option<&str>, corporate: &[Cidr]) -> Destination {
    let ip = source_ip.and_then(|s| s.parse::<IpAddr>().ok());
    match ip {
        Some(ip) if corporate.iter().any(|c| c.contains(ip)) => Destination::Corporate,
        _ => Destination::Unmonitored,
    }
}

/// The name the browser saves the download as: formatted Excel exports are named after
/// the report with a date and time; CSV and details-only exports `report<epoch ms>`.
pub fn predicted_file_name(report_name: &str, export_format: Option<&str>, at_ms: i64) -> String {
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

/// Risk indicators and the resulting score and severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub indicators: Vec<String>,
    pub score: i64,
    pub severity: String,
}

/// What the risk rules look at.
pub struct RiskInputs {
    pub rows: i64,
    pub destination: Destination,
    pub at_ms: i64,
    pub first_export_by_user: bool,
}

/// Rows at or above this make an export "large".
pub const LARGE_EXPORT_ROWS: i64 = 10_000;

pub fn assess(inputs: &RiskInputs) -> Risk {
    let mut indicators = Vec::new();
    let mut score = 0;
    if inputs.rows >= LARGE_EXPORT_ROWS {
        indicators.push("large-export".to_owned());
        score += if inputs.rows >= 100_000 { 5 } else { 3 };
    }
    if inputs.destination == Destination::Unmonitored {
        indicators.push("unmonitored-device".to_owned());
        score += 3;
    }
    let hour = DateTime::<Utc>::from_timestamp_millis(inputs.at_ms).map_or(12, |d| d.hour());
    if !(6..20).contains(&hour) {
        indicators.push("off-hours".to_owned());
        score += 2;
    }
    if inputs.first_export_by_user {
        indicators.push("first-export-by-user".to_owned());
        score += 1;
    }
    let severity = match score {
        0 => "no-risk",
        1..=2 => "low",
        3..=5 => "moderate",
        6..=8 => "high",
        _ => "critical",
    };
    Risk { indicators, score, severity: severity.to_owned() }
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

    #[test]
    fn risk_levels() {
        let quiet = assess(&RiskInputs {
            rows: 10,
            destination: Destination::Corporate,
            at_ms: 1_764_158_400_000,
            first_export_by_user: false,
        });
        assert_eq!((quiet.score, quiet.severity.as_str()), (0, "no-risk"));
        let loud = assess(&RiskInputs {
            rows: 200_000,
            destination: Destination::Unmonitored,
            at_ms: 1_764_122_400_000,
            first_export_by_user: true,
        });
        assert_eq!(loud.severity, "critical");
        assert!(loud.indicators.contains(&"off-hours".to_owned()));
    }
}
