//! Narrow views of [`Services`]: one trait per port, so a use case's signature names
//! the ports it touches (`services: &(impl UsesTasks + UsesEvents)`) rather than taking
//! all sixteen. [`Services`] implements every one; a test can hand a use case anything
//! else that does.
//!
//! Use cases that spawn work or hand the whole bundle on (the worker's lanes, the
//! dispatcher, the fan-out's chains) still take `&Services`: they touch every port
//! through what they run.

use super::models::LoadedModels;
use super::{Services, Settings};
use crate::ports::{
    AlertSender, AlertStore, BlobStore, ConnectionRegistry, DatasetStore, EventLog, ExpirySweeper,
    FeedbackStore, IdempotencyStore, JobQueue, KeyStore, ModelRegistry, PushNotifier, RateLimiter,
    ResultCache, StreamStore, TaskStore, UrlSigner,
};

macro_rules! uses {
    ($($(#[$doc:meta])* $name:ident :: $method:ident -> $port:ty;)*) => {
        $(
            $(#[$doc])*
            pub trait $name: Sync {
                fn $method(&self) -> &$port;
            }

            impl $name for Services {
                fn $method(&self) -> &$port {
                    &*self.$method
                }
            }
        )*
    };
}

uses! {
    /// Reads and writes tasks.
    UsesTasks::tasks -> dyn TaskStore;
    /// Appends and reads events.
    UsesEvents::events -> dyn EventLog;
    /// Reads and writes model records.
    UsesModels::models -> dyn ModelRegistry;
    /// Reads and writes dataset records.
    UsesDatasets::datasets -> dyn DatasetStore;
    /// Reads and writes streams and their detectors' state.
    UsesStreams::streams -> dyn StreamStore;
    /// Reads API keys.
    UsesKeys::keys -> dyn KeyStore;
    /// Reads and writes blobs.
    UsesBlobs::blobs -> dyn BlobStore;
    /// Sends to the jobs queue.
    UsesQueue::queue -> dyn JobQueue;
    /// Sends to the chunks queue.
    UsesChunks::chunks -> dyn JobQueue;
    /// Reads and writes WebSocket connections.
    UsesConnections::connections -> dyn ConnectionRegistry;
    /// Pushes to WebSocket connections.
    UsesNotifier::notifier -> dyn PushNotifier;
    /// Reads and writes idempotency records.
    UsesIdempotency::idempotency -> dyn IdempotencyStore;
    /// Reads and writes the result cache.
    UsesCache::cache -> dyn ResultCache;
    /// Deletes expired records.
    UsesSweeper::sweeper -> dyn ExpirySweeper;
    /// Grants upload and download URLs.
    UsesUploads::uploads -> dyn UrlSigner;
    /// Counts requests per tenant.
    UsesRate::rate -> dyn RateLimiter;
    /// Models loaded from the blob store, kept while the process lives.
    UsesLoadedModels::loaded_models -> LoadedModels;
    /// Reads and writes alert rules and deliveries.
    UsesAlerts::alerts -> dyn AlertStore;
    /// Sends to the alerts queue.
    UsesAlertQueue::alert_queue -> dyn JobQueue;
    /// Sends alerts out.
    UsesSender::sender -> dyn AlertSender;
    /// Reads and writes verdicts on stream results.
    UsesFeedback::feedback -> dyn FeedbackStore;
}

/// Reads the tunables.
pub trait UsesSettings: Sync {
    fn settings(&self) -> &Settings;
}

impl UsesSettings for Services {
    fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// Names a set of ports a family of use cases shares, with a blanket implementation for
/// anything that has them all.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident: $first:ident $(+ $rest:ident)*) => {
        $(#[$doc])*
        pub trait $name: $first $(+ $rest)* {}
        impl<T: $first $(+ $rest)*> $name for T {}
    };
}

view! {
    /// What detection touches: it answers from the cache or inline, or queues a task,
    /// and publishes what it found.
    Detects: UsesTasks + UsesEvents + UsesModels + UsesBlobs + UsesQueue + UsesCache
        + UsesSettings + UsesLoadedModels
}

view! {
    /// What a WebSocket message touches: the connection and its key, the streams and
    /// models it scores on, and the replies it pushes.
    HandlesMessages: UsesEvents + UsesModels + UsesStreams + UsesKeys + UsesBlobs
        + UsesConnections + UsesNotifier + UsesRate + UsesSettings + UsesLoadedModels
}
