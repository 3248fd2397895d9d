#!/usr/bin/env node
// Builds dist/: every file the router's GraphiQL page needs, so that the page works
// without internet access.
//
//   node build.mjs [--prefix=/graphiql/]
//
// Input: @graphql-yoga/graphiql (node_modules, pinned by package-lock.json), index.html
// and src/. Output, in dist/:
//   index.html            the page; the server replaces __GRAPHIQL_CONFIG__ and sends it
//                         with Cache-Control: no-cache
//   <name>.<hash>.<ext>   every asset, named by the first 16 hex digits of its sha256,
//                         served under the prefix with a year-long immutable cache
//   <name>.<hash>.<ext>.gz the same, gzipped (text files only)
//   manifest.json         every file: path, content type, hash, sizes
//   assets.rs             the same for the router, with include_bytes! of each file
//
// The build fails if any file holds a URL outside the page's own origin that is not in
// the reviewed list below (URL_ALLOWLIST), so that an update of the package cannot
// quietly bring back a CDN. Plain Node (18 or later), no dependencies.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync, gzipSync } from "node:zlib";

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, "dist");
const PACKAGE = "@graphql-yoga/graphiql";
const PACKAGE_DIR = join(HERE, "node_modules", ...PACKAGE.split("/"));
const CONFIG_PLACEHOLDER = "__GRAPHIQL_CONFIG__";

const prefix = normalizePrefix(
  process.argv.find((arg) => arg.startsWith("--prefix="))?.slice("--prefix=".length) ??
    process.env.GRAPHIQL_PREFIX ??
    "/graphiql/",
);

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};
const COMPRESSIBLE = new Set([".html", ".js", ".css", ".svg"]);

