"""RagsyncVectorStore under LangChain's own standard suite (`langchain-tests`'
VectorStoreIntegrationTests, sync and async) against a real node: once with the caller's
embeddings (vectors sent by the client) and once with the node's built-in model. Then what the
suite does not check: a store over two replicating nodes, long documents, filters, the
retriever."""

import itertools
import time
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from ragsync import Client
from ragsync.langchain import RagsyncVectorStore


_names = itertools.count()


def fresh_store(node, embedding, **kw):
    return RagsyncVectorStore(
        f"lc-{next(_names)}", embedding, client=Client(node.url, node.token), **kw
    )


class TestCallerEmbeddings(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, module_node):
        store = fresh_store(module_node, self.get_embeddings())
        yield store
        store.delete()
        store.client.close()


class TestBuiltinEmbedder(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, module_node):
        store = fresh_store(module_node, None)
        yield store
        store.delete()
        store.client.close()


def test_added_on_one_node_is_found_on_the_other(two_nodes):
    a, b = two_nodes
    emb = DeterministicFakeEmbedding(size=8)
    on_a = RagsyncVectorStore("shared", emb, client=Client(a.url, a.token))
    ids = on_a.add_texts(["the write-ahead log", "group commit"], [{"n": 1}, {"n": 2.5}])
    status, _ = b.rest("POST", "/v1/peers", {"url": a.url, "token": a.token})
    assert status == 201
    on_b = RagsyncVectorStore("shared", emb, client=Client(b.url, b.token))

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = on_b.similarity_search("group commit", k=2)
        if len(found) == 2:
            break
        time.sleep(0.1)
    assert found[0] == Document(id=ids[1], page_content="group commit", metadata={"n": 2.5})
    # A delete through the store is a tombstone, and replicates like any other write.
    on_a.delete([ids[1]])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and on_b.get_by_ids([ids[1]]):
        time.sleep(0.1)
    assert on_b.get_by_ids(ids) == [Document(id=ids[0], page_content="the write-ahead log", metadata={"n": 1})]


def test_long_documents_filters_and_the_retriever(module_node):
    store = fresh_store(module_node, None)
    long = " ".join(f"word{i}" for i in range(2000)) + " the zebra crossing."
    store.add_documents(
        [
            Document(id="long", page_content=long, metadata={"year": 2020}),
            Document(id="zebra", page_content="A zebra has stripes.", metadata={"year": 2024}),
        ]
    )
    # The long document is many chunks on the node, and comes back whole and once.
    got = store.similarity_search("zebra crossing", k=5)
    assert sorted(d.id for d in got) == ["long", "zebra"]
    assert next(d for d in got if d.id == "long").page_content == long
    assert [d.id for d in store.similarity_search("zebra", k=5, filter={"year": {"$gte": 2021}})] == ["zebra"]
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert len(retriever.invoke("stripes")) == 1
    scored = store.similarity_search_with_relevance_scores("zebra stripes", k=2)
    assert all(0.0 <= s <= 1.0 for _, s in scored)
    store.delete()


def test_the_readme_example_runs(module_node, monkeypatch, capsys):
    """README.md's "Use from LangChain" example, as written, against a real node."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Use from LangChain", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.setenv("RAGSYNC_URL", module_node.url)
    monkeypatch.setenv("RAGSYNC_TOKEN", module_node.token)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "wal {'year': 2010} SQLite's write-ahead log lets readers run beside a writer."
    ]
