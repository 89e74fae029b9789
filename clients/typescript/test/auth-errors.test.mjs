// Credentials (API key, Bearer, dev-mode principal, admin token) and the typed errors, each
// provoked on a real server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ApiError, Astrocyte, AstrocyteConnectionError, AstrocyteError, BadRequestError, ForbiddenError,
  NotFoundError, PayloadTooLargeError, PiiRejectedError, UnauthenticatedError,
} from "../dist/index.js";
import { API_KEY_SECRET, bank, freePort, startServer } from "./server.mjs";

const ADMIN_TOKEN = "typescript-client-admin-token";

describe("API-key mode", () => {
  let server;
  const keys = {};
  before(async () => {
    server = await startServer({
      ASTROCYTE_AUTH_MODE: "api_key",
      ASTROCYTE_TENANT_EXTENSION: "api_key",
      ASTROCYTE_API_KEY_SECRET: API_KEY_SECRET,
    });
    keys.a = await server.issueKey("ts_tenant_a", "agent:alice");
    keys.b = await server.issueKey("ts_tenant_b", "agent:bob");
  });
  after(async () => { await server?.stop(); });

  test("X-Api-Key and Bearer reach the key's tenant, and only it", async () => {
    const b = bank();
    const alice = new Astrocyte({ baseUrl: server.baseUrl, apiKey: keys.a });
    const stored = await alice.retain("Alice keeps bees on the roof.", b);
    assert.equal(stored.stored, true);
    assert.deepEqual((await alice.recall("bees roof", b)).hits.map((h) => h.text), ["Alice keeps bees on the roof."]);
    const aliceBearer = new Astrocyte({ baseUrl: server.baseUrl, bearerToken: keys.a });
    assert.ok((await aliceBearer.banks()).includes(b));
    assert.equal((await aliceBearer.recall("bees", b)).hits[0].memory_id, stored.memory_id);
    const bob = new Astrocyte({ baseUrl: server.baseUrl, apiKey: keys.b });
    assert.ok(!(await bob.banks()).includes(b));
    assert.deepEqual((await bob.recall("bees roof", b)).hits, []);
  });

  for (const [label, credentials] of [["no key", {}], ["a forged key", { apiKey: "ak_forged" }],
    ["a forged bearer", { bearerToken: "ak_forged" }]]) {
    test(`${label} is unauthenticated`, async () => {
      const brain = new Astrocyte({ baseUrl: server.baseUrl, maxRetries: 0, ...credentials });
      await assert.rejects(brain.recall("anything", "notes"), (error) => {
        assert.ok(error instanceof UnauthenticatedError && error instanceof ApiError && error instanceof AstrocyteError);
        assert.equal(error.status, 401);
        assert.equal(error.detail, "authentication_failed");
        assert.match(error.headers.get("www-authenticate") ?? "", /^Bearer/);
        return true;
      });
    });
  }
});

describe("dev mode with grants, an admin token, PII rejection and a body cap", () => {
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
      ASTROCYTE_PII_ACTION: "reject",
      ASTROCYTE_MAX_REQUEST_BODY_BYTES: "8192",
    });
  });
  after(async () => { await server?.stop(); });

  test("the principal header selects the grants", async () => {
    const b = bank();
    const writer = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:writer" });
    assert.equal((await writer.retain("The writer may write here.", b)).stored, true);
    const reader = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:reader" });
    assert.deepEqual((await reader.recall("writer write", b)).hits.map((h) => h.text), ["The writer may write here."]);
    await assert.rejects(reader.retain("The reader may not.", b), (error) =>
      error instanceof ForbiddenError && error.status === 403 && /agent:reader/.test(error.detail) && /write/.test(error.detail));
    const anonymous = new Astrocyte({ baseUrl: server.baseUrl });
    await assert.rejects(anonymous.recall("writer", b), (error) =>
      error instanceof ForbiddenError && /anonymous/.test(error.detail));
  });

  test("admin routes want the admin token", async () => {
    const b = bank();
    const writer = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:writer" });
    await writer.retain("Admin token probe.", b);
    assert.ok((await writer.banks()).includes(b)); // GET /v1/banks is not an admin route
    const exportAll = async (client) => { const lines = []; for await (const line of client.exportBank(b)) lines.push(line); return lines; };
    await assert.rejects(exportAll(writer), (error) =>
      (error instanceof UnauthenticatedError || error instanceof ForbiddenError) && /X-Admin-Token/.test(error.detail));
    const admin = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:writer", adminToken: ADMIN_TOKEN });
    assert.ok((await admin.banks()).includes(b));
    assert.equal((await exportAll(admin)).length, 2);
  });

  test("PII rejection names the types", async () => {
    const writer = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:writer" });
    await assert.rejects(writer.retain("Write to alice@example.com about the keys.", bank()), (error) =>
      error instanceof PiiRejectedError && error.status === 422 && error.piiTypes.includes("email"));
  });

  test("a body over the cap is payload too large", async () => {
    const writer = new Astrocyte({ baseUrl: server.baseUrl, principal: "agent:writer" });
    await assert.rejects(writer.retain("word ".repeat(4000), bank()), (error) =>
      error instanceof PayloadTooLargeError && error.status === 413 && /too large/i.test(error.detail));
  });
});

describe("plain errors", () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { await server?.stop(); });

  test("bad requests and missing jobs carry the server's detail and request id", async () => {
    const brain = new Astrocyte({ baseUrl: server.baseUrl });
    await assert.rejects(brain.recall("q", "bad bank!"), (error) =>
      error instanceof BadRequestError && error.status === 400 && error.detail.length > 0 && !!error.requestId);
    await assert.rejects(brain.retain("nul \u0000 inside", "notes"), (error) =>
      error instanceof BadRequestError && /nul/i.test(error.detail));
    await assert.rejects(brain.history("q", "notes", "not a date"), (error) =>
      error instanceof BadRequestError && /as_of|datetime/.test(error.detail));
    await assert.rejects(brain.job("01abcdef"), NotFoundError);
  });

  test("an unreachable server is a connection error", async () => {
    const brain = new Astrocyte({ baseUrl: `http://127.0.0.1:${await freePort()}`, timeoutMs: 5000 });
    await assert.rejects(brain.health(), AstrocyteConnectionError);
  });
});
