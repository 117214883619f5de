//! A stack provisioned on moto, as `nomaly serve --aws` and the functions see it: the
//! environment naming its tables, bucket and queues, and keys made in its table.

use nomaly_aws::provision::{Names, Provisioned};
use nomaly_aws::Clients;

/// A stack of its own, provisioned on the moto server `AWS_ENDPOINT_URL` names.
pub struct MotoStack {
    /// Moto's URL (on loopback).
    pub endpoint: String,
    /// What the stack's names start with: the prefix asked for and a fresh suffix.
    pub prefix: String,
    /// Clients for it.
    pub clients: Clients,
    /// The stack's tables, bucket and queue names.
    pub names: Names,
    /// Its queues.
    pub queues: Provisioned,
}

impl MotoStack {
    /// Provisions a stack whose names start with `prefix` and a fresh suffix; moto must
    /// run on loopback (tests/run.sh starts it).
    pub async fn provision(prefix: &str) -> MotoStack {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "AWS_ENDPOINT_URL must point at moto server on loopback (tests/run.sh starts it), got {endpoint:?}"
        );
        let clients = Clients::from_env(true).await;
        let suffix = nomaly_core::ids::JobId::new().as_str()[20..].to_ascii_lowercase();
        let prefix = format!("{prefix}-{suffix}");
        let names = Names::with_prefix(&prefix);
        let queues = nomaly_aws::provision::ensure(&clients, &names, 3)
            .await
            .expect("provision on moto");
        MotoStack {
            endpoint,
            prefix,
            clients,
            names,
            queues,
        }
    }
}

/// The environment naming the tables, bucket and queues of the stack `names`, whose
/// queues are `queues`.
pub fn stack_env<'a>(names: &'a Names, queues: &'a Provisioned) -> Vec<(&'static str, &'a str)> {
    vec![
        ("NOMALY_TABLE", names.table.as_str()),
        ("NOMALY_EVENTS_TABLE", names.events_table.as_str()),
        ("NOMALY_BUCKET", names.bucket.as_str()),
        ("NOMALY_JOBS_QUEUE_URL", queues.queue_url.as_str()),
        ("NOMALY_JOBS_DLQ_URL", queues.dead_letter_url.as_str()),
        ("NOMALY_CHUNKS_QUEUE_URL", queues.chunks_queue_url.as_str()),
        (
            "NOMALY_CHUNKS_DLQ_URL",
            queues.chunks_dead_letter_url.as_str(),
        ),
        ("NOMALY_ALERTS_QUEUE_URL", queues.alerts_queue_url.as_str()),
        (
            "NOMALY_ALERTS_DLQ_URL",
            queues.alerts_dead_letter_url.as_str(),
        ),
    ]
}

/// A key for `tenant`, made with `nomaly keys create --aws` in `table`.
pub fn aws_key(tenant: &str, table: &str) -> String {
    crate::create_key(&[
        "keys", "create", "--tenant", tenant, "--aws", "--table", table,
    ])
}
