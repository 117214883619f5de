//! The `ingest` function: S3 ObjectCreated notifications on the uploads suffix.

use aws_lambda_events::s3::S3Event;
use nomaly_core::service::{ingest, Services};

/// S3 writes keys in notifications URL-encoded, with `+` for spaces.
pub fn decode_key(key: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'+' => Some((b' ', 1)),
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1])
                .zip(hex(bytes[i + 2]))
                .map(|(h, l)| (h * 16 + l, 3)),
            _ => None,
        };
        let (byte, used) = decoded.unwrap_or((bytes[i], 1));
        out.push(byte);
        i += used;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Takes in every created object of the event. Fails (so Lambda retries the event) if
/// any could not be taken in for a reason a retry may fix.
pub async fn handle(services: &Services, event: S3Event) -> Result<usize, crate::Error> {
    let mut taken = 0;
    for record in &event.records {
        let Some(key) = record.s3.object.key.as_deref() else {
            continue;
        };
        let key = decode_key(key);
        let size = record.s3.object.size.unwrap_or(0).max(0) as u64;
        match ingest::object_created(services, &key, size).await {
            Ok(()) => taken += 1,
            Err(p) if p.is_retryable() => return Err(format!("{key}: {p}").into()),
            Err(p) => tracing::warn!(key, problem = %p, "upload not taken in"),
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::decode_key;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(
            decode_key("tenants/acme/uploads/a%3Ab+c.upload"),
            "tenants/acme/uploads/a:b c.upload"
        );
        assert_eq!(decode_key("100%"), "100%");
        assert_eq!(decode_key("%+1x"), "% 1x", "no hex after %: kept as is");
        assert_eq!(decode_key("%41%4a"), "AJ");
    }
}
