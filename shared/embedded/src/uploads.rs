//! Signed URLs for the local server, with HMAC-SHA256 under a secret kept in the data
//! folder:
//! - uploads, `<base>/uploads/<blob key>?size=&expires=&sig=`: only the holder of a URL
//!   can upload, only to that key, only that many bytes, and only until it expires;
//! - downloads, `<base>/downloads/<blob key>?type=&expires=&sig=`: only that key, served
//!   as that content type, until it expires.
//!
//! The signed messages start with the method, so an upload signature never opens a
//! download or the reverse.

use async_trait::async_trait;
use nomaly_core::constant_time;
use nomaly_core::ports::{
    upload_url_lifetime, BlobKey, PresignedDownload, PresignedUpload, StoreError, StoreResult,
    UrlSigner,
};
use nomaly_core::time::Timestamp;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Signs and checks local upload URLs.
#[derive(Clone)]
pub struct LocalUploads {
    base_url: String,
    secret: [u8; 32],
}

fn hmac(secret: &[u8; 32], message: &str) -> String {
    let mut inner_key = [0x36u8; 64];
    let mut outer_key = [0x5cu8; 64];
    for (i, b) in secret.iter().enumerate() {
        inner_key[i] ^= b;
        outer_key[i] ^= b;
    }
    let inner = Sha256::new()
        .chain_update(inner_key)
        .chain_update(message.as_bytes())
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(outer_key)
            .chain_update(inner)
            .finalize(),
    )
}

fn message(key: &BlobKey, size: u64, expires_ms: i64) -> String {
    format!("PUT\n{}\n{size}\n{expires_ms}", key.as_str())
}

fn download_message(key: &BlobKey, content_type: &str, expires_ms: i64) -> String {
    format!("GET\n{}\n{content_type}\n{expires_ms}", key.as_str())
}

impl LocalUploads {
    /// Uploads served at `base_url` (e.g. `http://127.0.0.1:8080`), with the secret in
    /// `<data_dir>/upload.key` (made on first use).
    pub fn open(data_dir: &Path, base_url: &str) -> StoreResult<Self> {
        let path = data_dir.join("upload.key");
        let secret = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            _ => {
                let mut fresh = [0u8; 32];
                getrandom::fill(&mut fresh).map_err(|e| {
                    StoreError::backend(
                        "make the upload secret",
                        std::io::Error::other(e.to_string()),
                    )
                })?;
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| StoreError::backend("make the data folder", e))?;
                nomaly_core::atomic_file::write(&path, &fresh)
                    .map_err(|e| StoreError::backend("store the upload secret", e))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| StoreError::backend("protect the upload secret", e))?;
                }
                fresh.to_vec()
            }
        };
        let mut s = [0u8; 32];
        s.copy_from_slice(&secret);
        Ok(LocalUploads {
            base_url: base_url.trim_end_matches('/').to_string(),
            secret: s,
        })
    }

    /// Whether an upload of `size` bytes to `key` carries a valid, unexpired signature.
    pub fn verify(&self, key: &BlobKey, size: u64, expires_ms: i64, signature: &str) -> bool {
        if expires_ms < Timestamp::now().millis() {
            return false;
        }
        let expected = hmac(&self.secret, &message(key, size, expires_ms));
        constant_time::eq(expected.as_bytes(), signature.as_bytes())
    }

    /// Whether a download of `key` as `content_type` carries a valid, unexpired signature.
    pub fn verify_download(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_ms: i64,
        signature: &str,
    ) -> bool {
        expires_ms >= Timestamp::now().millis()
            && constant_time::eq(
                hmac(
                    &self.secret,
                    &download_message(key, content_type, expires_ms),
                )
                .as_bytes(),
                signature.as_bytes(),
            )
    }
}

