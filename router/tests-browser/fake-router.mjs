// A stand-in for the router, for testing the GraphiQL page without building Rust:
//
//   node fake-router.mjs [--port=4000] [--dev-token]
//
// It serves router/graphiql/dist the way the router plugin is meant to (see
// router/graphiql/plugin_draft.rs: the page on GET /graphql for browsers, the assets
// under the manifest's prefix with ETag, 304, gzip and immutable caching), and answers
// GraphQL on /graphql with graphql-js over the real schema (schema/supergraph.graphql,
// stripped to its public API as the router does), from a little in-memory data:
//   - POST /graphql: queries and mutations, JSON;
//   - GET /graphql?query=... with Accept: text/event-stream: subscriptions as SSE, in the
//     router's format (event: next / event: complete, ":" heartbeats);
//   - authentication with the router's answers (401 UNAUTHENTICATED, the same sentences),
//     over tokens of its own: HS256 with a secret only this fake knows. The real router
//     accepts only asymmetric tokens from an identity provider (docs/security.md); the
//     page never looks inside a token, so the fake need not.
// The data: three products, and rental FAKE_RENTAL_ID whose delivery FAKE_DELIVERY_ID is
// REQUESTED; startDelivery/completeDelivery move it on and notify subscribers.
//
// Used by run-fake.mjs (graphiql.mjs against it) and page-checks.mjs.

import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildASTSchema, execute, GraphQLError, Kind, parse, subscribe, validate } from "graphql";

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, "..", "graphiql", "dist");
const SUPERGRAPH = join(HERE, "..", "..", "schema", "supergraph.graphql");

export const FAKE_SECRET = "fake-router-only-secret";
export const DEV_CUSTOMER_ID = "0192f1a4-0000-7000-8000-00000000c0de";
export const FAKE_RENTAL_ID = "0192f1a4-0000-7000-8000-00000000a001";
export const FAKE_DELIVERY_ID = "0192f1a4-0000-7000-8000-00000000d001";

// ---- tokens (the same claims as subgraph-kit's TokenSigner) ----

export function mintToken({ role, sub, expiresIn = 3600, secret = FAKE_SECRET }) {
  const now = Math.floor(Date.now() / 1000);
  const subject = sub ?? (role === "customer" ? DEV_CUSTOMER_ID : "dev-operator");
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "HS256" }));
  const payload = b64url(JSON.stringify({ sub: subject, role, iss: "water-rental", iat: now, exp: now + expiresIn }));
  const signature = createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}

function b64url(text) {
  return Buffer.from(text).toString("base64url");
}

// The identity, or the router's UNAUTHENTICATED sentence.
function authenticate(authorization) {
  if (!authorization) return { error: "authentication required: send an 'Authorization: Bearer <token>' header" };
  const match = /^Bearer (.+)$/.exec(authorization);
  if (!match) return { error: "the Authorization header must have the form 'Bearer <token>'" };
  const parts = match[1].split(".");
  if (parts.length !== 3) return { error: "the token is not valid: it is not a well-formed JWT" };
  const expected = createHmac("sha256", FAKE_SECRET).update(`${parts[0]}.${parts[1]}`).digest("base64url");
  if (expected !== parts[2]) return { error: "the token is not valid: its signature does not match" };
  let claims;
  try {
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  } catch {
    return { error: "the token is not valid: it is not a well-formed JWT" };
  }
  if (claims.iss !== "water-rental") return { error: "the token is not valid: it was not issued by this service" };
  if (typeof claims.exp !== "number" || claims.exp * 1000 < Date.now()) return { error: "the token has expired: get a new one" };
  return { identity: { role: claims.role, sub: claims.sub } };
}

// ---- the schema: the supergraph's public API ----

export function publicSchema() {
  const document = parse(readFileSync(SUPERGRAPH, "utf8"));
  const internal = (name) => /^(join__|link__)/.test(name) || name === "link" || name === "inaccessible";
  const inaccessible = (node) => node.directives?.some((d) => d.name.value === "inaccessible");
  const definitions = document.definitions
    .filter((d) => !(d.name && internal(d.name.value)))
    // Only the @inaccessible chargeRental takes it.
    .filter((d) => d.name?.value !== "ChargeRentalInput")
    .map((d) => ({
      ...d,
      directives: [],
      ...(d.fields && { fields: d.fields.filter((f) => !inaccessible(f)).map((f) => ({ ...f, directives: [] })) }),
      ...(d.values && { values: d.values.map((v) => ({ ...v, directives: [] })) }),
    }));
  return buildASTSchema({ ...document, definitions });
}

// ---- data ----

