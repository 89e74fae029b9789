// Retries on 429 and 503 against the server's real rate limits, daily quotas and a provider outage.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Astrocyte, RateLimitedError, UnavailableError, parseRetryAfterHeader, retryDelayMs } from "../dist/index.js";
import { bank, startEmbeddingsStub, startServer } from "./server.mjs";

/** Retains into `b` without retrying until the server's 60-a-minute bucket is empty. */
async function drain(baseUrl, b) {
  const brain = new Astrocyte({ baseUrl, maxRetries: 0 });
  const started = Date.now();
  for (let i = 0; i < 200; i++) {
    try {
      await brain.retain(`Filler memory number ${i} for the rate limit.`, b);
    } catch (error) {
      assert.ok(error instanceof RateLimitedError, String(error));
      // A burst of 60, plus the one token a second that refilled meanwhile.
      const refilled = Math.floor((Date.now() - started) / 1000) + 1;
      assert.ok(i >= 60 && i <= 60 + refilled, `the bucket of 60 emptied after ${i} retains`);
      return error;
    }
  }
  assert.fail("no 429 after 200 retains with a limit of 60 a minute");
}

describe("rate limits and quotas (429)", () => {
  let server;
  before(async () => {
    server = await startServer({
      ASTROCYTE_RATE_LIMIT_RETAIN_PER_MINUTE: "60",
      ASTROCYTE_QUOTA_REFLECT_PER_DAY: "2",
    });
  });
  after(async () => { await server?.stop(); });

  test("a 429 carries retry_after_seconds and Retry-After and is thrown with maxRetries 0", async () => {
    const error = await drain(server.baseUrl, bank());
    assert.equal(error.status, 429);
    assert.ok(error.retryAfterSeconds > 0 && error.retryAfterSeconds <= 1.01, String(error.retryAfterSeconds));
    assert.equal(error.headers.get("retry-after"), "1");
    assert.match(error.detail, /Rate limited/);
  });

  test("the client waits out a 429 and succeeds", async () => {
    const b = bank();
    await drain(server.baseUrl, b);
    const retries = [];
    const brain = new Astrocyte({ baseUrl: server.baseUrl, maxRetries: 3,
      onRetry: (n, delayMs, error) => retries.push({ n, delayMs, status: error.status }) });
    const started = Date.now();
    const stored = await brain.retain("Stored after waiting for the bucket.", b);
    const elapsed = Date.now() - started;
    assert.equal(stored.stored, true);
    assert.ok(retries.length >= 1);
    assert.equal(retries[0].n, 1);
    assert.equal(retries[0].status, 429);
    assert.ok(retries[0].delayMs > 0 && retries[0].delayMs <= 1500);
    assert.ok(elapsed >= retries[0].delayMs * 0.9);
  });

  test("a daily quota is not slept through", async () => {
    const b = bank();
    const retries = [];
    const brain = new Astrocyte({ baseUrl: server.baseUrl, maxRetries: 5, onRetry: (...a) => retries.push(a) });
    await brain.retain("Quota probe memory about lanterns.", b);
    await brain.reflect("lanterns", b);
    await brain.reflect("lanterns", b);
    const started = Date.now();
    await assert.rejects(brain.reflect("lanterns", b), (error) => {
      assert.ok(error instanceof RateLimitedError);
      assert.match(error.detail, /daily quota of 2/);
      const now = new Date();
      const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
      assert.ok(Math.abs(error.retryAfterSeconds - (midnight - now.getTime()) / 1000) < 120);
      return true;
    });
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(retries, []);
  });
});

describe("provider outage (503)", () => {
  let server, stub;
  before(async () => {
    stub = await startEmbeddingsStub();
    server = await startServer({}, { embedderArgs: ["--embedder", "openai", "--embeddings-url", stub.url,
      "--embeddings-model", "stub", "--embeddings-dimension", "8"] });
  });
  after(async () => { await server?.stop(); await stub?.close(); });

  test("Retry-After is honoured, then attempts run out", async () => {
    stub.up = false;
    const once = new Astrocyte({ baseUrl: server.baseUrl, maxRetries: 0 });
    await assert.rejects(once.retain("Nothing can be embedded now.", bank()), (error) =>
      error instanceof UnavailableError && error.status === 503 && error.retryAfterSeconds === 5 &&
      error.detail === "Provider unavailable");
    const retries = [];
    const twice = new Astrocyte({ baseUrl: server.baseUrl, maxRetries: 1, onRetry: (n, d) => retries.push([n, d]) });
    const started = Date.now();
    await assert.rejects(twice.retain("Still nothing can be embedded.", bank()), UnavailableError);
    assert.deepEqual(retries.map(([n]) => n), [1]);
    assert.ok(retries[0][1] >= 5000 && retries[0][1] < 5500);
    assert.ok(Date.now() - started >= 5000);
  });

  test("recovery during the wait succeeds on the retry", async () => {
    stub.up = false;
    const b = bank();
    const brain = new Astrocyte({ baseUrl: server.baseUrl, maxRetries: 2, onRetry: (n, d, error) => {
      assert.equal(error.status, 503);
      stub.up = true;
    } });
    const stored = await brain.retain("Embedded once the provider came back.", b);
    assert.equal(stored.stored, true);
    assert.deepEqual((await brain.recall("provider came back", b)).hits.map((h) => h.text),
      ["Embedded once the provider came back."]);
    stub.up = false;
  });
});

test("the policy reads Retry-After as seconds or an HTTP date and backs off without one", () => {
  assert.equal(parseRetryAfterHeader("7"), 7);
  assert.equal(parseRetryAfterHeader(null), null);
  assert.equal(parseRetryAfterHeader("soon"), null);
  const inAMinute = parseRetryAfterHeader(new Date(Date.now() + 60_000).toUTCString());
  assert.ok(inAMinute >= 57 && inAMinute <= 61);
  const policy = { maxRetries: 3, backoffBaseMs: 500, backoffMaxMs: 2000, maxRetryAfterMs: 60_000 };
  const none = new Headers();
  assert.equal(retryDelayMs(policy, 0, 400, {}, none), null);
  assert.equal(retryDelayMs(policy, 3, 429, {}, none), null);
  assert.equal(retryDelayMs(policy, 0, 429, { retry_after_seconds: 120 }, none), null);
  const two = retryDelayMs(policy, 0, 503, null, new Headers({ "retry-after": "2" }));
  assert.ok(two >= 2000 && two <= 2200);
  const steps = [0, 1, 2].map((n) => retryDelayMs(policy, n, 503, null, none));
  assert.ok(steps[0] >= 50 && steps[0] <= 500 && steps[1] >= 100 && steps[1] <= 1000 && steps[2] >= 200 && steps[2] <= 2000);
});
