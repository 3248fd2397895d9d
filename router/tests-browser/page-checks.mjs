#!/usr/bin/env node
// The page's other paths, against fake-router.mjs, with node's test runner:
//
//   node --test page-checks.mjs
//
// - the tour's operations are valid against schema/supergraph.graphql and select every
//   entity's id;
// - the files in dist/ match the manifest (hashes, gzip copies), and are served with
//   the caching headers the plugin is meant to send;
// - with a token injected by the server, GraphiQL mounts at once with it in Headers;
// - an expired or malformed token is refused in the page, before any request;
// - a token the router refuses (401 on introspection) brings the panel back with the
//   router's sentence; both tokens pasted at once go to the tabs that need each;
// - a reload keeps the eight tabs (none duplicated) and the token; "Change token" and
//   Cancel; tabs left by the former page get the tour added once; Forget saved tokens;
// - nowhere a request to another host, a Content-Security-Policy violation or an error.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { getNamedType, isObjectType, parse, TypeInfo, validate, visit, visitWithTypeInfo } from "graphql";
import { chromium } from "playwright-core";
import { mintToken, publicSchema, startFakeRouter } from "./fake-router.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, "..", "graphiql", "dist");
const manifest = JSON.parse(readFileSync(join(DIST, "manifest.json"), "utf8"));
const TABS = ["Catalog", "Rent", "DeliveryQueue", "Ship", "Complete", "FollowLive", "Cancel", "MyRentals"];

test("the tour's operations are valid against the supergraph, and select every entity's id", async () => {
  await import("../graphiql/src/tour.js");
  const schema = publicSchema();
  assert.equal(globalThis.graphiqlTour.length, TABS.length);
  for (const [index, tab] of globalThis.graphiqlTour.entries()) {
    const document = parse(tab.query);
    assert.equal(document.definitions[0].name.value, TABS[index], "tabs are named in tour order");
    assert.deepEqual(validate(schema, document).map((e) => e.message), [], TABS[index]);
    const typeInfo = new TypeInfo(schema);
    visit(document, visitWithTypeInfo(typeInfo, {
      SelectionSet(node) {
        const type = getNamedType(typeInfo.getType());
        if (isObjectType(type) && type.getFields().id) {
          assert.ok(node.selections.some((s) => s.kind === "Field" && s.name.value === "id"), `${TABS[index]}: ${type.name} without id`);
        }
      },
    }));
    if (tab.variables) JSON.parse(typeof tab.variables === "function" ? tab.variables() : tab.variables);
  }
});

