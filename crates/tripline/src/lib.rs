//! Tripline: turns a Salesforce org's real-time event streams into attributed
//! report-download file events, and finds them again (Forensic Search).

pub mod api;
pub mod connector;
pub mod events;
pub mod search;
pub mod store;
