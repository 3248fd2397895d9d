#!/usr/bin/env node
// Drives the router's GraphiQL page in headless Chromium, as a newcomer would:
//
//   GRAPHIQL_URL=http://127.0.0.1:4000/graphql TOKEN=<operator token> RENTAL_ID=<id> \
//     [SCREENSHOT=/tmp/graphiql.png] node graphiql.mjs
//
// 1. opens the page in a fresh profile, with every request to another host blocked (a
//    blocked request fails the test: the page must work offline);
// 2. signs in through the sign-in panel (so the server must not inject a token), and
//    checks that no request reached /graphql without a token (no 401 on first load);
// 3. opens the docs explorer and finds the type Rental;
// 4. runs the Catalog tab and checks the result has "products" and no "errors";
// 5. runs the FollowLive tab with {"id": RENTAL_ID} and, once the first event is shown,
//    prints {"step":"subscribed"}: the caller then ships and delivers that rental's
//    delivery through the router; the test prints {"step":"saw","status":"SHIPPING"} and
//    {"step":"saw","status":"DELIVERED"} as the result pane shows them (60 s at most);
// 6. takes the screenshot, if asked, while SHIPPING is on screen (before telling the
//    caller), and at the end prints the load time and the bytes transferred.
//
// Every line on stdout is one JSON object; the last is {"step":"done",...} or
// {"step":"failed","error":"..."}. Exit status 0 on success, 1 on a failure, 2 on bad
// arguments. Chromium is the system one (CHROMIUM, default /usr/bin/chromium):
// playwright-core never downloads a browser.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
const SUBSCRIPTION_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 30_000;
const TOTAL_TIMEOUT_MS = 180_000;

const env = {
  url: process.env.GRAPHIQL_URL,
  token: process.env.TOKEN,
  rentalId: process.env.RENTAL_ID,
  screenshot: process.env.SCREENSHOT || null,
  chromium: process.env.CHROMIUM || "/usr/bin/chromium",
};
for (const [name, value] of [["GRAPHIQL_URL", env.url], ["TOKEN", env.token], ["RENTAL_ID", env.rentalId]]) {
  if (!value) {
    console.error(`graphiql.mjs: set ${name} (see the top of this file)`);
    process.exit(2);
  }
}

const emit = (line) => console.log(JSON.stringify(line));
const problems = []; // failures seen by the request watchers, reported at the end
const blocked = [];
const userDataDir = mkdtempSync(join(tmpdir(), "graphiql-test-"));
let context;

const watchdog = setTimeout(() => finish(new Error(`the test took longer than ${TOTAL_TIMEOUT_MS / 1000} s`)), TOTAL_TIMEOUT_MS);

main().then(() => finish(null), (error) => finish(error));

