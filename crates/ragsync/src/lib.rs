//! The `ragsync` binary's library: configuration, the node runner, the HTTP client the CLI
//! commands use, and the commands themselves. `main.rs` only parses arguments.

pub mod bench;
pub mod client;
pub mod config;
pub mod conflicts;
pub mod demo;
pub mod display;
pub mod ingest;
pub mod mcp;
pub mod node_proc;
pub mod proxy;
pub mod search_cmd;
pub mod serve;
pub mod textgen;
