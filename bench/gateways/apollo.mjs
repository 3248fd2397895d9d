// Apollo Gateway (@apollo/gateway 2 on @apollo/server 5) serving the project's
// composed supergraph, as a peer to compare our router against.
//
// Environment:
//   GATEWAY_PORT     port to listen on (default 4100)
//   GATEWAY_HOST     address to listen on (default 127.0.0.1)
//   SUPERGRAPH_PATH  supergraph SDL file (default ../../schema/supergraph.graphql,
//                    relative to this script)
//   INVENTORY_URL, RENTAL_URL, PAYMENT_URL, DELIVERY_URL
//                    override the subgraph URL that the supergraph gives for
//                    that subgraph (by its join__graph name)
//
// The client's `authorization` header is forwarded to every subgraph request.
// Nothing here talks to Apollo's services: no uplink (the supergraph is a
// local file), no gateway telemetry (APOLLO_TELEMETRY_DISABLED), no usage or
// schema reporting, no landing page.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ApolloServer } from '@apollo/server';
import {
  ApolloServerPluginLandingPageDisabled,
  ApolloServerPluginSchemaReportingDisabled,
  ApolloServerPluginUsageReportingDisabled,
} from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';

const here = dirname(fileURLToPath(import.meta.url));

// @apollo/gateway 2.x sends anonymous telemetry to Apollo unless this is set:
// at construction it probes cloud metadata endpoints (169.254.169.254,
// 100.100.100.200, GCP metadata by DNS) and then exports metrics hourly to
// usage-reporting.api.apollographql.com. Forced off here, whatever the caller
// set.
process.env.APOLLO_TELEMETRY_DISABLED = 'true';
// Imported only now, so the module never sees the variable unset (static imports
// would be evaluated before the line above).
const { ApolloGateway, RemoteGraphQLDataSource } = await import('@apollo/gateway');

const port = parsePort(process.env.GATEWAY_PORT, 4100);
const host = process.env.GATEWAY_HOST || '127.0.0.1';
const supergraphPath = resolve(
  process.env.SUPERGRAPH_PATH || resolve(here, '../../schema/supergraph.graphql'),
);

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

function subgraphUrl(name, urlFromSupergraph) {
  const envVar = URL_OVERRIDE_VARS[name];
  const override = envVar ? process.env[envVar] : undefined;
  return override || urlFromSupergraph;
}

// Copies the incoming request's Authorization header onto each subgraph fetch.
class AuthForwardingDataSource extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    if (context && context.authorization) {
      request.http.headers.set('authorization', context.authorization);
    }
  }
}


const supergraphSdl = readFileSync(supergraphPath, 'utf8');
const resolvedUrls = {};

const gateway = new ApolloGateway({
  supergraphSdl,
  buildService({ name, url }) {
    const target = subgraphUrl(name, url);
    resolvedUrls[name] = target;
    return new AuthForwardingDataSource({ url: target });
  },
});

const server = new ApolloServer({
  gateway,
  introspection: false,
  // Like a production deployment (NODE_ENV=production would do the same).
  includeStacktraceInErrorResponses: false,
  stopOnTerminationSignals: true,
  plugins: [
    ApolloServerPluginLandingPageDisabled(),
    ApolloServerPluginUsageReportingDisabled(),
    ApolloServerPluginSchemaReportingDisabled(),
  ],
});

const { url } = await startStandaloneServer(server, {
  listen: { port, host },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});

console.log(
  `apollo-gateway ready at ${url} (supergraph ${supergraphPath}; subgraphs ${Object.entries(resolvedUrls)
    .map(([name, u]) => `${name}=${u}`)
    .join(' ')})`,
);

// SIGINT/SIGTERM: Apollo Server's own handlers (stopOnTerminationSignals) stop
// the server, draining the HTTP server, then exit.
