//! `Nomaly-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, in the
//! style of Stripe's and GitHub's webhooks. The receiver recomputes the HMAC with the
//! rule's secret, compares in constant time, and refuses a `t` outside its replay window.

use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The header that carries the signature.
pub const HEADER: &str = "Nomaly-Signature";

/// The replay window receivers are told to use (docs/alerts.md), in seconds.
pub const REPLAY_WINDOW_SECS: i64 = 300;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Why a signature does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=...,v1=...`.
    #[error("the signature header is malformed")]
    Malformed,
    /// `t` is too far from now.
    #[error("the signature's time is {0} s from now, outside the replay window")]
    Stale(i64),
    /// No `v1` matches.
    #[error("no signature matches the body")]
    Mismatch,
}

/// Checks `header` against `body` as a receiver does: `t` within `window_secs` of `now`
/// and one `v1` equal to the HMAC (compared in constant time).
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    window_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => {
                signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > window_secs {
        return Err(SignatureError::Stale(now - t));
    }
    let expected = mac(secret, t, body);
    if signatures
        .iter()
        .any(|s| expected.clone().verify_slice(s).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A new webhook secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("whsec_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_and_a_changed_body_does_not() {
        let secret = new_secret();
        let body = br#"{"id":"alt_1"}"#;
        let header = sign(&secret, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(&secret, &header, body, 1_700_000_010, 300), Ok(()));
        assert_eq!(
            verify(&secret, &header, br#"{"id":"alt_2"}"#, 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, body, 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret, &header, body, 1_700_000_301, 300),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(&secret, "v1=00", body, 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?",
        // split here as t = "what do ya want for nothing?" cannot be; so check the
        // construction against the same HMAC over the joined text instead.
        let header = sign("Jefe", 42, b"body");
        let joined = {
            let mut mac = HmacSha256::new_from_slice(b"Jefe").expect("a key");
            mac.update(b"42.body");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(header, format!("t=42,v1={joined}"));
        // And the HMAC itself against RFC 4231's vector.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").expect("a key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
