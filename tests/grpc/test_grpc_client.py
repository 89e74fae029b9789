"""gRPC with a client that is not ours: Python's grpcio, with stubs generated from the repository's
proto by grpcio-tools, against a real `astrocyte serve --grpc-port` in API-key mode."""

import importlib.resources
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ASTROCYTE_TEST_BIN", ROOT / "target" / "debug" / "astrocyte"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stubs():
    """astrocyte_pb2 and astrocyte_pb2_grpc, generated now from proto/astrocyte/v1."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="astrocyte-pb-")
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    code = protoc.main([
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(ROOT / "proto" / "astrocyte" / "v1" / "astrocyte.proto"),
    ])
    assert code == 0, "protoc failed"
    sys.path.insert(0, out)
    from astrocyte.v1 import astrocyte_pb2, astrocyte_pb2_grpc

    return astrocyte_pb2, astrocyte_pb2_grpc


@pytest.fixture(scope="module")
def server():
    data = tempfile.mkdtemp(prefix="astrocyte-grpc-")
    http_port, grpc_port = free_port(), free_port()
    env = dict(
        os.environ,
        ASTROCYTE_AUTH_MODE="api_key",
        ASTROCYTE_TENANT_EXTENSION="api_key",
        ASTROCYTE_API_KEY_SECRET="python-grpc-test-secret-of-32-chars",
    )
    # A file, not a pipe: nobody reads the server's logs while it runs.
    log = tempfile.NamedTemporaryFile(prefix="astrocyte-grpc-log-", delete=False)
    process = subprocess.Popen(
        [str(BINARY), "--data-dir", data, "--embedder", "hashing", "serve",
         "--port", str(http_port), "--grpc-port", str(grpc_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/live", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(Path(log.name).read_text())
            time.sleep(0.2)
    keys = {}
    for tenant in ("py_a", "py_b"):
        request = urllib.request.Request(
            f"{base}/v1/admin/keys",
            data=json.dumps({"tenant": tenant, "principal": "agent:py"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        keys[tenant] = json.load(urllib.request.urlopen(request))["api_key"]
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    grpc.channel_ready_future(channel).result(timeout=30)
    yield channel, keys
    channel.close()
    process.terminate()
    process.wait(timeout=30)


def test_health_and_reflection(server):
    channel, _ = server
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "astrocyte.v1.Memory"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert "astrocyte.v1.Memory" in names
    assert "grpc.health.v1.Health" in names


def test_retain_recall_export_forget_in_ones_own_tenant(server, stubs):
    channel, keys = server
    pb, pb_grpc = stubs
    memory = pb_grpc.MemoryStub(channel)
    a = [("x-api-key", keys["py_a"])]
    from google.protobuf import struct_pb2

    metadata = struct_pb2.Struct()
    metadata.update({"owner": "ann", "age": 3})
    stored = memory.Retain(pb.RetainRequest(
        bank_id="notes", content="The grpc heron nests by the north pond.",
        tags=["birds"], metadata=metadata, occurred_at="2024-05-01T10:00:00Z"), metadata=a, timeout=30)
    assert stored.stored and stored.memory_id
    again = memory.Retain(pb.RetainRequest(
        bank_id="notes", content="The grpc heron nests by the north pond."), metadata=a, timeout=30)
    assert not again.stored and again.deduplicated and again.memory_id == stored.memory_id

    recalled = memory.Recall(pb.RecallRequest(query="heron pond", bank_id="notes", tags=["birds"]),
                             metadata=a, timeout=30)
    assert [h.text for h in recalled.hits] == ["The grpc heron nests by the north pond."]
    hit = recalled.hits[0]
    assert dict(hit.metadata) == {"owner": "ann", "age": 3}
    assert hit.occurred_at == "2024-05-01T10:00:00+00:00"
    assert list(hit.tags) == ["birds"]

    # Tenant B's key sees nothing of tenant A's bank.
    other = memory.Recall(pb.RecallRequest(query="heron pond", bank_id="notes"),
                          metadata=[("x-api-key", keys["py_b"])], timeout=30)
    assert list(other.hits) == []

    # The same key as a Bearer token.
    banks = memory.ListBanks(pb.ListBanksRequest(),
                             metadata=[("authorization", f"Bearer {keys['py_a']}")], timeout=30)
    assert list(banks.banks) == ["notes"]

    lines = [json.loads(m.line) for m in memory.Export(pb.ExportRequest(bank_id="notes"), metadata=a, timeout=30)]
    assert lines[0]["_ama_version"] == 1
    assert [line.get("text") for line in lines[1:]] == ["The grpc heron nests by the north pond."]

    forgotten = memory.Forget(pb.ForgetRequest(bank_id="notes", memory_ids=[stored.memory_id]),
                              metadata=a, timeout=30)
    assert forgotten.deleted_count == 1


def test_errors_carry_a_status_and_a_kind_and_no_cause(server, stubs):
    channel, keys = server
    pb, pb_grpc = stubs
    memory = pb_grpc.MemoryStub(channel)
    cases = [
        ([], pb.RecallRequest(query="q", bank_id="notes"), grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
        ([("x-api-key", "ak_forged")], pb.RecallRequest(query="q", bank_id="notes"),
         grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
        ([("x-api-key", keys["py_a"])], pb.RecallRequest(query="q", bank_id="bad bank!"),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
        ([("x-api-key", keys["py_a"])], pb.RecallRequest(query=" ", bank_id="notes"),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
    ]
    for credentials, request, code, kind in cases:
        with pytest.raises(grpc.RpcError) as raised:
            memory.Recall(request, metadata=credentials, timeout=30)
        error = raised.value
        assert error.code() == code, error
        trailers = dict(error.trailing_metadata() or ())
        assert trailers.get("x-astrocyte-error") == kind, trailers
        if kind == "unauthenticated":
            assert "key" not in (error.details() or "").lower(), error.details()
