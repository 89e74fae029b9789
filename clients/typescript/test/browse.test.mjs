// The browse/manage routes (list, get, update, delete, changes, entities, export, import, bank summaries)
// against real servers: dev mode, and dev mode with an admin token and grants.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Astrocyte, AstrocyteConnectionError, BadRequestError, ForbiddenError, NotFoundError, UnauthenticatedError } from "../dist/index.js";
import { bank, startServer } from "./server.mjs";

const ADMIN_TOKEN = "typescript-client-admin-token";

async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

describe("browse and manage a bank (dev mode)", () => {
  let server;
  let brain;
  before(async () => {
    server = await startServer();
    brain = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:ts-browser" });
  });
  after(async () => { await server?.stop(); });

  /** `n` memories in `b`, their ids oldest first. */
  async function fill(b, n) {
    const ids = [];
    for (let i = 0; i < n; i++) ids.push((await brain.retain(`Numbered note ${String(i).padStart(2, "0")} about lanterns.`, b)).memory_id);
    assert.equal(new Set(ids).size, n);
    return ids;
  }

  test("listMemories pages newest first (or by id) and iterMemories follows the cursors", async () => {
    const b = bank("m");
    const ids = await fill(b, 7);
    const newest = [...ids].reverse();

    const first = await brain.listMemories(b, { limit: 3 });
    assert.deepEqual(first.memories.map((m) => m.memory_id), newest.slice(0, 3));
    assert.ok(first.next_cursor);
    const [memory] = first.memories;
    assert.equal(memory.bank_id, b);
    assert.equal(memory.text, "Numbered note 06 about lanterns.");
    assert.deepEqual(memory.tags, []);
    assert.deepEqual(memory.metadata, {});
    assert.equal(memory.chunk_count, 1);
    assert.ok(memory.fact_type);
    assert.ok(!Number.isNaN(Date.parse(memory.retained_at)));

    const second = await brain.listMemories(b, { limit: 3, cursor: first.next_cursor });
    const third = await brain.listMemories(b, { limit: 3, cursor: second.next_cursor });
    assert.deepEqual([...second.memories, ...third.memories].map((m) => m.memory_id), newest.slice(3));
    assert.equal(third.next_cursor, null);

    assert.deepEqual((await collect(brain.iterMemories(b, { limit: 2 }))).map((m) => m.memory_id), newest);
    assert.deepEqual((await collect(brain.iterMemories(b, { order: "id", limit: 4 }))).map((m) => m.memory_id), [...ids].sort());
    assert.deepEqual(await collect(brain.iterMemories(bank("m"))), []);

    await assert.rejects(brain.listMemories(b, { order: "sideways" }), (error) =>
      error instanceof BadRequestError && /order/.test(error.detail));
    await assert.rejects(brain.listMemories(b, { limit: 0 }), BadRequestError);
    await assert.rejects(brain.listMemories(""), TypeError);
  });

  test("listMemories filters: tags, fact types, time, text prefix, contains", async () => {
    const b = bank("m");
    const heron = (await brain.retain("Herons fish at dawn in the reeds.", b, { tags: ["birds", "water"], occurredAt: "2024-03-01T06:00:00Z" })).memory_id;
    const owl = (await brain.retain("Owls hunt at night over the meadow.", b, { tags: ["birds"], occurredAt: new Date(Date.UTC(2022, 0, 1)) })).memory_id;
    const otter = (await brain.retain("Otters fish in the river.", b, { tags: ["mammals", "water"], occurredAt: "2023-07-01T12:00:00Z" })).memory_id;
    const listed = async (options) => new Set((await collect(brain.iterMemories(b, options))).map((m) => m.memory_id));

    assert.deepEqual(await listed({}), new Set([heron, owl, otter]));
    assert.deepEqual(await listed({ tags: ["birds"] }), new Set([heron, owl]));
    assert.deepEqual(await listed({ tags: ["mammals", "birds"] }), new Set([heron, owl, otter]));
    assert.deepEqual(await listed({ tags: "water" }), new Set([heron, otter]));
    assert.deepEqual(await listed({ contains: "FISH" }), new Set([heron, otter]));
    assert.deepEqual(await listed({ textPrefix: "owls" }), new Set([owl]));
    assert.deepEqual(await listed({ tags: ["water"], contains: "river" }), new Set([otter]));
    assert.deepEqual(await listed({ start: "2023-01-01T00:00:00Z" }), new Set([heron, otter]));
    assert.deepEqual(await listed({ start: new Date(Date.UTC(2023, 0, 1)), end: "2023-12-31T00:00:00Z" }), new Set([otter]));
    const kinds = [...new Set((await collect(brain.iterMemories(b))).map((m) => m.fact_type))];
    assert.deepEqual(await listed({ factTypes: kinds }), new Set([heron, owl, otter]));
    assert.deepEqual(await listed({ factTypes: ["no-such-kind"] }), new Set());
  });

  test("getMemory, updateMemory, deleteMemory (404 afterwards)", async () => {
    const b = bank("m");
    const stored = await brain.retain("The ferry leaves at nine.", b, { tags: ["travel"], metadata: { by: "ann" }, occurredAt: "2024-05-01T10:00:00Z" });

    const detail = await brain.getMemory(b, stored.memory_id);
    assert.equal(detail.memory.memory_id, stored.memory_id);
    assert.equal(detail.memory.text, "The ferry leaves at nine.");
    assert.deepEqual(detail.memory.tags, ["travel"]);
    assert.deepEqual(detail.memory.metadata, { by: "ann" });
    assert.equal(Date.parse(detail.memory.occurred_at), Date.UTC(2024, 4, 1, 10));
    assert.deepEqual(detail.chunks.map((c) => c.memory_id), [stored.memory_id]);
    assert.deepEqual(detail.history.map((h) => [h.kind, h.memory_id]), [["created", stored.memory_id]]);

    const updated = await brain.updateMemory(b, stored.memory_id, { tags: ["travel", "boats"], metadata: { by: "bo", n: 2 } });
    assert.deepEqual([...updated.tags].sort(), ["boats", "travel"]);
    assert.deepEqual(updated.metadata, { by: "bo", n: 2 });
    const onlyTags = await brain.updateMemory(b, stored.memory_id, { tags: ["sea"] });
    assert.deepEqual(onlyTags.tags, ["sea"]);
    assert.deepEqual(onlyTags.metadata, { by: "bo", n: 2 });
    assert.deepEqual((await brain.getMemory(b, stored.memory_id)).history.map((h) => h.kind), ["created", "updated", "updated"]);
    // Nothing to change is the memory as it is (no change logged); a nested value is refused.
    assert.deepEqual((await brain.updateMemory(b, stored.memory_id, {})).tags, ["sea"]);
    await assert.rejects(brain.updateMemory(b, stored.memory_id, { metadata: { nested: { a: 1 } } }), BadRequestError);

    const gone = await brain.deleteMemory(b, stored.memory_id);
    assert.deepEqual(gone, { memory_id: stored.memory_id, forgotten: true });
    await assert.rejects(brain.getMemory(b, stored.memory_id), (error) =>
      error instanceof NotFoundError && error.status === 404 && error.detail.includes(stored.memory_id));
    await assert.rejects(brain.deleteMemory(b, stored.memory_id), NotFoundError);
    await assert.rejects(brain.updateMemory(b, stored.memory_id, { tags: ["x"] }), NotFoundError);
    assert.deepEqual((await brain.listMemories(b)).memories, []);
  });

  test("changes: created, updated and a forgotten tombstone, paged with since and limit", async () => {
    const b = bank("m");
    const kept = (await brain.retain("The lighthouse keeper feeds the cat.", b)).memory_id;
    const dropped = (await brain.retain("The lighthouse lamp was replaced.", b)).memory_id;
    await brain.updateMemory(b, kept, { tags: ["cats"] });
    await brain.deleteMemory(b, dropped);

    const feed = await brain.changes(b);
    assert.deepEqual(feed.changes.map((c) => [c.kind, c.memory_id]),
      [["created", kept], ["created", dropped], ["updated", kept], ["forgotten", dropped]]);
    assert.equal(feed.has_more, false);
    assert.equal(feed.next_cursor, feed.changes.at(-1).cursor);
    assert.deepEqual(feed.changes.find((c) => c.memory_id === kept).memory.tags, ["cats"]);
    assert.ok(feed.changes.filter((c) => c.memory_id === dropped).every((c) => c.memory === null));

    const first = await brain.changes(b, { limit: 2 });
    assert.equal(first.changes.length, 2);
    assert.equal(first.has_more, true);
    const rest = await brain.changes(b, { since: first.next_cursor, limit: 10 });
    assert.deepEqual([...first.changes, ...rest.changes].map((c) => c.cursor), feed.changes.map((c) => c.cursor));
    const idle = await brain.changes(b, { since: feed.next_cursor });
    assert.deepEqual(idle.changes, []);
    assert.equal(idle.next_cursor, feed.next_cursor);

    await brain.retain("The lighthouse was painted white.", b);
    assert.deepEqual((await brain.changes(b, { since: feed.next_cursor })).changes.map((c) => c.kind), ["created"]);
  });

  test("entities: most memories first, filtered by prefix and kind; a bad kind is a 400", async () => {
    const b = bank("m");
    for (const note of ["Caroline: I met Melanie at the Pride Parade in Boston.",
      "Melanie: Caroline's painting hangs at Acme University now.",
      "Caroline: the weather was grey all week."]) await brain.retain(note, b);

    const found = await brain.entities(b);
    const [top] = found;
    assert.deepEqual([top.key, top.name, top.kind, top.memories, top.mentions], ["caroline", "Caroline", "person", 3, 3]);
    assert.ok(!Number.isNaN(Date.parse(top.last_seen)));
    assert.deepEqual(found.map((e) => e.memories), found.map((e) => e.memories).sort((x, y) => y - x));
    assert.ok(["melanie", "acme university"].every((key) => found.some((e) => e.key === key)));

    assert.deepEqual((await brain.entities(b, { prefix: "mel" })).map((e) => e.key), ["melanie"]);
    assert.deepEqual((await brain.entities(b, { kind: "organization" })).map((e) => [e.key, e.name, e.kind]),
      [["acme university", "Acme University", "organization"]]);
    assert.deepEqual((await brain.entities(b, { limit: 1 })).map((e) => e.key), ["caroline"]);
    assert.deepEqual(await brain.entities(bank("m")), []);

    await assert.rejects(brain.entities(b, { kind: "planet" }), (error) =>
      error instanceof BadRequestError && error.status === 400 && /kind/.test(error.detail));
    await assert.rejects(brain.entities(b, { limit: 0 }), BadRequestError);
    await assert.rejects(brain.entities(""), TypeError);
  });

  test("exportBank streams JSON Lines; importBank into another bank reports a bad line by number", async () => {
    const source = bank("m"), target = bank("m");
    await brain.retain("Lanterns hang in the orchard.", source, { tags: ["garden"], metadata: { n: 1 }, occurredAt: "2024-09-01T20:00:00Z" });
    await brain.retain("Apples fall in October.", source, { tags: ["garden"] });

    const lines = await collect(brain.exportBank(source));
    assert.ok(lines.every((line) => typeof line === "string" && !line.includes("\n")));
    const header = JSON.parse(lines[0]);
    assert.equal(header._ama_version, 1);
    assert.equal(header.bank_id, source);
    assert.equal(header.memory_count, 2);
    const records = lines.slice(1).map((line) => JSON.parse(line));
    assert.deepEqual(records.map((r) => r.text).sort(), ["Apples fall in October.", "Lanterns hang in the orchard."]);
    assert.ok(records.every((r) => !("embedding" in r)));
    const withVectors = await collect(brain.exportBank(source, { includeEmbeddings: true }));
    assert.ok(withVectors.slice(1).every((line) => Array.isArray(JSON.parse(line).embedding)));

    // A bad line in the middle: the header is line 1, so it is line 3.
    const result = await brain.importBank(target, [lines[0], lines[1], "{not json", lines[2]]);
    assert.equal(result.imported, 2);
    assert.equal(result.skipped, 0);
    assert.equal(result.errors, 1);
    assert.equal(result.rejected?.length, 1);
    assert.equal(result.rejected[0].line, 3);
    assert.ok(result.rejected[0].reason);

    const copied = new Map((await collect(brain.iterMemories(target))).map((m) => [m.text, m]));
    assert.deepEqual([...copied.keys()].sort(), records.map((r) => r.text).sort());
    const lantern = copied.get("Lanterns hang in the orchard.");
    assert.equal(lantern.bank_id, target);
    assert.deepEqual(lantern.tags, ["garden"]);
    assert.deepEqual(lantern.metadata, { n: 1 });
    assert.equal(Date.parse(lantern.occurred_at), Date.UTC(2024, 8, 1, 20));
    assert.equal((await brain.recall("lanterns orchard", target)).hits[0].text, "Lanterns hang in the orchard.");

    // Straight from the export stream (an async iterable), as text and as bytes: the ids exist now.
    const again = await brain.importBank(target, brain.exportBank(source));
    assert.deepEqual([again.imported, again.skipped, again.errors, again.rejected], [0, 2, 0, []]);
    const text = lines.join("\n") + "\n";
    assert.equal((await brain.importBank(target, text, { onConflict: "overwrite" })).imported, 2);
    assert.equal((await brain.importBank(target, new TextEncoder().encode(text))).skipped, 2);
    assert.equal((await collect(brain.iterMemories(target))).length, 2);
  });

  test("bankSummaries and banks use GET /v1/banks", async () => {
    const b = bank("m");
    await brain.retain("Summary probe one.", b);
    await brain.retain("Summary probe two.", b);
    const summary = (await brain.bankSummaries()).find((s) => s.bank_id === b);
    assert.equal(summary.memory_count, 2);
    assert.ok(Math.abs(Date.now() - Date.parse(summary.last_retained_at)) < 300_000);
    assert.ok((await brain.banks()).includes(b));

    const seen = [];
    const spy = new Astrocyte({
      baseUrl: server.baseUrl,
      fetch: (url, init) => { seen.push(new URL(url).pathname); return fetch(url, init); },
    });
    await spy.banks();
    await spy.bankSummaries();
    assert.deepEqual(seen, ["/v1/banks", "/v1/banks"]);
  });
});

