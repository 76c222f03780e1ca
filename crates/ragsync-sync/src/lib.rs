//! The replication engine of ragsync, sans-IO: messages in, messages out, no sockets.
//!
//! Today this crate holds the wire messages of the change feed ([`wire`]), which the server
//! answers and the puller (next: pull/push state machines, anti-entropy) reads.

pub mod wire;