function createData() {
  const now = () => new Date().toISOString();
  const products = [
    { id: "0192f1a4-0000-7000-8000-000000000001", name: "AquaPure Mini", description: "A countertop dispenser for one or two.", monthlyFee: 19900, stock: 5, createdAt: now() },
    { id: "0192f1a4-0000-7000-8000-000000000002", name: "AquaPure Family", description: "Hot, cold and ambient, for a household.", monthlyFee: 29900, stock: 2, createdAt: now() },
    { id: "0192f1a4-0000-7000-8000-000000000003", name: "AquaPure Office", description: "Floor-standing, for up to 30 people.", monthlyFee: 49900, stock: 0, createdAt: now() },
  ];
  const rental = {
    id: FAKE_RENTAL_ID, customerId: DEV_CUSTOMER_ID, productId: products[0].id, months: 12, monthlyFee: 19900,
    deliveryAddress: "12 Teheran-ro, Gangnam-gu, Seoul", status: "ACCEPTED", createdAt: now(), updatedAt: now(),
    timeline: [{ kind: "PAID", at: now() }, { kind: "DELIVERY_REQUESTED", at: now() }],
  };
  const payment = { id: "0192f1a4-0000-7000-8000-00000000b001", rentalId: rental.id, amount: 19900, cardLast4: "4242", status: "PAID", paidAt: now(), refundedAt: null };
  const delivery = {
    id: FAKE_DELIVERY_ID, rentalId: rental.id, productId: products[0].id, address: rental.deliveryAddress,
    status: "REQUESTED", requestedAt: now(), shippedAt: null, deliveredAt: null, cancelledAt: null, waitingForStock: false,
  };
  return {
    products,
    rentals: new Map([[rental.id, rental]]),
    payments: new Map([[rental.id, payment]]),
    deliveries: new Map([[delivery.id, delivery]]),
    listeners: new Set(), // functions called with each changed delivery
  };
}

function resolvers(data) {
  const product = (id) => data.products.find((p) => p.id === id) ?? null;
  const deliveryOfRental = (rentalId) => [...data.deliveries.values()].find((d) => d.rentalId === rentalId) ?? null;
  const rentalView = (r) => r && {
    ...r,
    product: () => productView(product(r.productId)),
    payment: () => data.payments.get(r.id) ?? null,
    delivery: () => deliveryView(deliveryOfRental(r.id)),
  };
  const productView = (p) => p && { ...p };
  const deliveryView = (d) => d && {
    ...d,
    product: () => productView(product(d.productId)),
    rental: () => rentalView(data.rentals.get(d.rentalId)),
  };
  const connection = (nodes) => ({
    edges: nodes.map((node, i) => ({ node, cursor: String(i) })),
    nodes,
    pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: nodes.length ? "0" : null, endCursor: nodes.length ? String(nodes.length - 1) : null },
  });
  const checkId = (id, what) => {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
      throw new GraphQLError(`"${id}" is not a valid ${what} id: ids look like 0192f1a4-7c3e-7d1a-9b2e-1f6c3a5d8e90`, { extensions: { code: "BAD_USER_INPUT" } });
    }
  };
  const operatorOnly = (ctx) => {
    if (ctx.identity.role !== "operator") throw new GraphQLError("only operators may do this", { extensions: { code: "FORBIDDEN" } });
  };
  const change = (delivery, status, field) => {
    if (field) delivery[field] = new Date().toISOString();
    delivery.status = status;
    const rental = data.rentals.get(delivery.rentalId);
    if (status === "SHIPPING") rental.timeline.push({ kind: "SHIPPED", at: delivery.shippedAt });
    if (status === "DELIVERED") {
      rental.status = "ACTIVE";
      rental.timeline.push({ kind: "DELIVERED", at: delivery.deliveredAt });
    }
    for (const listener of data.listeners) listener(delivery);
    return deliveryView(delivery);
  };
  const findDelivery = (id) => {
    checkId(id, "delivery");
    const d = data.deliveries.get(id);
    if (!d) throw new GraphQLError(`no delivery ${id}`, { extensions: { code: "NOT_FOUND" } });
    return d;
  };
  return {
    products: () => connection(data.products.map(productView)),
    product: ({ id }) => (checkId(id, "product"), productView(product(id))),
    rental: ({ id }) => (checkId(id, "rental"), rentalView(data.rentals.get(id) ?? null)),
    myRentals: (_args, ctx) => connection([...data.rentals.values()].filter((r) => r.customerId === ctx.identity.sub).map(rentalView)),
    deliveries: ({ status }, ctx) => {
      operatorOnly(ctx);
      return connection([...data.deliveries.values()].filter((d) => !status || d.status === status).map(deliveryView));
    },
    delivery: ({ id }) => deliveryView(findDelivery(id)),
    startDelivery: ({ id }, ctx) => {
      operatorOnly(ctx);
      const d = findDelivery(id);
      if (d.status !== "REQUESTED") throw new GraphQLError(`delivery ${id} is ${d.status}, not REQUESTED`, { extensions: { code: "CONFLICT" } });
      return change(d, "SHIPPING", "shippedAt");
    },
    completeDelivery: ({ id }, ctx) => {
      operatorOnly(ctx);
      const d = findDelivery(id);
      if (d.status !== "SHIPPING") throw new GraphQLError(`delivery ${id} is ${d.status}, not SHIPPING`, { extensions: { code: "CONFLICT" } });
      return change(d, "DELIVERED", "deliveredAt");
    },
    rent: () => {
      throw new GraphQLError("the fake router does not rent; it has rental " + FAKE_RENTAL_ID, { extensions: { code: "NOT_IMPLEMENTED" } });
    },
    cancelRental: ({ id }) => (checkId(id, "rental"), rentalView(data.rentals.get(id) ?? null)),
    // Subscription: the current state, then every change, until a final status.
    deliveryStatusChanged: ({ rentalId }) => {
      checkId(rentalId, "rental");
      return (async function* () {
        const queue = [];
        let wake = null;
        const listener = (d) => {
          if (d.rentalId !== rentalId) return;
          queue.push({ ...d });
          wake?.();
        };
        data.listeners.add(listener);
        try {
          const current = deliveryOfRental(rentalId);
          if (current) queue.push({ ...current });
          for (;;) {
            while (queue.length === 0) await new Promise((resolve) => (wake = resolve));
            const d = queue.shift();
            yield { deliveryStatusChanged: deliveryView(data.deliveries.get(d.id) && d) };
            if (d.status === "DELIVERED" || d.status === "CANCELLED") return;
          }
        } finally {
          data.listeners.delete(listener);
        }
      })();
    },
  };
}

