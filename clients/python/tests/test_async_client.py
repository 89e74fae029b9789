"""Every method of the async client against a real dev-mode server (plain asyncio, no plugin)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from astrocyte_client import AsyncAstrocyte, BadRequestError, NotFoundError


def run(coroutine):
    return asyncio.run(coroutine)


def test_every_method_async(dev_server):
    b = "a" + uuid.uuid4().hex[:12]

    async def scenario():
        async with AsyncAstrocyte(dev_server.base_url, principal="agent:async") as brain:
            health = await brain.health()
            assert health.healthy

            stored = await brain.retain("Herons stand still in the shallows.", b, tags=["birds"],
                                        metadata={"seen": "dawn"}, occurred_at="2024-05-01T10:00:00+02:00")
            assert stored.stored and stored.memory_id

            # Concurrent calls on one client.
            facts = ["Kingfishers dive for minnows.", "A kingfisher's nest is a tunnel in a bank.",
                     "Kingfishers flash blue over the river.", "Young kingfishers fledge in June.",
                     "Kingfishers beat fish on a branch before eating them."]
            results = await asyncio.gather(*[brain.retain(f, b, tags=["kf"]) for f in facts])
            assert all(r.stored for r in results)
            assert len({r.memory_id for r in results}) == 5

            found = await brain.recall("herons shallows", bank_id=b, tags=["birds"], max_results=3)
            assert [h.text for h in found.hits] == ["Herons stand still in the shallows."]
            assert found.hits[0].occurred_at == datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
            assert found.hits[0].metadata == {"seen": "dawn"}

            multi = await brain.recall("kingfishers", banks=[b], max_results=2)
            assert len(multi.hits) == 2

            answer = await brain.reflect("where do herons stand", b)
            assert "shallows" in answer.answer and answer.sources

            past = await brain.history("herons", b, datetime.now(timezone.utc) - timedelta(days=1))
            assert past.hits == [] and past.bank_id == b
            present = await brain.history("herons", b, datetime.now(timezone.utc) + timedelta(seconds=1))
            assert any("Herons" in h.text for h in present.hits)

            assert b in await brain.banks()

            queued = await brain.retain("Dippers walk under water.", b, run_async=True)
            done = await brain.wait_for_job(queued.job_id, timeout=30)
            assert done.state == "done"
            assert (await brain.job(queued.job_id)).job_id == queued.job_id

            forgotten = await brain.forget(b, tags=["kf"])
            assert forgotten.deleted_count == 5
            assert (await brain.forget(b, memory_ids=[stored.memory_id])).deleted_count == 1
            assert (await brain.forget(b, scope="all")).deleted_count == 1

            with pytest.raises(NotFoundError):
                await brain.job("missing-job")
            with pytest.raises(BadRequestError) as raised:
                await brain.recall("   ", bank_id=b)
            assert raised.value.status == 400 and raised.value.detail

    run(scenario())
