//! Hybrid logical clocks (Kulkarni et al., 2014).
//!
//! An [`Hlc`] packs 48 bits of physical milliseconds and a 16-bit counter into a `u64`, so
//! comparing two values compares (physical, counter). A [`Stamp`] adds the issuing node and is a
//! total order: equal clock values on two nodes still resolve the same way everywhere.
//!
//! Invariants of [`HlcClock`]:
//! - every value it issues is greater than every value it issued or observed before;
//! - a remote value more than `max_drift_ms` ahead of local physical time is refused and leaves
//!   the clock unchanged, so one bad peer cannot drag every node's clock into the future.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::serde_as_text;
use crate::{CoreError, NodeId};

/// Source of physical time in milliseconds since the Unix epoch. Injected so that tests can
/// drive skewed, frozen or backwards clocks.
pub trait PhysicalClock: Send + Sync {
    fn now_ms(&self) -> u64;
}

const COUNTER_BITS: u32 = 16;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// Largest physical time an [`Hlc`] can hold (48 bits of milliseconds, about the year 10889).
pub const MAX_PHYSICAL_MS: u64 = (1 << 48) - 1;

/// A hybrid logical clock value: physical milliseconds (48 bits) and a counter (16 bits).
///
/// In JSON it is a decimal string (`"115964116992000001"`): its values pass 2^53, past which
/// JavaScript numbers lose digits. States stored before this rule hold numbers, which are still
/// read.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(pub u64);

impl Serialize for Hlc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Hlc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a clock value: a decimal string (or a number, as stored before)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Hlc, E> {
                Ok(Hlc(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Hlc, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom("a clock value is decimal digits"));
                }
                v.parse().map(Hlc).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Hlc {
    pub fn new(physical_ms: u64, counter: u16) -> Self {
        debug_assert!(physical_ms <= MAX_PHYSICAL_MS);
        Self((physical_ms.min(MAX_PHYSICAL_MS) << COUNTER_BITS) | u64::from(counter))
    }

    pub fn physical_ms(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    pub fn counter(self) -> u16 {
        (self.0 & COUNTER_MASK) as u16
    }

    /// The smallest value greater than `self`: the counter goes up, and when it is full the
    /// physical part moves one millisecond ahead (a logical millisecond, caught up by real time).
    /// It saturates at the largest value, which no drift-checked clock gets near before the
    /// year 10889.
    fn successor(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({}ms+{})", self.physical_ms(), self.counter())
    }
}

/// The clock of one node.
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
}

impl HlcClock {
    /// A clock that has issued nothing yet. `max_drift_ms` bounds how far ahead of local
    /// physical time a remote value may be.
    pub fn new(max_drift_ms: u64) -> Self {
        Self {
            last: Hlc::default(),
            max_drift_ms,
        }
    }

    /// The greatest value issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Restores the high-water mark kept durably, so a restarted node never issues a value
    /// at or below one it issued before the restart (even if its physical clock went back).
    pub fn restore(&mut self, at_least: Hlc) {
        self.last = self.last.max(at_least);
    }

    /// Issues a new value, greater than everything issued or observed so far.
    pub fn tick(&mut self, physical_ms: u64) -> Hlc {
        let wall = Hlc::new(physical_ms.min(MAX_PHYSICAL_MS), 0);
        self.last = if wall > self.last {
            wall
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Takes a remote value into account: later ticks are greater than it. A value more than
    /// `max_drift_ms` ahead of `physical_ms` is refused and the clock does not move.
    pub fn observe(&mut self, remote: Hlc, physical_ms: u64) -> Result<(), CoreError> {
        self.check_drift(remote, physical_ms)?;
        self.last = self.last.max(remote);
        Ok(())
    }

    /// Refuses a remote value too far ahead of local physical time, changing nothing.
    pub fn check_drift(&self, remote: Hlc, physical_ms: u64) -> Result<(), CoreError> {
        let remote_ms = remote.physical_ms();
        let ahead_ms = remote_ms.saturating_sub(physical_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(CoreError::ClockDrift {
                remote_ms,
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        Ok(())
    }
}

/// A clock value with the node that issued it: the identity and total order of a version.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub hlc: Hlc,
    pub node: NodeId,
}

impl Stamp {
    pub fn new(hlc: Hlc, node: NodeId) -> Self {
        Self { hlc, node }
    }
}

impl fmt::Display for Stamp {
    /// `<16 hex digits of the clock>-<32 hex digits of the node>`: text order is stamp order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.hlc.0, self.node)
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stamp({:?}@{})", self.hlc, &self.node.to_string()[..8])
    }
}

impl FromStr for Stamp {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::InvalidName {
            what: "version",
            reason: "expected <16 hex digits>-<32 hex digits>".into(),
        };
        let (hlc, node) = s.split_once('-').ok_or_else(bad)?;
        if hlc.len() != 16 || !hlc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let hlc = u64::from_str_radix(hlc, 16).map_err(|_| bad())?;
        Ok(Self::new(Hlc(hlc), node.parse().map_err(|_| bad())?))
    }
}

serde_as_text!(Stamp);

#[cfg(test)]
mod wire_tests {
    use super::Hlc;

    #[test]
    fn clock_values_are_strings_in_json_and_old_numbers_still_read() {
        let h = Hlc::new(1_800_000_000_000, 7);
        assert!(h.0 > 1 << 53);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.0));
        assert_eq!(serde_json::from_str::<Hlc>(&json).unwrap(), h);
        assert_eq!(serde_json::from_str::<Hlc>(&h.0.to_string()).unwrap(), h);
        for bad in ["\"\"", "\"-1\"", "\"1e3\"", "\" 1\"", "-1", "1.5"] {
            assert!(serde_json::from_str::<Hlc>(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing() {
        let h = Hlc::new(1_700_000_000_000, 7);
        assert_eq!(h.physical_ms(), 1_700_000_000_000);
        assert_eq!(h.counter(), 7);
        assert!(Hlc::new(5, u16::MAX) < Hlc::new(6, 0));
    }

    #[test]
    fn counter_overflow_moves_to_next_millisecond() {
        let mut c = HlcClock::new(60_000);
        c.restore(Hlc::new(100, u16::MAX));
        let h = c.tick(100);
        assert_eq!((h.physical_ms(), h.counter()), (101, 0));
    }

    #[test]
    fn stamp_text_round_trip_and_order() {
        let a = Stamp::new(Hlc::new(10, 1), NodeId(5));
        let b = Stamp::new(Hlc::new(10, 1), NodeId(6));
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<Stamp>().unwrap(), a);
        assert!("zz-00".parse::<Stamp>().is_err());
    }
}
