//! Replaying a channel's stored events to a connection after `subscribe` with `after`.

use crate::domain::{Channel, TenantId};
use crate::ids::EventId;
use crate::limits::WS_MAX_REPLAY;
use crate::service::fanout::message;
use crate::service::uses::{UsesEvents, UsesNotifier};
use crate::service::Problem;

pub(super) async fn replay(
    services: &(impl UsesEvents + UsesNotifier),
    connection_id: &str,
    tenant: &TenantId,
    channel: &Channel,
    after: EventId,
) -> Result<usize, Problem> {
    let mut cursor = Some(after);
    let mut sent = 0;
    let mut read = 0;
    while let Some(position) = cursor.take() {
        let page = services
            .events()
            .events_after(tenant, Some(&position), 500)
            .await?;
        read += page.items.len();
        for event in page.items.iter().filter(|e| channel.carries(e)) {
            services
                .notifier()
                .push(connection_id, &message(event))
                .await
                .map_err(|e| Problem::unavailable(format!("replay stopped: {e}")))?;
            sent += 1;
        }
        if read >= WS_MAX_REPLAY {
            break;
        }
        cursor = page.next_token.and_then(|t| EventId::parse(&t).ok());
    }
    Ok(sent)
}
