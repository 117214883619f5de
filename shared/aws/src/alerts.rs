//! Alerts out of AWS: webhooks through the core's HTTPS client (no loopback, ever), and
//! EventBridge `PutEvents` on the deployment's own bus (the template grants that bus and
//! no other).

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use nomaly_core::ports::{AlertSender, SendOutcome, WebhookRequest};
use nomaly_core::webhook::{AddressPolicy, HttpSender};

/// The `source` of every event nomaly puts on a bus.
pub const EVENT_SOURCE: &str = "nomaly";

/// Sends alerts from a deployment.
#[derive(Clone)]
pub struct AwsAlertSender {
    http: HttpSender,
    events: aws_sdk_eventbridge::Client,
    bus: Option<String>,
}

impl AwsAlertSender {
    /// Webhooks under the strict policy; events on `bus` (none: EventBridge refused).
    pub fn new(events: aws_sdk_eventbridge::Client, bus: Option<String>) -> Self {
        Self::with_policy(events, bus, AddressPolicy::default())
    }

    /// As [`AwsAlertSender::new`], with webhooks under `policy` (the local server's
    /// `--allow-loopback-webhooks`; never on Lambda).
    pub fn with_policy(
        events: aws_sdk_eventbridge::Client,
        bus: Option<String>,
        policy: AddressPolicy,
    ) -> Self {
        AwsAlertSender {
            http: HttpSender::system(policy),
            events,
            bus,
        }
    }
}

#[async_trait]
impl AlertSender for AwsAlertSender {
    async fn check_url(&self, url: &str) -> Result<(), String> {
        self.http.check(url).await
    }

    async fn post(&self, request: &WebhookRequest) -> SendOutcome {
        self.http.send(request).await
    }

    fn bus(&self) -> Option<&str> {
        self.bus.as_deref()
    }

    async fn put_event(&self, bus: &str, detail_type: &str, detail: &str) -> SendOutcome {
        if self.bus.as_deref() != Some(bus) {
            return SendOutcome::Refused {
                status: None,
                error: format!("this deployment may not put events on bus `{bus}`"),
            };
        }
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source(EVENT_SOURCE)
            .detail_type(detail_type)
            .detail(detail)
            .build();
        match self.events.put_events().entries(entry).send().await {
            Ok(out) if out.failed_entry_count() == 0 => SendOutcome::Delivered { status: 200 },
            Ok(out) => {
                let why = out
                    .entries()
                    .iter()
                    .filter_map(|e| e.error_message())
                    .collect::<Vec<_>>()
                    .join("; ");
                SendOutcome::Retry {
                    status: None,
                    error: format!("EventBridge did not take the event: {why}"),
                }
            }
            Err(e) => SendOutcome::Retry {
                status: None,
                error: format!(
                    "PutEvents failed: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ),
            },
        }
    }
}