test("dist matches its manifest, and no file names another origin outside the audit", () => {
  for (const file of manifest.files) {
    const body = readFileSync(join(DIST, file.path));
    assert.equal(createHash("sha256").update(body).digest("hex").slice(0, 16), file.sha256_16, file.path);
    assert.equal(body.length, file.size, file.path);
    if (file.immutable) assert.ok(file.path.includes(`.${file.sha256_16}.`), `${file.path} is named by its hash`);
    if (file.gzip) assert.deepEqual(gunzipSync(readFileSync(join(DIST, file.gzip.path))), body, file.gzip.path);
  }
  const html = readFileSync(join(DIST, "index.html"), "utf8");
  assert.equal(html.split(manifest.configPlaceholder).length, 2, "the placeholder appears once");
  assert.doesNotMatch(html, /https?:\/\//, "index.html names no other origin");
  const rs = readFileSync(join(DIST, "assets.rs"), "utf8");
  for (const file of manifest.files.filter((f) => f.immutable)) assert.ok(rs.includes(`include_bytes!("${file.path}")`), file.path);
});

test("assets are served with ETag, immutable caching, gzip and 304", async () => {
  const router = await startFakeRouter();
  try {
    const origin = new URL(router.url).origin;
    const js = manifest.files.find((f) => f.logicalName === "yoga-graphiql.js");
    const url = `${origin}${manifest.prefix}${js.path}`;
    const gz = await fetch(url, { headers: { "Accept-Encoding": "gzip" } });
    assert.equal(gz.status, 200);
    assert.equal(gz.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(gz.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.match(gz.headers.get("vary"), /Accept-Encoding/);
    assert.equal(gz.headers.get("etag"), `"${js.sha256_16}.gz"`);
    await gz.arrayBuffer();
    const again = await fetch(url, { headers: { "If-None-Match": gz.headers.get("etag") } });
    assert.equal(again.status, 304);
    const html = await fetch(router.url, { headers: { Accept: "text/html,application/xhtml+xml,*/*;q=0.8" } });
    assert.equal(html.status, 200);
    assert.equal(html.headers.get("cache-control"), "no-cache");
    assert.match(await html.text(), /"endpoint":"\/graphql","token":null/);
    const api = await fetch(router.url, { headers: { Accept: "application/json" } });
    assert.equal(api.status, 401, "a GraphQL GET is not the page");
    assert.equal((await fetch(`${origin}${manifest.prefix}nope.js`)).status, 404);
  } finally {
    await router.close();
  }
});

test("a token injected by the server mounts GraphiQL at once, with the token in Headers", async () => {
  const devToken = mintToken({ role: "operator" });
  await withPage({ devToken }, async ({ page, seen }) => {
    await page.getByRole("tablist", { name: "Select active operation" }).waitFor();
    assert.equal(await page.locator("#signin").isVisible(), false);
    await page.getByRole("button", { name: "Show Documentation Explorer" }).click();
    await page.locator(".graphiql-doc-explorer-type-name", { hasText: /^Rental$/ }).waitFor();
    assert.match(await headersText(page), new RegExp(`"Authorization": "Bearer ${devToken}"`));
    assert.match(await page.locator("#session-who").innerText(), /operator/);
    assert.deepEqual(seen.unauthorized, []);
    assert.deepEqual(await tabTitles(page), TABS);
  });
});

test("an expired or malformed token is refused before any request", async () => {
  await withPage({}, async ({ page, seen }) => {
    const field = page.getByLabel("Token", { exact: true });
    await field.fill(mintToken({ role: "operator", expiresIn: -60 }));
    await page.getByRole("button", { name: "Open GraphiQL" }).click();
    await assert.doesNotReject(page.getByRole("alert").filter({ hasText: /expired on/ }).waitFor());
    assert.equal(await field.getAttribute("aria-invalid"), "true");
    assert.equal(await page.evaluate(() => document.activeElement.id), "signin-token");
    await field.fill("not a token");
    await page.getByRole("button", { name: "Open GraphiQL" }).click();
    await page.getByRole("alert").filter({ hasText: /not a token/ }).waitFor();
    assert.equal(seen.api.length, 0, "nothing was sent to /graphql");
  });
});

test("a token the router refuses brings the panel back with its sentence; both tokens go where they belong", async () => {
  await withPage({}, async ({ page, seen }) => {
    const forged = mintToken({ role: "operator", secret: "not-the-secret" });
    await page.getByLabel("Token", { exact: true }).fill(forged);
    await page.getByRole("button", { name: "Open GraphiQL" }).click();
    const alert = page.getByRole("alert");
    await alert.filter({ hasText: "The router refused the operator token: the token is not valid: its signature does not match." }).waitFor();
    assert.equal(await page.locator("#graphiql").isVisible(), false);
    // GraphiQL tries introspection twice (the second time without subscriptionType).
    const refusals = seen.unauthorized.length;
    assert.ok(refusals >= 1 && refusals <= 2, `refused introspections: ${refusals}`);

    // The whole block `make run` prints.
    const customer = mintToken({ role: "customer" });
    const operator = mintToken({ role: "operator" });
    const block = `  customer 0192f1a4-0000-7000-8000-00000000c0de:\n  ${customer}\n  operator:\n  ${operator}\n`;
    await page.getByLabel("Token", { exact: true }).fill(block);
    await page.getByRole("button", { name: "Open GraphiQL" }).click();
    await page.waitForLoadState("load");
    await page.getByRole("tablist", { name: "Select active operation" }).waitFor();
    assert.match(await page.locator("#session-who").innerText(), /operator.*customer|customer.*operator/);
    assert.deepEqual(await tabTitles(page), TABS, "the tabs are not duplicated");
    await openTab(page, "Rent");
    assert.match(await headersText(page), new RegExp(`Bearer ${customer}`));
    await openTab(page, "DeliveryQueue");
    assert.match(await headersText(page), new RegExp(`Bearer ${operator}`));
    assert.doesNotMatch(await headersText(page), new RegExp(forged));

    // A reload restores the same tabs, with the same tokens, and no panel.
    await page.reload();
    await page.getByRole("tablist", { name: "Select active operation" }).waitFor();
    assert.equal(await page.locator("#signin").isVisible(), false);
    assert.deepEqual(await tabTitles(page), TABS);
    assert.match(await headersText(page), new RegExp(`Bearer ${operator}`));

    // Change token, then Cancel, returns to GraphiQL as it was.
    await page.getByRole("button", { name: "Change token" }).click();
    assert.equal(await page.evaluate(() => document.activeElement.id), "signin-token");
    await page.locator("#signin").getByRole("button", { name: "Cancel" }).click();
    assert.equal(await page.locator("#graphiql").isVisible(), true);
    assert.equal(seen.unauthorized.length, refusals, "no 401 with the good tokens");
  });
});

test("tabs kept from the router's former GraphiQL page get the tour added, once", async () => {
  await withPage({}, async ({ page }) => {
    // What the former page (Yoga from a CDN, same origin) left: one tab, no token.
    await page.evaluate(() => {
      const tab = { id: "old", hash: null, title: "Products", query: "query Products { products { edges { node { id name } } } }", variables: null, headers: null, operationName: "Products", response: null };
      localStorage.setItem("graphiql:tabState", JSON.stringify({ tabs: [tab], activeTabIndex: 0 }));
      localStorage.setItem("graphiql:query", tab.query);
    });
    await page.reload();
    const operator = mintToken({ role: "operator" });
    await page.getByLabel("Token", { exact: true }).fill(operator);
    await page.getByRole("button", { name: "Open GraphiQL" }).click();
    await page.getByRole("tablist", { name: "Select active operation" }).waitFor();
    assert.deepEqual(await tabTitles(page), ["Products", ...TABS]);
    assert.match(await headersText(page), new RegExp(`Bearer ${operator}`), "the old tab got the token");
    await page.reload();
    await page.getByRole("tablist", { name: "Select active operation" }).waitFor();
    assert.deepEqual(await tabTitles(page), ["Products", ...TABS], "added once");
  });
});

test("Forget saved tokens removes them from the browser, GraphiQL's tabs included", async () => {
  await withPage({}, async ({ page }) => {
    const operator = mintToken({ role: "operator" });
    await page.getByLabel("Token", { exact: true }).fill(operator);
    await page.getByRole("button", { name: "Open GraphiQL" }).click();
    await page.getByRole("tablist", { name: "Select active operation" }).waitFor();
    await page.waitForTimeout(500);
    await page.getByRole("button", { name: "Change token" }).click();
    await page.getByRole("button", { name: "Forget saved tokens" }).click();
    await page.waitForLoadState("load");
    await page.getByLabel("Token", { exact: true }).waitFor();
    const stored = await page.evaluate(() => Object.values(localStorage).join("\n"));
    assert.ok(!stored.includes(operator), "no stored copy of the token");
  });
});

// ---- helpers ----

async function withPage({ devToken = null }, body) {
  const router = await startFakeRouter({ devToken });
  const userDataDir = mkdtempSync(join(tmpdir(), "graphiql-checks-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context.setDefaultTimeout(20_000);
  const seen = { api: [], unauthorized: [], blocked: [], violations: [] };
  await context.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host !== "127.0.0.1" && host !== "localhost") {
      seen.blocked.push(route.request().url());
      return route.abort();
    }
    return route.continue();
  });
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
  context.on("request", (request) => {
    if (new URL(request.url()).pathname === "/graphql" && !request.isNavigationRequest()) seen.api.push(request.url());
  });
  context.on("response", (response) => {
    if (new URL(response.url()).pathname === "/graphql" && response.status() === 401) seen.unauthorized.push(response.url());
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    if (/CSP violation|Refused to/.test(message.text())) seen.violations.push(message.text());
  });
  try {
    await page.goto(router.url);
    await body({ page, seen, router });
    assert.deepEqual(seen.blocked, [], "no request to another host");
    assert.deepEqual(seen.violations, [], "no Content-Security-Policy violation");
    assert.deepEqual(errors, [], "no error on the page");
  } finally {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
    await router.close();
  }
}

async function tabTitles(page) {
  return page.getByRole("tab").evaluateAll((tabs) => tabs.map((tab) => tab.querySelector(".graphiql-tab-button").textContent));
}

async function openTab(page, name) {
  const tab = page.getByRole("tab").filter({ hasText: new RegExp(`^${name}`) });
  for (let attempt = 0; attempt < 5 && (await tab.getAttribute("aria-selected")) !== "true"; attempt++) {
    await tab.click();
    await page.waitForTimeout(200);
  }
  assert.equal(await tab.getAttribute("aria-selected"), "true", `the ${name} tab opens`);
}

async function headersText(page) {
  await page.getByRole("button", { name: "Headers", exact: true }).click();
  const lines = page.locator('.monaco-editor[data-uri$="-request-headers.json"] .view-lines');
  await page.waitForTimeout(200);
  return (await lines.innerText()).replace(/\u00a0/g, " ");
}
