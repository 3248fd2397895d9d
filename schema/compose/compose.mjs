#!/usr/bin/env node
// Composes the four subgraph SDL files into an Apollo Federation v2 supergraph.
//
//   node schema/compose/compose.mjs <schema-dir>           writes <schema-dir>/supergraph.graphql
//   node schema/compose/compose.mjs <schema-dir> --check   fails if that file is not up to date
//
// Reads inventory.graphql, rental.graphql, payment.graphql and delivery.graphql
// from <schema-dir> (the SDL each subgraph exports) and composes them with
// @theguild/federation-composition.
//
// Exit codes: 0 success, 1 composition error / stale supergraph / unreadable
// input, 2 bad command line.
//
// Dependencies: `npm ci --prefix schema/compose` (exact versions in package-lock.json).

import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import process from "node:process";

import { composeServices } from "@theguild/federation-composition";
import { parse, Source } from "graphql";

// Subgraph name -> port of its default URL. The router overrides the URLs at
// run time; these only fill the supergraph's `@join__graph(url:)` arguments.
const SUBGRAPHS = [
  { name: "inventory", port: 4001 },
  { name: "rental", port: 4002 },
  { name: "payment", port: 4003 },
  { name: "delivery", port: 4004 },
];

const OUTPUT_FILE = "supergraph.graphql";
const USAGE = "usage: node schema/compose/compose.mjs <schema-dir> [--check]";

function parseArgs(argv) {
  const check = argv.includes("--check");
  const positional = argv.filter((arg) => arg !== "--check");
  const unknownFlag = positional.find((arg) => arg.startsWith("-"));
  if (positional.length !== 1 || unknownFlag) {
    if (unknownFlag) console.error(`unknown option: ${unknownFlag}`);
    console.error(USAGE);
    process.exit(2);
  }
  return { schemaDir: positional[0], check };
}

async function readSubgraph(schemaDir, { name, port }) {
  const file = path.join(schemaDir, `${name}.graphql`);
  let sdl;
  try {
    sdl = await readFile(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read subgraph "${name}" from ${file}: ${err.message}`);
  }
  try {
    return {
      name,
      url: `http://localhost:${port}/graphql`,
      typeDefs: parse(new Source(sdl, file)),
    };
  } catch (err) {
    // GraphQLError.toString() adds "<file>:<line>:<column>" and a snippet.
    throw new Error(`cannot parse subgraph "${name}":\n${err.toString()}`);
  }
}

function printCompositionErrors(errors) {
  console.error(`Supergraph composition failed with ${errors.length} error(s):`);
  for (const error of errors) {
    const code = error.extensions?.code;
    console.error(code ? `  - [${code}] ${error.message}` : `  - ${error.message}`);
  }
}

// Ensures exactly one trailing newline, so the output is stable and diff-friendly.
function withTrailingNewline(text) {
  return `${text.trimEnd()}\n`;
}

// 1-based number of the first line where the two texts differ.
function firstDifferingLine(a, b) {
  const linesA = a.split("\n");
  const linesB = b.split("\n");
  const count = Math.max(linesA.length, linesB.length);
  for (let i = 0; i < count; i++) {
    if (linesA[i] !== linesB[i]) return i + 1;
  }
  return count;
}

async function checkUpToDate(outputFile, supergraph) {
  let existing;
  try {
    existing = await readFile(outputFile, "utf8");
  } catch (err) {
    if (err.code !== "ENOENT") throw err;
    console.error(`${outputFile} does not exist.`);
    return false;
  }
  if (existing === supergraph) {
    console.log(`${outputFile} is up to date.`);
    return true;
  }
  console.error(
    `${outputFile} is out of date: it differs from the composed supergraph ` +
      `(first difference at line ${firstDifferingLine(existing, supergraph)}).`,
  );
  return false;
}

async function main() {
  const { schemaDir, check } = parseArgs(process.argv.slice(2));
  const outputFile = path.join(schemaDir, OUTPUT_FILE);

  let services;
  try {
    services = await Promise.all(SUBGRAPHS.map((subgraph) => readSubgraph(schemaDir, subgraph)));
  } catch (err) {
    console.error(err.message);
    return 1;
  }

  // composeServices returns either { errors } or { supergraphSdl, publicSdl, ... }.
  // Version 0.27 reports no hints or warnings, only errors.
  const result = composeServices(services);
  if (result.errors) {
    printCompositionErrors(result.errors);
    return 1;
  }

  const supergraph = withTrailingNewline(result.supergraphSdl);

  if (check) {
    if (await checkUpToDate(outputFile, supergraph)) return 0;
    console.error(`Regenerate it with: node schema/compose/compose.mjs ${schemaDir}`);
    return 1;
  }

  await writeFile(outputFile, supergraph);
  console.log(`Wrote ${outputFile} (${services.length} subgraphs: ${SUBGRAPHS.map((s) => s.name).join(", ")}).`);
  return 0;
}

process.exitCode = await main();
