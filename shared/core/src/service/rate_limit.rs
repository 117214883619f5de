//! Per-tenant request limits: every authenticated HTTP request and every WebSocket
//! action counts against its tenant's allowance of [`Settings::rate_limit`] requests per
//! window of [`Settings::rate_window_secs`], kept by the [`RateLimiter`] port (in
//! DynamoDB on AWS, so the limit holds across Lambda instances). API Gateway's own
//! throttling (in the template) caps the whole stage on top of this.
//!
//! [`Settings::rate_limit`]: crate::service::Settings::rate_limit
//! [`Settings::rate_window_secs`]: crate::service::Settings::rate_window_secs
//! [`RateLimiter`]: crate::ports::RateLimiter

use crate::domain::TenantId;
use crate::service::uses::{UsesRate, UsesSettings};
use crate::service::Problem;
use crate::time::Timestamp;

/// The window number of instant `now_ms` and the whole seconds until the next window
/// begins (at least 1).
pub fn window_of(now_ms: i64, window_secs: u32) -> (i64, u32) {
    let width = i64::from(window_secs.max(1)) * 1000;
    let window = now_ms.div_euclid(width);
    let left_ms = (window + 1) * width - now_ms;
    let left = u32::try_from((left_ms + 999) / 1000).unwrap_or(u32::MAX);
    (window, left.max(1))
}

/// Counts one request of `tenant`; 429 with `Retry-After` once the window's allowance is
/// spent. A storage failure lets the request through (and is logged): the limit protects
/// the service, and refusing every request when its counter is unreachable would not.
pub async fn admit(
    services: &(impl UsesRate + UsesSettings),
    tenant: &TenantId,
) -> Result<(), Problem> {
    let limit = services.settings().rate_limit;
    if limit == 0 {
        return Ok(());
    }
    let secs = services.settings().rate_window_secs.max(1);
    let (window, left) = window_of(Timestamp::now().millis(), secs);
    match services.rate().admit(tenant, window, secs, limit).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Problem::rate_limited(format!(
            "this tenant may make {limit} requests every {secs} s; retry in {left} s"
        ))
        .retry_after(left)),
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "the rate counter failed; letting the request through");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_and_retry_after_reaches_the_next() {
        assert_eq!(window_of(0, 1), (0, 1));
        assert_eq!(window_of(999, 1), (0, 1));
        assert_eq!(window_of(1000, 1), (1, 1));
        assert_eq!(window_of(61_000, 60), (1, 59));
        assert_eq!(window_of(60_001, 60), (1, 60));
        assert_eq!(window_of(119_999, 60), (1, 1));
        assert_eq!(window_of(5_000, 0), (5, 1));
    }
}
