//! Identifiers: time-ordered, unguessable, typed.
//!
//! Every generated id is a prefix naming its kind and a ULID (48 bits of milliseconds,
//! 80 random bits, Crockford base32), e.g. `tsk_01JD3X6Q8ZP0V2M7C4K9B5N1RT`. Ids made in
//! one process sort in creation order (the random part is incremented within a
//! millisecond), which is what event replay with `after` relies on. Parsing accepts only
//! the exact shape, so an id from a URL can never carry a path or a key of another kind.

use std::sync::Mutex;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A 128-bit ULID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ulid(u128);

static LAST: Mutex<u128> = Mutex::new(0);

impl Ulid {
    /// A new ULID, greater than every ULID this process made before.
    pub fn new() -> Self {
        let millis = crate::time::Timestamp::now().millis().max(0) as u128;
        let mut random = [0u8; 16];
        // Without an entropy source nothing secure can be made: better to stop than to
        // hand out guessable ids.
        getrandom::fill(&mut random).expect("the operating system's random source");
        let fresh = (millis << 80) | (u128::from_le_bytes(random) & ((1u128 << 80) - 1));
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let value = if fresh > *last { fresh } else { *last + 1 };
        *last = value;
        Ulid(value)
    }

    /// The 26-character Crockford base32 text.
    pub fn encode(&self) -> String {
        let mut out = [0u8; 26];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 125 - 5 * i as u32;
            *c = ALPHABET[((self.0 >> shift) & 0x1f) as usize];
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Parses the 26-character text (upper case, as written by [`Ulid::encode`]).
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() != 26 {
            return None;
        }
        let mut value: u128 = 0;
        for (i, b) in text.bytes().enumerate() {
            let digit = ALPHABET.iter().position(|&a| a == b)? as u128;
            if i == 0 && digit > 7 {
                return None; // would overflow 128 bits
            }
            value = (value << 5) | digit;
        }
        Some(Ulid(value))
    }

    /// The least ULID of millisecond `millis`: a lower bound for ids made then.
    pub fn floor(millis: i64) -> Self {
        Ulid((millis.max(0) as u128) << 80)
    }

    /// Milliseconds since the Unix epoch when it was made.
    pub fn millis(&self) -> i64 {
        (self.0 >> 80) as i64
    }
}

impl Default for Ulid {
    fn default() -> Self {
        Self::new()
    }
}

/// Defines a typed id: `Name::new()` makes one, `Name::parse(text)` checks one.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix of every id of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique id.
            pub fn new() -> Self {
                $name(format!("{}_{}", $prefix, Ulid::new().encode()))
            }

            /// Accepts exactly `<prefix>_<26 base32 characters>`.
            pub fn parse(text: &str) -> Result<Self, crate::ids::InvalidId> {
                match text.strip_prefix(concat!($prefix, "_")).and_then(Ulid::decode) {
                    Some(_) => Ok($name(text.to_string())),
                    None => Err(crate::ids::InvalidId {
                        kind: stringify!($name),
                        prefix: $prefix,
                    }),
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = crate::ids::InvalidId;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                Self::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

/// An id did not have the shape of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: expected `{prefix}_` followed by 26 base32 characters")]
pub struct InvalidId {
    /// The kind of id expected.
    pub kind: &'static str,
    /// Its prefix.
    pub prefix: &'static str,
}

typed_id!(
    /// A background task (train, detect, profile).
    TaskId,
    "tsk"
);
typed_id!(
    /// A trained model.
    ModelId,
    "mdl"
);
typed_id!(
    /// An uploaded dataset.
    DatasetId,
    "dst"
);
typed_id!(
    /// A domain event; ids sort in the order events were made.
    EventId,
    "evt"
);
typed_id!(
    /// A job on the queue.
    JobId,
    "job"
);
typed_id!(
    /// An API key's public part.
    KeyId,
    "key"
);

typed_id!(
    /// A named stream of points scored as they arrive.
    StreamId,
    "stm"
);

typed_id!(
    /// A verdict on a stream's result.
    FeedbackId,
    "fbk"
);

typed_id!(
    /// An alert rule.
    AlertId,
    "alr"
);

typed_id!(
    /// One alert sent (or being sent) by a rule: the idempotency id its receiver sees.
    DeliveryId,
    "alt"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_round_trip_and_increase() {
        let a = Ulid::new();
        let b = Ulid::new();
        assert!(b > a);
        assert_eq!(Ulid::decode(&a.encode()), Some(a));
        assert!(a.encode() < b.encode(), "text order follows value order");
        assert!((a.millis() - crate::time::Timestamp::now().millis()).abs() < 5_000);
    }

    #[test]
    fn typed_ids_refuse_other_shapes() {
        let t = TaskId::new();
        assert!(t.as_str().starts_with("tsk_"));
        assert_eq!(TaskId::parse(t.as_str()), Ok(t.clone()));
        for bad in [
            "",
            "tsk_",
            "mdl_01JD3X6Q8ZP0V2M7C4K9B5N1RT",
            "tsk_01JD3X6Q8ZP0V2M7C4K9B5N1R",
            "tsk_../../etc/passwd________",
            "tsk_01jd3x6q8zp0v2m7c4k9b5n1rt",
            "tsk_81JD3X6Q8ZP0V2M7C4K9B5N1RT",
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), t);
        assert!(serde_json::from_str::<TaskId>("\"nope\"").is_err());
    }
}
