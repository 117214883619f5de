//! Alerts: a tenant's rules (`rules.rs`: made, read, changed, deleted, test-fired),
//! matching each stored event to them and queueing one delivery per episode
//! (`route.rs`, run by the `events` function and the local dispatcher), and sending each
//! delivery, signed, with retries and a dead-letter state (`deliver.rs`, run by the
//! `notify` function and the local alert workers). Receivers are told how to check the
//! signature in docs/alerts.md.

mod deliver;
mod route;
mod rules;

pub use deliver::{deliver, retry_delay_secs, AlertJob, ALERT_JOB};
pub use route::{matches, route};
pub use rules::{
    create, delete, deliveries, delivery, get, list, test_fire, update, AlertRequest, AlertView,
    DeliveryView,
};

/// The most rules one tenant may have.
pub const MAX_RULES_PER_TENANT: usize = 100;

/// The longest cooldown, in seconds (7 days).
pub const MAX_COOLDOWN_SECS: u32 = 7 * 24 * 3600;

/// The cooldown of a rule that names none, in seconds.
pub const DEFAULT_COOLDOWN_SECS: u32 = 300;

/// An alert's event is cut to this many bytes of JSON (its longest lists shortened), so
/// a webhook body stays small whatever the event held.
pub const MAX_ALERT_EVENT_BYTES: usize = 32 * 1024;
