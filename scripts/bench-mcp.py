#!/usr/bin/env python3
"""MCP `search` round trips against the REST query, in one run, on a running node.

    scripts/bench-mcp.py --url http://127.0.0.1:PORT --collection msm \
        --queries ../shared/data/msmarco-5k/queries.jsonl [--mode bm25] [-n 500]

Token in RAGSYNC_TOKEN; `--bin` is the ragsync binary `ragsync mcp` runs from (stdio).
Each path is timed from this one Python process, in turn, over the same queries (after 20
untimed), each reading its answer's JSON: REST with a keep-alive HTTP client, the MCP
`search` tool as a bare JSON-RPC POST to `/mcp` on that same client (the server's MCP layer
alone), MCP over streamable HTTP with the SDK's client, MCP over stdio. Then MCP `ping`, the
smallest request, as a bare POST and through the SDK over HTTP: what the SDK's HTTP client
adds by itself. Needs the `mcp` package (tests/python/requirements.txt).
"""

import argparse
import asyncio
import json
import os
import statistics
import time

import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(name, ms):
    print(f"{name}: p50 {pct(ms, 50):.2f} ms, p99 {pct(ms, 99):.2f} ms, mean {statistics.mean(ms):.2f} ms ({len(ms)} queries)")


async def timed(call, queries):
    for q in queries[:20]:
        await call(q)
    ms = []
    for q in queries:
        t = time.perf_counter()
        await call(q)
        ms.append((time.perf_counter() - t) * 1000)
    return ms


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--mode", default="bm25")
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--bin", default="target/release/ragsync")
    a = ap.parse_args()
    token = os.environ["RAGSYNC_TOKEN"]
    with open(a.queries) as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    queries = [texts[i % len(texts)] for i in range(a.n)]
    auth = {"Authorization": f"Bearer {token}"}

    async with httpx2.AsyncClient(headers=auth) as http:
        async def rest(q):
            r = await http.post(f"{a.url}/v1/collections/{a.collection}/query",
                                json={"query": q, "top_k": 10, "mode": a.mode})
            assert r.status_code == 200 and "results" in r.json(), r.text
        report("REST query", await timed(rest, queries))

        # The same tool call as one bare JSON-RPC POST to /mcp on the same client: the
        # server's MCP layer alone, without the SDK's client machinery.
        ids = iter(range(1, 1 << 30))

        async def bare_mcp(q):
            r = await http.post(
                f"{a.url}/mcp",
                headers={"Accept": "application/json, text/event-stream",
                         "MCP-Protocol-Version": "2025-06-18"},
                json={"jsonrpc": "2.0", "id": next(ids), "method": "tools/call",
                      "params": {"name": "search", "arguments": {
                          "query": q, "collection": a.collection, "top_k": 10, "mode": a.mode}}})
            assert r.status_code == 200 and "error" not in r.json(), r.text
        report("MCP search, bare JSON-RPC POST to /mcp", await timed(bare_mcp, queries))

        async def bare_ping(_):
            r = await http.post(
                f"{a.url}/mcp",
                headers={"Accept": "application/json, text/event-stream",
                         "MCP-Protocol-Version": "2025-06-18"},
                json={"jsonrpc": "2.0", "id": next(ids), "method": "ping"})
            assert r.status_code == 200 and "result" in r.json(), r.text
        bare_ping_ms = await timed(bare_ping, queries)

    def tool(session):
        async def call(q):
            r = await session.call_tool("search", {"query": q, "collection": a.collection, "top_k": 10, "mode": a.mode})
            assert not r.is_error, r.content
        return call

    mcp_http = create_mcp_http_client(headers=auth)
    async with mcp_http:
        async with streamable_http_client(a.url + "/mcp", http_client=mcp_http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                report("MCP search over HTTP", await timed(tool(session), queries))

                async def sdk_ping(_):
                    await session.send_ping()
                report("MCP ping, bare POST", bare_ping_ms)
                report("MCP ping over HTTP with the SDK", await timed(sdk_ping, queries))

    params = StdioServerParameters(command=a.bin, args=["mcp", "--url", a.url],
                                   env={**os.environ, "RAGSYNC_LOG": "warn"})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            report("MCP search over stdio", await timed(tool(session), queries))


asyncio.run(main())
