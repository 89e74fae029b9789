// The memory inspector (`astrocyte serve` at /ui) in a real browser: Debian's Chromium driven
// by playwright-core, with axe-core accessibility checks and screenshots of every page at
// desktop and phone width. Run through scripts/test-ui.sh, or `node --test tests/ui/` with
// ASTROCYTE_TEST_BIN pointing at a built binary.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { checkAxe, inspectPage, launchBrowser, newContext, sleep, startServer, tabThrough } from "./harness.mjs";

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/// The texts of the memories listed on a Memories page.
async function listedTexts(page) {
  return page.locator("article.memory p.text a").allInnerTexts();
}

/// The tags shown on a memory's page, in order of name (the store keeps them sorted).
async function tagsShown(page) {
  return sorted(await page.locator("main ul.tags li").allInnerTexts());
}

/// The visible text of the page's main content.
async function mainText(page) {
  return page.locator("main").innerText();
}

const sorted = (values) => [...values].sort();

/// Asserts that a response is an HTML page (the inspector's error pages are pages, not JSON).
function assertHtml(response, what) {
  const type = typeof response.headers === "function" ? response.headers()["content-type"] : response.headers.get("content-type");
  assert.match(type ?? "", /^text\/html/, `${what} is served as ${type}, not as an HTML page`);
}

/// Submits a form by clicking its button and returns the response of the navigation.
async function submit(page, button) {
  const [response] = await Promise.all([page.waitForNavigation(), button.click()]);
  return response;
}