#[async_trait]
impl UrlSigner for LocalUploads {
    async fn presign_upload(
        &self,
        key: &BlobKey,
        size: u64,
        expires_in_secs: u32,
    ) -> StoreResult<PresignedUpload> {
        let expires_at =
            Timestamp::now().plus_seconds(i64::from(upload_url_lifetime(expires_in_secs)));
        let sig = hmac(&self.secret, &message(key, size, expires_at.millis()));
        Ok(PresignedUpload {
            url: format!(
                "{}/uploads/{}?size={size}&expires={}&sig={sig}",
                self.base_url,
                key.as_str(),
                expires_at.millis()
            ),
            method: "PUT".into(),
            headers: vec![("content-length".into(), size.to_string())],
            expires_at,
        })
    }

    async fn presign_download(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_in_secs: u32,
    ) -> StoreResult<PresignedDownload> {
        let expires_at =
            Timestamp::now().plus_seconds(i64::from(upload_url_lifetime(expires_in_secs)));
        let sig = hmac(
            &self.secret,
            &download_message(key, content_type, expires_at.millis()),
        );
        let mut url = format!("{}/downloads/{}?", self.base_url, key.as_str());
        url.push_str(&format!(
            "type={}&expires={}&sig={sig}",
            percent_encode(content_type),
            expires_at.millis()
        ));
        Ok(PresignedDownload { url, expires_at })
    }
}

/// Query-string encoding of a content type (`text/html; charset=utf-8`).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomaly_core::domain::TenantId;

    /// The query string of a URL as a map.
    fn query(url: &str) -> std::collections::HashMap<&str, &str> {
        url.split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .filter_map(|p| p.split_once('='))
            .collect()
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key "Jefe"; our keys are 32 bytes, so check
        // against the same construction with the key zero-padded (HMAC pads keys to the
        // block size with zeros, so the result is identical).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hmac(&key, "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn urls_verify_only_for_their_key_size_and_time() {
        let dir = std::env::temp_dir().join(format!(
            "nomaly-uploads-{}",
            nomaly_core::ids::TaskId::new()
        ));
        let uploads = LocalUploads::open(&dir, "http://127.0.0.1:9/").unwrap();
        let t = TenantId::parse("acme").unwrap();
        let key = BlobKey::for_tenant(&t, &["uploads", "d.upload"]).unwrap();
        let other = BlobKey::for_tenant(&t, &["uploads", "e.upload"]).unwrap();
        let grant = uploads.presign_upload(&key, 10, 60).await.unwrap();
        assert!(grant
            .url
            .starts_with("http://127.0.0.1:9/uploads/tenants/acme/uploads/d.upload?size=10&"));
        let q = query(&grant.url);
        let (exp, sig) = (q["expires"].parse::<i64>().unwrap(), q["sig"]);
        assert!(uploads.verify(&key, 10, exp, sig));
        assert!(!uploads.verify(&key, 11, exp, sig));
        assert!(!uploads.verify(&other, 10, exp, sig));
        assert!(!uploads.verify(&key, 10, exp + 1, sig));
        let past = Timestamp::now().millis() - 1;
        assert!(!uploads.verify(
            &key,
            10,
            past,
            &hmac(&uploads.secret, &message(&key, 10, past))
        ));
        // Downloads: their own signatures, for their key and type only.
        let down = uploads
            .presign_download(&key, "text/html; charset=utf-8", 60)
            .await
            .unwrap();
        assert!(down.url.starts_with(
            "http://127.0.0.1:9/downloads/tenants/acme/uploads/d.upload?type=text%2Fhtml%3B%20charset%3Dutf-8&expires="
        ));
        let dq = query(&down.url);
        let (dexp, dsig) = (dq["expires"].parse::<i64>().unwrap(), dq["sig"]);
        let html = "text/html; charset=utf-8";
        assert!(uploads.verify_download(&key, html, dexp, dsig));
        assert!(!uploads.verify_download(&other, html, dexp, dsig));
        assert!(!uploads.verify_download(&key, "text/plain", dexp, dsig));
        assert!(!uploads.verify_download(&key, html, dexp + 1, dsig));
        assert!(
            !uploads.verify(&key, 10, dexp, dsig),
            "a download signature is no upload signature"
        );
        assert!(!uploads.verify_download(&key, html, exp, sig));
        let reopened = LocalUploads::open(&dir, "http://x").unwrap();
        assert!(
            reopened.verify(&key, 10, exp, sig),
            "the secret survives a restart"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
