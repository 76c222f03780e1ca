"""``RagsyncVectorStore``: a LangChain vector store kept in a ragsync collection, so what an
application adds on one node is searchable on every node it replicates to.

Two ways to embed:

* ``embedding=None``: the node embeds, with the collection's model (``builtin`` unless the
  collection says otherwise). Queries send text; the node embeds them too.
* ``embedding=<an Embeddings>``: the caller's model. Documents and queries are embedded here and
  the vectors sent; the collection is made with ``embedding.model: external`` and chunking that
  keeps a document whole (one vector per document, up to 8,192 tokens, which suits the split
  documents LangChain pipelines add).

A LangChain ``Document`` is one ragsync document: its ``id`` is the document id, its
``metadata`` the document's metadata (numbers round-trip exactly: an int stays an int). A
search asks the node for documents, not chunks (``"group": "document"``), so ``k`` documents
come back whenever ``k`` exist, each with its whole text. The collection is made on the first
write when it does not exist; searching a collection that does not exist finds nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from .client import AsyncClient, Client, document_body
from .errors import CollectionNotFound, DocumentDeleted, DocumentNotFound
from .models import Mode, QueryResponse

#: Documents per batch request.
BATCH_DOCS = 500
#: Chunking of a collection whose vectors come from the caller: one chunk per document.
WHOLE_DOCUMENTS = {"max_tokens": 8192, "min_tokens": 1, "overlap_tokens": 0}


#: What reading or deleting a document that is not there raises: skipped, not an error.
_ABSENT = (DocumentNotFound, DocumentDeleted, CollectionNotFound)


def _langchain_doc(d: Any) -> Document:
    """A ragsync document read back as a LangChain ``Document``."""
    return Document(id=d.id, page_content=d.text or "", metadata=d.metadata)


def _has_words(text: str) -> bool:
    """Whether the node cuts ``text`` into at least one chunk (it has a letter or digit); a
    document without one has no chunk, so no vector to send."""
    return any(c.isalnum() for c in text)


class RagsyncVectorStore(VectorStore):
    """A LangChain ``VectorStore`` backed by collection ``collection`` of a ragsync node.

    ``url`` and ``token`` default to ``RAGSYNC_URL`` and ``RAGSYNC_TOKEN``; or pass a ready
    ``client``. ``mode`` is the query mode: ``vector`` (default), or ``hybrid`` (BM25 and
    vectors fused) or ``bm25``. ``settings`` are the collection's settings when this store
    creates it (merged over what the embedding choice needs).
    """

    def __init__(
        self,
        collection: str = "langchain",
        embedding: Embeddings | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        client: Client | None = None,
        mode: Mode = "vector",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.collection = collection
        self.embedding = embedding
        self.mode: Mode = mode
        self.client = client or Client(url, token)
        self._settings = dict(settings or {})
        #: The async client, with the id of the event loop its connections belong to.
        self._async: tuple[int, AsyncClient] | None = None

    # ---- what both the blocking and the async paths share ----

    @property
    def embeddings(self) -> Embeddings | None:
        return self.embedding

    def _collection_settings(self, dimension: int | None) -> dict[str, Any]:
        if self.embedding is None:
            wanted: dict[str, Any] = {"embedding": {"model": "builtin"}}
        else:
            wanted = {
                "embedding": {"model": "external", "dimension": dimension},
                "chunking": WHOLE_DOCUMENTS,
            }
        return {**wanted, **self._settings}

    @staticmethod
    def _items(
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]] | None,
        ids: Sequence[str | None] | None,
        vectors: Sequence[Sequence[float]] | None,
    ) -> list[dict[str, Any]]:
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        items = []
        for i, text in enumerate(texts):
            vector = vectors[i] if vectors is not None and _has_words(text) else None
            item = document_body(
                text, metadata=metadatas[i] if metadatas else {}, vector=vector
            )
            item["id"] = (ids[i] if ids else None) or str(uuid.uuid4())
            items.append(item)
        return items

    def _query(self, query: str | None, vector: Sequence[float] | None, k: int,
               filter: Mapping[str, Any] | None) -> dict[str, Any]:
        """The arguments of the client's ``query`` for a search: one result per document."""
        if vector is None and query is None:
            raise ValueError("a search needs a query or a vector")
        return {
            "query": query if vector is None or self.mode != "vector" else None,
            "vector": vector if self.mode != "bm25" else None,
            "top_k": k,
            "mode": self.mode,
            "filter": filter,
            "group": "document",
        }

    @staticmethod
    def _found(answer: QueryResponse) -> list[tuple[Document, float]]:
        return [
            (
                Document(
                    id=hit.doc_id,
                    page_content=hit.document_text if hit.document_text is not None else hit.text,
                    metadata=hit.metadata,
                ),
                hit.score,
            )
            for hit in answer.results
        ]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.mode != "vector":
            # BM25 and fused scores have no fixed range to map to [0, 1].
            raise NotImplementedError(f"relevance scores need mode 'vector', not {self.mode!r}")
        # Scores are cosine similarities in [-1, 1].
        return lambda score: (1.0 + score) / 2.0

    # ---- blocking ----

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        vectors = self.embedding.embed_documents(texts) if self.embedding and texts else None
        items = self._items(texts, metadatas, ids, vectors)
        for start in range(0, len(items), BATCH_DOCS):
            part = items[start : start + BATCH_DOCS]
            try:
                self.client.batch(self.collection, part)
            except CollectionNotFound:
                self.client.create_collection(
                    self.collection, self._collection_settings(len(vectors[0]) if vectors else None)
                )
                self.client.batch(self.collection, part)
        return [item["id"] for item in items]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` documents most similar to ``query``, best first, with their scores
        (cosine similarity in vector mode). ``filter`` is a ragsync metadata filter."""
        vector = self.embedding.embed_query(query) if self.embedding else None
        return self._search(query, vector, k, filter)

    def _search(self, query: str | None, vector: Sequence[float] | None, k: int,
                filter: Mapping[str, Any] | None) -> list[tuple[Document, float]]:
        try:
            answer = self.client.query(self.collection, **self._query(query, vector, k, filter))
        except CollectionNotFound:
            return []
        return self._found(answer)

    def similarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return [d for d, _ in self._search(None, embedding, k, filter)]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Deletes documents by id (ids that do not exist are skipped), or with no ids the
        whole collection. Deletes are tombstones, so they replicate."""
        if ids is None:
            try:
                self.client.delete_collection(self.collection)
            except CollectionNotFound:
                pass
            return True
        for doc_id in ids:
            try:
                self.client.delete_document(self.collection, doc_id)
            except _ABSENT:
                pass
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents of ``ids`` that exist, in the order asked."""
        out = []
        for doc_id in ids:
            try:
                d = self.client.get_document(self.collection, doc_id)
            except _ABSENT:
                continue
            out.append(_langchain_doc(d))
        return out

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        collection: str = "langchain",
        **kwargs: Any,
    ) -> RagsyncVectorStore:
        """A store on ``collection`` (``url``, ``token``, ``client``, ``mode`` and
        ``settings`` as the constructor takes them) holding ``texts``."""
        store = cls(collection, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    # ---- async: the same calls through an httpx AsyncClient of the running event loop ----

    def _aclient(self) -> AsyncClient:
        loop = id(asyncio.get_running_loop())
        if self._async is None or self._async[0] != loop:
            # An httpx AsyncClient's connections belong to the loop that opened them.
            self._async = (loop, AsyncClient(self.client.url, self.client.token))
        return self._async[1]

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        vectors = (
            await self.embedding.aembed_documents(texts) if self.embedding and texts else None
        )
        items = self._items(texts, metadatas, ids, vectors)
        client = self._aclient()
        for start in range(0, len(items), BATCH_DOCS):
            part = items[start : start + BATCH_DOCS]
            try:
                await client.batch(self.collection, part)
            except CollectionNotFound:
                await client.create_collection(
                    self.collection, self._collection_settings(len(vectors[0]) if vectors else None)
                )
                await client.batch(self.collection, part)
        return [item["id"] for item in items]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self.embedding.aembed_query(query) if self.embedding else None
        return await self._asearch(query, vector, k, filter)

    async def _asearch(self, query: str | None, vector: Sequence[float] | None, k: int,
                       filter: Mapping[str, Any] | None) -> list[tuple[Document, float]]:
        try:
            answer = await self._aclient().query(
                self.collection, **self._query(query, vector, k, filter)
            )
        except CollectionNotFound:
            return []
        return self._found(answer)

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in await self.asimilarity_search_with_score(query, k, filter)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return [d for d, _ in await self._asearch(None, embedding, k, filter)]

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        client = self._aclient()
        if ids is None:
            try:
                await client.delete_collection(self.collection)
            except CollectionNotFound:
                pass
            return True
        for doc_id in ids:
            try:
                await client.delete_document(self.collection, doc_id)
            except _ABSENT:
                pass
        return True

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        client = self._aclient()
        out = []
        for doc_id in ids:
            try:
                d = await client.get_document(self.collection, doc_id)
            except _ABSENT:
                continue
            out.append(_langchain_doc(d))
        return out

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        collection: str = "langchain",
        **kwargs: Any,
    ) -> RagsyncVectorStore:
        store = cls(collection, embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store