async function main() {
  const endpoint = new URL(env.url);
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: env.chromium,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);

  // Only this machine: anything else is blocked, and fails the test.
  await context.route("**/*", (route) => {
    const target = new URL(route.request().url());
    if (/^(https?|wss?):$/.test(target.protocol) && !LOCAL_HOSTS.has(target.hostname) && target.host !== endpoint.host) {
      blocked.push(route.request().url());
      return route.abort("blockedbyclient");
    }
    return route.continue();
  });

  // What crossed the wire, and the rule that /graphql never goes without a token.
  let signedIn = false;
  context.on("request", (request) => {
    const target = new URL(request.url());
    if (target.host !== endpoint.host || target.pathname !== endpoint.pathname) return;
    if (request.isNavigationRequest()) return;
    if (!signedIn) problems.push(`GraphiQL sent ${request.method()} ${target.pathname} before signing in`);
    const authorization = request.headers().authorization;
    if (!authorization) problems.push(`${request.method()} ${target.pathname} went without an Authorization header`);
  });
  context.on("response", (response) => {
    const target = new URL(response.url());
    if (target.pathname === endpoint.pathname && response.status() === 401) {
      problems.push(`${target.pathname} answered 401 (${response.request().method()})`);
    }
  });

  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/.test(message.text())) {
      problems.push(`the browser refused something: ${message.text()}`);
    }
  });

  // -- 1, 2: load and sign in
  // When the panel shows, in the page's own clock (from the start of the navigation).
  await context.addInitScript(() => {
    new MutationObserver((_, observer) => {
      const panel = document.getElementById("signin");
      if (panel && !panel.hidden) {
        globalThis.__signInShownAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { subtree: true, childList: true, attributes: true });
  });
  await page.goto(env.url, { waitUntil: "commit" });
  const tokenField = page.getByLabel("Token", { exact: true });
  await expectVisible(tokenField, "the sign-in panel (with a Token field) did not appear; does the server inject a token?");
  await page.waitForLoadState("load");
  const timing = await page.evaluate(() => {
    const navigation = performance.getEntriesByType("navigation")[0];
    return {
      signInVisibleMs: Math.round(globalThis.__signInShownAt ?? -1),
      domContentLoadedMs: Math.round(navigation.domContentLoadedEventEnd),
      loadEventMs: Math.round(navigation.loadEventEnd),
    };
  });
  emit({ step: "loaded", ...timing });

  signedIn = true;
  const submitted = Date.now();
  await tokenField.fill(env.token);
  await page.getByRole("button", { name: "Open GraphiQL" }).click();
  const tabs = page.getByRole("tablist", { name: "Select active operation" });
  await expectVisible(tabs, "GraphiQL did not appear after signing in");
  emit({ step: "signed-in" });

  // -- 3: the docs explorer, which needs the schema
  await page.getByRole("button", { name: "Show Documentation Explorer" }).click();
  const docs = page.getByRole("region", { name: "Documentation Explorer" });
  await expectVisible(docs.locator(".graphiql-doc-explorer-type-name", { hasText: /^Rental$/ }),
    "the docs explorer does not list the type Rental (was the schema loaded?)");
  const graphiqlReadyMs = Date.now() - submitted;
  emit({ step: "docs", type: "Rental", graphiqlReadyMs });
  if ((await page.getByText("Error fetching schema").count()) > 0) throw new Error('GraphiQL shows "Error fetching schema"');

  // -- 4: Catalog
  await openTab(page, "Catalog");
  await run(page);
  const catalog = await waitForResult(page, (text) => /"products"/.test(text) || /"errors"/.test(text), STEP_TIMEOUT_MS);
  if (/"errors"/.test(catalog) || !/"products"/.test(catalog)) {
    throw new Error(`the Catalog result has errors or no products:\n${catalog.slice(0, 800)}`);
  }
  emit({ step: "catalog", ok: true });

  // -- 5: FollowLive
  await openTab(page, "FollowLive");
  await setVariables(page, { id: env.rentalId });
  await run(page);
  const first = await waitForResult(page, (text) => /"deliveryStatusChanged"|"errors"/.test(text), SUBSCRIPTION_TIMEOUT_MS);
  if (/"errors"/.test(first)) throw new Error(`the subscription answered with errors:\n${first.slice(0, 800)}`);
  emit({ step: "subscribed" });
  const deadline = Date.now() + SUBSCRIPTION_TIMEOUT_MS;
  for (const status of ["SHIPPING", "DELIVERED"]) {
    const seen = await waitForResult(
      page,
      (text) => text.includes(`"status": "${status}"`) || /"errors"/.test(text),
      Math.max(0, deadline - Date.now()),
      `the result pane did not show ${status} within ${SUBSCRIPTION_TIMEOUT_MS / 1000} s of subscribing`,
    );
    if (/"errors"/.test(seen)) throw new Error(`the subscription answered with errors:\n${seen.slice(0, 800)}`);
    // -- 6: the picture is taken while the stream is open (SHIPPING on screen, the stop
    // button showing), before the caller is told to deliver: docs/graphiql.png.
    if (status === "SHIPPING" && env.screenshot) {
      await page.getByRole("button", { name: "Hide Documentation Explorer" }).click().catch(() => {});
      await page.waitForTimeout(300);
      await page.screenshot({ path: env.screenshot });
      emit({ step: "screenshot", path: env.screenshot });
    }
    emit({ step: "saw", status });
  }

  if (pageErrors.length > 0) problems.push(`errors on the page: ${pageErrors.join(" | ")}`);
  // Resource Timing: what came over the network, headers included (all same-origin).
  // Routing (the blocking above) turns Chromium's HTTP cache off, so a file loaded twice
  // (a worker, once per editor) crosses the wire twice here; firstLoadBytes counts each
  // URL once, as a browser with its cache would.
  const transfer = await page.evaluate(() => {
    const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
    const firstByUrl = new Map();
    for (const e of entries) if (!firstByUrl.has(e.name)) firstByUrl.set(e.name, e.transferSize);
    return {
      requests: entries.length,
      bytesOnWire: entries.reduce((sum, e) => sum + e.transferSize, 0),
      firstLoadBytes: [...firstByUrl.values()].reduce((sum, n) => sum + n, 0),
    };
  });
  emit({
    step: "done",
    firstLoadMs: timing.loadEventMs,
    ...timing,
    graphiqlReadyMs,
    requests: transfer.requests,
    bytesTransferred: transfer.firstLoadBytes,
    bytesOnWire: transfer.bytesOnWire,
  });
}

// One click opens a tab (the page makes sure GraphiQL's drag-to-reorder gesture does
// not swallow it); a tab not open a second later fails the test.
async function openTab(page, name) {
  const tab = page.getByRole("tab").filter({ hasText: new RegExp(`^${name}`) });
  if ((await tab.getAttribute("aria-selected")) === "true") return;
  await tab.click();
  for (let waited = 0; waited < 1000; waited += 50) {
    if ((await tab.getAttribute("aria-selected")) === "true") return;
    await page.waitForTimeout(50);
  }
  throw new Error(`one click did not open the ${name} tab`);
}

async function run(page) {
  await page.getByRole("button", { name: /^Execute query/ }).click();
}

// Replaces the active tab's variables as a person would: select all, paste (typed
// characters would meet Monaco's auto-closing brackets and quotes).
async function setVariables(page, variables) {
  const text = JSON.stringify(variables, null, 2);
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(page.url()).origin });
  await page.evaluate((value) => navigator.clipboard.writeText(value), text);
  await page.getByRole("button", { name: "Variables", exact: true }).click();
  const editor = page.locator('.monaco-editor[data-uri$="-variables.json"]');
  const wanted = text.replace(/\s/g, "");
  let shown = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    await editor.click();
    await page.keyboard.press("ControlOrMeta+KeyA");
    await page.keyboard.press("ControlOrMeta+KeyV");
    // The paste reads the clipboard asynchronously.
    for (let wait = 0; wait < 20; wait++) {
      shown = normalize(await editor.locator(".view-lines").innerText());
      if (shown.replace(/\s/g, "") === wanted) return;
      await page.waitForTimeout(100);
    }
  }
  throw new Error(`the variables editor shows ${shown}, not ${text}`);
}

