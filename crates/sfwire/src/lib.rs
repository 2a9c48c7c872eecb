//! The facts both sides of Salesforce's wire share.
//!
//! `sfsim` (the emulated org) and `salesforce` (Tripline's client) both build on this
//! crate, so the two can only disagree about what Salesforce itself defines:
//! - [`eventbus::v1`]: the Pub/Sub API messages and service, compiled from our own
//!   `proto/eventbus/v1/pubsub_api.proto`.
//! - [`events`]: the three real-time event types, their Avro schemas and encoding.
//! - [`id`]: Salesforce record ids (15/18-character forms).
//! - [`soql`]: quoting values into SOQL string literals.
//! - [`pubsub`]: the error-code trailers and limits the Pub/Sub API documents.

pub mod avro;
pub mod events;
pub mod id;
pub mod pubsub;
pub mod soql;

/// The Pub/Sub API, package `eventbus.v1`.
pub mod eventbus {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("eventbus.v1");
    }
}