describe("browse on a server with an admin token and grants", () => {
  let server;
  before(async () => {
    server = await startServer({
      ASTROCYTE_ACCESS_CONTROL_ENABLED: "true",
      ASTROCYTE_ACCESS_CONTROL_DEFAULT_POLICY: "deny",
      ASTROCYTE_ACCESS_GRANTS: JSON.stringify([
        { bank_id: "*", principal: "agent:writer", permissions: ["*"] },
        { bank_id: "*", principal: "agent:reader", permissions: ["read"] },
      ]),
      ASTROCYTE_ADMIN_TOKEN: ADMIN_TOKEN,
    });
  });
  after(async () => { await server?.stop(); });

  test("banks needs no admin token; export and import do", async () => {
    const b = bank("g"), copy = bank("g");
    const writer = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:writer" });
    const stored = await writer.retain("Guarded browse probe.", b);
    assert.ok((await writer.banks()).includes(b));
    assert.equal((await writer.bankSummaries()).find((s) => s.bank_id === b).memory_count, 1);
    assert.deepEqual((await writer.listMemories(b)).memories.map((m) => m.memory_id), [stored.memory_id]);
    await assert.rejects(collect(writer.exportBank(b)), (error) =>
      (error instanceof UnauthenticatedError || error instanceof ForbiddenError) && /X-Admin-Token/.test(error.detail));
    await assert.rejects(writer.importBank(copy, ""), (error) =>
      error instanceof UnauthenticatedError || error instanceof ForbiddenError);

    const reader = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:reader" });
    assert.ok((await reader.banks()).includes(b));
    await assert.rejects(reader.deleteMemory(b, stored.memory_id), ForbiddenError);

    const admin = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:writer", adminToken: ADMIN_TOKEN });
    const lines = await collect(admin.exportBank(b));
    assert.equal(lines.length, 2);
    assert.equal((await admin.importBank(copy, lines)).imported, 1);
    assert.deepEqual((await collect(admin.iterMemories(copy))).map((m) => m.text), ["Guarded browse probe."]);
  });
});

