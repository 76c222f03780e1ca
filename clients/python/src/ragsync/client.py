"""Typed clients of a node's HTTP API v1: :class:`Client` (blocking) and :class:`AsyncClient`.

Each API call is described once, as a :class:`_Call` (method, path, body, how to read the
answer); the two clients differ only in how they send it. Connections are kept alive and
reused (httpx pools them), so a call costs one round trip.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import ConnectionFailed, error_from
from .models import (
    BatchResult,
    Collection,
    Document,
    DocumentPage,
    Fusion,
    Group,
    Mode,
    Peer,
    QueryResponse,
    WriteResult,
)

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0


def _seg(s: str) -> str:
    """A path segment: a document id may hold ``/``, ``?``, ``#``, spaces."""
    return quote(s, safe="")


def _docs(collection: str) -> str:
    return f"/v1/collections/{_seg(collection)}/docs"


def _doc(collection: str, doc_id: str) -> str:
    return f"{_docs(collection)}/{_seg(doc_id)}"


def _if_match(version: str | None) -> dict[str, str] | None:
    if version is None:
        return None
    return {"If-Match": version if version == "*" else f'"{version}"'}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def document_body(
    text: str | None = None,
    *,
    content: bytes | None = None,
    content_type: str | None = None,
    title: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    vector: Sequence[float] | None = None,
    vectors: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """The JSON body of a document write (also one item of a batch, with ``id`` added)."""
    if (text is None) == (content is None):
        raise ValueError("give exactly one of text and content")
    return _drop_none(
        {
            "text": text,
            "content_base64": None if content is None else base64.b64encode(content).decode(),
            "content_type": content_type,
            "title": title,
            "metadata": None if metadata is None else dict(metadata),
            "vector": None if vector is None else list(vector),
            "vectors": None if vectors is None else [list(v) for v in vectors],
        }
    )


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    read: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None

    def answer(self, r: httpx.Response) -> T:
        return self.read(_json_answer(r))


def _json_answer(r: httpx.Response) -> Any:
    """The JSON body of an answer, or the typed error of a refusal."""
    body: Any = None
    if r.content:
        try:
            body = r.json()
        except ValueError:
            body = None
    if r.status_code >= 400:
        raise error_from(r.status_code, body)
    return body


def _unreachable(url: str, e: Exception) -> ConnectionFailed:
    return ConnectionFailed(0, "unreachable", f"{url}: {e!r}")


def _raw_answer(r: httpx.Response) -> Any:
    if r.headers.get("content-type", "").startswith("application/json"):
        return _json_answer(r)
    if r.status_code >= 400:
        raise error_from(r.status_code, None)
    return r.content


def _same(v: Any) -> Any:
    return v


class _Api:
    """Every call of the API, each returning the :class:`_Call` that makes it."""

    @staticmethod
    def health() -> _Call[dict[str, Any]]:
        return _Call("GET", "/v1/health", _same)

    @staticmethod
    def status() -> _Call[dict[str, Any]]:
        return _Call("GET", "/v1/status", _same)

    @staticmethod
    def list_collections() -> _Call[list[Collection]]:
        return _Call(
            "GET",
            "/v1/collections",
            lambda v: [Collection.from_json(c) for c in v["collections"]],
        )

    @staticmethod
    def get_collection(name: str) -> _Call[Collection]:
        return _Call("GET", f"/v1/collections/{_seg(name)}", Collection.from_json)

    @staticmethod
    def put_collection(name: str, settings: Mapping[str, Any] | None) -> _Call[Collection]:
        return _Call(
            "PUT", f"/v1/collections/{_seg(name)}", Collection.from_json, dict(settings or {})
        )

    @staticmethod
    def delete_collection(name: str) -> _Call[int]:
        return _Call(
            "DELETE", f"/v1/collections/{_seg(name)}", lambda v: int(v["documents_deleted"])
        )

    @staticmethod
    def put_document(
        collection: str, doc_id: str, body: dict[str, Any], if_match: str | None
    ) -> _Call[WriteResult]:
        return _Call(
            "PUT", _doc(collection, doc_id), WriteResult.from_json, body, None, _if_match(if_match)
        )

    @staticmethod
    def get_document(collection: str, doc_id: str) -> _Call[Document]:
        return _Call("GET", _doc(collection, doc_id), Document.from_json)

    @staticmethod
    def delete_document(collection: str, doc_id: str, if_match: str | None) -> _Call[WriteResult]:
        return _Call(
            "DELETE", _doc(collection, doc_id), WriteResult.from_json, None, None,
            _if_match(if_match),
        )

    @staticmethod
    def list_documents(
        collection: str, after: str | None, limit: int | None, conflicts: bool
    ) -> _Call[DocumentPage]:
        params = _drop_none(
            {"after": after, "limit": limit, "conflicts": "true" if conflicts else None}
        )
        return _Call("GET", _docs(collection), DocumentPage.from_json, None, params)

    @staticmethod
    def batch(collection: str, docs: Sequence[Mapping[str, Any]]) -> _Call[BatchResult]:
        return _Call(
            "POST",
            f"/v1/collections/{_seg(collection)}/docs:batch",
            BatchResult.from_json,
            {"docs": [dict(d) for d in docs]},
        )

    @staticmethod
    def query(collection: str, body: dict[str, Any]) -> _Call[QueryResponse]:
        return _Call(
            "POST", f"/v1/collections/{_seg(collection)}/query", QueryResponse.from_json, body
        )

    @staticmethod
    def list_peers() -> _Call[list[Peer]]:
        return _Call("GET", "/v1/peers", lambda v: [Peer.from_json(p) for p in v])

    @staticmethod
    def add_peer(url: str, token: str, collections: Sequence[str] | None) -> _Call[Peer]:
        body = _drop_none(
            {"url": url, "token": token, "collections": None if collections is None else list(collections)}
        )
        return _Call("POST", "/v1/peers", Peer.from_json, body)

    @staticmethod
    def peer_action(node_id: str, action: str | None) -> _Call[dict[str, Any]]:
        path = f"/v1/peers/{_seg(node_id)}"
        if action is None:
            return _Call("DELETE", path, _same)
        return _Call("POST", f"{path}/{action}", _same)


def query_body(
    query: str | None,
    *,
    vector: Sequence[float] | None,
    top_k: int | None,
    mode: Mode | None,
    alpha: float | None,
    fusion: Fusion | None,
    filter: Mapping[str, Any] | None,
    group: Group | None,
) -> dict[str, Any]:
    return _drop_none(
        {
            "query": query,
            "vector": None if vector is None else list(vector),
            "top_k": top_k,
            "mode": mode,
            "alpha": alpha,
            "fusion": fusion,
            "filter": None if filter is None else dict(filter),
            "group": group,
        }
    )


def _settings(url: str | None, token: str | None) -> tuple[str, str | None, dict[str, str]]:
    url = url or os.environ.get("RAGSYNC_URL") or "http://127.0.0.1:7070"
    token = token or os.environ.get("RAGSYNC_TOKEN")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return url.rstrip("/"), token, headers


class Client:
    """A blocking client of one node. ``url`` and ``token`` default to ``RAGSYNC_URL`` and
    ``RAGSYNC_TOKEN``. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        base, self.token, headers = _settings(url, token)
        self.url = base
        self._http = httpx.Client(base_url=base, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> T:
        try:
            r = self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
        except httpx.TransportError as e:
            raise _unreachable(self.url, e) from e
        return call.answer(r)

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Any:
        """Any route, for what the typed methods do not cover (``content``: a raw body);
        refusals still raise. Answers the JSON body, or the bytes of a body that is not JSON."""
        try:
            r = self._http.request(
                method, path, json=json, params=params, headers=headers, content=content
            )
        except httpx.TransportError as e:
            raise _unreachable(self.url, e) from e
        return _raw_answer(r)

    def health(self) -> dict[str, Any]:
        return self._send(_Api.health())

    def status(self) -> dict[str, Any]:
        """Node id, counts, feed head, peers and their lag, search progress."""
        return self._send(_Api.status())

    def list_collections(self) -> list[Collection]:
        return self._send(_Api.list_collections())

    def get_collection(self, name: str) -> Collection:
        return self._send(_Api.get_collection(name))

    def create_collection(self, name: str, settings: Mapping[str, Any] | None = None) -> Collection:
        """Creates ``name``, or changes its settings (missing fields take their defaults)."""
        return self._send(_Api.put_collection(name, settings))

    def delete_collection(self, name: str) -> int:
        """Deletes a collection (a tombstone for each document); the documents deleted."""
        return self._send(_Api.delete_collection(name))

    def put_document(
        self,
        collection: str,
        doc_id: str,
        text: str | None = None,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        vector: Sequence[float] | None = None,
        vectors: Sequence[Sequence[float]] | None = None,
        if_match: str | None = None,
    ) -> WriteResult:
        """Writes one document: ``text``, or ``content`` bytes with their ``content_type``.
        ``if_match`` (a version, or ``"*"``) makes the write conditional."""
        body = document_body(
            text, content=content, content_type=content_type, title=title,
            metadata=metadata, vector=vector, vectors=vectors,
        )
        return self._send(_Api.put_document(collection, doc_id, body, if_match))

    def get_document(self, collection: str, doc_id: str) -> Document:
        return self._send(_Api.get_document(collection, doc_id))

    def delete_document(
        self, collection: str, doc_id: str, *, if_match: str | None = None
    ) -> WriteResult:
        return self._send(_Api.delete_document(collection, doc_id, if_match))

    def list_documents(
        self,
        collection: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        conflicts: bool = False,
    ) -> DocumentPage:
        return self._send(_Api.list_documents(collection, after, limit, conflicts))

    def iter_documents(self, collection: str, *, conflicts: bool = False) -> Iterator[dict[str, Any]]:
        """Every live document of a collection (without contents), page by page."""
        after: str | None = None
        while True:
            page = self.list_documents(collection, after=after, conflicts=conflicts)
            yield from page.docs
            if not page.has_more:
                return
            after = page.next_after

    def batch(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Writes and deletes in one transaction: each item is :func:`document_body` with an
        ``id`` (and ``if_match``), or ``{"id", "delete": True}``."""
        return self._send(_Api.batch(collection, docs))

    def query(
        self,
        collection: str,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        top_k: int | None = None,
        mode: Mode | None = None,
        alpha: float | None = None,
        fusion: Fusion | None = None,
        filter: Mapping[str, Any] | None = None,
        group: Group | None = None,
    ) -> QueryResponse:
        body = query_body(
            query, vector=vector, top_k=top_k, mode=mode, alpha=alpha, fusion=fusion,
            filter=filter, group=group,
        )
        return self._send(_Api.query(collection, body))

    def list_peers(self) -> list[Peer]:
        return self._send(_Api.list_peers())

    def add_peer(self, url: str, token: str, *, collections: Sequence[str] | None = None) -> Peer:
        return self._send(_Api.add_peer(url, token, collections))

    def remove_peer(self, node_id: str) -> dict[str, Any]:
        return self._send(_Api.peer_action(node_id, None))

    def sync_peer(self, node_id: str) -> dict[str, Any]:
        """Pulls from a peer now."""
        return self._send(_Api.peer_action(node_id, "sync"))

    def retry_peer(self, node_id: str) -> dict[str, Any]:
        """Applies again the rows parked from a peer."""
        return self._send(_Api.peer_action(node_id, "retry"))


class AsyncClient:
    """:class:`Client` for asyncio: the same methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        base, self.token, headers = _settings(url, token)
        self.url = base
        self._http = httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T:
        try:
            r = await self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
        except httpx.TransportError as e:
            raise _unreachable(self.url, e) from e
        return call.answer(r)

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Any:
        try:
            r = await self._http.request(
                method, path, json=json, params=params, headers=headers, content=content
            )
        except httpx.TransportError as e:
            raise _unreachable(self.url, e) from e
        return _raw_answer(r)

    async def health(self) -> dict[str, Any]:
        return await self._send(_Api.health())

    async def status(self) -> dict[str, Any]:
        return await self._send(_Api.status())

    async def list_collections(self) -> list[Collection]:
        return await self._send(_Api.list_collections())

    async def get_collection(self, name: str) -> Collection:
        return await self._send(_Api.get_collection(name))

    async def create_collection(
        self, name: str, settings: Mapping[str, Any] | None = None
    ) -> Collection:
        return await self._send(_Api.put_collection(name, settings))

    async def delete_collection(self, name: str) -> int:
        return await self._send(_Api.delete_collection(name))

    async def put_document(
        self,
        collection: str,
        doc_id: str,
        text: str | None = None,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        vector: Sequence[float] | None = None,
        vectors: Sequence[Sequence[float]] | None = None,
        if_match: str | None = None,
    ) -> WriteResult:
        body = document_body(
            text, content=content, content_type=content_type, title=title,
            metadata=metadata, vector=vector, vectors=vectors,
        )
        return await self._send(_Api.put_document(collection, doc_id, body, if_match))

    async def get_document(self, collection: str, doc_id: str) -> Document:
        return await self._send(_Api.get_document(collection, doc_id))

    async def delete_document(
        self, collection: str, doc_id: str, *, if_match: str | None = None
    ) -> WriteResult:
        return await self._send(_Api.delete_document(collection, doc_id, if_match))

    async def list_documents(
        self,
        collection: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        conflicts: bool = False,
    ) -> DocumentPage:
        return await self._send(_Api.list_documents(collection, after, limit, conflicts))

    async def batch(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> BatchResult:
        return await self._send(_Api.batch(collection, docs))

    async def query(
        self,
        collection: str,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        top_k: int | None = None,
        mode: Mode | None = None,
        alpha: float | None = None,
        fusion: Fusion | None = None,
        filter: Mapping[str, Any] | None = None,
        group: Group | None = None,
    ) -> QueryResponse:
        body = query_body(
            query, vector=vector, top_k=top_k, mode=mode, alpha=alpha, fusion=fusion,
            filter=filter, group=group,
        )
        return await self._send(_Api.query(collection, body))

    async def list_peers(self) -> list[Peer]:
        return await self._send(_Api.list_peers())

    async def add_peer(
        self, url: str, token: str, *, collections: Sequence[str] | None = None
    ) -> Peer:
        return await self._send(_Api.add_peer(url, token, collections))

    async def remove_peer(self, node_id: str) -> dict[str, Any]:
        return await self._send(_Api.peer_action(node_id, None))

    async def sync_peer(self, node_id: str) -> dict[str, Any]:
        return await self._send(_Api.peer_action(node_id, "sync"))

    async def retry_peer(self, node_id: str) -> dict[str, Any]:
        return await self._send(_Api.peer_action(node_id, "retry"))
