//! How a driver reaches one peer. The engine asks for fetches, sends and uploads as actions
//! and never performs them; a driver performs them through a [`Transport`]. The server's is
//! HTTP (`reqwest`, keep-alive, zstd-compressed pages); anything that carries the wire
//! messages can be one, and the driver's workers do not change.

use std::future::Future;
use std::time::Duration;

use ragsync_core::ContentId;

use crate::link::Failure;
use crate::pull::Fetch;
use crate::wire::{ChangesResponse, PushAnswer, SyncInfo};

/// One peer, as this node reaches it. Every answer a peer gives is untrusted: a transport
/// turns what it cannot read into a [`Failure`], and the engine checks the rest.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Names the peer in logs (its URL).
    fn describe(&self) -> String;

    /// The peer's identity and feed head (`GET /v1/sync/info`).
    fn info(&self) -> impl Future<Output = Result<SyncInfo, Failure>> + Send;

    /// One page of the peer's feed as the engine asked for it, with the bytes that crossed
    /// the link (`GET /v1/sync/changes`).
    fn fetch(
        &self,
        fetch: &Fetch,
        timeout: Duration,
    ) -> impl Future<Output = (Result<ChangesResponse, Failure>, u64)> + Send;

    /// A page of this node's feed sent to the peer, the peer's answer, and the bytes sent
    /// (`POST /v1/sync/changes`).
    fn push(
        &self,
        page: &ChangesResponse,
        timeout: Duration,
    ) -> impl Future<Output = (Result<PushAnswer, Failure>, u64)> + Send;

    /// A content the peer asked for, uploaded (`PUT /v1/blobs/{cid}`). A peer that no
    /// longer wants it is not a failure.
    fn upload(
        &self,
        cid: &ContentId,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// A content's bytes from the peer, `None` when it does not hold them
    /// (`GET /v1/blobs/{cid}`). Not checked here: the store checks them against their id.
    fn blob(
        &self,
        cid: &ContentId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Failure>> + Send;
}
