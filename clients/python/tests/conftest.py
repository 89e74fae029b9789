"""Starts real `astrocyte serve` processes on loopback for the client tests.

The binary is `ASTROCYTE_TEST_BIN`, else `target/debug/astrocyte` under the repository root.
The server refuses unknown `ASTROCYTE_*` variables, so the harness's own start with
`ASTROCYTE_TEST_`, and every other `ASTROCYTE_*` variable of the caller's shell is dropped from the
server's environment so that only what a fixture sets applies.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("ASTROCYTE_TEST_BIN", ROOT / "target" / "debug" / "astrocyte"))
API_KEY_SECRET = "python-client-test-secret-32-chars!"
ADMIN_TOKEN = "python-client-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen
    data_dir: str
    keys: Dict[str, str] = field(default_factory=dict)

    def issue_key(self, tenant: str, principal: str, admin_token: Optional[str] = None) -> str:
        headers = {"Content-Type": "application/json"}
        if admin_token:
            headers["X-Admin-Token"] = admin_token
        request = urllib.request.Request(
            f"{self.base_url}/v1/admin/keys",
            data=json.dumps({"tenant": tenant, "principal": principal}).encode(),
            headers=headers,
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)["api_key"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_server(env: Dict[str, str], *extra_args: str, embedder_args=("--embedder", "hashing")) -> Server:
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} is missing: run `cargo build --bin astrocyte` (or set ASTROCYTE_TEST_BIN)")
    data = tempfile.mkdtemp(prefix="astrocyte-pyclient-")
    port = free_port()
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("ASTROCYTE_") or k.startswith("ASTROCYTE_TEST_")}
    clean.update(env)
    log = open(os.path.join(data, "server.log"), "wb")
    process = subprocess.Popen(
        [str(BINARY), "--data-dir", data, *embedder_args, "serve", "--host", "127.0.0.1",
         "--port", str(port), *extra_args],
        env=clean, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/live", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(Path(data, "server.log").read_text(errors="replace"))
            time.sleep(0.1)
    return Server(base, process, data)


@pytest.fixture(scope="session")
def dev_server():
    """Dev mode: no credentials, the principal from X-Astrocyte-Principal."""
    server = start_server({})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def guarded_server():
    """Dev mode with per-bank grants, an admin token, PII rejection and a small body cap."""
    grants = [
        {"bank_id": "*", "principal": "agent:writer", "permissions": ["*"]},
        {"bank_id": "*", "principal": "agent:reader", "permissions": ["read"]},
    ]
    server = start_server({
        "ASTROCYTE_ACCESS_CONTROL_ENABLED": "true",
        "ASTROCYTE_ACCESS_CONTROL_DEFAULT_POLICY": "deny",
        "ASTROCYTE_ACCESS_GRANTS": json.dumps(grants),
        "ASTROCYTE_ADMIN_TOKEN": ADMIN_TOKEN,
        "ASTROCYTE_PII_ACTION": "reject",
        "ASTROCYTE_MAX_REQUEST_BODY_BYTES": "8192",
    })
    yield server
    server.stop()


@pytest.fixture(scope="session")
def keyed_server():
    """API-key mode: issued keys pick the tenant and the principal."""
    server = start_server({
        "ASTROCYTE_AUTH_MODE": "api_key",
        "ASTROCYTE_TENANT_EXTENSION": "api_key",
        "ASTROCYTE_API_KEY_SECRET": API_KEY_SECRET,
    })
    server.keys = {
        "tenant_a": server.issue_key("py_tenant_a", "agent:alice"),
        "tenant_b": server.issue_key("py_tenant_b", "agent:bob"),
    }
    yield server
    server.stop()


@pytest.fixture(scope="session")
def limited_server():
    """The server's own limits: 60 retains a minute per bank (a burst of 60, then one a second)
    and a daily quota of 2 reflects per bank."""
    server = start_server({
        "ASTROCYTE_RATE_LIMIT_RETAIN_PER_MINUTE": "60",
        "ASTROCYTE_QUOTA_REFLECT_PER_DAY": "2",
    })
    yield server
    server.stop()


class EmbeddingsStub:
    """An OpenAI-compatible embeddings API on loopback that the test can take down and bring up.

    While down it answers 503, so the Astrocyte server's provider gives up and answers 503 with
    `Retry-After`; while up it answers a deterministic 8-dimensional vector per input."""

    def __init__(self) -> None:
        self.up = False
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                stub.requests += 1
                if not stub.up:
                    body, status = b'{"error":{"message":"down"}}', 503
                else:
                    inputs = payload.get("input") or []
                    if isinstance(inputs, str):
                        inputs = [inputs]
                    data = [{"object": "embedding", "index": i,
                             "embedding": [float((len(text) + d) % 7 + 1) for d in range(8)]}
                            for i, text in enumerate(inputs)]
                    body, status = json.dumps({"object": "list", "data": data}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status != 200:
                    self.send_header("retry-after-ms", "1")  # the provider's own retries: fast
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="session")
def outage_server():
    """A server whose embeddings provider (a stub on loopback) starts down: retains answer 503."""
    stub = EmbeddingsStub()
    server = start_server({}, embedder_args=(
        "--embedder", "openai", "--embeddings-url", stub.url, "--embeddings-model", "stub",
        "--embeddings-dimension", "8"))
    yield server, stub
    server.stop()
    stub.close()
