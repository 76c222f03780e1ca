//! Search for ragsync: how text is cut into tokens and chunks, how it is analysed for BM25,
//! the BM25 index each node derives from its store's change feed, and metadata filters.
//!
//! - [`tokens`]: the tokenisation chunking and BM25 share.
//! - [`chunk`]: chunks by a collection's chunking settings, content-addressed.
//! - [`analysis`]: stop words and stemming by collection language.
//! - [`index`]: the tantivy index per collection, kept up by an indexer task.
//! - [`background`]: the lower scheduling priority of the index's threads.
//! - [`embed`]: the `Embedder` trait, the built-in model, OpenAI-compatible endpoints, and
//!   which models a node runs.
//! - [`vectors`]: a collection's vectors in memory, searched exactly or by a quantised scan.
//! - [`filter`]: metadata filters on results.
//! - [`query`]: checking a query and reading its results from the store.

pub mod analysis;
pub mod background;
pub mod chunk;
pub mod embed;
pub mod filter;
pub mod index;
pub mod query;
pub mod tokens;
pub mod vectors;

pub use chunk::{Chunk, chunk};
pub use filter::Filter;
pub use index::{Bm25Hit, IndexError, IndexStatus, SearchIndex, VectorStatus};
