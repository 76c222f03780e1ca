#!/usr/bin/env python3
"""Posts documents with caller-supplied vectors to a running node and prints docs/s: the write
path of vectors alone, without the bench's own client or the node's search index when the
node runs with `--no-search`.

    scripts/post-vectors.py --url http://127.0.0.1:PORT [-n 50000] [--digits 17] [--random-ids]

Token in RAGSYNC_TOKEN. Makes collection `vec` (model `external`, 384 dimensions), builds every
batch first (1,000 documents of 1 KiB text, a unit vector each, its numbers written with
`--digits` significant digits: 17 as Python's `repr`, 8 as a float32 serialiser; ids in
order, or 32 random hex digits as UUIDs with `--random-ids`), then posts
them in turn on one keep-alive connection. Read the node's CPU from /proc/PID/stat around it.
Standard library only.
"""

import argparse
import http.client
import json
import math
import os
import random
import sys
import time
import urllib.parse

SYLLABLES = "ba be bi bo bu ca ce ci co da de di do fa fe fi ga ge go ha he ho ka ke ko la le li lo ma me mi mo".split()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--digits", type=int, default=17)
    ap.add_argument("--random-ids", action="store_true")
    a = ap.parse_args()
    token = os.environ.get("RAGSYNC_TOKEN")
    if not token:
        sys.exit("RAGSYNC_TOKEN is not set")
    url = urllib.parse.urlsplit(a.url)
    rnd = random.Random(7)

    def text(k: int) -> str:
        parts, n = [], 0
        while n < k:
            w = "".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(1, 3)))
            parts.append(w)
            n += len(w) + 1
        return " ".join(parts)[:k]

    def unit() -> list:
        v = [rnd.gauss(0, 1) for _ in range(384)]
        norm = math.sqrt(sum(x * x for x in v))
        return [float(f"{x / norm:.{a.digits}g}") for x in v]

    def doc_id(i: int) -> str:
        return "%032x" % rnd.getrandbits(128) if a.random_ids else f"v-{i:09d}"

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(conn, method: str, path: str, body: bytes) -> None:
        conn.request(method, path, body, headers)
        r = conn.getresponse()
        answer = r.read()
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {answer[:300]!r}")

    conn = http.client.HTTPConnection(url.hostname, url.port)
    model = {"embedding": {"model": "external", "dimension": 384}}
    request(conn, "PUT", "/v1/collections/vec", json.dumps(model).encode())
    conn.close()
    bodies = []
    for start in range(0, a.n, 1000):
        docs = [
            {"id": doc_id(i), "text": text(1024), "vector": unit()}
            for i in range(start, min(start + 1000, a.n))
        ]
        bodies.append(json.dumps({"docs": docs}).encode())
    print(f"{sum(map(len, bodies)) / 1e6:.1f} MB of JSON in {len(bodies)} batches", file=sys.stderr)
    # A new connection: building the batches may outlast the node's idle timeout.
    conn = http.client.HTTPConnection(url.hostname, url.port)
    t = time.perf_counter()
    for body in bodies:
        request(conn, "POST", "/v1/collections/vec/docs:batch", body)
    secs = time.perf_counter() - t
    print(f"post_vectors_docs_per_s: {a.n / secs:.0f} docs/s ({secs:.2f} s)")


if __name__ == "__main__":
    main()
