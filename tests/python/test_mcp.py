"""MCP against real nodes with the official Python SDK as the client, over stdio
(`ragsync mcp`) and over streamable HTTP (`/mcp` on the node)."""

import contextlib
import os
import time

import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TOOLS = {"search", "add", "get", "delete", "list_collections", "conflicts", "status"}


@contextlib.asynccontextmanager
async def over_stdio(node, collection="kb"):
    params = StdioServerParameters(
        command=os.environ.get("RAGSYNC_BIN", "ragsync"),
        args=["mcp", "--url", node.url, "--collection", collection],
        env={**os.environ, "RAGSYNC_TOKEN": node.token, "RAGSYNC_LOG": "warn"},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def over_http(node, token=None):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token or node.token}"})
    async with http:
        async with streamable_http_client(node.url + "/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def structured(result):
    assert not result.is_error, result.content
    return result.structured_content


async def exercise(session, collection_args):
    """List the tools, then add, search, get, conflicts, delete, status."""
    tools = await session.list_tools()
    assert {t.name for t in tools.tools} == TOOLS
    assert len(tools.tools) <= 8

    added = structured(await session.call_tool("add", {
        **collection_args,
        "text": "The axolotl regrows its limbs, heart and parts of its brain.",
        "id": "axolotl",
        "title": "Axolotl",
        "metadata": {"kind": "animal", "legs": 4},
    }))
    assert added["id"] == "axolotl" and added["version"]
    # A generated id when none is given; `content` is taken for `text`.
    other = structured(await session.call_tool("add", {**collection_args, "content": "Quartz is a hard mineral."}))
    assert other["id"].startswith("mcp-")

    # The filter the schema describes is the one the node takes.
    search_tool = next(t for t in tools.tools if t.name == "search")
    described = search_tool.input_schema["properties"]["filter"]["description"]
    assert "$gte" in described and "$in" in described, described
    filtered = structured(await session.call_tool("search", {
        **collection_args, "q": "regrows limbs", "mode": "bm25", "filter": {"legs": {"$gte": 4}},
    }))
    assert [h["doc_id"] for h in filtered["results"]] == ["axolotl"]

    found = await session.call_tool("search", {**collection_args, "q": "which animal regrows limbs", "k": 3, "mode": "bm25"})
    hits = structured(found)["results"]
    assert hits and hits[0]["doc_id"] == "axolotl"
    assert hits[0]["title"] == "Axolotl" and "regrows" in hits[0]["snippet"]
    assert "axolotl" in found.content[0].text

    doc = structured(await session.call_tool("get", {**collection_args, "doc_id": "axolotl"}))
    assert doc["text"].startswith("The axolotl")
    assert doc["metadata"] == {"kind": "animal", "legs": 4}
    assert doc["conflicts"] == []

    conflicts = structured(await session.call_tool("conflicts", collection_args))
    assert conflicts["documents"] == []

    structured(await session.call_tool("delete", {**collection_args, "id": "axolotl"}))
    gone = await session.call_tool("get", {**collection_args, "id": "axolotl"})
    assert gone.is_error
    assert gone.structured_content["error"]["code"] in ("document_deleted", "document_not_found")
    after = structured(await session.call_tool("search", {**collection_args, "query": "axolotl limbs", "mode": "bm25"}))
    assert all(h["doc_id"] != "axolotl" for h in after["results"])

    listed = structured(await session.call_tool("list_collections", {}))
    assert {"name": "kb", "documents": 1} in listed["collections"]
    status = structured(await session.call_tool("status", {}))
    assert status["counts"]["documents"] == 1


async def bad_arguments_are_tool_errors(session):
    # Missing the required text, a wrong type, an unknown mode: tool errors, and the
    # session goes on.
    for args in ({}, {"text": 42}, {"text": "x", "metadata": "not an object"}):
        r = await session.call_tool("add", {"collection": "kb", **args})
        assert r.is_error, args
    r = await session.call_tool("search", {"collection": "kb", "query": "x", "mode": "telepathy"})
    assert r.is_error and r.structured_content["error"]["code"]
    r = await session.call_tool("get", {"collection": "kb", "id": ""})
    assert r.is_error and r.structured_content["error"]["code"] == "invalid_document_id"
    r = await session.call_tool("search", {"query": "x"})  # over HTTP: no default collection
    assert r.is_error
    assert set(t.name for t in (await session.list_tools()).tools) == TOOLS


async def test_stdio_tools_against_a_real_node(node):
    async with over_stdio(node) as session:
        await exercise(session, {})
        r = await session.call_tool("add", {"text": 42})
        assert r.is_error


async def test_http_tools_against_a_real_node(node):
    async with over_http(node) as session:
        await exercise(session, {"collection": "kb"})
        await bad_arguments_are_tool_errors(session)


async def test_http_refuses_a_wrong_token(node):
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer wrong-token-0123456789"})
    async with http:
        r = await http.post(
            node.url + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "t", "version": "1"}}},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_token"
    with pytest.raises(Exception):
        async with over_http(node, token="wrong-token-0123456789") as session:
            await session.list_tools()


async def test_stdio_with_a_wrong_token_gets_tool_errors(node):
    node_token, node.token = node.token, "wrong-token-0123456789"
    try:
        async with over_stdio(node) as session:
            r = await session.call_tool("search", {"query": "anything"})
            assert r.is_error
            assert r.structured_content["error"]["code"] == "invalid_token"
    finally:
        node.token = node_token


async def test_added_through_mcp_on_one_node_is_found_through_mcp_on_the_other(two_nodes):
    a, b = two_nodes
    status, body = b.rest("POST", "/v1/peers", {"url": a.url, "token": a.token})
    assert status in (200, 201), body
    async with over_http(a) as on_a:
        structured(await on_a.call_tool("add", {
            "collection": "kb", "id": "gecko", "text": "Geckos climb glass with van der Waals forces.",
        }))
    async with over_stdio(b) as on_b:
        deadline = time.monotonic() + 30
        while True:
            r = await on_b.call_tool("search", {"query": "geckos climb glass", "mode": "bm25"})
            if not r.is_error and any(h["doc_id"] == "gecko" for h in r.structured_content["results"]):
                break
            assert time.monotonic() < deadline, r.content
            time.sleep(0.2)
