#!/usr/bin/env python3
"""Why BM25 is tantivy, not SQLite FTS5: this probe builds the FTS5 index the store would have
kept (100,000 chunks of 150 bench words, contentless, one term per token) and times the query
`ragsync bench query` runs (three words of a stored chunk, OR-ed, top 10 by bm25).
Usage: scripts/fts5-probe.py [chunks]"""
import os, random, sqlite3, sys, tempfile, time

S = ("ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga ge gi go ha he hi ho ja je jo "
     "ka ke ki ko la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa "
     "se si so su ta te ti to tu va ve vi vo wa we wi za ze zo an en in on un ar er ir or ur al "
     "el il ol ul as es is os us at et it ot ut th sh ch st tr pl gr br").split()
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
r = random.Random(1)
word = lambda: "".join(r.choice(S) for _ in range(1 + r.randrange(3)))
docs = [" ".join(word() for _ in range(150)) for _ in range(n)]
with tempfile.TemporaryDirectory() as d:
    db = sqlite3.connect(os.path.join(d, "probe.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(terms, content='', tokenize='ascii')")
    t = time.perf_counter()
    with db:
        db.executemany("INSERT INTO f(rowid, terms) VALUES (?, ?)", enumerate(docs, 1))
    ins = time.perf_counter() - t
    lat = []
    for _ in range(300):
        words = docs[r.randrange(n)].split()
        i = r.randrange(len(words) - 3)
        m = " OR ".join('"%s"' % w for w in words[i:i + 3])
        t = time.perf_counter()
        db.execute("SELECT rowid, rank FROM f WHERE f MATCH ? ORDER BY rank LIMIT 10", (m,)).fetchall()
        lat.append(time.perf_counter() - t)
    lat.sort()
    print(f"sqlite {sqlite3.sqlite_version} fts5: {n} chunks indexed at {n / ins:,.0f} chunks/s; "
          f"query p50 {lat[len(lat) // 2] * 1e3:.2f} ms p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms")
