"""The browse/manage routes (list, get, update, delete, changes, entities, export, import, bank
summaries) of both clients against a real dev-mode server."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import httpx
import pytest

from astrocyte_client import (
    AsyncAstrocyte,
    Astrocyte,
    BadRequestError,
    BankSummary,
    ChangesPage,
    DeleteMemoryResult,
    Entity,
    ForbiddenError,
    ImportResult,
    Memory,
    MemoryChange,
    MemoryDetail,
    MemoryPage,
    NotFoundError,
    RejectedLine,
    UnauthenticatedError,
)

from conftest import ADMIN_TOKEN


def bank() -> str:
    return "m" + uuid.uuid4().hex[:12]


@pytest.fixture
def client(dev_server):
    with Astrocyte(dev_server.base_url, principal="agent:browser") as brain:
        yield brain


def fill(client, b, n):
    """``n`` memories in ``b``, returned oldest first."""
    ids = [client.retain(f"Numbered note {i:02d} about lanterns.", b).memory_id for i in range(n)]
    assert len(set(ids)) == n
    return ids


def test_list_pages_newest_first_and_by_id(client):
    b = bank()
    ids = fill(client, b, 7)

    first = client.list_memories(b, limit=3)
    assert isinstance(first, MemoryPage)
    assert len(first.memories) == 3 and first.next_cursor
    assert all(isinstance(x, Memory) for x in first.memories)
    assert [x.memory_id for x in first.memories] == ids[::-1][:3]
    memory = first.memories[0]
    assert memory.bank_id == b and memory.text == "Numbered note 06 about lanterns."
    assert memory.fact_type and memory.chunk_count == 1 and memory.tags == [] and memory.metadata == {}
    assert isinstance(memory.retained_at, datetime) and memory.retained_at.tzinfo is not None

    second = client.list_memories(b, limit=3, cursor=first.next_cursor)
    third = client.list_memories(b, limit=3, cursor=second.next_cursor)
    assert [x.memory_id for x in second.memories + third.memories] == ids[::-1][3:]
    assert third.next_cursor is None

    # iter_memories follows the cursors, a page of 2 at a time.
    assert [x.memory_id for x in client.iter_memories(b, limit=2)] == ids[::-1]
    assert [x.memory_id for x in client.iter_memories(b, order="id", limit=4)] == sorted(ids)
    assert list(client.iter_memories(bank())) == []

    with pytest.raises(BadRequestError) as raised:
        client.list_memories(b, order="sideways")
    assert "order" in raised.value.detail
    with pytest.raises(BadRequestError):
        client.list_memories(b, limit=0)


def test_list_filters(client):
    b = bank()
    heron = client.retain("Herons fish at dawn in the reeds.", b, tags=["birds", "water"],
                          occurred_at="2024-03-01T06:00:00Z").memory_id
    owl = client.retain("Owls hunt at night over the meadow.", b, tags=["birds"],
                        occurred_at=datetime(2022, 1, 1, tzinfo=timezone.utc)).memory_id
    otter = client.retain("Otters fish in the river.", b, tags=["mammals", "water"],
                          occurred_at="2023-07-01T12:00:00Z").memory_id

    def listed(**filters):
        return {x.memory_id for x in client.iter_memories(b, **filters)}

    assert listed() == {heron, owl, otter}
    assert listed(tags=["birds"]) == {heron, owl}
    assert listed(tags=["mammals", "birds"]) == {heron, owl, otter}  # any of them
    assert listed(tags="water") == {heron, otter}                    # one tag as a string
    assert listed(contains="FISH") == {heron, otter}                 # ignoring case
    assert listed(text_prefix="owls") == {owl}
    assert listed(tags=["water"], contains="river") == {otter}
    assert listed(start="2023-01-01T00:00:00Z") == {heron, otter}
    assert listed(start=datetime(2023, 1, 1, tzinfo=timezone.utc), end="2023-12-31T00:00:00Z") == {otter}
    kinds = {x.fact_type for x in client.iter_memories(b)}
    assert listed(fact_types=sorted(kinds)) == {heron, owl, otter}
    assert listed(fact_types=["no-such-kind"]) == set()


def test_get_update_delete(client):
    b = bank()
    stored = client.retain("The ferry leaves at nine.", b, tags=["travel"], metadata={"by": "ann"},
                           occurred_at="2024-05-01T10:00:00Z")

    detail = client.get_memory(b, stored.memory_id)
    assert isinstance(detail, MemoryDetail)
    assert detail.memory.memory_id == stored.memory_id
    assert detail.memory.text == "The ferry leaves at nine."
    assert detail.memory.tags == ["travel"] and detail.memory.metadata == {"by": "ann"}
    assert detail.memory.occurred_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert [c.memory_id for c in detail.chunks] == [stored.memory_id]
    assert [(h.kind, h.memory_id) for h in detail.history] == [("created", stored.memory_id)]
    assert isinstance(detail.history[0], MemoryChange) and detail.history[0].at is not None

    updated = client.update_memory(b, stored.memory_id, tags=["travel", "boats"], metadata={"by": "bo", "n": 2})
    assert isinstance(updated, Memory)
    assert sorted(updated.tags) == ["boats", "travel"] and updated.metadata == {"by": "bo", "n": 2}
    only_tags = client.update_memory(b, stored.memory_id, tags=["sea"])
    assert only_tags.tags == ["sea"] and only_tags.metadata == {"by": "bo", "n": 2}
    assert [x.memory_id for x in client.iter_memories(b, tags=["sea"])] == [stored.memory_id]
    assert [h.kind for h in client.get_memory(b, stored.memory_id).history] == ["created", "updated", "updated"]
    # Nothing to change is the memory as it is (no change logged); a nested value is refused.
    assert client.update_memory(b, stored.memory_id).tags == ["sea"]
    with pytest.raises(BadRequestError):
        client.update_memory(b, stored.memory_id, metadata={"nested": {"a": 1}})

    gone = client.delete_memory(b, stored.memory_id)
    assert isinstance(gone, DeleteMemoryResult)
    assert gone.memory_id == stored.memory_id and gone.forgotten is True
    with pytest.raises(NotFoundError) as raised:
        client.get_memory(b, stored.memory_id)
    assert raised.value.status == 404 and stored.memory_id in raised.value.detail
    with pytest.raises(NotFoundError):
        client.delete_memory(b, stored.memory_id)
    with pytest.raises(NotFoundError):
        client.update_memory(b, stored.memory_id, tags=["x"])
    assert client.list_memories(b).memories == []
    with pytest.raises(ValueError):
        client.get_memory(b, "")


def test_changes_feed_with_tombstone(client):
    b = bank()
    kept = client.retain("The lighthouse keeper feeds the cat.", b).memory_id
    dropped = client.retain("The lighthouse lamp was replaced.", b).memory_id
    client.update_memory(b, kept, tags=["cats"])
    client.delete_memory(b, dropped)

    feed = client.changes(b)
    assert isinstance(feed, ChangesPage)
    assert [(c.kind, c.memory_id) for c in feed.changes] == [
        ("created", kept), ("created", dropped), ("updated", kept), ("forgotten", dropped)]
    assert feed.has_more is False and feed.next_cursor == feed.changes[-1].cursor
    by_id = {c.memory_id: c for c in feed.changes}
    assert by_id[kept].memory is not None and by_id[kept].memory.tags == ["cats"]
    # A forgotten memory's entries are tombstones: no memory any more.
    assert all(c.memory is None for c in feed.changes if c.memory_id == dropped)

    # Paging with since/limit.
    first = client.changes(b, limit=2)
    assert len(first.changes) == 2 and first.has_more is True
    rest = client.changes(b, since=first.next_cursor, limit=10)
    assert [c.cursor for c in first.changes + rest.changes] == [c.cursor for c in feed.changes]
    # Nothing new: an empty page, the cursor unchanged.
    idle = client.changes(b, since=feed.next_cursor)
    assert idle.changes == [] and idle.has_more is False and idle.next_cursor == feed.next_cursor

    client.retain("The lighthouse was painted white.", b)
    later = client.changes(b, since=feed.next_cursor)
    assert [c.kind for c in later.changes] == ["created"]


ENTITY_NOTES = ["Caroline: I met Melanie at the Pride Parade in Boston.",
                "Melanie: Caroline's painting hangs at Acme University now.",
                "Caroline: the weather was grey all week."]


def test_entities_ranked_and_filtered(client):
    b = bank()
    for note in ENTITY_NOTES:
        client.retain(note, b)

    found = client.entities(b)
    assert all(isinstance(e, Entity) for e in found)
    top = found[0]
    assert (top.key, top.name, top.kind, top.memories, top.mentions) == ("caroline", "Caroline", "person", 3, 3)
    assert isinstance(top.last_seen, datetime) and top.last_seen.tzinfo is not None
    assert [e.memories for e in found] == sorted((e.memories for e in found), reverse=True)
    assert {"melanie", "acme university"} <= {e.key for e in found}

    assert [e.key for e in client.entities(b, prefix="mel")] == ["melanie"]
    organizations = client.entities(b, kind="organization")
    assert [(e.key, e.name, e.kind) for e in organizations] == [
        ("acme university", "Acme University", "organization")]
    assert [e.key for e in client.entities(b, limit=1)] == ["caroline"]
    assert client.entities(bank()) == []

    with pytest.raises(BadRequestError) as raised:
        client.entities(b, kind="planet")
    assert raised.value.status == 400 and "kind" in raised.value.detail
    with pytest.raises(BadRequestError):
        client.entities(b, limit=0)


def test_export_import_round_trip_with_a_bad_line(client):
    source, target = bank(), bank()
    client.retain("Lanterns hang in the orchard.", source, tags=["garden"], metadata={"n": 1},
                  occurred_at="2024-09-01T20:00:00Z")
    client.retain("Apples fall in October.", source, tags=["garden"])

    lines = list(client.export_bank(source))
    assert all(isinstance(line, str) and "\n" not in line for line in lines)
    header = json.loads(lines[0])
    assert header["_ama_version"] == 1 and header["bank_id"] == source and header["memory_count"] == 2
    records = [json.loads(line) for line in lines[1:]]
    assert sorted(r["text"] for r in records) == ["Apples fall in October.", "Lanterns hang in the orchard."]
    assert all("embedding" not in r for r in records)
    assert all("embedding" in json.loads(line) for line in list(client.export_bank(source, include_embeddings=True))[1:])

    # A bad line in the middle: the header is line 1, so it is line 3.
    broken = [lines[0], lines[1], "{not json", lines[2]]
    result = client.import_bank(target, broken)
    assert isinstance(result, ImportResult)
    assert (result.imported, result.skipped, result.errors) == (2, 0, 1)
    assert len(result.rejected) == 1 and isinstance(result.rejected[0], RejectedLine)
    assert result.rejected[0].line == 3 and result.rejected[0].reason

    copied = {x.text: x for x in client.iter_memories(target)}
    originals = {x.text: x for x in client.iter_memories(source)}
    assert set(copied) == set(originals)
    lantern = copied["Lanterns hang in the orchard."]
    assert lantern.bank_id == target and lantern.tags == ["garden"] and lantern.metadata == {"n": 1}
    assert lantern.occurred_at == datetime(2024, 9, 1, 20, 0, tzinfo=timezone.utc)
    assert client.recall("lanterns orchard", bank_id=target).hits[0].text == "Lanterns hang in the orchard."

    # Again, straight from the export stream, as text and as bytes: the ids exist now.
    again = client.import_bank(target, client.export_bank(source))
    assert (again.imported, again.skipped, again.errors, again.rejected) == (0, 2, 0, [])
    text = "\n".join(lines) + "\n"
    assert client.import_bank(target, text, on_conflict="overwrite").imported == 2
    assert client.import_bank(target, text.encode()).skipped == 2
    assert len(list(client.iter_memories(target))) == 2


def test_bank_summaries_and_banks(client):
    b = bank()
    client.retain("Summary probe one.", b)
    client.retain("Summary probe two.", b)
    summaries = {s.bank_id: s for s in client.bank_summaries()}
    assert isinstance(summaries[b], BankSummary)
    assert summaries[b].memory_count == 2
    assert summaries[b].last_retained_at is not None
    assert abs((datetime.now(timezone.utc) - summaries[b].last_retained_at).total_seconds()) < 300
    assert b in client.banks()
    assert all(isinstance(name, str) for name in client.banks())


def test_banks_calls_the_non_admin_route(dev_server):
    seen = []
    with Astrocyte(dev_server.base_url) as brain:
        brain._http.event_hooks["request"].append(lambda request: seen.append(request.url.path))
        brain.banks()
        brain.bank_summaries()
    assert seen == ["/v1/banks", "/v1/banks"]


def test_banks_without_admin_token_but_export_needs_it(guarded_server):
    """On a server with an admin token, banks() needs none; export and import do."""
    b, copy = bank(), bank()
    with Astrocyte(guarded_server.base_url, principal="agent:writer") as writer:
        stored = writer.retain("Guarded browse probe.", b)
        assert b in writer.banks()
        assert {s.bank_id: s.memory_count for s in writer.bank_summaries()}[b] == 1
        assert [x.memory_id for x in writer.list_memories(b).memories] == [stored.memory_id]
        with pytest.raises((UnauthenticatedError, ForbiddenError)) as raised:
            list(writer.export_bank(b))
        assert "X-Admin-Token" in raised.value.detail
        with pytest.raises((UnauthenticatedError, ForbiddenError)):
            writer.import_bank(copy, "")
    with Astrocyte(guarded_server.base_url, principal="agent:reader") as reader:
        assert b in reader.banks()
        with pytest.raises(ForbiddenError):
            reader.delete_memory(b, stored.memory_id)
    with Astrocyte(guarded_server.base_url, principal="agent:writer", admin_token=ADMIN_TOKEN) as admin:
        lines = list(admin.export_bank(b))
        assert len(lines) == 2
        assert admin.import_bank(copy, lines).imported == 1
        assert [x.text for x in admin.iter_memories(copy)] == ["Guarded browse probe."]


def test_export_retries_a_503_then_streams():
    """The streamed export takes the same retries as the other calls."""
    answers = [httpx.Response(503, json={"detail": "store unavailable"}, headers={"Retry-After": "0"}),
               httpx.Response(200, content=b'{"_ama_version":1}\n{"id":"a","text":"x"}\n',
                              headers={"content-type": "application/x-ndjson"})]
    calls = []

    def handler(request):
        calls.append(str(request.url))
        return answers[len(calls) - 1]

    retries = []
    with Astrocyte("http://astrocyte.test", on_retry=lambda n, delay, error: retries.append(error.status)) as brain:
        brain._http.close()
        brain._http = httpx.Client(base_url=brain.base_url, headers=brain._headers,
                                   transport=httpx.MockTransport(handler))
        assert list(brain.export_bank("notes", include_embeddings=True)) == ['{"_ama_version":1}',
                                                                           '{"id":"a","text":"x"}']
    assert retries == [503]
    assert calls == ["http://astrocyte.test/v1/banks/notes/export?include_embeddings=true"] * 2


def test_browse_async(dev_server):
    source, target = bank(), bank()

    async def scenario():
        async with AsyncAstrocyte(dev_server.base_url, principal="agent:async-browser") as brain:
            kites = ["Red kites circle the valley.", "A box kite needs a steady wind.",
                     "Kite strings tangle in the oak.", "The dragon kite has a long tail.",
                     "Kites were flown in China first."]
            ids = [(await brain.retain(text, source, tags=["kites"])).memory_id for text in kites]
            assert len(set(ids)) == 5
            page = await brain.list_memories(source, limit=2)
            assert [x.memory_id for x in page.memories] == ids[::-1][:2] and page.next_cursor
            assert [x.memory_id async for x in brain.iter_memories(source, limit=2)] == ids[::-1]
            assert [x.memory_id async for x in brain.iter_memories(source, contains="DRAGON")] == [ids[3]]

            detail = await brain.get_memory(source, ids[0])
            assert detail.memory.text == "Red kites circle the valley."
            updated = await brain.update_memory(source, ids[0], metadata={"flown": True})
            assert updated.metadata == {"flown": True} and updated.tags == ["kites"]
            assert (await brain.delete_memory(source, ids[1])).forgotten
            with pytest.raises(NotFoundError):
                await brain.get_memory(source, ids[1])

            feed = await brain.changes(source)
            assert [c.kind for c in feed.changes][-2:] == ["updated", "forgotten"]
            assert feed.changes[-1].memory is None

            people = bank()
            for note in ENTITY_NOTES:
                await brain.retain(note, people)
            found = await brain.entities(people)
            assert (found[0].key, found[0].kind, found[0].memories) == ("caroline", "person", 3)
            assert [e.key for e in await brain.entities(people, prefix="mel")] == ["melanie"]
            assert [e.key for e in await brain.entities(people, kind="organization")] == ["acme university"]
            with pytest.raises(BadRequestError) as raised:
                await brain.entities(people, kind="planet")
            assert raised.value.status == 400

            summaries = {s.bank_id: s.memory_count for s in await brain.bank_summaries()}
            assert summaries[source] == 4
            assert source in await brain.banks()

            lines = [line async for line in brain.export_bank(source)]
            assert len(lines) == 5 and json.loads(lines[0])["memory_count"] == 4
            result = await brain.import_bank(target, brain.export_bank(source))  # an async iterable
            assert (result.imported, result.errors) == (4, 0)
            bad = await brain.import_bank(target, lines[:1] + ["[1, 2]"])
            assert bad.errors == 1 and [r.line for r in bad.rejected] == [2]
            assert len([x async for x in brain.iter_memories(target)]) == 4

    asyncio.run(scenario())
