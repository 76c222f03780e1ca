"""What the node answers, as typed values. Each keeps the whole JSON object in ``raw``, so a
field a newer node adds is readable before this client names it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["bm25", "vector", "hybrid"]
Fusion = Literal["rrf", "normalized"]
Group = Literal["chunk", "document"]


@dataclass(frozen=True)
class Collection:
    name: str
    settings: dict[str, Any]
    #: The stamp of the collection's last settings change.
    version: str
    #: Live documents (in lists only).
    documents: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> Collection:
        return cls(v["name"], v.get("settings", {}), v.get("version", ""), v.get("documents"), v)


@dataclass(frozen=True)
class WriteResult:
    """The answer to a write: ``status`` is ``created``, ``updated``, ``unchanged`` or
    ``deleted``; ``version`` is what an ``if_match`` names."""

    id: str
    status: str
    version: str
    stamp: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> WriteResult:
        return cls(v["id"], v["status"], v["version"], v.get("stamp", ""), v)


@dataclass(frozen=True)
class BatchResult:
    created: int
    updated: int
    unchanged: int
    deleted: int
    results: list[WriteResult]

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> BatchResult:
        return cls(
            v.get("created", 0),
            v.get("updated", 0),
            v.get("unchanged", 0),
            v.get("deleted", 0),
            [WriteResult.from_json(r) for r in v.get("results", [])],
        )


@dataclass(frozen=True)
class Document:
    """A document as a read shows it: its winning version, and the conflicting ones."""

    collection: str
    id: str
    version: str
    seq: int
    stamp: str
    text: str | None
    content_type: str | None
    title: str | None
    metadata: dict[str, Any]
    #: The versions that lost to the winner (tombstones included), as the node lists them.
    conflicts: list[dict[str, Any]]
    #: True while content replicated by reference has not arrived; ``text`` is then None.
    content_pending: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def content(self) -> bytes | None:
        """The content's bytes (text as UTF-8)."""
        if self.text is not None:
            return self.text.encode()
        b64 = self.raw.get("content_base64")
        return base64.b64decode(b64) if b64 is not None else None

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> Document:
        return cls(
            collection=v.get("collection", ""),
            id=v["id"],
            version=v["version"],
            seq=v.get("seq", 0),
            stamp=v.get("stamp", ""),
            text=v.get("text"),
            content_type=v.get("content_type"),
            title=v.get("title"),
            metadata=v.get("metadata") or {},
            conflicts=v.get("conflicts") or [],
            content_pending=bool(v.get("content_pending", False)),
            raw=v,
        )


@dataclass(frozen=True)
class DocumentPage:
    """One page of a collection's live documents, by id (without their contents)."""

    docs: list[dict[str, Any]]
    next_after: str | None
    has_more: bool

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> DocumentPage:
        return cls(v.get("docs", []), v.get("next_after"), bool(v.get("has_more")))


@dataclass(frozen=True)
class SearchHit:
    """A chunk a query found: its document, position, text and scores."""

    doc_id: str
    chunk_id: str
    ord: int
    start: int
    end: int
    text: str
    title: str | None
    metadata: dict[str, Any]
    score: float
    #: ``bm25``, ``vector`` and (hybrid) ``fused``, for the parts that found the chunk.
    scores: dict[str, float]
    #: The document's whole text, when the query grouped by document.
    document_text: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> SearchHit:
        return cls(
            doc_id=v["doc_id"],
            chunk_id=v.get("chunk_id", ""),
            ord=v.get("ord", 0),
            start=v.get("start", 0),
            end=v.get("end", 0),
            text=v.get("text", ""),
            title=v.get("title"),
            metadata=v.get("metadata") or {},
            score=float(v.get("score", 0.0)),
            scores=v.get("scores") or {},
            document_text=v.get("document_text"),
            raw=v,
        )


@dataclass(frozen=True)
class QueryResponse:
    results: list[SearchHit]
    mode: str
    #: True when the index had not caught up with every earlier write within the wait.
    stale: bool
    indexed_through: int

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> QueryResponse:
        return cls(
            [SearchHit.from_json(r) for r in v.get("results", [])],
            v.get("mode", ""),
            bool(v.get("stale", False)),
            v.get("indexed_through", 0),
        )


@dataclass(frozen=True)
class Peer:
    node_id: str
    url: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> Peer:
        return cls(v.get("node_id", ""), v.get("url", ""), v)