describe("exportBank without a server", () => {
  test("a 503 is retried, then the lines stream, split across chunks", async () => {
    const calls = [];
    const fake = async (url) => {
      calls.push(String(url));
      if (calls.length === 1) {
        return new Response(JSON.stringify({ detail: "store unavailable" }), { status: 503, headers: { "retry-after": "0" } });
      }
      const parts = ['{"_ama_version":1}\n{"id":"a",', '"text":"x"}\r\n', '{"id":"b","text":"y"}'];
      const body = new ReadableStream({
        start(controller) {
          for (const part of parts) controller.enqueue(new TextEncoder().encode(part));
          controller.close();
        },
      });
      return new Response(body, { status: 200, headers: { "content-type": "application/x-ndjson" } });
    };
    const retries = [];
    const brain = new Astrocyte({ baseUrl: "http://astrocyte.test", fetch: fake, onRetry: (n, ms, error) => retries.push(error.status) });
    assert.deepEqual(await collect(brain.exportBank("notes", { includeEmbeddings: true })),
      ['{"_ama_version":1}', '{"id":"a","text":"x"}', '{"id":"b","text":"y"}']);
    assert.deepEqual(retries, [503]);
    assert.deepEqual(calls, Array(2).fill("http://astrocyte.test/v1/banks/notes/export?include_embeddings=true"));
  });

  test("a stream cut off midway is a connection error", async () => {
    let pulls = 0;
    const fake = async () => new Response(new ReadableStream({
      pull(controller) {
        if (pulls++ === 0) controller.enqueue(new TextEncoder().encode('{"_ama_version":1}\n'));
        else controller.error(new Error("connection reset"));
      },
    }), { status: 200 });
    const brain = new Astrocyte({ baseUrl: "http://astrocyte.test", fetch: fake });
    const seen = [];
    await assert.rejects((async () => { for await (const line of brain.exportBank("notes")) seen.push(line); })(),
      (error) => error instanceof AstrocyteConnectionError && /connection reset/.test(error.message));
    assert.deepEqual(seen, ['{"_ama_version":1}']);
  });
});
