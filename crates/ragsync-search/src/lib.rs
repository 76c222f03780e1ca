//! Search for ragsync, without IO: how text is cut into tokens and chunks, and how a query
//! becomes a BM25 match expression. The store indexes what these functions produce in the
//! same transaction as the document state they come from.
//!
//! - [`tokens`]: the tokenisation both chunking and BM25 use.
//! - [`chunk`]: chunks by a collection's chunking settings, content-addressed.
//! - [`bm25`]: query text to an FTS5 match expression (stop words dropped).

pub mod bm25;
pub mod chunk;
pub mod tokens;

pub use chunk::{Chunk, chunk};
