// Starts real `astrocyte serve` processes on loopback for the tests. The binary is
// ASTROCYTE_TEST_BIN, else target/debug/astrocyte under the repository root. The server refuses
// unknown ASTROCYTE_* variables, so every ASTROCYTE_* variable of the caller's environment except
// the harness's own ASTROCYTE_TEST_* is dropped and only what a test sets applies.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
export const BINARY = process.env.ASTROCYTE_TEST_BIN ?? join(ROOT, "target", "debug", "astrocyte");
export const API_KEY_SECRET = "typescript-client-secret-32-chars!";

export function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.on("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startServer(env = {}, { embedderArgs = ["--embedder", "hashing"] } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} is missing: run 'cargo build --bin astrocyte' (or set ASTROCYTE_TEST_BIN)`);
  }
  const data = mkdtempSync(join(tmpdir(), "astrocyte-tsclient-"));
  const port = await freePort();
  const clean = Object.fromEntries(Object.entries(process.env).filter(
    ([k]) => !k.startsWith("ASTROCYTE_") || k.startsWith("ASTROCYTE_TEST_")));
  const logPath = join(data, "server.log");
  const log = openSync(logPath, "w");
  const child = spawn(BINARY, ["--data-dir", data, ...embedderArgs, "serve", "--host", "127.0.0.1",
    "--port", String(port)], { env: { ...clean, ...env }, stdio: ["ignore", log, log] });
  let exited = false;
  child.on("exit", () => { exited = true; });
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const live = await fetch(`${baseUrl}/live`, { signal: AbortSignal.timeout(1000) });
      if (live.ok) break;
    } catch {
      // not up yet
    }
    if (exited || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`astrocyte did not start:\n${readFileSync(logPath, "utf8")}`);
    }
    await sleep(100);
  }
  return {
    baseUrl,
    async issueKey(tenant, principal) {
      const answer = await fetch(`${baseUrl}/v1/admin/keys`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ tenant, principal }),
      });
      if (!answer.ok) throw new Error(`issuing a key: ${answer.status} ${await answer.text()}`);
      return (await answer.json()).api_key;
    },
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        let timer;
        await Promise.race([gone, new Promise((r) => { timer = setTimeout(r, 30_000); })]);
        clearTimeout(timer);
        if (!exited) child.kill("SIGKILL");
      }
      rmSync(data, { recursive: true, force: true });
    },
  };
}

export function bank(prefix = "t") {
  return prefix + Math.random().toString(16).slice(2, 14);
}

/** An OpenAI-compatible embeddings API on loopback that a test takes down (503) and brings up. */
export async function startEmbeddingsStub() {
  const { createServer: createHttpServer } = await import("node:http");
  const stub = { up: false, requests: 0 };
  const http = createHttpServer((request, response) => {
    let raw = "";
    request.on("data", (chunk) => { raw += chunk; });
    request.on("end", () => {
      stub.requests += 1;
      if (!stub.up) {
        // retry-after-ms keeps the server's own provider retries short.
        response.writeHead(503, { "content-type": "application/json", "retry-after-ms": "1" });
        response.end('{"error":{"message":"down"}}');
        return;
      }
      let inputs = JSON.parse(raw || "{}").input ?? [];
      if (typeof inputs === "string") inputs = [inputs];
      const data = inputs.map((text, index) => ({
        object: "embedding", index,
        embedding: Array.from({ length: 8 }, (_, d) => ((text.length + d) % 7) + 1),
      }));
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ object: "list", data }));
    });
  });
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  stub.url = `http://127.0.0.1:${http.address().port}/v1`;
  stub.close = () => new Promise((r) => http.close(r));
  return stub;
}
