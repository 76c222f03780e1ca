"""Exceptions: every refusal of a node is a :class:`RagsyncError` carrying the API's HTTP
status, its stable ``code`` and its message, as a subclass named by what went wrong, so callers
catch what they can handle (``except VersionConflict``) and let the rest rise.

The class of an error is chosen by its code (``document_deleted`` is :class:`DocumentDeleted`)
and, for a code this client does not know yet, by its status (a new 404 code is still a
:class:`NotFound`).
"""

from __future__ import annotations

from typing import Any


class RagsyncError(Exception):
    """A request a node refused or failed (``status`` 0: the node was not reached)."""

    def __init__(self, status: int, code: str, message: str, index: int | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: Position of the refused item in a batch, when one item caused the refusal.
        self.index = index


class ConnectionFailed(RagsyncError):
    """The node did not answer (refused connection, timeout, TLS failure)."""


class InvalidRequest(RagsyncError):
    """400: the request is malformed (bad JSON, name, id, settings, metadata, query, ...)."""


class InvalidQuery(InvalidRequest):
    """400 ``invalid_query``, ``invalid_filter`` or ``invalid_vector``."""


class Unauthorized(RagsyncError):
    """401: no token, or one the node does not know."""


class Forbidden(RagsyncError):
    """403: the token's role does not allow this."""


class NotFound(RagsyncError):
    """404: a route, collection, document, blob or peer that does not exist."""


class CollectionNotFound(NotFound):
    """404 ``collection_not_found``."""


class DocumentNotFound(NotFound):
    """404 ``document_not_found``: no such document ever existed here."""


class DocumentDeleted(NotFound):
    """404 ``document_deleted``: every version of the document is a tombstone."""


class MethodNotAllowed(RagsyncError):
    """405 ``method_not_allowed``."""


class RequestTimeout(RagsyncError):
    """408 ``body_timeout``: the request body paused too long."""


class Conflict(RagsyncError):
    """409: the request conflicts with the node's state."""


class VersionConflict(Conflict):
    """409 ``version_conflict``: the document changed since the version given in ``if_match``."""


class TooLarge(RagsyncError):
    """413, 414, 431: a body, batch, content, title, metadata, URL or headers over a limit."""


class RangeNotSatisfiable(RagsyncError):
    """416 ``range_not_satisfiable``."""


class ServerError(RagsyncError):
    """500: the node failed; its log has the details."""


class PeerFailed(RagsyncError):
    """502 ``peer_unreachable`` or ``peer_refused``: a peer being added did not cooperate."""


class Unavailable(RagsyncError):
    """503: ``search_disabled`` (a relay node), ``embedding_failed`` (the model endpoint)."""


_BY_CODE: dict[str, type[RagsyncError]] = {
    "invalid_query": InvalidQuery,
    "invalid_filter": InvalidQuery,
    "invalid_vector": InvalidQuery,
    "collection_not_found": CollectionNotFound,
    "document_not_found": DocumentNotFound,
    "document_deleted": DocumentDeleted,
    "version_conflict": VersionConflict,
}

_BY_STATUS: dict[int, type[RagsyncError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    409: Conflict,
    413: TooLarge,
    414: TooLarge,
    416: RangeNotSatisfiable,
    431: TooLarge,
    500: ServerError,
    502: PeerFailed,
    503: Unavailable,
}


def error_from(status: int, body: Any) -> RagsyncError:
    """The exception for a refusal answered with ``status`` and JSON ``body`` (any body: a
    proxy's HTML page becomes an ``http_<status>`` error of its status's class)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str):
        code, message = err["code"], str(err.get("message", ""))
        index = err.get("index") if isinstance(err.get("index"), int) else None
    else:
        code, message, index = f"http_{status}", "the answer carried no ragsync error", None
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else InvalidRequest
    return cls(status, code, message, index)
