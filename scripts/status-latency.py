#!/usr/bin/env python3
"""Loads plain documents into a running node, then times `GET /v1/status`: what a monitor
polling the node pays as the store grows.

    scripts/status-latency.py --url http://127.0.0.1:PORT [-n 100000] [--calls 30]

Token in RAGSYNC_TOKEN. Makes collection `status` (BM25 only), writes `-n` documents of
1 KiB in batches of 1,000 on one keep-alive connection, waits 2 s, then calls
`GET /v1/status` `--calls` times in a row and prints the median and the slowest.
Standard library only.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=30)
    a = ap.parse_args()
    token = os.environ.get("RAGSYNC_TOKEN")
    if not token:
        sys.exit("RAGSYNC_TOKEN is not set")
    url = urllib.parse.urlsplit(a.url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(url.hostname, url.port)

    def request(method: str, path: str, body: bytes | None = None) -> bytes:
        conn.request(method, path, body, headers)
        r = conn.getresponse()
        answer = r.read()
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {answer[:300]!r}")
        return answer

    request("PUT", "/v1/collections/status", b"{}")
    for start in range(0, a.n, 1000):
        docs = [
            {"id": f"d{i:09d}", "text": (f"document {i} " * 80)[:1024]}
            for i in range(start, min(a.n, start + 1000))
        ]
        request("POST", "/v1/collections/status/docs:batch", json.dumps({"docs": docs}).encode())
    time.sleep(2)
    took = []
    for _ in range(a.calls):
        t = time.perf_counter()
        answer = request("GET", "/v1/status")
        took.append((time.perf_counter() - t) * 1e3)
    counts = json.loads(answer)["counts"]
    print(
        f"status_ms_p50: {statistics.median(took):.2f} ms, max {max(took):.2f} ms "
        f"({counts['documents']} documents, {counts['contents']} contents)"
    )


if __name__ == "__main__":
    main()
