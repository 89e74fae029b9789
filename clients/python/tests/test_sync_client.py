"""Every method of the sync client against a real dev-mode server."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from astrocyte_client import (
    Astrocyte,
    BadRequestError,
    ConflictError,
    ForgetResult,
    HealthStatus,
    HistoryResult,
    Job,
    MemoryHit,
    NotFoundError,
    RecallResult,
    ReflectResult,
    RetainResult,
)


def bank() -> str:
    return "b" + uuid.uuid4().hex[:12]


@pytest.fixture
def client(dev_server):
    with Astrocyte(dev_server.base_url, principal="agent:tester") as brain:
        yield brain


def test_health(client):
    status = client.health()
    assert isinstance(status, HealthStatus)
    assert status.healthy is True
    assert "sqlite" in status.message
    assert status.latency_ms is not None and status.latency_ms >= 0
    assert status.last_check_at is not None and status.last_check_at.tzinfo is not None


def test_retain_then_recall_returns_typed_hits(client):
    b = bank()
    stored = client.retain("The heron nests by the north pond.", b, tags=["birds"],
                           metadata={"owner": "ann", "age": 3},
                           occurred_at=datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc))
    assert isinstance(stored, RetainResult)
    assert stored.stored and stored.memory_id and not stored.deduplicated

    again = client.retain("The heron nests by the north pond.", b)
    assert again.deduplicated and not again.stored and again.memory_id == stored.memory_id

    client.retain("Badgers dig setts in the woods.", b, tags=["mammals"])
    found = client.recall("heron pond", bank_id=b, tags=["birds"])
    assert isinstance(found, RecallResult)
    assert [h.text for h in found.hits] == ["The heron nests by the north pond."]
    hit = found.hits[0]
    assert isinstance(hit, MemoryHit)
    assert hit.memory_id == stored.memory_id
    assert hit.bank_id == b
    assert hit.tags == ["birds"]
    assert hit.metadata == {"owner": "ann", "age": 3}
    assert hit.occurred_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert isinstance(hit.retained_at, datetime)
    assert abs((datetime.now(timezone.utc) - hit.retained_at).total_seconds()) < 300
    assert 0 < hit.score <= 1.5
    assert found.total_available == 1 and found.truncated is False
    assert found.trace is not None and "keyword" in found.trace.strategies_used


def test_recall_across_banks_with_limits_and_time_range(client):
    a, b = bank(), bank()
    client.retain("Otters float on their backs in the bay.", a, occurred_at="2020-06-01T00:00:00Z")
    client.retain("Otters hold hands while they sleep.", b, occurred_at=date(2023, 6, 1))
    client.retain("Otters juggle pebbles for fun.", b, occurred_at=datetime(2023, 7, 1))

    both = client.recall("otters", banks=[a, b])
    assert {h.bank_id for h in both.hits} == {a, b}
    assert len(both.hits) == 3

    one = client.recall("otters", bank_id=b, max_results=1)
    assert len(one.hits) == 1

    in_2023 = client.recall("otters", bank_id=b, time_range=(datetime(2023, 6, 15, tzinfo=timezone.utc),
                                                              "2023-12-31T00:00:00Z"))
    assert [h.text for h in in_2023.hits] == ["Otters juggle pebbles for fun."]

    tiny = client.recall("otters", bank_id=b, max_tokens=1)
    assert len(tiny.hits) <= 1


def test_recall_needs_a_bank():
    with Astrocyte("http://127.0.0.1:9") as brain:
        with pytest.raises(ValueError):
            brain.recall("anything")


def test_reflect_with_and_without_sources(client):
    b = bank()
    kept = client.retain("Miso is the name of the cat.", b)
    answer = client.reflect("what is the cat called", b)
    assert isinstance(answer, ReflectResult)
    assert "Miso" in answer.answer
    assert answer.sources is not None and [s.memory_id for s in answer.sources] == [kept.memory_id]
    assert answer.confidence is not None and answer.confidence > 0

    bare = client.reflect("what is the cat called", b, include_sources=False, max_tokens=200)
    assert bare.sources is None
    assert "Miso" in bare.answer


def test_history_sees_only_what_was_known_then(client):
    b = bank()
    client.retain("The bridge was painted red.", b)
    time.sleep(0.05)
    then = datetime.now(timezone.utc)
    time.sleep(0.05)
    client.retain("The bridge was repainted blue.", b)

    past = client.history("bridge painted", b, then)
    assert isinstance(past, HistoryResult)
    assert [h.text for h in past.hits] == ["The bridge was painted red."]
    assert past.bank_id == b
    assert abs((past.as_of - then).total_seconds()) < 0.001

    now = client.history("bridge painted", b, datetime.now(timezone.utc) + timedelta(seconds=1),
                         max_results=5, tags=None)
    assert sorted(h.text for h in now.hits) == ["The bridge was painted red.", "The bridge was repainted blue."]


def test_forget_by_id_tag_date_and_scope(client):
    b = bank()
    first = client.retain("Gulls steal chips on the pier.", b, tags=["birds"])
    client.retain("Crows remember faces for years.", b, tags=["birds", "smart"])
    client.retain("An old note from the year 2001 about kites.", b, occurred_at="2001-01-01")
    client.retain("Moles tunnel under the lawn.", b)

    by_id = client.forget(b, memory_ids=[first.memory_id])
    assert isinstance(by_id, ForgetResult)
    assert by_id.deleted_count == 1
    assert all(h.memory_id != first.memory_id for h in client.recall("gulls chips", bank_id=b).hits)

    assert client.forget(b, tags=["smart"]).deleted_count == 1
    assert client.forget(b, before_date=date(2010, 1, 1)).deleted_count == 1
    assert client.forget(b, scope="all").deleted_count == 1
    assert client.recall("moles", bank_id=b).hits == []

    with pytest.raises(BadRequestError) as raised:
        client.forget(b)
    assert "memory_ids" in raised.value.detail


def test_banks_lists_the_tenants_banks(client):
    b = bank()
    client.retain("Bank listing probe.", b)
    assert b in client.banks()


def test_async_retain_job_and_idempotency(client):
    b = bank()
    key = "idem-" + uuid.uuid4().hex
    queued = client.retain("Swifts sleep while flying.", b, run_async=True, idempotency_key=key,
                           content_type="text")
    assert queued.job_id and queued.job_state == "queued" and not queued.stored
    repeat = client.retain("Swifts sleep while flying.", b, run_async=True, idempotency_key=key)
    assert repeat.job_id == queued.job_id
    # The key names that request: reusing it for other content is refused, not swallowed.
    with pytest.raises(ConflictError) as reused:
        client.retain("Swifts sleep while flying (again).", b, run_async=True, idempotency_key=key)
    assert reused.value.status == 409

    job = client.wait_for_job(queued.job_id, timeout=30)
    assert isinstance(job, Job)
    assert job.state == "done" and job.finished and job.kind
    assert job.created_at is not None and job.updated_at >= job.created_at
    assert [h.text for h in client.recall("swifts", bank_id=b).hits] == ["Swifts sleep while flying."]

    with pytest.raises(NotFoundError) as raised:
        client.job("no-such-job")
    assert raised.value.status == 404
    assert "no-such-job" in raised.value.detail


def test_conversation_content_type(client):
    b = bank()
    stored = client.retain("user: where are my keys?\nassistant: on the hook by the door", b,
                           content_type="conversation")
    assert stored.stored
    assert any("hook" in h.text for h in client.recall("keys hook door", bank_id=b).hits)


def test_thread_id_lends_keyword_context_across_turns(client):
    threaded, alone = bank(), bank()
    for b, thread in ((threaded, "trip-1"), (alone, None)):
        client.retain("Where did you park the zeppelin?", b, thread_id=thread)
        client.retain("Beside the lighthouse.", b, thread_id=thread)
    # In a thread, the second turn carries the first one's words as keyword context.
    assert client.recall("zeppelin", bank_id=threaded).trace.strategy_candidate_counts["keyword"] == 2
    assert client.recall("zeppelin", bank_id=alone).trace.strategy_candidate_counts["keyword"] == 1
