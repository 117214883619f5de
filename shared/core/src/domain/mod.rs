//! The domain: what nomaly stores and tells, with no storage or transport in it.
//! Field and event names follow `docs/architecture.md`.

pub mod alert;
pub mod connection;
pub mod dataset;
pub mod event;
pub mod feedback;
pub mod key;
pub mod model;
pub mod payload;
pub mod stream;
pub mod task;
pub mod tenant;

pub use alert::{AlertDelivery, AlertMatch, AlertRule, DeliveryStatus, Destination, GroupBy};
pub use connection::{Channel, Connection};
pub use dataset::{Dataset, DatasetStatus};
pub use event::{Event, EventType};
pub use feedback::{Feedback, FeedbackLabel};
pub use key::{ApiKey, IssuedKey};
pub use model::ModelRecord;
pub use stream::{
    EntitySplit, EntityWritten, GapPolicy, LatePolicy, RecentPoint, Stream, StreamEntity,
    StreamState,
};
pub use task::{BatchProgress, Task, TaskKind, TaskStatus, TransitionError};
pub use tenant::TenantId;
