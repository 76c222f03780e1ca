//! The replication engine of ragsync, sans-IO: messages in, messages out, no sockets, no
//! disk. Time and randomness come in as arguments, so a simulation drives the same code the
//! server does.
//!
//! - [`wire`]: the versioned messages of the change feed, and their conversion to and from
//!   the store's rows.
//! - [`pull`]: pulling from one peer: paging, pipelining, the cursor the store commits,
//!   resets, retries with backoff.
//! - [`push`]: pushing this node's feed to one peer that cannot pull from it: paging,
//!   pipelining, a push cursor moved only past rows the peer acknowledged.
//! - [`link`]: what both share: link states, failures, backoff with jitter.
//! - [`transport`]: the [`transport::Transport`] trait through which a driver performs the
//!   engine's requests to one peer.
//!
//! The engine uses the store's types, never the store itself: its driver (the server, or a
//! simulation) performs what it asks for and reports back. [`apply`] holds the one call both
//! drivers make into the store.

pub mod apply;
pub mod link;
pub mod pull;
pub mod push;
pub mod transport;
pub mod wire;
