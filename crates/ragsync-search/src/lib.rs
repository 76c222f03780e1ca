//! Search on every node: chunking by the collection's settings, tokenising, BM25, vectors
//! (the `Embedder` trait with a built-in offline model and OpenAI-compatible endpoints) and
//! hybrid fusion. Empty until the search issue; it will depend on `ragsync-core` only, and the
//! store will keep its tables in the same transaction as the document states they index.
