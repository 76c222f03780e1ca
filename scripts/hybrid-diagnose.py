#!/usr/bin/env python3
"""Where the hybrid ranking of a judged BEIR folder loses to the reference: fuses the node's own
vector ranking with BM25 rankings made three ways (the node's, the reference bm25s's, and the
node's analyzer emulated here with one rule changed at a time), by the node's fusion (RRF, k = 60,
each side ranking the union of both top-100 lists), and prints nDCG@10 of each.

Needs a node holding the folder's corpus in a collection with the built-in model (as
`ragsync eval DIR -c C` leaves it) and, beside the Python client's, `pip install bm25s==0.3.16
PyStemmer==3.1.0 numpy requests`.
Usage: scripts/hybrid-diagnose.py URL TOKEN COLLECTION [DIR]  (DIR: ../shared/data/msmarco-5k)"""
import json, math, pathlib, re, sys

import bm25s, numpy as np, requests, Stemmer

url, token, coll = sys.argv[1:4]
root = pathlib.Path(__file__).resolve().parent.parent
folder = pathlib.Path(sys.argv[4]) if len(sys.argv) > 4 else root.parent / "shared/data/msmarco-5k"
corpus = [json.loads(l) for l in open(folder / "corpus.jsonl")]
ids = [c["_id"] for c in corpus]
queries = {q["_id"]: q["text"] for q in map(json.loads, open(folder / "queries.jsonl"))}
qrels = {}
for line in open(folder / "qrels/test.tsv"):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 3 and f[2].isdigit():
        qrels.setdefault(f[0], {})[f[1]] = int(f[2])
stem = Stemmer.Stemmer("english")
# The node's English stop words, read from its source so the emulation cannot drift from it.
analysis = (root / "crates/ragsync-search/src/analysis.rs").read_text()
nltk = set(re.findall(r'"([^"]+)"', analysis.split("ENGLISH_STOP_WORDS: &[&str] = &[")[1].split("];")[0]))


def ndcg(ranked, judged):
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def top(scores, n):
    return [d for d, _ in sorted(scores.items(), key=lambda x: -x[1])[:n]]


def node(mode, k):
    """Each judged query's ranking by the node: document id -> its best chunk's score."""
    out = {}
    for q in qrels:
        r = requests.post(f"{url}/v1/collections/{coll}/query", headers={"Authorization": f"Bearer {token}"},
                          json={"query": queries[q], "mode": mode, "top_k": k})
        r.raise_for_status()
        out[q] = {}
        for hit in r.json()["results"]:
            out[q].setdefault(hit["doc_id"], hit["score"])
    return out


def rrf(bm25, vector):
    union = set(top(bm25, 100)) | set(top(vector, 100))
    fused = {}
    for side in (bm25, vector):
        for rank, d in enumerate(sorted((d for d in union if d in side), key=lambda d: -side[d])):
            fused[d] = fused.get(d, 0) + 1 / (61 + rank)
    return top(fused, 10)


def score(name, bm25, vector):
    alone = sum(ndcg(top(bm25[q], 10), qrels[q]) for q in qrels) / len(qrels)
    fused = sum(ndcg(rrf(bm25[q], vector[q]), qrels[q]) for q in qrels) / len(qrels)
    print(f"{name:<44} bm25 {alone:.4f}  rrf with the node's vectors {fused:.4f}")


def bm25_of(docs, query_terms, k1):
    """Exact BM25 (bm25s, Lucene's idf) of token lists: query id -> {doc id: score}."""
    vocab = {}
    r = bm25s.BM25(k1=k1, b=0.75)
    r.index(bm25s.tokenization.Tokenized(ids=[[vocab.setdefault(t, len(vocab)) for t in d] for d in docs],
                                         vocab=vocab), show_progress=False)
    out = {}
    for q in qrels:
        terms = [t for t in query_terms(queries[q]) if t in vocab]
        s = r.get_scores(terms) if terms else np.zeros(len(ids))
        out[q] = {ids[i]: float(s[i]) for i in np.nonzero(s)[0]}
    return out


def analyzer(pattern, stop, min_chars):
    def terms(text):
        words = re.findall(pattern, text.lower())
        return [stem.stemWord(w) for w in words if len(w) >= min_chars and len(w.encode()) <= 40 and w not in stop]
    return terms


vector = node("vector", 1000)
score("node (tantivy, k1 1.2, quantised lengths)", node("bm25", 1000), vector)
text = [(c.get("title", "") + " " + c["text"]).strip() for c in corpus]
ref = bm25s.tokenize(text, stopwords="en", stemmer=stem, show_progress=False)
for k1 in (1.2, 1.5):
    def ref_terms(t):
        q = bm25s.tokenize([t], stopwords="en", stemmer=stem, show_progress=False)
        inv = {v: w for w, v in q.vocab.items()}
        return [inv[i] for i in q.ids[0]]
    inv = {v: w for w, v in ref.vocab.items()}
    score(f"bm25s as the reference, k1 {k1}", bm25_of([[inv[i] for i in d] for d in ref.ids], ref_terms, k1), vector)
letters_digits = r"[^\W_]+"  # tantivy's SimpleTokenizer: runs of letters and digits
for name, terms in [
    ("node's analyzer emulated, exact lengths", analyzer(letters_digits, nltk, 1)),
    ("  ... tokens of one character dropped", analyzer(letters_digits, nltk, 2)),
    ("  ... bm25s's 33 stop words instead", analyzer(letters_digits, set(bm25s.stopwords.STOPWORDS_EN), 1)),
    ("  ... possessive 's and n't fragments stopped", analyzer(letters_digits, nltk | {"s", "t"}, 1)),
]:
    score(name, bm25_of([terms(t) for t in text], terms, 1.2), vector)
