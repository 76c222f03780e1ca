//! What the indexer keeps on disk: `state.json` (its watermark, the collections indexed and
//! where, the documents waiting for content), written whole or not at all, and the index
//! directories it names.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

use ragsync_core::{CollectionName, ContentId, DocId, Epoch};
use serde::{Deserialize, Serialize};

use super::{IndexError, Indexed};

const STATE_FILE: &str = "state.json";

/// The persisted part of the indexer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) epoch: Option<Epoch>,
    pub(super) through: u64,
    pub(super) collections: BTreeMap<CollectionName, Indexed>,
    /// Documents waiting for their content, by content id.
    pub(super) awaiting: BTreeMap<ContentId, Vec<(CollectionName, DocId)>>,
    /// The feed `seq` applied to the writers through (committed or not); `through` is what
    /// the last commit covered.
    #[serde(skip)]
    pub(super) applied: u64,
    /// Rows applied since the last commit, their contents' bytes, and when that was.
    #[serde(skip)]
    pub(super) uncommitted: usize,
    #[serde(skip)]
    pub(super) uncommitted_bytes: usize,
    #[serde(skip)]
    pub(super) last_commit: Option<Instant>,
}

pub(super) fn await_content(
    state: &mut State,
    cid: ContentId,
    collection: &CollectionName,
    id: &DocId,
) {
    let waiting = state.awaiting.entry(cid).or_default();
    if !waiting.iter().any(|(c, d)| c == collection && d == id) {
        waiting.push((collection.clone(), id.clone()));
    }
}

/// Removes index directories `state` does not record: builds a crash interrupted.
pub(super) fn remove_unrecorded(dir: &Path, state: &State) -> Result<(), IndexError> {
    let kept: HashSet<&str> = state.collections.values().map(|i| i.dir.as_str()).collect();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.path().is_dir() && name.starts_with("c-") && !kept.contains(name.as_ref()) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

pub(super) fn awaiting_count(state: &State) -> usize {
    state.awaiting.values().map(Vec::len).sum()
}

pub(super) fn unawait(state: &mut State, collection: &CollectionName, id: &DocId) {
    if state.awaiting.is_empty() {
        return;
    }
    for waiting in state.awaiting.values_mut() {
        waiting.retain(|(c, d)| !(c == collection && d == id));
    }
    state.awaiting.retain(|_, w| !w.is_empty());
}

/// Forgets every document of collection `name` that waits for its content.
pub(super) fn unawait_collection(state: &mut State, name: &CollectionName) {
    for waiting in state.awaiting.values_mut() {
        waiting.retain(|(c, _)| c != name);
    }
    state.awaiting.retain(|_, w| !w.is_empty());
}

/// A new directory name for a build of collection `name`'s index: a hash of the name (names
/// may hold characters a file name cannot) and the build's time.
pub(super) fn new_coll_dir(name: &CollectionName) -> String {
    let h = blake3::hash(name.as_str().as_bytes()).to_hex();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("c-{}-{now:x}", &h[..16])
}

pub(super) fn read_state(dir: &Path) -> Result<State, IndexError> {
    match std::fs::read(dir.join(STATE_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| IndexError::State(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the state file whole or not at all: a new file, synced, renamed over the old one.
pub(super) fn write_state(dir: &Path, state: &State) -> Result<(), IndexError> {
    let bytes = serde_json::to_vec(state).map_err(|e| IndexError::State(e.to_string()))?;
    let tmp = dir.join("state.json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

pub(super) fn clear_dir(dir: &Path) -> Result<(), IndexError> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}
