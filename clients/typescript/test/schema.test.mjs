// The checked-in src/schema.d.ts must be what openapi-typescript makes of the live server's
// /openapi.json today; when the server's contract changes, `npm run generate -- URL` updates it.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";

import { generateSchema, SCHEMA_PATH } from "../scripts/generate-schema.mjs";
import { startServer } from "./server.mjs";

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

test("src/schema.d.ts matches the types generated from the live /openapi.json", async () => {
  const answer = await fetch(`${server.baseUrl}/openapi.json`);
  assert.equal(answer.status, 200);
  const document = await answer.json();
  assert.ok(document.paths["/v1/retain"] && document.paths["/v1/recall"], "the document lists the memory routes");
  const generated = await generateSchema(document);
  const checkedIn = await readFile(SCHEMA_PATH, "utf8");
  assert.ok(generated.includes("RetainResponse") && generated.includes("MemoryHitDto"));
  assert.equal(checkedIn, generated,
    `src/schema.d.ts is stale: run \`npm run generate -- ${server.baseUrl}/openapi.json\` against a current server`);
});
