//! The index against a real store, driven by `catch_up` directly: what a restart finds on
//! disk (an index directory lost, a build a crash interrupted, invalid UTF-8) and how it
//! comes back to agree with the store.

use std::sync::Arc;

use ragsync_core::{CollectionName, CollectionSettings, DocId};
use ragsync_search::SearchIndex;
use ragsync_search::analysis::query_terms;
use ragsync_store::{DocOp, OpKind, Store, StoreOptions};

fn put(id: &str, bytes: &[u8], title: Option<&str>) -> DocOp {
    DocOp {
        id: DocId::new(id).unwrap(),
        if_match: None,
        kind: OpKind::Put {
            title: title.map(String::from),
            metadata: Default::default(),
            content: bytes.to_vec(),
            content_type: "text/plain".into(),
            embeddings: None,
        },
    }
}

/// A store with collection `kb`, in a temporary directory (the search index goes beside it).
fn setup() -> (tempfile::TempDir, Arc<Store>, CollectionName) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap());
    let c = CollectionName::new("kb").unwrap();
    store
        .put_collection(&c, CollectionSettings::default())
        .unwrap();
    (dir, store, c)
}

fn catch_up(index: &SearchIndex) {
    let (_tx, stop) = tokio::sync::watch::channel(false);
    index.catch_up(&stop, true).unwrap();
}

/// The index in `dir`, opened over `store` and caught up with it.
fn caught_up(store: &Arc<Store>, dir: &std::path::Path) -> SearchIndex {
    let index = SearchIndex::open(store.clone(), dir, Default::default()).unwrap();
    catch_up(&index);
    index
}

