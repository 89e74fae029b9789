// Shared pieces of the inspector's browser tests: real `astrocyte serve` processes on free
// ports with fresh data directories, Chromium through playwright-core, axe-core checks and
// screenshots at desktop and phone widths.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const require = createRequire(import.meta.url);

function fromRoot(path) {
  return isAbsolute(path) ? path : join(ROOT, path);
}

export const BINARY = fromRoot(
  process.env.ASTROCYTE_TEST_BIN ?? join(process.env.CARGO_TARGET_DIR ?? "target", "debug", "astrocyte"),
);
export const SCREENSHOTS = fromRoot(process.env.ASTROCYTE_UI_SCREENSHOTS ?? join("target", "ui-screenshots"));
export const CHROMIUM = process.env.ASTROCYTE_TEST_CHROMIUM ?? "/usr/bin/chromium";
export const AXE = require.resolve("axe-core/axe.min.js");

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

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

/// The caller's environment without the settings the server would read (it refuses unknown
/// ASTROCYTE_* variables, and DATABASE_URL would pick another store), keeping ASTROCYTE_TEST_*.
function cleanEnv() {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !(name.startsWith("ASTROCYTE_") && !name.startsWith("ASTROCYTE_TEST_")) && name !== "DATABASE_URL",
    ),
  );
}

/// Starts `astrocyte serve` on a free port with a fresh data directory; its output goes to a
/// log file in that directory. Resolves once `GET /live` answers.
export async function startServer(env = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} is missing: build it with 'cargo build --bin astrocyte' (or set ASTROCYTE_TEST_BIN)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "astrocyte-ui-"));
  const data = join(dir, "data");
  const logPath = join(dir, "server.log");
  const port = await freePort();
  const log = openSync(logPath, "a");
  const child = spawn(BINARY, ["--data-dir", data, "serve", "--host", "127.0.0.1", "--port", String(port), "--no-workers"], {
    env: { ...cleanEnv(), ASTROCYTE_EMBEDDER: "hashing", ...env },
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  let exited = null;
  child.on("exit", (code, signal) => {
    exited = { code, signal };
  });
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
      throw new Error(`astrocyte did not start (${JSON.stringify(exited)}):\n${readFileSync(logPath, "utf8")}`);
    }
    await sleep(100);
  }
  return {
    baseUrl,
    logPath,
    log: () => readFileSync(logPath, "utf8"),
    async api(method, path, body, headers = {}) {
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        // not JSON
      }
      return { status: response.status, json, text };
    },
    async retain(bank, content, tags = [], headers = {}) {
      const answer = await this.api("POST", "/v1/retain", { bank_id: bank, content, tags }, headers);
      assert.equal(answer.status, 200, `retain: ${answer.status} ${answer.text}`);
      assert.ok(answer.json?.memory_id, `retain gave no memory_id: ${answer.text}`);
      return answer.json.memory_id;
    },
    async issueKey(tenant, principal) {
      const answer = await this.api("POST", "/v1/admin/keys", { tenant, principal });
      assert.ok(answer.status >= 200 && answer.status < 300, `issuing a key: ${answer.status} ${answer.text}`);
      assert.ok(answer.json?.api_key, `no api_key in ${answer.text}`);
      return answer.json.api_key;
    },
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        const deadline = Date.now() + 10_000;
        while (!exited && Date.now() < deadline) await sleep(50);
        if (!exited) child.kill("SIGKILL");
      }
      if (!process.env.ASTROCYTE_TEST_KEEP_DATA) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  const { chromium } = await import("playwright-core");
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/test-ui.sh does)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
}

/// A new browser context at desktop size whose pages fail fast.
export async function newContext(browser) {
  const context = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1 });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  return context;
}

/// Runs axe-core on the page as it is and fails on any serious or critical violation.
export async function checkAxe(page, name) {
  if (!(await page.evaluate(() => typeof window.axe !== "undefined"))) {
    await page.addScriptTag({ path: AXE });
  }
  const results = await page.evaluate(() => window.axe.run());
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const report = bad
    .map(
      (v) =>
        `  ${v.id} (${v.impact}): ${v.help}\n` +
        v.nodes.map((n) => `    target ${JSON.stringify(n.target)}: ${n.html}`).join("\n"),
    )
    .join("\n");
  assert.equal(bad.length, 0, `axe found serious or critical violations on the ${name} page (${page.url()}):\n${report}`);
  return results;
}

/// Whether the page scrolls sideways.
export async function horizontalOverflow(page) {
  return page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
}

/// Checks a page with axe and screenshots it at desktop and phone width (leaving it at desktop
/// width); at phone width axe runs again, and `noSideScroll` asserts the page fits.
export async function inspectPage(page, name, { noSideScroll = false } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.setViewportSize(DESKTOP);
  await checkAxe(page, name);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  try {
    await checkAxe(page, `${name} (phone width)`);
    if (noSideScroll) {
      const { scrollWidth, innerWidth } = await horizontalOverflow(page);
      assert.ok(
        scrollWidth <= innerWidth + 1,
        `the ${name} page scrolls sideways at phone width: scrollWidth ${scrollWidth} > innerWidth ${innerWidth}`,
      );
    }
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-phone.png`), fullPage: true });
  } finally {
    await page.setViewportSize(DESKTOP);
  }
}

/// Presses Tab from the top of a freshly loaded page until `done(focused)` holds or `limit`
/// presses; returns what was focused, in order.
export async function tabThrough(page, limit = 40) {
  const seen = [];
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press("Tab");
    seen.push(
      await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return { tag: "body" };
        const label = el.id ? document.querySelector(`label[for="${CSS.escape(el.id)}"]`) : null;
        return {
          tag: el.tagName.toLowerCase(),
          id: el.id || null,
          text: (el.textContent || "").trim(),
          label: label ? label.textContent.trim() : null,
        };
      }),
    );
  }
  return seen;
}
