"""Client of ragsync nodes: :class:`Client` and :class:`AsyncClient` for the HTTP API v1,
typed answers (``ragsync.models``) and typed refusals (``ragsync.errors``). The LangChain
vector store is ``ragsync.langchain.RagsyncVectorStore`` (needs ``langchain-core``)."""

from .client import AsyncClient, Client, document_body
from .errors import (
    CollectionNotFound,
    Conflict,
    ConnectionFailed,
    DocumentDeleted,
    DocumentNotFound,
    Forbidden,
    InvalidQuery,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PeerFailed,
    RagsyncError,
    RangeNotSatisfiable,
    RequestTimeout,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
    VersionConflict,
)
from .models import (
    BatchResult,
    Collection,
    Document,
    DocumentPage,
    Peer,
    QueryResponse,
    SearchHit,
    WriteResult,
)

__all__ = [
    "AsyncClient", "BatchResult", "Client", "Collection", "CollectionNotFound", "Conflict",
    "ConnectionFailed", "Document", "DocumentDeleted", "DocumentNotFound", "DocumentPage",
    "Forbidden", "InvalidQuery", "InvalidRequest", "MethodNotAllowed", "NotFound", "Peer",
    "PeerFailed", "QueryResponse", "RagsyncError", "RangeNotSatisfiable", "RequestTimeout",
    "SearchHit", "ServerError", "TooLarge", "Unauthorized", "Unavailable", "VersionConflict",
    "WriteResult", "document_body",
]