// The text of the result pane, once `done(text)` holds.
async function waitForResult(page, done, timeoutMs, message) {
  const pane = page.locator('.monaco-editor[data-uri$="-response.json"] .view-lines');
  const deadline = Date.now() + timeoutMs;
  let text = "";
  for (;;) {
    text = normalize(await pane.innerText().catch(() => ""));
    if (done(text)) return text;
    if (Date.now() > deadline) {
      throw new Error(`${message ?? "the result pane did not show the expected result"}; it shows:\n${text.slice(0, 800)}`);
    }
    await page.waitForTimeout(100);
  }
}

async function expectVisible(locator, message) {
  try {
    await locator.first().waitFor({ state: "visible" });
  } catch {
    throw new Error(message);
  }
}

// Monaco renders spaces as U+00A0.
function normalize(text) {
  return text.replace(/\u00a0/g, " ");
}

async function finish(error) {
  clearTimeout(watchdog);
  // Every failure seen, the first one first.
  const messages = [
    ...(error ? [error.message] : []),
    ...(blocked.length > 0 ? [`the page requested other hosts (blocked): ${[...new Set(blocked)].join(", ")}`] : []),
    ...new Set(problems),
  ];
  error = messages.length > 0 ? new Error(messages.join("\n")) : null;
  if (error) {
    emit({ step: "failed", error: error.message });
    console.error(`graphiql.mjs: FAILED: ${error.message}`);
  }
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(error ? 1 : 0);
}
