//! Identifiers: [`NodeId`] and [`Epoch`] (128 random bits, shown as 32 hex digits) and
//! [`ContentId`] (the BLAKE3 hash of a content's bytes, shown as 64 hex digits).

use std::fmt;
use std::str::FromStr;

use crate::CoreError;

/// Implements `Serialize` and `Deserialize` through a type's `Display` and `FromStr`, so the
/// wire and disk forms are the text forms.
macro_rules! serde_as_text {
    ($name:ty) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_text;

macro_rules! hex_u128_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u128);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(rand::random::<u128>())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, CoreError> {
                if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(CoreError::InvalidName {
                        what: $what,
                        reason: "expected 32 hex digits".into(),
                    });
                }
                u128::from_str_radix(s, 16).map(Self).map_err(|e| CoreError::InvalidName {
                    what: $what,
                    reason: e.to_string(),
                })
            }
        }

        serde_as_text!($name);
    };
}

hex_u128_id!(
    /// The identity of a node: created once, kept in the data directory, never reused.
    NodeId,
    "node id"
);
hex_u128_id!(
    /// The incarnation of a database. A wiped or restored database gets a new epoch, which
    /// tells its peers that their cursors into it no longer mean anything.
    Epoch,
    "epoch"
);

/// The BLAKE3 hash of a content's bytes. Contents are stored once per id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| CoreError::InvalidName {
            what: "content id",
            reason: "expected 64 hex digits".into(),
        })?;
        Ok(Self(out))
    }
}

serde_as_text!(ContentId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let n = NodeId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(n.to_string().parse::<NodeId>().unwrap(), n);
        let c = ContentId::of(b"hello");
        assert_eq!(c.to_string().parse::<ContentId>().unwrap(), c);
        assert_eq!(c.to_string(), blake3::hash(b"hello").to_hex().as_str());
        assert!("xyz".parse::<NodeId>().is_err());
        assert!(
            "+0123456789abcdef0123456789abcde"
                .parse::<NodeId>()
                .is_err()
        );
        assert!("00".parse::<ContentId>().is_err());
    }
}