describe("dev mode (no auth settings)", () => {
  let server;
  let context;
  let page;
  const TOMATO = "The tomatoes in the greenhouse need watering every morning before nine";
  const ROSES = "Roses bloom in June along the south fence of the garden";
  const COMPOST = "The compost bin is emptied on Saturdays";
  let tomatoId;
  let rosesId;

  before(async () => {
    server = await startServer();
    tomatoId = await server.retain("garden", TOMATO, ["plants"]);
    rosesId = await server.retain("garden", ROSES, ["plants", "flowers"]);
    await server.retain("garden", COMPOST, ["chores"]);
    await server.retain("kitchen", "The good knives live in the drawer left of the sink", ["tools"]);
    context = await newContext(browser);
    page = await context.newPage();
  });

  after(async () => {
    await context?.close();
    await server?.stop();
  });

  test("the Banks page lists the banks and finds one", async () => {
    const response = await page.goto(`${server.baseUrl}/ui`);
    assert.equal(response.status(), 200);
    await page.getByRole("heading", { name: "Banks", level: 1 }).waitFor();
    const links = await page.locator("table tbody td a").allInnerTexts();
    assert.deepEqual([...links].sort(), ["garden", "kitchen"]);

    await page.getByLabel("Find a bank").fill("gard");
    await submit(page, page.getByRole("button", { name: "Search" }));
    assert.deepEqual(await page.locator("table tbody td a").allInnerTexts(), ["garden"]);

    await page.goto(`${server.baseUrl}/ui`);
    await inspectPage(page, "banks", { noSideScroll: true });
  });

  test("the keyboard reaches the skip link first and the bank search field", async () => {
    await page.goto(`${server.baseUrl}/ui`);
    const focused = await tabThrough(page, 8);
    assert.equal(focused[0].text, "Skip to content", `first Tab stop: ${JSON.stringify(focused[0])}`);
    assert.ok(
      focused.some((f) => f.label === "Find a bank"),
      `Tab never reached "Find a bank": ${JSON.stringify(focused)}`,
    );
    // The skip link moves focus into the main content.
    await page.goto(`${server.baseUrl}/ui`);
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "main");
  });

  test("the Memories page lists a bank's memories and filters them", async () => {
    await page.goto(`${server.baseUrl}/ui`);
    await page.getByRole("link", { name: "garden", exact: true }).click();
    await page.waitForURL(`${server.baseUrl}/ui/banks/garden`);
    await page.getByRole("heading", { name: "Memories", level: 1 }).waitFor();
    assert.deepEqual(sorted(await listedTexts(page)), sorted([COMPOST, ROSES, TOMATO]));

    await page.getByLabel("Text contains").fill("tomatoes");
    await submit(page, page.getByRole("button", { name: "Apply" }));
    assert.deepEqual(await listedTexts(page), [TOMATO]);
    assert.equal(await page.getByLabel("Text contains").inputValue(), "tomatoes");

    await page.getByRole("link", { name: "Clear filters" }).click();
    await page.waitForURL(`${server.baseUrl}/ui/banks/garden`);
    await page.getByLabel("Tags (any, comma-separated)").fill("flowers");
    await submit(page, page.getByRole("button", { name: "Apply" }));
    assert.deepEqual(await listedTexts(page), [ROSES]);

    await page.getByLabel("Text contains").fill("nothing-like-this");
    await page.getByLabel("Tags (any, comma-separated)").fill("");
    await submit(page, page.getByRole("button", { name: "Apply" }));
    assert.deepEqual(await listedTexts(page), []);
    assert.match(await mainText(page), /No memories match\./);

    // The other fields are there and labelled.
    for (const label of ["From", "To", "Order"]) {
      assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, `field labelled ${label}`);
    }

    await page.goto(`${server.baseUrl}/ui/banks/garden`);
    await inspectPage(page, "memories", { noSideScroll: true });
  });

  test("the keyboard reaches the Memories filter form", async () => {
    await page.goto(`${server.baseUrl}/ui/banks/garden`);
    const focused = await tabThrough(page, 25);
    assert.equal(focused[0].text, "Skip to content", `first Tab stop: ${JSON.stringify(focused[0])}`);
    const labels = new Set(focused.map((f) => f.label).filter(Boolean));
    for (const label of ["Text contains", "Tags (any, comma-separated)", "From", "To", "Order"]) {
      assert.ok(labels.has(label), `Tab never reached "${label}": ${JSON.stringify(focused)}`);
    }
    assert.ok(
      focused.some((f) => f.tag === "button" && f.text === "Apply"),
      `Tab never reached "Apply": ${JSON.stringify(focused)}`,
    );
  });

  test("a memory's page shows it and saves an edit of its tags", async () => {
    await page.goto(`${server.baseUrl}/ui/banks/garden?contains=tomatoes`);
    await page.getByRole("link", { name: TOMATO }).click();
    await page.waitForURL(`${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(tomatoId)}`);
    await page.getByRole("heading", { name: "Memory", level: 1 }).waitFor();
    assert.equal((await page.locator("p.text.full").innerText()).trim(), TOMATO);
    await page.getByRole("heading", { name: "History" }).waitFor();
    const history = page.locator("h2:has-text('History') + table tbody tr");
    assert.ok((await history.allInnerTexts()).some((row) => row.includes("created")), "History lists the creation");
    assert.deepEqual(await tagsShown(page), ["plants"]);

    await page.getByLabel("Tags (comma-separated)").fill("plants, checked");
    const response = await submit(page, page.getByRole("button", { name: "Save" }));
    assert.equal(response.status(), 200);
    await page.getByRole("status").filter({ hasText: "Saved." }).waitFor();
    assert.deepEqual(await tagsShown(page), ["checked", "plants"]);
    assert.ok((await history.allInnerTexts()).some((row) => row.includes("updated")), "History lists the update");

    const stored = await server.api("GET", `/v1/banks/garden/memories/${encodeURIComponent(tomatoId)}`);
    assert.equal(stored.status, 200, stored.text);
    const memory = stored.json.memory ?? stored.json;
    assert.deepEqual(sorted(memory.tags), ["checked", "plants"]);

    await inspectPage(page, "memory", { noSideScroll: true });
  });

  test("invalid metadata is refused with an alert and changes nothing", async () => {
    const path = `/v1/banks/garden/memories/${encodeURIComponent(tomatoId)}`;
    const before = (await server.api("GET", path)).json;
    await page.goto(`${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(tomatoId)}`);
    await page.getByLabel("Tags (comma-separated)").fill("plants, checked, sneaky");
    await page.getByLabel("Metadata (a JSON object of strings, numbers, booleans or null)").fill('{"not": json');
    const response = await submit(page, page.getByRole("button", { name: "Save" }));
    assert.equal(response.status(), 400);
    assertHtml(response, "the refused edit (400)");
    const alert = page.locator("[role=alert]");
    await alert.waitFor();
    assert.match(await alert.innerText(), /Metadata/);
    // The draft is kept in the form so it can be corrected.
    assert.equal(
      await page.getByLabel("Metadata (a JSON object of strings, numbers, booleans or null)").inputValue(),
      '{"not": json',
    );
    await checkAxe(page, "memory with an error");
    const afterwards = (await server.api("GET", path)).json;
    assert.deepEqual(afterwards, before, "a refused edit changed the memory");
    await page.goto(`${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(tomatoId)}`);
    assert.deepEqual(await tagsShown(page), ["checked", "plants"]);
  });

  test("the Recall playground ranks the expected memory first and traces the strategies", async () => {
    await page.goto(`${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(tomatoId)}`);
    await page.getByRole("navigation", { name: "Bank" }).getByRole("link", { name: "Recall playground" }).click();
    await page.waitForURL(`${server.baseUrl}/ui/banks/garden/recall`);
    await page.getByRole("heading", { name: "Recall playground", level: 1 }).waitFor();
    await page.getByLabel("Query").fill("tomatoes greenhouse watering");
    const response = await submit(page, page.getByRole("button", { name: "Recall" }));
    assert.equal(response.status(), 200);
    const rows = page.locator("table.hits tbody tr");
    assert.ok((await rows.count()) >= 1, "no hits");
    const first = rows.first();
    assert.equal(await first.locator("td a").innerText(), TOMATO);
    assert.equal(
      await first.locator("td a").getAttribute("href"),
      `/ui/banks/garden/memories/${encodeURIComponent(tomatoId)}`,
    );
    const keyword = (await first.locator('td[data-strategy="keyword"]').innerText()).trim();
    assert.match(keyword, /^#1\b/, `keyword cell of the first hit: ${keyword}`);
    for (const row of await rows.all()) {
      for (const strategy of ["semantic", "keyword", "recency"]) {
        const cell = (await row.locator(`td[data-strategy="${strategy}"]`).innerText()).trim();
        assert.match(cell, /^(#\d+\b|—$)/, `${strategy} cell: ${cell}`);
      }
    }
    // Memories without any of the words are not found by the keyword strategy.
    const compost = rows.filter({ hasText: COMPOST });
    if ((await compost.count()) > 0) {
      assert.equal((await compost.locator('td[data-strategy="keyword"]').innerText()).trim(), "—");
    }
    await page.getByRole("heading", { name: "Trace" }).waitFor();
    const facts = await page.locator("dl.facts").innerText();
    assert.match(facts, /Timings/);
    assert.match(facts, /keyword [\d.]+ ms/);
    assert.match(facts, /total [\d.]+ ms/);

    await inspectPage(page, "recall");
  });

  test("forgetting a memory asks first, then removes it from the list", async () => {
    await page.goto(`${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(tomatoId)}`);
    await page.getByRole("link", { name: "Forget this memory…" }).click();
    await page.waitForURL(`${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(tomatoId)}/forget`);
    await page.getByRole("heading", { name: "Forget this memory?", level: 1 }).waitFor();
    assert.equal((await page.locator("blockquote").innerText()).trim(), TOMATO);
    await inspectPage(page, "forget", { noSideScroll: true });

    await submit(page, page.getByRole("button", { name: "Forget", exact: true }));
    assert.match(page.url(), /\/ui\/banks\/garden\?forgotten=/);
    const notice = await page.getByRole("status").innerText();
    assert.match(notice, /forgotten/);
    assert.ok(notice.includes(tomatoId), `the notice names the memory: ${notice}`);
    const listed = await listedTexts(page);
    assert.ok(!listed.includes(TOMATO), `the forgotten memory is still listed: ${listed}`);
    assert.deepEqual(sorted(listed), sorted([COMPOST, ROSES]));
  });

  test("the Activity page shows the memory's changes and follows new ones live", async () => {
    await page.goto(`${server.baseUrl}/ui/banks/garden`);
    await page.getByRole("navigation", { name: "Bank" }).getByRole("link", { name: "Activity" }).click();
    await page.waitForURL(`${server.baseUrl}/ui/banks/garden/activity`);
    await page.getByRole("heading", { name: "Activity", level: 1 }).waitFor();
    const feedRows = () =>
      page.locator("tbody#feed tr").evaluateAll((rows) =>
        rows.map((row) => {
          const cells = [...row.querySelectorAll("td")];
          const link = cells[2]?.querySelector("a");
          return {
            kind: cells[1]?.textContent.trim(),
            memory: cells[2]?.textContent.trim(),
            href: link?.getAttribute("href") ?? null,
          };
        }),
      );
    const rows = await feedRows();
    const ofTomato = rows.filter(
      (r) => r.memory === tomatoId || r.memory === TOMATO || (r.href ?? "").endsWith(`/${encodeURIComponent(tomatoId)}`),
    );
    const kinds = ofTomato.map((r) => r.kind);
    for (const kind of ["created", "updated", "forgotten"]) {
      assert.ok(kinds.includes(kind), `no "${kind}" row for the memory in ${JSON.stringify(rows)}`);
    }
    await inspectPage(page, "activity");

    // Live: a memory retained now appears without a reload (the page polls every 2 s).
    const before = rows.length;
    const fresh = "The greenhouse thermometer read 31 degrees at noon";
    const freshId = await server.retain("garden", fresh, ["plants"]);
    const navigations = [];
    page.on("framenavigated", (frame) => navigations.push(frame.url()));
    const deadline = Date.now() + 6_000;
    let now = rows;
    while (Date.now() < deadline) {
      now = await feedRows();
      if (now.length > before) break;
      await sleep(200);
    }
    assert.ok(now.length > before, `no new row appeared within 6 s: ${JSON.stringify(now)}`);
    const added = now.slice(before);
    assert.ok(
      added.some((r) => r.kind === "created" && (r.memory === fresh || (r.href ?? "").endsWith(`/${encodeURIComponent(freshId)}`))),
      `the new row is not the new memory's creation: ${JSON.stringify(added)}`,
    );
    assert.deepEqual(navigations, [], "the page reloaded");
    assert.match(await page.locator("#live").innerText(), /new change/);
  });

  test("an unknown memory gets a Not Found page", async () => {
    const response = await page.goto(`${server.baseUrl}/ui/banks/garden/memories/no-such-memory`);
    assert.equal(response.status(), 404);
    assertHtml(response, "the Not Found page (404)");
    await page.getByRole("heading", { name: "Not Found", level: 1 }).waitFor();
    await page.locator("[role=alert]").waitFor();
    await page.getByRole("link", { name: "Back to the banks" }).waitFor();
    await checkAxe(page, "not found");
  });

  test("cross-site posts are refused", async () => {
    const forget = `${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(rosesId)}/forget`;
    const evil = await fetch(forget, {
      method: "POST",
      redirect: "manual",
      headers: { origin: "https://evil.example", "content-type": "application/x-www-form-urlencoded" },
      body: "",
    });
    assert.equal(evil.status, 403);
    assertHtml(evil, "the refusal of a cross-site post (403)");
    const sneaky = await fetch(forget, {
      method: "POST",
      redirect: "manual",
      headers: { "sec-fetch-site": "cross-site", "content-type": "application/x-www-form-urlencoded" },
      body: "",
    });
    assert.equal(sneaky.status, 403);
    const edit = await fetch(`${server.baseUrl}/ui/banks/garden/memories/${encodeURIComponent(rosesId)}`, {
      method: "POST",
      redirect: "manual",
      headers: { origin: "https://evil.example", "content-type": "application/x-www-form-urlencoded" },
      body: "tags=pwned&metadata=",
    });
    assert.equal(edit.status, 403);

    const still = await server.api("GET", `/v1/banks/garden/memories/${encodeURIComponent(rosesId)}`);
    assert.equal(still.status, 200, `the memory is gone: ${still.text}`);
    const memory = still.json.memory ?? still.json;
    assert.deepEqual(sorted(memory.tags), ["flowers", "plants"]);
    const listed = await server.api("GET", "/v1/banks/garden/memories");
    assert.ok(listed.text.includes(ROSES), "the memory is no longer listed");
  });
});

describe("API-key mode", () => {
  let server;
  let keyA;
  let keyB;
  let secretId;
  const WORD = `quokka${randomBytes(4).toString("hex")}`;
  const SECRET = `The vault code word is ${WORD}`;
  const contexts = [];

  before(async () => {
    server = await startServer({
      ASTROCYTE_AUTH_MODE: "api_key",
      ASTROCYTE_TENANT_EXTENSION: "api_key",
      ASTROCYTE_API_KEY_SECRET: randomBytes(24).toString("hex"),
    });
    keyA = await server.issueKey("ui_tenant_a", "agent:a");
    keyB = await server.issueKey("ui_tenant_b", "agent:b");
    secretId = await server.retain("secrets", SECRET, ["private"], { "x-api-key": keyA });
    // Tenant B exists with a bank of its own.
    await server.retain("notes", "Tenant B keeps its shopping list here", [], { "x-api-key": keyB });
  });

  after(async () => {
    for (const context of contexts) await context.close();
    await server?.stop();
  });

  async function freshPage() {
    const context = await newContext(browser);
    contexts.push(context);
    return context.newPage();
  }

  async function signIn(page, credential) {
    const form = await page.goto(`${server.baseUrl}/ui`);
    await page.waitForURL(/\/ui\/login\?next=/);
    assertHtml(form, "the sign-in page (401)");
    await page.getByLabel("API key or bearer token").fill(credential);
    return submit(page, page.getByRole("button", { name: "Sign in" }));
  }

  test("the inspector asks for a credential and refuses a wrong one", async () => {
    const page = await freshPage();
    const response = await page.goto(`${server.baseUrl}/ui`);
    await page.waitForURL(`${server.baseUrl}/ui/login?next=%2Fui`);
    assert.equal(response.status(), 401);
    assertHtml(response, "the sign-in page (401)");
    await page.getByRole("heading", { name: "Sign in", level: 1 }).waitFor();
    assert.ok(!(await page.content()).includes(WORD));
    await inspectPage(page, "login", { noSideScroll: true });

    await page.getByLabel("API key or bearer token").fill("ak_this-is-not-a-key");
    const refused = await submit(page, page.getByRole("button", { name: "Sign in" }));
    assert.equal(refused.status(), 401);
    assertHtml(refused, "the refused sign-in (401)");
    assert.equal((await page.locator("[role=alert]").innerText()).trim(), "That credential was refused.");
    await checkAxe(page, "login with an error");

    // Deep links come back after signing in.
    await page.goto(`${server.baseUrl}/ui/banks/secrets`);
    await page.waitForURL(/\/ui\/login\?next=%2Fui%2Fbanks%2Fsecrets$/);
  });

  test("tenant A signs in, sees its bank, and signs out", async () => {
    const page = await freshPage();
    await signIn(page, keyA);
    assert.equal(page.url(), `${server.baseUrl}/ui`);
    await page.getByRole("heading", { name: "Banks", level: 1 }).waitFor();
    assert.deepEqual(await page.locator("table tbody td a").allInnerTexts(), ["secrets"]);
    await page.getByRole("link", { name: "secrets", exact: true }).click();
    await page.waitForURL(`${server.baseUrl}/ui/banks/secrets`);
    assert.deepEqual(await listedTexts(page), [SECRET]);

    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "astrocyte_ui");
    assert.ok(session, "no session cookie");
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    assert.equal(session.path, "/ui");

    await submit(page, page.getByRole("button", { name: "Sign out" }));
    await page.waitForURL(/\/ui\/login/);
    await page.getByRole("heading", { name: "Sign in", level: 1 }).waitFor();
    await page.goto(`${server.baseUrl}/ui/banks/secrets`);
    await page.waitForURL(/\/ui\/login\?next=/);
    assert.ok(!(await page.content()).includes(WORD), "signed out, the secret is still shown");
  });

  test("a deep link survives signing in", async () => {
    const page = await freshPage();
    const form = await page.goto(`${server.baseUrl}/ui/banks/secrets`);
    await page.waitForURL(/\/ui\/login\?next=/);
    assertHtml(form, "the sign-in page (401)");
    await page.getByLabel("API key or bearer token").fill(keyA);
    await submit(page, page.getByRole("button", { name: "Sign in" }));
    assert.equal(page.url(), `${server.baseUrl}/ui/banks/secrets`);
    assert.deepEqual(await listedTexts(page), [SECRET]);
  });

  test("tenant B sees nothing of tenant A", async () => {
    const page = await freshPage();
    await signIn(page, keyB);
    assert.equal(page.url(), `${server.baseUrl}/ui`);
    const banks = await page.locator("table tbody td a").allInnerTexts();
    assert.ok(!banks.includes("secrets"), `tenant B sees tenant A's bank: ${banks}`);
    assert.deepEqual(banks, ["notes"]);
    assert.ok(!(await page.content()).includes(WORD));

    await page.goto(`${server.baseUrl}/ui/banks/secrets`);
    assert.match(await mainText(page), /No memories match\./);
    assert.deepEqual(await listedTexts(page), []);
    assert.ok(!(await page.content()).includes(WORD));

    for (const path of [
      `/ui/banks/secrets/memories/${encodeURIComponent(secretId)}`,
      `/ui/banks/secrets/memories/${encodeURIComponent(secretId)}/forget`,
      `/ui/banks/secrets/activity`,
      `/ui/banks/secrets/recall?q=vault+code+word`,
    ]) {
      const response = await page.goto(`${server.baseUrl}${path}`);
      const html = await page.content();
      assert.ok(!html.includes(WORD), `tenant B sees the secret at ${path} (${response.status()})`);
    }
    // Recalling in the bank finds nothing of tenant A.
    await page.goto(`${server.baseUrl}/ui/banks/secrets/recall?q=vault+code+word`);
    assert.equal(await page.locator("table.hits tbody tr").count(), 0);
    assert.match(await mainText(page), /Nothing matched\./);
    // The feed behind the live updates leaks nothing either.
    const feed = await page.evaluate(async () => (await fetch("/ui/banks/secrets/activity.json")).text());
    assert.ok(!feed.includes(WORD) && !feed.includes(secretId), `activity.json leaks: ${feed}`);

    // And tenant A's memory is untouched.
    const still = await server.api("GET", `/v1/banks/secrets/memories/${encodeURIComponent(secretId)}`, undefined, {
      "x-api-key": keyA,
    });
    assert.equal(still.status, 200, still.text);
  });
});