fn hits(index: &SearchIndex, c: &CollectionName, text: &str) -> Vec<String> {
    let terms = query_terms("english", text);
    let mut ids: Vec<String> = index
        .bm25(c, &terms, 100)
        .unwrap()
        .into_iter()
        .map(|h| h.doc_id.as_str().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_lost_or_half_built_index_directory_is_rebuilt_from_the_store() {
    let (dir, store, c) = setup();
    store
        .write(
            &c,
            vec![
                put("a", b"apples and pears", None),
                put("b", b"pears only", None),
            ],
        )
        .unwrap();
    let search_dir = dir.path().join("search");
    {
        let index = caught_up(&store, &search_dir);
        assert_eq!(hits(&index, &c, "pears"), ["a", "b"]);
    }
    // A crash left a build behind, and the recorded index directory is gone.
    let mut recorded = Vec::new();
    for e in std::fs::read_dir(&search_dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            recorded.push(p);
        }
    }
    assert_eq!(recorded.len(), 1);
    std::fs::remove_dir_all(&recorded[0]).unwrap();
    std::fs::create_dir_all(search_dir.join("c-0000000000000000-1")).unwrap();
    let index = SearchIndex::open(store.clone(), &search_dir, Default::default()).unwrap();
    assert_eq!(hits(&index, &c, "apples"), ["a"]);
    assert!(!search_dir.join("c-0000000000000000-1").exists());
    assert_eq!(index.status().chunks.get(&c), Some(&2));
}

/// The index directories under `search_dir`.
fn index_dirs(search_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(search_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn an_index_built_by_an_earlier_analysis_answers_until_the_indexer_rebuilds_it() {
    let (dir, store, c) = setup();
    let decomposed = "cafe\u{301} au lait";
    store
        .write(&c, vec![put("nfd", decomposed.as_bytes(), None)])
        .unwrap();
    let search_dir = dir.path().join("search");
    drop(caught_up(&store, &search_dir));
    let before = index_dirs(&search_dir);
    assert_eq!(before.len(), 1);
    // As a build before NFC left it: no analysis recorded (read as 0).
    let state_file = search_dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(
        state["collections"]["kb"]["config"]["analysis"],
        ragsync_search::analysis::ANALYSIS_VERSION,
        "{state}"
    );
    let config = state["collections"]["kb"]["config"]
        .as_object_mut()
        .unwrap();
    config.remove("analysis");
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();

    // Opened as it is: it answers queries, and nothing is rebuilt while the node starts.
    let index = SearchIndex::open(store.clone(), &search_dir, Default::default()).unwrap();
    assert_eq!(index_dirs(&search_dir), before);
    assert_eq!(hits(&index, &c, "lait"), ["nfd"]);
    // The indexer's next pass rebuilds it and removes the old directory.
    catch_up(&index);
    let after = index_dirs(&search_dir);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "not rebuilt");
    // The composed spelling of the query finds the decomposed text.
    assert_eq!(hits(&index, &c, "café"), ["nfd"]);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(
        state["collections"]["kb"]["config"]["analysis"],
        ragsync_search::analysis::ANALYSIS_VERSION
    );
}

#[test]
fn text_that_is_not_utf8_is_indexed_by_its_title() {
    let (dir, store, c) = setup();
    // Latin-1 "café crème" is not UTF-8.
    store
        .write(
            &c,
            vec![put(
                "latin1",
                b"caf\xe9 cr\xe8me brulee",
                Some("Dessert notes"),
            )],
        )
        .unwrap();
    let index = caught_up(&store, &dir.path().join("search"));
    assert_eq!(hits(&index, &c, "dessert"), ["latin1"]);
    assert!(hits(&index, &c, "brulee").is_empty());
    let hit = &index
        .bm25(&c, &query_terms("english", "dessert"), 1)
        .unwrap()[0];
    assert_eq!((hit.start, hit.end), (0, 0));
}

#[test]
fn bm25_scores_a_named_chunk_as_the_ranking_does_however_far_down_it_is() {
    let (dir, store, c) = setup();
    store
        .write(
            &c,
            vec![
                put("a", b"pears pears pears and apples", None),
                put(
                    "b",
                    b"one pear among many other words of a longer text",
                    None,
                ),
                put("c", b"nothing about fruit here", None),
            ],
        )
        .unwrap();
    let index = caught_up(&store, &dir.path().join("search"));
    let terms = query_terms("english", "pears");
    let ranked = index.bm25(&c, &terms, 10).unwrap();
    assert_eq!(ranked.len(), 2);
    assert_eq!(ranked[1].doc_id.as_str(), "b");
    let keys: Vec<(DocId, u32)> = ["b", "c", "missing"]
        .iter()
        .map(|id| (DocId::new(*id).unwrap(), 0))
        .collect();
    let scores = index.bm25_scores(&c, &terms, &keys).unwrap();
    // "b" is found alone with the collection's statistics, so its score is the ranking's;
    // "c" matches no term and "missing" does not exist.
    assert_eq!(scores, [Some(ranked[1].score), None, None]);
    assert_eq!(index.bm25_scores(&c, &terms, &[]).unwrap(), []);
}

/// A query that waits on a collection while another's bulk load holds the watermark back
/// gets that collection's rows indexed ahead of the feed: its own changes (new, updated,
/// deleted) are committed after one page of the backlog, and the later replay of the same
/// rows from the feed leaves each document indexed once.
#[test]
fn a_waiting_collection_is_indexed_ahead_of_another_s_backlog() {
    let (dir, store, c) = setup();
    let big = CollectionName::new("big").unwrap();
    store
        .put_collection(&big, CollectionSettings::default())
        .unwrap();
    store
        .write(
            &c,
            vec![put("a", b"apples", None), put("b", b"pears", None)],
        )
        .unwrap();
    let index = caught_up(&store, &dir.path().join("search"));
    // Three pages of backlog, then the small collection's changes behind them.
    let bulk: Vec<DocOp> = (0..5000)
        .map(|i| put(&format!("d{i}"), format!("bulk words {i}").as_bytes(), None))
        .collect();
    store.write(&big, bulk).unwrap();
    let mut delete_b = put("b", b"", None);
    delete_b.kind = OpKind::Delete;
    store
        .write(
            &c,
            vec![
                put("a", b"plums", None),
                delete_b,
                put("n", b"plums and cherries", None),
            ],
        )
        .unwrap();
    let head = store.head_seq().unwrap();
    assert_eq!(store.collection_head(&c), head);
    assert!(!index.covers(&c, head));
    // A query waits (briefly, nothing indexes meanwhile) and so asks for its collection.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let waited = rt.block_on(index.wait_indexed(&c, head, std::time::Duration::from_millis(10)));
    assert!(!waited);
    // One page of the backlog: `stop` ends the pass after it, as a shutdown does.
    let (_tx, stop) = tokio::sync::watch::channel(true);
    index.catch_up(&stop, false).unwrap();
    assert!(index.covers(&c, head), "not indexed ahead");
    assert!(!index.covers(&big, head), "the backlog was not left behind");
    assert!(index.status().indexed_through < head);
    assert_eq!(hits(&index, &c, "plums"), ["a", "n"]);
    assert!(hits(&index, &c, "apples pears").is_empty());
    assert_eq!(index.status().chunks.get(&c), Some(&2));
    // The rest of the feed, the small collection's rows again among it.
    catch_up(&index);
    assert!(index.covers(&big, head) && index.status().indexed_through >= head);
    assert_eq!(hits(&index, &c, "plums"), ["a", "n"]);
    assert_eq!(index.status().chunks.get(&c), Some(&2));
    assert_eq!(index.status().chunks.get(&big), Some(&5000));
}
