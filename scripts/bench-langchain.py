#!/usr/bin/env python3
"""LangChain `similarity_search` through the Python client against the REST query it makes,
in one run, on a running node.

    scripts/bench-langchain.py --url http://127.0.0.1:PORT --collection msm-lc \
        --corpus ../shared/data/msmarco-5k [-n 500] [--embeddings builtin|fake]

Token in RAGSYNC_TOKEN. Loads the BEIR folder's corpus.jsonl into the collection through
`RagsyncVectorStore.add_documents` when the collection is empty (and reports its rate), then
times, in turn over the same queries.jsonl queries (after 20 untimed): the bare REST query the
store sends (`mode: vector`, `group: document`, `top_k` 4, LangChain's default k) with a
keep-alive httpx client, and `store.similarity_search(q)`. `--embeddings builtin` (default)
lets the node embed documents and queries; `fake` embeds them in this process with
LangChain's `DeterministicFakeEmbedding` (384 dimensions), so vectors travel with requests.
Needs clients/python and langchain-core (tests/python/requirements.txt).
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import httpx
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from ragsync import Client
from ragsync.langchain import RagsyncVectorStore

K = 4


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(name, ms):
    print(f"{name}: p50 {pct(ms, 50):.2f} ms, p99 {pct(ms, 99):.2f} ms, "
          f"mean {statistics.mean(ms):.2f} ms ({len(ms)} queries)")


def timed(call, queries):
    for q in queries[:20]:
        call(q)
    ms = []
    for q in queries:
        t = time.perf_counter()
        call(q)
        ms.append((time.perf_counter() - t) * 1000)
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--corpus", required=True, type=Path)
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--embeddings", choices=["builtin", "fake"], default="builtin")
    a = ap.parse_args()
    token = os.environ["RAGSYNC_TOKEN"]
    embedding = DeterministicFakeEmbedding(size=384) if a.embeddings == "fake" else None
    client = Client(a.url, token)
    store = RagsyncVectorStore(a.collection, embedding, client=client)

    counts = {c.name: c.documents for c in client.list_collections()}
    if not counts.get(a.collection):
        with open(a.corpus / "corpus.jsonl") as f:
            docs = [json.loads(line) for line in f if line.strip()]
        t = time.perf_counter()
        store.add_documents([
            Document(id=d["_id"], page_content=d["text"], metadata={"title": d.get("title", "")})
            for d in docs
        ])
        added = time.perf_counter() - t
        while True:
            v = client.status()["search"]["vectors"].get(a.collection, {})
            if v.get("backlog") == 0 and v.get("vectors", 0) >= len(docs):
                break
            time.sleep(0.05)
        s = time.perf_counter() - t
        print(f"add_documents: {len(docs)} documents in {added:.2f} s "
              f"({len(docs) / added:.0f} docs/s); all embedded and searchable after {s:.2f} s")

    with open(a.corpus / "queries.jsonl") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    queries = [texts[i % len(texts)] for i in range(a.n)]

    rest = httpx.Client(
        base_url=a.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    path = f"/v1/collections/{a.collection}/query"

    def bare(q):
        body = {"mode": "vector", "top_k": K, "group": "document"}
        if embedding is None:
            body["query"] = q
        else:
            body["vector"] = embedding.embed_query(q)
        r = rest.post(path, json=body)
        r.raise_for_status()
        assert len(r.json()["results"]) == K

    def langchain(q):
        assert len(store.similarity_search(q, k=K)) == K

    print(f"{a.embeddings} embeddings, k = {K}")
    report("REST query (httpx)", timed(bare, queries))
    report("LangChain similarity_search", timed(langchain, queries))
    report("REST query again", timed(bare, queries))


if __name__ == "__main__":
    main()