// Every URL the files may contain, each with why it is harmless. Anything else fails the
// build. `files` limits an entry to the files whose logical name matches.
const URL_ALLOWLIST = [
  // XML namespaces: identifiers that React, Monaco and the SVG icon put on elements;
  // a browser never requests them.
  { url: /^http:\/\/www\.w3\.org\/(2000\/svg|1999\/xlink|1999\/xhtml|1998\/Math\/MathML|XML\/1998\/namespace)$/, why: "XML namespace name (SVG, XLink, XHTML, MathML, XML), never fetched" },
  // String building, no host: markdown-it and marked prefix "www.example.org" links in
  // schema descriptions with it.
  { url: /^https?:\/\/$/, why: "bare scheme prefix used to build links from descriptions, no host" },
  // Error and warning texts (thrown or logged, never requested).
  { url: /^https:\/\/react\.dev\/errors\/$/, why: "React's production error text (\"see https://react.dev/errors/N\")" },
  { url: /^https:\/\/yarnpkg\.com\/en\/docs\/selective-version-resolutions$/, why: "graphql-js error text about duplicate graphql modules" },
  { url: /^https:\/\/radix-ui\.com\/primitives\/docs\/components\/\$$/, why: "Radix UI console warning text" },
  { url: /^https:\/\/prettier\.io\/docs\/plugins#optional-embed$/, why: "Prettier error text" },
  { url: /^https:\/\/github\.com\/microsoft\/monaco-editor#faq$/, why: "Monaco console warning text (shown only if workers fail)" },
  { url: /^https:\/\/github\.com\/markedjs\/marked\.$/, why: "marked error text" },
  { url: /^https:\/\/github\.com\/graphql\/graphiql\/tree\/main\/packages\/monaco-graphql#custom-webworker-for-passing-non-static-config-to-worker\.$/, why: "GraphiQL error text for a removed prop" },
  { url: /^https:\/\/github\.com\/graphql\/defer-stream-wg\/discussions\/100$/, why: "graphql-js validation message text" },
  { url: /^https:\/\/github\.com\/(brijeshb42\/monaco-vim|aioutecism\/monaco-emacs)\.?$/, why: "GraphiQL error text for a removed prop" },
  // Descriptions and documentation shown as text or as links a person may click;
  // nothing loads them (offline, such a link just does not open).
  { url: /^https:\/\/en\.wikipedia\.org\/wiki\/IEEE_floating_point$/, why: "graphql-js description of the Float scalar" },
  { url: /^https:\/\/commonmark\.org\/$/, why: "graphql-js description of @deprecated" },
  { url: /^https:\/\/code\.visualstudio\.com\/(docs\/reference\/default-keybindings|shortcuts\/keyboard-shortcuts-(windows|macos)\.pdf|docs\/editor\/codebasics#_(multicursor-modifier|find-and-replace))$/, why: "links in GraphiQL's Short Keys dialog and Monaco setting descriptions (clicked, never loaded)" },
  { url: /^https:\/\/github\.com\/graphql\/graphiql$/, why: "GraphiQL's default logo link (Yoga replaces the logo; a click target at most)" },
  { url: /^https:\/\/(www\.onegraph\.com|github\.com\/OneGraph\/graphiql-explorer)$/, why: "attribution links in the Explorer plugin (clicked, never loaded)" },
  { url: /^https:\/\/microsoft\.com$/, why: "Monaco's markdown escaping test string \"](https://microsoft.com)\"" },
  { url: /^https:\/\/dummyhostname\.com$/, why: "base URL that url-loader passes to new URL() to parse a relative path; never requested" },
  // The Monaco workers: comments of the color and keyboard helpers, and the license.
  { url: /^https?:\/\/(en\.wikipedia\.org\/wiki\/HSL_color_space\.|www\.rapidtables\.com\/convert\/color\/(rgb-to-hsv|hsv-to-rgb)\.htm|24ways\.org\/2010\/calculating-color-contrast|www\.w3\.org\/TR\/WCAG20\/#relativeluminancedef|lists\.w3\.org\/Archives\/Public\/www-dom\/2010JulSep\/att-0182\/keyCode-spec\.html|www\.example\.com\/some\/path)$/, files: /worker/, why: "source comment in a Monaco worker" },
  { url: /^https:\/\/github\.com\/microsoft\/monaco-editor\/blob\/main\/LICENSE\.txt$/, files: /worker/, why: "license comment" },
  // JSON Schema: the JSON worker knows the meta-schemas by these ids; GraphiQL's
  // variables editor runs it with enableSchemaRequest: false, so it fetches nothing.
  { url: /^https?:\/\/json-schema\.org\/(draft-0[3467]\/schema#?|draft\/20(19-09|20-12)\/schema|draft-)?$/, files: /worker/, why: "JSON Schema $schema id (schema requests are off)" },
];

main();

function main() {
  const installed = readJson(join(PACKAGE_DIR, "package.json"), null);
  const pinned = readJson(join(HERE, "package.json"), {}).dependencies?.[PACKAGE];
  if (!installed) fail(`${PACKAGE} is not installed: run \`npm ci\` in ${HERE}`);
  if (installed.version !== pinned) {
    fail(`node_modules has ${PACKAGE} ${installed.version} but package.json pins ${pinned}: run \`npm ci\``);
  }

  rmSync(DIST, { recursive: true, force: true });
  mkdirSync(DIST, { recursive: true });

  const yogaDist = join(PACKAGE_DIR, "dist");
  const sources = [
    // logical name, bytes
    ["yoga-graphiql.js", readFileSync(join(yogaDist, "yoga-graphiql.umd.js"))],
    ["graphiql.css", readFileSync(join(yogaDist, "graphiql.css"))],
    ["editor.worker.js", readFileSync(join(yogaDist, "monacoeditorwork", "editor.worker.bundle.js"))],
    ["json.worker.js", readFileSync(join(yogaDist, "monacoeditorwork", "json.worker.bundle.js"))],
    // sic: the package names it with two dots
    ["graphql.worker.js", readFileSync(join(yogaDist, "monacoeditorwork", "graphql.worker..bundle.js"))],
    [
      "app.js",
      Buffer.from(
        [readFileSync(join(HERE, "src", "tour.js"), "utf8"), readFileSync(join(HERE, "src", "app.js"), "utf8")].join("\n"),
      ),
    ],
    ["app.css", readFileSync(join(HERE, "src", "app.css"))],
    ["favicon.svg", Buffer.from(faviconSvg())],
    ["favicon-32.png", dropletPng(32)],
    ["apple-touch-icon.png", dropletPng(180)],
  ];

  const files = sources.map(([logical, bytes]) => emit(logical, bytes, true));
  const byLogical = Object.fromEntries(files.map((file) => [file.logical, file]));

  const html = renderHtml(byLogical);
  const index = emit("index.html", Buffer.from(html), false);

  auditUrls([index, ...files]);

  const all = [index, ...files];
  const manifest = {
    generatedBy: "router/graphiql/build.mjs",
    package: { name: PACKAGE, version: installed.version },
    prefix,
    configPlaceholder: CONFIG_PLACEHOLDER,
    files: all.map((file) => ({
      path: file.path,
      logicalName: file.logical,
      contentType: file.contentType,
      sha256_16: file.hash,
      immutable: file.immutable,
      size: file.size,
      gzip: file.gzip ? { path: file.gzip.path, size: file.gzip.size } : null,
    })),
  };
  writeFileSync(join(DIST, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  writeFileSync(join(DIST, "assets.rs"), assetsRs(index, files));

  report(all);
}

// Writes one file (content-hashed name if `hashed`) and its gzipped copy.
function emit(logical, bytes, hashed) {
  const ext = logical.slice(logical.lastIndexOf("."));
  const contentType = CONTENT_TYPES[ext];
  if (!contentType) fail(`no content type for ${logical}`);
  const hash = createHash("sha256").update(bytes).digest("hex").slice(0, 16);
  const path = hashed ? `${logical.slice(0, -ext.length)}.${hash}${ext}` : logical;
  writeFileSync(join(DIST, path), bytes);
  let gzip = null;
  // index.html is not precompressed: the server changes it (the config) before sending.
  if (hashed && COMPRESSIBLE.has(ext)) {
    const compressed = gzipSync(bytes, { level: 9 });
    if (compressed.length < bytes.length * 0.9) {
      gzip = { path: `${path}.gz`, size: compressed.length };
      writeFileSync(join(DIST, gzip.path), compressed);
    }
  }
  return {
    logical,
    path,
    contentType,
    hash,
    immutable: hashed,
    size: bytes.length,
    gzipSize: gzipSync(bytes, { level: 9 }).length,
    gzip,
    text: COMPRESSIBLE.has(ext) ? bytes.toString("utf8") : null,
  };
}

function renderHtml(byLogical) {
  let html = readFileSync(join(HERE, "index.html"), "utf8");
  // The template's own comments are for this repository, not for the browser.
  html = html.replace(/<!--[\s\S]*?-->\n?/g, "");
  const workers = {
    editorWorkerService: prefix + byLogical["editor.worker.js"].path,
    json: prefix + byLogical["json.worker.js"].path,
    graphql: prefix + byLogical["graphql.worker.js"].path,
  };
  html = html.replace("{{assets}}", JSON.stringify({ workers }));
  html = html.replace(/\{\{([\w.-]+)\}\}/g, (match, logical) => {
    const file = byLogical[logical];
    if (!file) fail(`index.html refers to ${match}, which the build does not produce`);
    return prefix + file.path;
  });
  const placeholders = html.split(CONFIG_PLACEHOLDER).length - 1;
  if (placeholders !== 1) fail(`index.html must hold ${CONFIG_PLACEHOLDER} exactly once, found ${placeholders}`);
  for (const [, url] of html.matchAll(/(?:src|href)="([^"]*)"/g)) {
    if (!url.startsWith(prefix)) fail(`index.html refers to ${url}, outside ${prefix}`);
  }
  return html;
}

// Fails the build on any URL to another origin that URL_ALLOWLIST does not explain.
function auditUrls(files) {
  const found = new Map(); // url -> {why, files:Set}
  const unexplained = [];
  const urlPattern = /\bhttps?:\/\/[^\s"'`()<>\\,;{}[\]]*|(?<![:\w/"'`])\/\/(?:[a-z0-9-]+\.)+[a-z]{2,}(?:\/[^\s"'`()<>\\]*)?/gi;
  for (const file of files) {
    if (file.text === null) continue;
    for (const [raw] of file.text.matchAll(urlPattern)) {
      // A sentence may end right after a URL: try it with and without the final dot.
      const url = allowed(raw, file) ? raw : raw.replace(/\.+$/, "");
      const entry = allowed(url, file);
      if (!entry) {
        unexplained.push(`${file.path}: ${raw}`);
        continue;
      }
      const key = url;
      if (!found.has(key)) found.set(key, { why: entry.why, files: new Set() });
      found.get(key).files.add(file.logical);
    }
  }
  if (unexplained.length > 0) {
    fail(
      "URLs to other origins that the build does not know to be harmless:\n  " +
        [...new Set(unexplained)].join("\n  ") +
        "\nCheck each one; if it is never requested, add it to URL_ALLOWLIST with the reason.",
    );
  }
  const lines = [...found.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([url, { why, files }]) => ({ url, why, files: [...files].sort() }));
  writeFileSync(join(DIST, "url-audit.json"), JSON.stringify(lines, null, 2) + "\n");
  return lines;
}

function allowed(url, file) {
  return URL_ALLOWLIST.find((entry) => entry.url.test(url) && (!entry.files || entry.files.test(file.logical)));
}

// The generated Rust side: constants and one entry per asset, bytes included at compile
// time. Paths are relative to this file (include_bytes! resolves them from the file
// that contains the macro call, also when it is include!d).
function assetsRs(index, files) {
  const lit = (s) => JSON.stringify(s); // a JSON string of ASCII is a valid Rust literal
  const entries = files
    .map(
      (f) => `    Asset {
        path: ${lit(f.path)},
        content_type: ${lit(f.contentType)},
        etag: ${lit(`"${f.hash}"`)},
        body: include_bytes!(${lit(f.path)}),
        gzip: ${f.gzip ? `Some(include_bytes!(${lit(f.gzip.path)}))` : "None"},
    },`,
    )
    .join("\n");
  return `// Generated by router/graphiql/build.mjs from ${PACKAGE} ${readJson(join(PACKAGE_DIR, "package.json"), {}).version}: do not edit.
// Include it with include!(".../router/graphiql/dist/assets.rs").

/// One file of the GraphiQL page, served at \`PREFIX\` + \`path\`.
pub struct Asset {
    /// The file name under PREFIX; it holds the content hash, so it never changes meaning.
    pub path: &'static str,
    pub content_type: &'static str,
    /// The strong ETag of \`body\`, quoted: the first 16 hex digits of its sha256.
    pub etag: &'static str,
    pub body: &'static [u8],
    /// \`body\` gzipped (level 9), for clients that accept gzip; None where it saves little.
    pub gzip: Option<&'static [u8]>,
}

/// Where the page expects its assets (the URLs in INDEX_HTML start with it).
pub const PREFIX: &str = ${lit(prefix)};

/// The page. Replace CONFIG_PLACEHOLDER (once) before sending it.
pub const INDEX_HTML: &str = include_str!("index.html");

/// The strong ETag of INDEX_HTML as built (before the placeholder is replaced).
pub const INDEX_HTML_ETAG: &str = ${lit(`"${index.hash}"`)};

/// Inside <script type="application/json">: replace with JSON in which "<" is escaped
/// as \\u003c, e.g. {"endpoint":"/graphql","token":null,"role":null}.
pub const CONFIG_PLACEHOLDER: &str = ${lit(CONFIG_PLACEHOLDER)};

pub static ASSETS: &[Asset] = &[
${entries}
];
`;
}

function report(files) {
  const pad = (s, n) => String(s).padEnd(n);
  const kb = (n) => (n / 1024).toFixed(1).padStart(8) + " KiB";
  let raw = 0;
  let gz = 0;
  console.log(`${pad("file", 44)}${pad("raw", 13)}gzip -9`);
  for (const f of files) {
    raw += f.size;
    gz += f.gzipSize;
    console.log(`${pad(f.path, 44)}${kb(f.size)} ${kb(f.gzipSize)}`);
  }
  console.log(`${pad("total", 44)}${kb(raw)} ${kb(gz)}  (${(raw / 1e6).toFixed(2)} MB raw, ${(gz / 1e6).toFixed(2)} MB gzipped)`);
  console.log(`dist/ written for prefix ${prefix}; URL audit in dist/url-audit.json`);
}

// ---- icons ----

function faviconSvg() {
  return (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">' +
    '<path fill="#1e88e5" d="M16 2.5C16 2.5 6.5 13.8 6.5 20.2a9.5 9.5 0 0 0 19 0C25.5 13.8 16 2.5 16 2.5z"/>' +
    '<path fill="#fff" fill-opacity=".55" d="M11.2 20.5a1.3 1.3 0 0 1 2.6 0 3.4 3.4 0 0 0 3.4 3.4 1.3 1.3 0 0 1 0 2.6 6 6 0 0 1-6-6z"/>' +
    "</svg>\n"
  );
}

// A water drop, the same shape as the SVG, rasterized with 4x4 supersampling.
function dropletPng(size) {
  const cx = 0.5;
  const cy = 0.63;
  const r = 0.3;
  const tipY = 0.08;
  const d = cy - tipY; // tip to circle centre
  const sinA = r / d;
  const tanA = sinA / Math.sqrt(1 - sinA * sinA);
  const coneLength = (d * d - r * r) / d; // along the axis, up to the tangent points
  const inside = (x, y) => {
    if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) return true;
    const along = y - tipY;
    return along >= 0 && along <= coneLength && Math.abs(x - cx) <= along * tanA;
  };
  const pixels = Buffer.alloc(size * (size * 4 + 1));
  const samples = 4;
  for (let py = 0; py < size; py++) {
    const row = py * (size * 4 + 1);
    pixels[row] = 0; // filter: none
    for (let px = 0; px < size; px++) {
      let hits = 0;
      for (let sy = 0; sy < samples; sy++) {
        for (let sx = 0; sx < samples; sx++) {
          if (inside((px + (sx + 0.5) / samples) / size, (py + (sy + 0.5) / samples) / size)) hits++;
        }
      }
      const o = row + 1 + px * 4;
      pixels[o] = 0x1e;
      pixels[o + 1] = 0x88;
      pixels[o + 2] = 0xe5;
      pixels[o + 3] = Math.round((255 * hits) / (samples * samples));
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bits per channel
  header[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", header),
    pngChunk("IDAT", deflateSync(pixels, { level: 9 })),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

function pngChunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// ---- helpers ----

function normalizePrefix(value) {
  if (!/^\/([\w.-]+\/)*$/.test(value.endsWith("/") ? value : value + "/")) {
    fail(`--prefix must be an absolute path such as /graphiql/, got ${value}`);
  }
  return value.endsWith("/") ? value : value + "/";
}

function readJson(path, fallback) {
  return existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : fallback;
}

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(1);
}
