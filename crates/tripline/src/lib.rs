#![recursion_limit = "256"]
//! Tripline: turns a Salesforce org's real-time event streams into attributed
//! report-download file events, and finds them again (Forensic Search).
//!
//! What it offers: [`connection`], [`events`], [`people`] and [`access`] are the
//! domain (types and pure rules); [`connector`] authorizes and runs data connections; [`store`]
//! keeps everything (SQLite); [`search`] is the Forensic Search query model and its
//! output formats; [`server`] assembles connectors and the JSON API ([`api`]) into
//! one server; [`emulated`] connects to the emulated org (sfsim) without a browser.

pub mod access;
pub mod alerting;
pub mod alerts;
pub mod api;
pub mod connection;
pub mod connector;
pub mod console;
pub mod emulated;
pub mod events;
mod named;
pub mod people;
pub mod risk;
pub mod search;
pub mod server;
pub mod store;
mod tls;

pub use named::UnknownName;
