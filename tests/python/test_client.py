"""The Python client (clients/python, installed into the test environment) against real
nodes: the typed calls round-trip, and every refusal reaches the caller as its typed
exception with the API's status and code."""

import re
from pathlib import Path

import pytest

import ragsync
from ragsync import AsyncClient, Client, errors
from ragsync.errors import error_from

from conftest import Node

READER = "reader-token-0123456789"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client")
    a = Node(tmp, "a", env={"RAGSYNC_TOKENS": f"reader:read:{READER}"})
    relay = Node(tmp, "relay", args=["--no-search"])
    yield a, relay
    a.stop()
    relay.stop()


def test_typed_calls_round_trip(nodes):
    a, _ = nodes
    with Client(a.url, a.token) as rs:
        assert rs.health()
        c = rs.create_collection("typed", {"search": {"top_k": 5}})
        assert (c.name, c.settings["search"]["top_k"]) == ("typed", 5)
        w = rs.put_document(
            "typed", "guides/intro.md", "Write-ahead logging keeps readers going.",
            title="WAL", metadata={"year": 2010, "ratio": 0.5, "tags": ["db"]},
        )
        assert w.status == "created"
        d = rs.get_document("typed", "guides/intro.md")
        assert (d.id, d.text, d.title, d.version) == (
            "guides/intro.md", "Write-ahead logging keeps readers going.", "WAL", w.version,
        )
        assert d.metadata == {"year": 2010, "ratio": 0.5, "tags": ["db"]}
        assert type(d.metadata["year"]) is int
        b = rs.batch("typed", [
            {"id": "bin", **ragsync.document_body(content=b"\x00\x01", content_type="application/octet-stream")},
            {"id": "other", "text": "group commit batches fsyncs"},
        ])
        assert (b.created, [r.id for r in b.results]) == (2, ["bin", "other"])
        assert rs.get_document("typed", "bin").content == b"\x00\x01"
        hits = rs.query("typed", "readers logging", top_k=3)
        assert [h.doc_id for h in hits.results] == ["guides/intro.md"]
        assert hits.results[0].metadata["year"] == 2010 and not hits.stale
        assert {c.name: c.documents for c in rs.list_collections()}["typed"] == 3
        assert sorted(d["id"] for d in rs.iter_documents("typed")) == ["bin", "guides/intro.md", "other"]
        rs.put_document("typed", "other", "changed", if_match=rs.get_document("typed", "other").version)
        assert rs.delete_document("typed", "bin").status == "deleted"
        assert rs.status()["counts"]["collections"] >= 1
        assert rs.list_peers() == []
        assert rs.delete_collection("typed") == 2


async def test_the_async_client_makes_the_same_calls(nodes):
    a, _ = nodes
    async with AsyncClient(a.url, a.token) as rs:
        await rs.create_collection("async")
        await rs.put_document("async", "d", "asynchronous clients share one event loop")
        got = await rs.query("async", "event loop")
        assert [h.doc_id for h in got.results] == ["d"]
        with pytest.raises(errors.DocumentNotFound):
            await rs.get_document("async", "missing")
        await rs.delete_collection("async")


