//! The rules Tripline ships ready to enable.

use super::{Conditions, ExportOperation, RuleDraft, Threshold};
use crate::events::Destination;
use crate::risk::{RiskIndicator, Severity, WatchKind};

/// The recommended rules, as drafts an admin adds (disabled) and enables.
pub fn recommended() -> Vec<RuleDraft> {
    let draft = |name: &str, description: &str, severity, conditions| RuleDraft {
        name: name.to_owned(),
        description: description.to_owned(),
        severity,
        conditions,
        channels: Vec::new(),
        suppress_minutes: 60,
    };
    vec![
        draft(
            "Salesforce report to an unmonitored device",
            "A report downloaded from outside the corporate IP ranges: possibly to a personal device.",
            Severity::Moderate,
            Conditions { destination: Some(Destination::Unmonitored), ..Default::default() },
        ),
        draft(
            "Departing employee exports",
            "Someone on the departing employees watch list downloaded a report.",
            Severity::High,
            Conditions { watch_lists: vec![WatchKind::Departing], ..Default::default() },
        ),
        draft(
            "Mass export within an hour",
            "More than 10 downloads, or 100,000 rows or more, by one person within an hour.",
            Severity::High,
            Conditions {
                threshold: Some(Threshold { window_minutes: 60, exports: Some(10), rows: Some(100_000) }),
                ..Default::default()
            },
        ),
        draft(
            "Large export of customer data",
            "A large download of a report on contacts, leads, accounts or opportunities.",
            Severity::High,
            Conditions {
                indicators: vec![RiskIndicator::LargeExport],
                queried_objects: ["Contact", "Lead", "Account", "Opportunity"].map(str::to_owned).to_vec(),
                ..Default::default()
            },
        ),
        draft(
            "Export blocked or flagged by a Salesforce policy",
            "A transaction security policy blocked the download or notified about it.",
            Severity::High,
            Conditions {
                indicators: vec![RiskIndicator::PolicyBlocked, RiskIndicator::PolicyNotified],
                ..Default::default()
            },
        ),
        draft(
            "Off-hours export by a high-risk user or contractor",
            "Someone on the high-risk users or contractors watch lists downloaded a report outside working hours.",
            Severity::High,
            Conditions {
                indicators: vec![RiskIndicator::OffHours],
                watch_lists: vec![WatchKind::HighRisk, WatchKind::Contractor],
                ..Default::default()
            },
        ),
        draft(
            "Critical-risk export",
            "Any download whose risk score reaches critical.",
            Severity::Critical,
            Conditions { min_severity: Some(Severity::Critical), ..Default::default() },
        ),
        draft(
            "Reports pulled with the Excel connector",
            "Report data pulled into Excel by the Excel connector.",
            Severity::Low,
            Conditions { operations: vec![ExportOperation::ExcelConnector], ..Default::default() },
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_recommended_rule_is_valid() {
        for draft in super::recommended() {
            assert!(draft.problems().is_empty(), "{}: {:?}", draft.name, draft.problems());
        }
    }
}
