// Compares two versions of the public GraphQL API and fails on a breaking change.
//
//   node gate.mjs OLD.graphql NEW.graphql [ACKNOWLEDGED]
//
// OLD and NEW are supergraphs (or plain SDL). The public API is what a client of the
// router sees: the federation machinery (join__*, link__*, @link, @inaccessible and
// their definitions) and everything marked @inaccessible (service-to-service fields
// such as chargeRental) are taken out first. graphql-js's findBreakingChanges then
// lists what would break an existing client: a removed type, field, argument or enum
// value, a type changed, a newly required argument or input field, and so on.
//
// ACKNOWLEDGED is a file of changes the team accepts, one per line, exactly as this
// script prints them ("FIELD_REMOVED: Query.oldField was removed."); `#` starts a
// comment. Exit 0 when every breaking change is acknowledged, 1 otherwise, 2 on bad input.

import { readFileSync, existsSync } from "node:fs";
import { Kind, buildASTSchema, findBreakingChanges, findDangerousChanges, parse, visit } from "graphql";

const FEDERATION_DIRECTIVE = /^(join__|link__)|^(link|inaccessible)$/;
const FEDERATION_TYPE = /^(join__|link__)/;

function isInaccessible(node) {
  return (node.directives ?? []).some((directive) => directive.name.value === "inaccessible");
}

/** The schema a client of the router sees, from a supergraph or a plain SDL. */
export function publicSchema(sdl) {
  const document = visit(parse(sdl), {
    enter(node) {
      switch (node.kind) {
        case Kind.SCHEMA_DEFINITION:
        case Kind.SCHEMA_EXTENSION:
          // Root types keep their conventional names (Query, Mutation, Subscription).
          return null;
        case Kind.DIRECTIVE_DEFINITION:
          return FEDERATION_DIRECTIVE.test(node.name.value) ? null : undefined;
        case Kind.DIRECTIVE:
          return FEDERATION_DIRECTIVE.test(node.name.value) ? null : undefined;
        case Kind.OBJECT_TYPE_DEFINITION:
        case Kind.INTERFACE_TYPE_DEFINITION:
        case Kind.UNION_TYPE_DEFINITION:
        case Kind.ENUM_TYPE_DEFINITION:
        case Kind.INPUT_OBJECT_TYPE_DEFINITION:
        case Kind.SCALAR_TYPE_DEFINITION:
          return FEDERATION_TYPE.test(node.name.value) || isInaccessible(node) ? null : undefined;
        case Kind.FIELD_DEFINITION:
        case Kind.INPUT_VALUE_DEFINITION:
        case Kind.ENUM_VALUE_DEFINITION:
          return isInaccessible(node) ? null : undefined;
        default:
          return undefined;
      }
    },
  });
  return buildASTSchema(document);
}

/** Each change as one line: "TYPE: description". */
export function changes(oldSdl, newSdl) {
  const before = publicSchema(oldSdl);
  const after = publicSchema(newSdl);
  const line = (change) => `${change.type}: ${change.description}`;
  return {
    breaking: findBreakingChanges(before, after).map(line).sort(),
    dangerous: findDangerousChanges(before, after).map(line).sort(),
  };
}

function acknowledged(path) {
  if (!path || !existsSync(path)) return new Set();
  return new Set(
    readFileSync(path, "utf8")
      .split("\n")
      .map((line) => line.replace(/#.*/, "").trim())
      .filter(Boolean),
  );
}

function main([oldPath, newPath, ackPath]) {
  if (!oldPath || !newPath) {
    console.error("usage: node gate.mjs OLD.graphql NEW.graphql [ACKNOWLEDGED]");
    return 2;
  }
  let found;
  try {
    found = changes(readFileSync(oldPath, "utf8"), readFileSync(newPath, "utf8"));
  } catch (error) {
    console.error(`schema gate: cannot read the schemas: ${error.message}`);
    return 2;
  }
  const accepted = acknowledged(ackPath);
  const open = found.breaking.filter((change) => !accepted.has(change));
  for (const change of found.dangerous) console.log(`  note (not breaking): ${change}`);
  for (const change of found.breaking) {
    console.log(`  ${accepted.has(change) ? "acknowledged" : "BREAKING"}: ${change}`);
  }
  if (open.length > 0) {
    console.log(
      `schema gate: ${open.length} breaking change(s) of the public API. Make the change ` +
        `backwards compatible (expand/contract: docs/deployment.md), or acknowledge each ` +
        `line above, as printed, in ${ackPath ?? "the acknowledged-changes file"}.`,
    );
    return 1;
  }
  console.log(
    `schema gate: no unacknowledged breaking change (${found.breaking.length} acknowledged, ` +
      `${found.dangerous.length} note(s)).`,
  );
  return 0;
}

process.exitCode = main(process.argv.slice(2));
