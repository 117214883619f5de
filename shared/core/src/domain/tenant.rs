//! Tenants: every record belongs to exactly one.

use serde::{Deserialize, Serialize};

/// A tenant's name: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a
/// letter or digit. It is part of every storage key, so nothing else is allowed in it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// A tenant name that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant names are 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
)]
pub struct InvalidTenant;

impl TenantId {
    /// Checks and wraps a tenant name.
    pub fn parse(name: &str) -> Result<Self, InvalidTenant> {
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(TenantId(name.to_string()))
        } else {
            Err(InvalidTenant)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenant;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_names() {
        for good in ["acme", "a", "team-7_prod", &"x".repeat(64)] {
            assert!(TenantId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "-a",
            "a/b",
            "a#b",
            "../x",
            &"x".repeat(65),
            "a b",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }
}
