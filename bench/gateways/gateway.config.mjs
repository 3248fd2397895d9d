// Hive Gateway configuration, read by the `hive-gateway` CLI from the current
// directory (or pass `-c bench/gateways/gateway.config.mjs`). Serves the
// project's composed supergraph as a peer to compare our router against:
//
//   npx hive-gateway supergraph
//
// Environment:
//   GATEWAY_PORT     port to listen on (default 4200; the CLI's --port / PORT win)
//   GATEWAY_HOST     address to listen on (default 127.0.0.1; the CLI's --host / HOST win)
//   SUPERGRAPH_PATH  supergraph SDL file (default ../../schema/supergraph.graphql,
//                    relative to this file; a path given on the command line wins)
//   INVENTORY_URL, RENTAL_URL, PAYMENT_URL, DELIVERY_URL
//                    override the subgraph URL that the supergraph gives for
//                    that subgraph (by its join__graph name)
//
// The client's `authorization` header is forwarded to every subgraph request.
// Nothing here talks to the Hive registry or CDN: the supergraph is a local
// file (watched, not polled), and usage reporting and tracing stay off as long
// as no Hive/Apollo token or target is given (none is set here).

import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

// Subgraph name (as in the supergraph's join__graph directives) -> env var.
const URL_OVERRIDE_VARS = {
  inventory: 'INVENTORY_URL',
  rental: 'RENTAL_URL',
  payment: 'PAYMENT_URL',
  delivery: 'DELIVERY_URL',
};

function parsePort(value, fallback) {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new Error(`GATEWAY_PORT must be a port number, got ${JSON.stringify(value)}`);
  }
  return n;
}

// Per-subgraph transport entries: `location` replaces the URL from the
// supergraph's @join__graph(url:) for that subgraph.
const transportEntries = {};
for (const [subgraph, envVar] of Object.entries(URL_OVERRIDE_VARS)) {
  const url = process.env[envVar];
  if (url) transportEntries[subgraph] = { location: url };
}

/** @type {import('@graphql-hive/gateway').GatewayCLIConfig} */
export const gatewayConfig = {
  supergraph: resolve(
    process.env.SUPERGRAPH_PATH || resolve(here, '../../schema/supergraph.graphql'),
  ),
  port: parsePort(process.env.GATEWAY_PORT, 4200),
  host: process.env.GATEWAY_HOST || '127.0.0.1',
  transportEntries,
  propagateHeaders: {
    fromClientToSubgraphs: ({ request }) => ({
      authorization: request.headers.get('authorization'),
    }),
  },
  landingPage: false,
  graphiql: false,
  disableIntrospection: {},
};
