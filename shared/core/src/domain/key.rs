//! API keys. A key is shown once, as `nmk_<key id>_<secret>`; only the SHA-256 of the
//! secret is stored, and presented secrets are compared with it in constant time.

use crate::domain::TenantId;
use crate::ids::KeyId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A stored key: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public part, used to find the record.
    pub id: KeyId,
    /// Whose.
    pub tenant: TenantId,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key opens nothing.
    pub revoked_at: Option<Timestamp>,
}

/// A key just made: the record to store and the text to show the user once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// What to store.
    pub record: ApiKey,
    /// What to give the user: `nmk_<key id>_<secret>`.
    pub plaintext: String,
}

impl ApiKey {
    /// Makes a key for `tenant` with 256 random bits of secret.
    pub fn issue(tenant: TenantId) -> IssuedKey {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the operating system's random source");
        let secret = hex::encode(secret);
        let id = KeyId::new();
        IssuedKey {
            plaintext: format!("nmk_{id}_{secret}"),
            record: ApiKey {
                id,
                tenant,
                secret_sha256: sha256_hex(&secret),
                created_at: Timestamp::now(),
                revoked_at: None,
            },
        }
    }

    /// Splits presented text into the key id and the secret, or `None` if it does not
    /// have a key's shape.
    pub fn split(presented: &str) -> Option<(KeyId, &str)> {
        let rest = presented.strip_prefix("nmk_")?;
        let (id, secret) = rest.split_at_checked(KeyId::PREFIX.len() + 1 + 26)?;
        let secret = secret.strip_prefix('_')?;
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((KeyId::parse(id).ok()?, secret))
    }

    /// The key revoked now (or when it was first revoked, if it already was).
    pub fn revoked(&self) -> ApiKey {
        ApiKey {
            revoked_at: self.revoked_at.or_else(|| Some(Timestamp::now())),
            ..self.clone()
        }
    }

    /// Whether `secret` is this key's secret and the key is not revoked. Compares the
    /// hashes in constant time.
    pub fn accepts(&self, secret: &str) -> bool {
        let presented = sha256_hex(secret);
        crate::constant_time::eq(presented.as_bytes(), self.secret_sha256.as_bytes())
            && self.revoked_at.is_none()
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_verify_and_are_stored_hashed() {
        let issued = ApiKey::issue(TenantId::parse("acme").unwrap());
        let (id, secret) = ApiKey::split(&issued.plaintext).unwrap();
        assert_eq!(id, issued.record.id);
        assert!(issued.record.accepts(secret));
        assert!(!issued.record.secret_sha256.contains(secret));
        assert!(!serde_json::to_string(&issued.record)
            .unwrap()
            .contains(secret));
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert!(!issued.record.accepts(&wrong));
        let mut revoked = issued.record.clone();
        revoked.revoked_at = Some(Timestamp::now());
        assert!(!revoked.accepts(secret));
    }

    #[test]
    fn malformed_keys_do_not_split() {
        let issued = ApiKey::issue(TenantId::parse("acme").unwrap());
        let good = issued.plaintext.as_str();
        for bad in [
            "",
            "nmk_",
            &good[..good.len() - 1],
            &good.replace("nmk_", "abc_"),
            &format!("{good}0"),
            &good.replacen("key_", "tsk_", 1),
        ] {
            assert!(ApiKey::split(bad).is_none(), "{bad}");
        }
    }
}
