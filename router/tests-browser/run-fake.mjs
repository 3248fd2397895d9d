#!/usr/bin/env node
// Runs graphiql.mjs against fake-router.mjs and plays the Rust test's part: once the
// page prints {"step":"subscribed"}, it ships the delivery, and once the page saw
// SHIPPING, it delivers it, both through the (fake) router's GraphQL API.
//
//   node run-fake.mjs [--screenshot=/tmp/graphiql.png]
//
// Needs router/graphiql/dist (node ../graphiql/build.mjs) and /usr/bin/chromium.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FAKE_DELIVERY_ID, FAKE_RENTAL_ID, mintToken, startFakeRouter } from "./fake-router.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const screenshot = process.argv.find((a) => a.startsWith("--screenshot="))?.slice("--screenshot=".length);

const router = await startFakeRouter();
const token = mintToken({ role: "operator" });

async function mutate(field) {
  const response = await fetch(router.url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: `mutation($id: ID!) { ${field}(id: $id) { id status } }`, variables: { id: FAKE_DELIVERY_ID } }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(`${field}: ${JSON.stringify(body.errors)}`);
  console.error(`run-fake: ${field} -> ${body.data[field].status}`);
}

const child = spawn(process.execPath, [join(HERE, "graphiql.mjs")], {
  env: { ...process.env, GRAPHIQL_URL: router.url, TOKEN: token, RENTAL_ID: FAKE_RENTAL_ID, ...(screenshot && { SCREENSHOT: screenshot }) },
  stdio: ["ignore", "pipe", "inherit"],
});
for await (const line of createInterface({ input: child.stdout })) {
  console.log(line);
  let step;
  try {
    step = JSON.parse(line);
  } catch {
    continue;
  }
  // A moment between the steps, as a person (or the Rust test) would take.
  if (step.step === "subscribed") setTimeout(() => mutate("startDelivery").catch(fail), 500);
  if (step.step === "saw" && step.status === "SHIPPING") setTimeout(() => mutate("completeDelivery").catch(fail), 500);
}
const code = await new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on("exit", resolve)));
await router.close();
process.exit(code ?? 1);

function fail(error) {
  console.error(`run-fake: ${error.message}`);
  child.kill();
}
