//! Core types of ragsync. No IO happens here: time and randomness come in as arguments or
//! through [`hlc::PhysicalClock`], so every rule below can be tested in isolation.
//!
//! - [`ids`]: node ids, database epochs and BLAKE3 content ids.
//! - [`names`]: validated collection names and document ids.
//! - [`hlc`]: hybrid logical clocks and the total order of stamps.
//! - [`vv`]: version vectors.
//! - [`doc`]: versions and the document state, a multi-value register with its merge.
//! - [`settings`]: collection settings.
//! - [`limits`]: every named limit with its default.
//! - [`metadata`]: the nesting and integer rules of document metadata.
//! - [`object`]: structs read from JSON objects only, never from arrays.

pub mod doc;
pub mod error;
pub mod hlc;
pub mod ids;
pub mod limits;
pub mod metadata;
pub mod names;
pub mod object;
pub mod settings;
pub mod vv;

pub use doc::{ContentRef, DocState, Version};
pub use error::CoreError;
pub use hlc::{Hlc, HlcClock, PhysicalClock, Stamp};
pub use ids::{ContentId, Epoch, NodeId};
pub use limits::Limits;
pub use names::{CollectionName, DocId};
pub use settings::{Collection, CollectionSettings};
pub use vv::VersionVector;
