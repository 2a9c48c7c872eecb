//! Tripline's client side of Salesforce.
//!
//! - [`login`]: which hosts may be signed in at (My Domain shapes, or an allow-list).
//! - [`oauth`]: the web server flow with PKCE and `state`, refresh, revoke.
//! - [`api`]: one connection's session (one access token, refreshed on 401), REST and
//!   SOQL with paging, the Metadata API read of `RealTimeEventSettings`.
//! - [`pubsub`]: a Pub/Sub subscriber: schema cache, Avro decoding with the schema from
//!   GetSchema, pull flow control, keepalive-aware idle timeout, reconnects.
//!
//! This crate knows nothing of storage, HTTP serving, or what events mean to Tripline.

pub mod api;
pub mod error;
pub mod login;
pub mod oauth;
pub mod pubsub;

pub use error::Error;
