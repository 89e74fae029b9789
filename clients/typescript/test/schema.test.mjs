// The checked-in src/schema.d.ts must be what openapi-typescript makes of the live server's
// /openapi.json today; when the server's contract changes, `npm run generate` updates it.
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
  if (checkedIn === generated) return;
  // Show where they part, not the whole 1,500-line file.
  const want = generated.split("\n"), have = checkedIn.split("\n");
  let line = 0;
  while (line < want.length && want[line] === have[line]) line++;
  const around = (lines) => lines.slice(Math.max(0, line - 2), line + 4).map((l, i) => `  ${Math.max(0, line - 2) + i + 1}: ${l}`).join("\n");
  assert.fail(
    "src/schema.d.ts differs from the types of the live /openapi.json; after a change to the server's contract, run\n" +
    "  (cd clients/typescript && npm run generate)   # starts target/debug/astrocyte (or ASTROCYTE_TEST_BIN)\n" +
    `first difference at line ${line + 1}.\nchecked in:\n${around(have)}\ngenerated:\n${around(want)}`);
});