// ---- HTTP ----

export function startFakeRouter({ port = 0, host = "127.0.0.1", devToken = null, log = () => {} } = {}) {
  const schema = publicSchema();
  const data = createData();
  const rootValue = resolvers(data);
  const manifest = JSON.parse(readFileSync(join(DIST, "manifest.json"), "utf8"));
  const files = new Map(manifest.files.map((f) => [f.path, { ...f, body: readFileSync(join(DIST, f.path)), gz: f.gzip && readFileSync(join(DIST, f.gzip.path)) }]));
  const config = JSON.stringify({ endpoint: "/graphql", token: devToken, role: devToken ? "operator" : null }).replace(/</g, "\\u003c");
  const html = Buffer.from(files.get("index.html").body.toString("utf8").replace(manifest.configPlaceholder, config));
  const htmlEtag = `"${createHash("sha256").update(html).digest("hex").slice(0, 16)}"`;

  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    log(`${req.method} ${url.pathname}${url.search ? "?…" : ""} ${req.headers.accept ?? ""}`);
    if (url.pathname === "/graphql" && (req.method === "GET" || req.method === "HEAD") && wantsHtml(req.headers.accept)) {
      return sendFile(req, res, { contentType: "text/html; charset=utf-8", body: html, etag: htmlEtag, cache: "no-cache" });
    }
    if (url.pathname.startsWith(manifest.prefix)) {
      const file = files.get(url.pathname.slice(manifest.prefix.length));
      if (!file || !file.immutable) return send(res, 404, "text/plain; charset=utf-8", "not found\n");
      return sendFile(req, res, {
        contentType: file.contentType, body: file.body, gzip: file.gz, etag: `"${file.sha256_16}"`,
        cache: "public, max-age=31536000, immutable",
      });
    }
    if (url.pathname === "/graphql") return graphql(req, res, url, { schema, rootValue });
    send(res, 404, "text/plain; charset=utf-8", "not found\n");
  });
  return new Promise((resolve) => {
    server.listen(port, host, () => {
      const address = server.address();
      resolve({ server, data, url: `http://${host}:${address.port}/graphql`, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) });
    });
  });
}

// Like the plugin: a browser's navigation asks for text/html first; a GraphQL client
// asks for JSON or an event stream.
function wantsHtml(accept = "") {
  const q = (type) => {
    let best = -1;
    for (const part of accept.split(",")) {
      const [range, ...params] = part.trim().split(";");
      if (range.trim().toLowerCase() !== type) continue;
      const qParam = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
      best = Math.max(best, qParam ? Number(qParam.slice(2)) : 1);
    }
    return best;
  };
  const html = q("text/html");
  return html > 0 && ["application/json", "application/graphql-response+json", "text/event-stream", "multipart/mixed"].every((t) => q(t) < html);
}

