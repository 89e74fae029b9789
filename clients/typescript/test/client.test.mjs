// Every method of the client against a real dev-mode server.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Astrocyte, BadRequestError, ConflictError, NotFoundError } from "../dist/index.js";
import { bank, startServer } from "./server.mjs";

let server;
let brain;
before(async () => {
  server = await startServer();
  brain = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:ts" });
});
after(async () => { await server?.stop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("health", async () => {
  const health = await brain.health();
  assert.equal(health.healthy, true);
  assert.match(health.message, /sqlite/);
  assert.ok(typeof health.latency_ms === "number" && health.latency_ms >= 0);
  assert.ok(!Number.isNaN(Date.parse(health.last_check_at)));
});

test("retain then recall: typed hits with tags, metadata and dates; duplicates are deduplicated", async () => {
  const b = bank();
  const stored = await brain.retain("The heron nests by the north pond.", b, {
    tags: ["birds"], metadata: { owner: "ann", age: 3 }, occurredAt: new Date(Date.UTC(2024, 4, 1, 10)),
  });
  assert.equal(stored.stored, true);
  assert.ok(stored.memory_id);
  const again = await brain.retain("The heron nests by the north pond.", b);
  assert.equal(again.deduplicated, true);
  assert.equal(again.memory_id, stored.memory_id);
  await brain.retain("Badgers dig setts in the woods.", b, { tags: ["mammals"] });

  const found = await brain.recall("heron pond", b, { tags: ["birds"] });
  assert.deepEqual(found.hits.map((h) => h.text), ["The heron nests by the north pond."]);
  const [hit] = found.hits;
  assert.equal(hit.memory_id, stored.memory_id);
  assert.equal(hit.bank_id, b);
  assert.deepEqual(hit.tags, ["birds"]);
  assert.deepEqual(hit.metadata, { owner: "ann", age: 3 });
  assert.equal(Date.parse(hit.occurred_at), Date.UTC(2024, 4, 1, 10));
  assert.ok(Math.abs(Date.now() - Date.parse(hit.retained_at)) < 300_000);
  assert.equal(found.total_available, 1);
  assert.ok(found.trace?.strategies_used.includes("keyword"));
});

test("recall across banks, with maxResults, timeRange and maxTokens", async () => {
  const a = bank(), b = bank();
  await brain.retain("Otters float on their backs in the bay.", a, { occurredAt: "2020-06-01T00:00:00Z" });
  await brain.retain("Otters hold hands while they sleep.", b, { occurredAt: "2023-06-01" });
  await brain.retain("Otters juggle pebbles for fun.", b, { occurredAt: new Date(Date.UTC(2023, 6, 1)) });

  const both = await brain.recall("otters", { banks: [a, b] });
  assert.deepEqual(new Set(both.hits.map((h) => h.bank_id)), new Set([a, b]));
  assert.equal(both.hits.length, 3);
  assert.equal((await brain.recall("otters", b, { maxResults: 1 })).hits.length, 1);
  const in2023 = await brain.recall("otters", { bankId: b, timeRange: [new Date(Date.UTC(2023, 5, 15)), "2023-12-31"] });
  assert.deepEqual(in2023.hits.map((h) => h.text), ["Otters juggle pebbles for fun."]);
  assert.ok((await brain.recall("otters", b, { maxTokens: 1 })).hits.length <= 1);
  await assert.rejects(brain.recall("otters"), TypeError);
});

test("reflect with and without sources", async () => {
  const b = bank();
  const kept = await brain.retain("Miso is the name of the cat.", b);
  const answer = await brain.reflect("what is the cat called", b);
  assert.match(answer.answer, /Miso/);
  assert.deepEqual(answer.sources?.map((s) => s.memory_id), [kept.memory_id]);
  assert.ok(answer.confidence > 0);
  const bare = await brain.reflect("what is the cat called", b, { includeSources: false, maxTokens: 200 });
  assert.equal(bare.sources, null);
  assert.match(bare.answer, /Miso/);
});

test("history sees only what was known then", async () => {
  const b = bank();
  await brain.retain("The bridge was painted red.", b);
  await sleep(50);
  const then = new Date();
  await sleep(50);
  await brain.retain("The bridge was repainted blue.", b);
  const past = await brain.history("bridge painted", b, then);
  assert.deepEqual(past.hits.map((h) => h.text), ["The bridge was painted red."]);
  assert.equal(past.bank_id, b);
  assert.equal(Date.parse(past.as_of), then.getTime());
  const now = await brain.history("bridge painted", b, new Date(Date.now() + 1000), { maxResults: 5 });
  assert.deepEqual(now.hits.map((h) => h.text).sort(), ["The bridge was painted red.", "The bridge was repainted blue."]);
});

test("forget by id, tag, date and scope", async () => {
  const b = bank();
  const first = await brain.retain("Gulls steal chips on the pier.", b, { tags: ["birds"] });
  await brain.retain("Crows remember faces for years.", b, { tags: ["birds", "smart"] });
  await brain.retain("An old note from the year 2001 about kites.", b, { occurredAt: "2001-01-01" });
  await brain.retain("Moles tunnel under the lawn.", b);
  assert.equal((await brain.forget(b, { memoryIds: [first.memory_id] })).deleted_count, 1);
  const left = await brain.recall("gulls chips", b);
  assert.ok(left.hits.every((h) => h.memory_id !== first.memory_id));
  assert.equal((await brain.forget(b, { tags: ["smart"] })).deleted_count, 1);
  assert.equal((await brain.forget(b, { beforeDate: "2010-01-01" })).deleted_count, 1);
  const all = await brain.forget(b, { scope: "all" });
  assert.equal(all.deleted_count, 1);
  assert.equal(all.archived_count, 0);
  assert.deepEqual((await brain.recall("moles", b)).hits, []);
  await assert.rejects(brain.forget(b), (error) => error instanceof BadRequestError && /memory_ids/.test(error.detail));
});

test("banks lists the tenant's banks", async () => {
  const b = bank();
  await brain.retain("Bank listing probe.", b);
  assert.ok((await brain.banks()).includes(b));
});

test("async retain: a job, idempotency, waitForJob, job", async () => {
  const b = bank();
  const key = "idem-" + bank();
  const queued = await brain.retain("Swifts sleep while flying.", b, { async: true, idempotencyKey: key, contentType: "text" });
  assert.ok(queued.job_id);
  assert.equal(queued.job_state, "queued");
  assert.equal(queued.stored, false);
  const repeat = await brain.retain("Swifts sleep while flying.", b, { async: true, idempotencyKey: key });
  assert.equal(repeat.job_id, queued.job_id);
  // The key names that request: reusing it for other content is refused, not swallowed.
  await assert.rejects(
    brain.retain("Swifts sleep while flying (again).", b, { async: true, idempotencyKey: key }),
    (error) => error instanceof ConflictError && error.status === 409);
  const job = await brain.waitForJob(queued.job_id, { timeoutMs: 30_000 });
  assert.equal(job.state, "done");
  assert.equal((await brain.job(queued.job_id)).job_id, queued.job_id);
  assert.deepEqual((await brain.recall("swifts", b)).hits.map((h) => h.text), ["Swifts sleep while flying."]);
  await assert.rejects(brain.job("no-such-job"), (error) =>
    error instanceof NotFoundError && error.status === 404 && error.detail.includes("no-such-job"));
});

test("concurrent calls on one client", async () => {
  const b = bank();
  const facts = ["Kingfishers dive for minnows.", "A kingfisher's nest is a tunnel in a bank.",
    "Kingfishers flash blue over the river.", "Young kingfishers fledge in June."];
  const results = await Promise.all(facts.map((f) => brain.retain(f, b, { tags: ["kf"], contentType: "conversation" })));
  assert.ok(results.every((r) => r.stored));
  assert.equal(new Set(results.map((r) => r.memory_id)).size, facts.length);
  assert.equal((await brain.forget(b, { tags: ["kf"] })).deleted_count, facts.length);
});

test("threadId lends keyword context across a conversation's turns", async () => {
  const threaded = bank(), alone = bank();
  for (const [b, threadId] of [[threaded, "trip-1"], [alone, undefined]]) {
    await brain.retain("Where did you park the zeppelin?", b, { threadId });
    await brain.retain("Beside the lighthouse.", b, { threadId });
  }
  assert.equal((await brain.recall("zeppelin", threaded)).trace?.strategy_candidate_counts.keyword, 2);
  assert.equal((await brain.recall("zeppelin", alone)).trace?.strategy_candidate_counts.keyword, 1);
});
