"""Real ragsync nodes for the Python-side tests: each a child process of the binary in
RAGSYNC_BIN (scripts/test builds it), on 127.0.0.1:0 in a temporary directory, stopped
after its test."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ADMIN = "test-admin-token-0123456789"


class Node:
    def __init__(self, tmp_path, name, args=(), env=None):
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.log = open(self.dir / "node.log", "wb")
        self.proc = subprocess.Popen(
            [
                os.environ.get("RAGSYNC_BIN", "ragsync"),
                "serve",
                "--data", str(self.dir / "data"),
                "--listen", "127.0.0.1:0",
                *args,
            ],
            env={**os.environ, "RAGSYNC_ADMIN_TOKEN": ADMIN, "RAGSYNC_LOG": "warn", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        self.url = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if line.startswith("ragsync listening on "):
                self.url = line.split()[-1]
                break
            if not line and self.proc.poll() is not None:
                break
        if self.url is None:
            self.stop()
            raise RuntimeError(f"node {name} did not start: {(self.dir / 'node.log').read_text()}")
        self.token = ADMIN

    def rest(self, method, path, body=None, token=None):
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path, "a")
    yield n
    n.stop()


@pytest.fixture(scope="module")
def module_node(tmp_path_factory):
    """One node for a module's tests; each test keeps to its own collection."""
    n = Node(tmp_path_factory.mktemp("node"), "m")
    yield n
    n.stop()


@pytest.fixture
def two_nodes(tmp_path):
    a, b = Node(tmp_path, "a"), Node(tmp_path, "b")
    yield a, b
    a.stop()
    b.stop()
