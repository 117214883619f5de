//! The Lambda side of nomaly: each module turns one trigger's events into calls of the
//! shared use cases and the results into the response Lambda expects. The binaries under
//! `functions/` only build the services once and hand events to these handlers, which
//! are tested here without a network on the embedded stack.

pub mod api;
pub mod events;
pub mod ingest;
pub mod scheduler;
pub mod telemetry;
pub mod worker;
pub mod ws;

/// What a handler returns to the runtime on failure.
pub type Error = lambda_runtime::Error;