def refusals(a, relay):
    """(call, exception class, status, code) for every refusal a client can provoke."""
    rs = Client(a.url, a.token)
    rs.create_collection("err", {"embedding": {"model": "external", "dimension": 3}})
    v1 = rs.put_document("err", "doc", "some text", vector=[1, 0, 0]).version
    rs.put_document("err", "gone", "bye", vector=[0, 1, 0])
    rs.delete_document("err", "gone")
    cid = rs.get_document("err", "doc").raw["content_cid"]
    rs.put_document("err", "doc", "newer text", vector=[0, 0, 1])
    anon, wrong, reader = Client(a.url, ""), Client(a.url, "x" * 24), Client(a.url, READER)
    other = Client(relay.url, relay.token)
    peer = {"url": relay.url, "token": relay.token}
    return [
        (lambda: rs.create_collection("Bad!"), errors.InvalidRequest, 400, "invalid_collection_name"),
        (lambda: rs.put_document("err", "/lead", "x"), errors.InvalidRequest, 400, "invalid_document_id"),
        (lambda: rs.create_collection("s", {"chunking": {"max_tokens": 0}}), errors.InvalidRequest, 400, "invalid_settings"),
        (lambda: rs.put_document("err", "m", "x", metadata={"n": 2**70}), errors.InvalidRequest, 400, "invalid_metadata"),
        (lambda: rs.request("PUT", "/v1/collections/err/docs/b", {"content_base64": "!!", "content_type": "text/plain"}), errors.InvalidRequest, 400, "invalid_base64"),
        (lambda: rs.request("PUT", "/v1/collections/err/docs/b", {"title": "t"}), errors.InvalidRequest, 400, "missing_content"),
        (lambda: rs.request("PUT", "/v1/collections/err/docs/b", {"text": "t"}, headers={"If-Match": 'W/"x"'}), errors.InvalidRequest, 400, "invalid_if_match"),
        (lambda: rs.list_documents("err", limit=0), errors.InvalidRequest, 400, "invalid_limit"),
        (lambda: rs.request("POST", "/v1/collections/err/query", content=b'{"query":'), errors.InvalidRequest, 400, "invalid_json"),
        (lambda: rs.request("PUT", "/v1/collections/err/docs/b", content=b"\xff\xfe"), errors.InvalidRequest, 400, "invalid_utf8"),
        (lambda: rs.request("POST", "/v1/collections/err/query", {"query": "x", "bogus": 1}), errors.InvalidRequest, 400, "invalid_body"),
        (lambda: rs.query("err", "text", mode="nope"), errors.InvalidQuery, 400, "invalid_query"),
        (lambda: rs.query("err", "text", filter={"n": {"$near": 1}}), errors.InvalidQuery, 400, "invalid_filter"),
        (lambda: rs.query("err", vector=[1, 0], mode="vector"), errors.InvalidQuery, 400, "invalid_vector"),
        (lambda: rs.add_peer("not a url", "t" * 20), errors.InvalidRequest, 400, "invalid_url"),
        (lambda: rs.add_peer(a.url, a.token), errors.InvalidRequest, 400, "invalid_peer"),
        (lambda: anon.status(), errors.Unauthorized, 401, "missing_token"),
        (lambda: wrong.status(), errors.Unauthorized, 401, "invalid_token"),
        (lambda: reader.put_document("err", "r", "x"), errors.Forbidden, 403, "forbidden"),
        (lambda: rs.request("GET", "/v1/nowhere"), errors.NotFound, 404, "route_not_found"),
        (lambda: rs.get_collection("missing"), errors.CollectionNotFound, 404, "collection_not_found"),
        (lambda: rs.get_document("err", "missing"), errors.DocumentNotFound, 404, "document_not_found"),
        (lambda: rs.get_document("err", "gone"), errors.DocumentDeleted, 404, "document_deleted"),
        (lambda: rs.request("GET", "/v1/blobs/" + "0" * 64), errors.NotFound, 404, "blob_not_found"),
        (lambda: rs.remove_peer("0" * 32), errors.NotFound, 404, "peer_not_found"),
        (lambda: rs.request("PATCH", "/v1/collections"), errors.MethodNotAllowed, 405, "method_not_allowed"),
        (lambda: rs.put_document("err", "doc", "stale write", vector=[1, 0, 0], if_match=v1), errors.VersionConflict, 409, "version_conflict"),
        (lambda: rs.request("GET", "/v1/sync/changes", params={"since": 10**9}), errors.Conflict, 409, "cursor_reset"),
        (lambda: [rs.add_peer(**peer) for _ in range(2)], errors.Conflict, 409, "peer_exists"),
        (lambda: rs.put_document("err", "t", "x", title="t" * 5000), errors.TooLarge, 413, "title_too_large"),
        (lambda: rs.put_document("err", "t", "x", metadata={"k": "v" * 20000}), errors.TooLarge, 413, "metadata_too_large"),
        (lambda: rs.batch("err", [{"id": f"d{i}", "text": "x"} for i in range(10001)]), errors.TooLarge, 413, "batch_too_large"),
        (lambda: rs.request("GET", f"/v1/blobs/{cid}", headers={"Range": "bytes=100-200"}), errors.RangeNotSatisfiable, 416, "range_not_satisfiable"),
        (lambda: rs.request("GET", "/v1/status", headers={f"x-h{i}": "v" * 1000 for i in range(100)}), errors.TooLarge, 431, "headers_too_large"),
        (lambda: rs.add_peer("http://127.0.0.1:1", "t" * 20), errors.PeerFailed, 502, "peer_unreachable"),
        (lambda: rs.add_peer(relay.url, "wrong-token-0123456789"), errors.PeerFailed, 502, "peer_refused"),
        (lambda: other.create_collection("r") and other.query("r", "text"), errors.Unavailable, 503, "search_disabled"),
    ]


def test_every_refusal_is_its_typed_exception(nodes):
    a, relay = nodes
    for call, cls, status, code in refusals(a, relay):
        with pytest.raises(errors.RagsyncError) as caught:
            call()
        e = caught.value
        assert (type(e), e.status, e.code) == (cls, status, code), (code, e)
        assert isinstance(e, cls) and e.message
    # A node that does not answer: a closed port on loopback.
    with pytest.raises(errors.ConnectionFailed):
        Client("http://127.0.0.1:1", "t" * 20, timeout=5).status()


def test_every_documented_status_has_its_class():
    """The README's table of refusals: each code maps to the class of its status (or a
    subclass), never to the fallback for statuses this client does not know."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| (\d{3}) \| (.+) \|$", readme, re.M)
    assert len(rows) >= 14
    seen = 0
    for status, codes in rows:
        status = int(status)
        base = errors._BY_STATUS[status]
        for code in re.findall(r"`([a-z_]+)`", codes):
            e = error_from(status, {"error": {"code": code, "message": "m"}})
            assert isinstance(e, base) and (e.status, e.code) == (status, code), code
            seen += 1
    assert seen >= 50
    # A body that is not ragsync's (a proxy's page) still gets its status's class.
    assert type(error_from(502, None)) is errors.PeerFailed