function sendFile(req, res, { contentType, body, gzip, etag, cache }) {
  const useGzip = gzip && /\bgzip\b/.test(req.headers["accept-encoding"] ?? "");
  const tag = useGzip ? etag.replace(/"$/, '.gz"') : etag;
  const headers = { "Content-Type": contentType, "Cache-Control": cache, ETag: tag, Vary: "Accept-Encoding", "X-Content-Type-Options": "nosniff" };
  if (contentType.startsWith("text/html")) {
    headers.Vary = "Accept, Accept-Encoding";
    headers["Content-Security-Policy"] = CSP;
  }
  const inm = req.headers["if-none-match"];
  if (inm && inm.split(",").map((t) => t.trim().replace(/^W\//, "")).some((t) => t === etag || t === etag.replace(/"$/, '.gz"') || t === "*")) {
    res.writeHead(304, { ETag: tag, "Cache-Control": cache, Vary: headers.Vary });
    return res.end();
  }
  const payload = useGzip ? gzip : body;
  if (useGzip) headers["Content-Encoding"] = "gzip";
  headers["Content-Length"] = payload.length;
  res.writeHead(200, headers);
  res.end(req.method === "HEAD" ? undefined : payload);
}

// What the page needs, nothing more: it loads nothing from elsewhere.
export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "worker-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

function send(res, status, contentType, body) {
  res.writeHead(status, { "Content-Type": contentType });
  res.end(body);
}

async function graphql(req, res, url, { schema, rootValue }) {
  const auth = authenticate(req.headers.authorization);
  const stream = /text\/event-stream/.test(req.headers.accept ?? "");
  if (auth.error) {
    return send(res, 401, "application/json", JSON.stringify({ errors: [{ message: auth.error, extensions: { code: "UNAUTHENTICATED" } }] }));
  }
  let params;
  try {
    if (req.method === "POST") {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      params = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } else {
      params = {
        query: url.searchParams.get("query"),
        operationName: url.searchParams.get("operationName"),
        variables: url.searchParams.get("variables") ? JSON.parse(url.searchParams.get("variables")) : undefined,
      };
    }
  } catch {
    return send(res, 400, "application/json", JSON.stringify({ errors: [{ message: "the request is not valid JSON" }] }));
  }
  let document;
  try {
    document = parse(params.query ?? "");
  } catch (error) {
    return send(res, 400, "application/json", JSON.stringify({ errors: [{ message: error.message, extensions: { code: "GRAPHQL_PARSE_FAILED" } }] }));
  }
  const errors = validate(schema, document);
  if (errors.length > 0) {
    return send(res, 400, "application/json", JSON.stringify({ errors: errors.map((e) => ({ message: e.message, extensions: { code: "GRAPHQL_VALIDATION_FAILED" } })) }));
  }
  const args = { schema, document, rootValue, contextValue: auth, variableValues: params.variables, operationName: params.operationName || undefined };
  const operation = document.definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION && (!params.operationName || d.name?.value === params.operationName));
  if (operation?.operation === "subscription") {
    if (!stream) return send(res, 406, "application/json", JSON.stringify({ errors: [{ message: "subscriptions need Accept: text/event-stream" }] }));
    const result = await subscribe(args);
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
    const heartbeat = setInterval(() => res.write(":\n\n"), 10_000);
    res.on("close", () => {
      clearInterval(heartbeat);
      result.return?.();
    });
    if (Symbol.asyncIterator in result) {
      for await (const event of result) res.write(`event: next\ndata: ${JSON.stringify(event)}\n\n`);
    } else {
      res.write(`event: next\ndata: ${JSON.stringify(result)}\n\n`);
    }
    res.write("event: complete\n\n");
    clearInterval(heartbeat);
    return res.end();
  }
  const result = await execute(args);
  send(res, 200, "application/json", JSON.stringify(result));
}

// ---- run on its own ----

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv.find((a) => a.startsWith("--port="))?.slice(7) ?? 4000);
  const devToken = process.argv.includes("--dev-token") ? mintToken({ role: "operator" }) : null;
  const { url } = await startFakeRouter({ port, devToken, log: (line) => console.log(line) });
  console.log(`fake router: ${url}`);
  console.log(`operator token: ${mintToken({ role: "operator" })}`);
  console.log(`customer token: ${mintToken({ role: "customer" })}`);
  console.log(`rental id: ${FAKE_RENTAL_ID}  delivery id: ${FAKE_DELIVERY_ID}`);
}
