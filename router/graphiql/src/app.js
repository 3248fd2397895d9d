// The page around GraphiQL: signing in, then mounting @graphql-yoga/graphiql with the
// tour (tour.js) and the token in every tab's Headers.
//
// GraphiQL introspects the schema as soon as it mounts, and the router answers 401 to a
// request without a token, so GraphiQL is mounted only once the page has a token:
//   - the router may inject one (development only, see the config below), or
//   - the browser kept one from an earlier visit, or
//   - the sign-in panel asks for one.
// If introspection is refused anyway (an expired token), the panel comes back with the
// router's sentence.
//
// The server replaces the placeholder in <script id="graphiql-config"> with
//   {"endpoint": "/graphql", "token": null | "<jwt>", "role": "operator"}
// (JSON with "<" escaped as \u003c). Served as a static file, unreplaced, the page
// still works with those defaults.
"use strict";

(function () {
  var STATE_KEY = "water-rental:graphiql"; // our own localStorage entry
  // GraphiQL's own entries, see prepareStoredTabs.
  var GRAPHIQL_TABS_KEY = "graphiql:tabState";
  var GRAPHIQL_QUERY_KEY = "graphiql:query";
  var GRAPHIQL_VARIABLES_KEY = "graphiql:variables";
  var GRAPHIQL_HEADERS_KEY = "graphiql:headers";
  var GRAPHIQL_PERSIST_HEADERS_KEY = "graphiql:shouldPersistHeaders";
  var tour = globalThis.graphiqlTour || [];
  var ROLE_BY_OPERATION = {}; // tour operation name -> the role its step needs
  tour.forEach(function (tab) { ROLE_BY_OPERATION[operationName(tab.query)] = tab.role; });

  // The logo next to the title: a water drop.
  var LOGO =
    '<svg viewBox="0 0 32 32" width="28" height="28" aria-hidden="true">' +
    '<path fill="#1e88e5" d="M16 2.5C16 2.5 6.5 13.8 6.5 20.2a9.5 9.5 0 0 0 19 0C25.5 13.8 16 2.5 16 2.5z"/>' +
    '<path fill="#fff" fill-opacity=".55" d="M11.2 20.5a1.3 1.3 0 0 1 2.6 0 3.4 3.4 0 0 0 3.4 3.4 1.3 1.3 0 0 1 0 2.6 6 6 0 0 1-6-6z"/>' +
    "</svg>";

  var config = readConfig();
  var assets = readJson("graphiql-assets", {});
  var el = {
    signin: byId("signin"),
    form: byId("signin-form"),
    token: byId("signin-token"),
    error: byId("signin-error"),
    current: byId("signin-current"),
    cancel: byId("signin-cancel"),
    forget: byId("signin-forget"),
    session: byId("session"),
    who: byId("session-who"),
    change: byId("session-change"),
    root: byId("graphiql"),
    bundle: byId("graphiql-bundle"),
  };
  var state = loadState();
  var tokens = []; // [{token, role, subject, expiresAt}], at most one per known role
  var mounted = false;

  // Monaco asks for a worker per language; all three are files next to this one.
  self.MonacoEnvironment = {
    globalAPI: false,
    getWorkerUrl: function (_moduleId, label) {
      var workers = assets.workers || {};
      return workers[label] || workers.editorWorkerService;
    },
  };
  watchIntrospection();

  el.form.addEventListener("submit", onSubmit);
  el.change.addEventListener("click", function () { showSignIn(null); });
  el.cancel.addEventListener("click", function () { showGraphiQL(); });
  el.forget.addEventListener("click", function () {
    forgetTokens();
    if (mounted) location.reload();
    else showSignIn(null);
  });

  start();

  function start() {
    var notice = null;
    var saved = state.tokens.map(describeToken).filter(Boolean);
    var expired = saved.filter(isExpired);
    if (expired.length > 0) {
      notice = "Your saved " + expired.map(label).join(" and ") + " token expired on " +
        formatDate(expired[0].expiresAt) + ". Paste a new one.";
    }
    tokens = saved.filter(function (t) { return !isExpired(t); });
    // The router's development token covers a role the browser has no token for.
    var dev = config.token ? describeToken(config.token, config.role) : null;
    if (dev && !isExpired(dev) && state.rejected.indexOf(fingerprint(dev.token)) < 0 &&
        !tokens.some(function (t) { return t.role === dev.role; })) {
      tokens.push(dev);
    }
    if (tokens.length > 0) mount();
    else showSignIn(notice);
  }

  // ---- sign-in panel ----

  function showSignIn(message) {
    el.root.hidden = true;
    el.session.hidden = true;
    el.signin.hidden = false;
    el.error.textContent = message || "";
    el.error.hidden = !message;
    el.token.setAttribute("aria-invalid", message ? "true" : "false");
    el.cancel.hidden = !mounted || tokens.length === 0;
    el.forget.hidden = tokens.length === 0;
    el.current.hidden = tokens.length === 0;
    el.current.textContent = tokens.length === 0 ? "" :
      "Now signed in as " + tokens.map(label).join(" and ") +
      ". A token you paste replaces the one of the same role.";
    el.token.value = "";
    el.token.focus();
  }

  function onSubmit(event) {
    event.preventDefault();
    var pasted = extractTokens(el.token.value);
    if (pasted.length === 0) {
      return fail("That is not a token. A token is three parts separated by dots, " +
        "starting with eyJ; `make run` prints two.");
    }
    var fresh = pasted.filter(function (t) { return !isExpired(t); });
    if (fresh.length === 0) {
      return fail("That token expired on " + formatDate(pasted[0].expiresAt) + ". Get a new one.");
    }
    fresh.forEach(function (t) {
      tokens = tokens.filter(function (old) { return old.role !== t.role && old.token !== t.token; });
      tokens.push(t);
      state.rejected = state.rejected.filter(function (r) { return r !== fingerprint(t.token); });
    });
    if (mounted) {
      // GraphiQL keeps its tabs in memory: the next load starts from the stored ones,
      // rewritten with the new token.
      saveState(tokens);
      location.reload();
    } else {
      mount();
    }
  }

  function fail(message) {
    el.error.textContent = message;
    el.error.hidden = false;
    el.token.setAttribute("aria-invalid", "true");
    el.token.focus();
  }

  // ---- GraphiQL ----

  function mount() {
    prepareStoredTabs();
    saveState(tokens);
    el.signin.hidden = true;
    el.root.hidden = false;
    renderSession();
    whenBundleLoaded(function () {
      if (mounted) return;
      mounted = true;
      openTabsOnFirstClick();
      el.root.textContent = "";
      globalThis.YogaGraphiQL.renderYogaGraphiQL(el.root, {
        endpoint: config.endpoint,
        title: "Water rental",
        logo: LOGO,
        // First visit only: afterwards GraphiQL restores the tabs it stored.
        defaultTabs: tour.map(function (tab) {
          return {
            query: tab.query,
            variables: typeof tab.variables === "function" ? tab.variables() : (tab.variables || null),
            headers: headersFor(tab.role),
          };
        }),
        // For a tab opened with "+".
        defaultHeaders: headersFor("any"),
        // Yoga would otherwise open its welcome text, or the URL's ?query=, in the first
        // tab and push a new tab for it on every load: let GraphiQL restore its own.
        initialQuery: undefined,
        onEditQuery: function () {},
      });
    });
  }

  // A click on a tab sometimes only ends GraphiQL's drag-to-reorder gesture (its tabs
  // are framer-motion Reorder items: on press the tab list takes the pointer, and the
  // release lands on the list, not the tab), and the tab does not open. A press on a
  // tab and a release where it was pressed opens that tab, whatever the gesture did; a
  // real drag (the pointer moved) only reorders.
  function openTabsOnFirstClick() {
    var pressed = null;
    document.addEventListener("pointerdown", function (event) {
      var target = event.button === 0 && event.target && event.target.closest ? event.target : null;
      var button = target && !target.closest(".graphiql-tab-close") &&
        target.closest('[role="tab"]') && target.closest('[role="tab"]').querySelector('button[id^="graphiql-session-tab-"]');
      pressed = button ? { id: button.id, x: event.clientX, y: event.clientY } : null;
    }, true);
    document.addEventListener("pointerup", function (event) {
      var press = pressed;
      pressed = null;
      if (!press || Math.abs(event.clientX - press.x) > 4 || Math.abs(event.clientY - press.y) > 4) return;
      // After the browser's own click, if any: open the tab only if that did not.
      setTimeout(function () {
        var button = document.getElementById(press.id);
        var tab = button && button.closest('[role="tab"]');
        if (tab && tab.getAttribute("aria-selected") !== "true") button.click();
      }, 0);
    }, true);
  }

  function showGraphiQL() {
    el.signin.hidden = true;
    el.root.hidden = false;
    renderSession();
  }

  function renderSession() {
    el.who.textContent = "Signed in as " + tokens.map(function (t) {
      return label(t) + (t.expiresAt ? " (until " + formatDate(t.expiresAt) + ")" : "");
    }).join(" and ");
    el.session.hidden = false;
  }

  function whenBundleLoaded(callback) {
    if (globalThis.YogaGraphiQL) return callback();
    el.bundle.addEventListener("load", callback);
    el.bundle.addEventListener("error", function () {
      el.root.firstElementChild.textContent =
        "GraphiQL could not be loaded from " + el.bundle.src + ". Reload the page.";
    });
  }

  function headersFor(role) {
    var token = tokenFor(role);
    return JSON.stringify({ Authorization: "Bearer " + token.token }, null, 2);
  }

  function tokenFor(role) {
    return tokens.filter(function (t) { return t.role === role; })[0] ||
      tokens.filter(function (t) { return t.role === "operator"; })[0] ||
      tokens.filter(function (t) { return t.role === "customer"; })[0] ||
      tokens[0];
  }

  // GraphiQL restores its tabs, each with its own headers, from localStorage (then
  // defaultTabs are not used). Before it mounts:
  //   - a browser that has tabs from before this page (the router's former GraphiQL
  //     page used the same storage) gets the tour's tabs added, once;
  //   - every Authorization header that this page wrote, or a missing one, gets the
  //     current token for the tab's role; one the user typed in by hand stays;
  //   - GraphiQL's copy of the active tab's query, variables and headers is made to
  //     match that tab: where it does not, GraphiQL opens an extra "<untitled>" tab.
  //     It also only restores headers that it persists, so persisting stays on.
  function prepareStoredTabs() {
    var tabState = null;
    try { tabState = JSON.parse(readStorage(GRAPHIQL_TABS_KEY) || "null"); } catch (_) { tabState = null; }
    var firstVisit = !tabState || !Array.isArray(tabState.tabs) || tabState.tabs.length === 0;
    if (firstVisit) {
      state.tourAdded = true; // GraphiQL opens defaultTabs, the tour
      return;
    }
    if (!state.tourAdded) {
      var present = tabState.tabs.map(function (tab) { return tab.operationName; });
      tour.forEach(function (tab) {
        var name = operationName(tab.query);
        if (present.indexOf(name) >= 0) return;
        tabState.tabs.push({
          id: randomId(), hash: null, title: name, query: tab.query, operationName: name, response: null,
          variables: typeof tab.variables === "function" ? tab.variables() : (tab.variables || null),
          headers: null,
        });
      });
      state.tourAdded = true;
    }
    tabState.tabs.forEach(function (tab) {
      tab.headers = withToken(tab.headers, ROLE_BY_OPERATION[tab.operationName] || "any");
    });
    if (!(tabState.activeTabIndex >= 0 && tabState.activeTabIndex < tabState.tabs.length)) tabState.activeTabIndex = 0;
    var active = tabState.tabs[tabState.activeTabIndex];
    writeStorage(GRAPHIQL_TABS_KEY, JSON.stringify(tabState));
    writeStorage(GRAPHIQL_QUERY_KEY, active.query);
    writeStorage(GRAPHIQL_VARIABLES_KEY, active.variables);
    writeStorage(GRAPHIQL_HEADERS_KEY, active.headers);
    writeStorage(GRAPHIQL_PERSIST_HEADERS_KEY, "true");
  }

  // The tab's headers with the current token for `role`, or without one (`role` null).
  function withToken(headersText, role) {
    var headers = {};
    try { headers = headersText ? JSON.parse(headersText) : {}; } catch (_) { return headersText; }
    if (!headers || typeof headers !== "object" || Array.isArray(headers)) return headersText;
    var key = Object.keys(headers).filter(function (k) { return k.toLowerCase() === "authorization"; })[0];
    if (key && !isReplaceable(headers[key])) return headersText; // typed by hand
    if (key) delete headers[key];
    if (role === null) return Object.keys(headers).length > 0 ? JSON.stringify(headers, null, 2) : null;
    headers.Authorization = "Bearer " + tokenFor(role).token;
    return JSON.stringify(headers, null, 2);
  }

  // Whether the page may overwrite an Authorization value: one it wrote, or a refused
  // one (also typed by hand: else every load would be refused again).
  function isReplaceable(value) {
    return typeof value === "string" && (state.applied.indexOf(fingerprint(value)) >= 0 ||
      state.rejected.indexOf(fingerprint(value.replace(/^Bearer\s+/i, ""))) >= 0);
  }

  // "Forget saved tokens": out of our storage and out of GraphiQL's tabs. (The page's
  // lists of written and refused values keep only fingerprints, no tokens.)
  function forgetTokens() {
    var tabState = null;
    try { tabState = JSON.parse(readStorage(GRAPHIQL_TABS_KEY) || "null"); } catch (_) { tabState = null; }
    if (tabState && Array.isArray(tabState.tabs)) {
      tabState.tabs.forEach(function (tab) { tab.headers = withToken(tab.headers, null); });
      writeStorage(GRAPHIQL_TABS_KEY, JSON.stringify(tabState));
      var active = tabState.tabs[tabState.activeTabIndex];
      writeStorage(GRAPHIQL_HEADERS_KEY, active ? active.headers : null);
    }
    tokens = [];
    state.tokens = [];
    saveState();
  }

  // Sees GraphiQL's introspection answers: a 401 means the token was refused.
  function watchIntrospection() {
    var nativeFetch = globalThis.fetch.bind(globalThis);
    globalThis.fetch = function (input, init) {
      var result = nativeFetch(input, init);
      if (!isIntrospection(init)) return result;
      return result.then(function (response) {
        if (response.status === 401) {
          var sent = new Headers((init && init.headers) || {}).get("authorization") || "";
          response.clone().json().then(errorMessage, function () { return ""; }).then(function (message) {
            refused(sent.replace(/^Bearer\s+/i, ""), message);
          });
        }
        return response;
      });
    };
  }

  function isIntrospection(init) {
    if (!init || typeof init.body !== "string") return false;
    try { return JSON.parse(init.body).operationName === "IntrospectionQuery"; } catch (_) { return false; }
  }

  function errorMessage(body) {
    var first = body && body.errors && body.errors[0];
    return (first && first.message) || "";
  }

  // GraphiQL retries a failed introspection once, so this may run twice for one token.
  function refused(token, message) {
    var refusedToken = tokens.filter(function (t) { return t.token === token; })[0];
    if (!refusedToken && token && state.rejected.indexOf(fingerprint(token)) >= 0) return; // the retry
    if (token) state.rejected = state.rejected.concat([fingerprint(token)]).slice(-20);
    tokens = tokens.filter(function (t) { return t.token !== token; });
    saveState(tokens);
    var what = refusedToken ? "the " + label(refusedToken) + " token" :
      token ? "the token in this tab's Headers" : "a request without a token";
    var why = (message || "401 Unauthorized").replace(/\.?$/, ".");
    showSignIn("The router refused " + what + ": " + why);
  }

  // ---- tokens ----

  function extractTokens(text) {
    var found = text.match(/[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/g) || [];
    return found.map(function (token) { return describeToken(token); }).filter(Boolean);
  }

  // Reads the claims for display and to pick a tab's token; the router checks the token.
  function describeToken(token, fallbackRole) {
    if (typeof token !== "string" || token.split(".").length !== 3) return null;
    var claims = {};
    try {
      var base64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      var bytes = Uint8Array.from(atob(base64), function (c) { return c.charCodeAt(0); });
      claims = JSON.parse(new TextDecoder().decode(bytes)) || {};
    } catch (_) {
      claims = {};
    }
    return {
      token: token,
      role: typeof claims.role === "string" ? claims.role : (fallbackRole || "unknown"),
      subject: typeof claims.sub === "string" ? claims.sub : null,
      expiresAt: typeof claims.exp === "number" ? new Date(claims.exp * 1000) : null,
    };
  }

  function isExpired(t) {
    return t.expiresAt !== null && t.expiresAt.getTime() <= Date.now();
  }

  function label(t) {
    if (t.role === "customer" && t.subject) return "customer " + t.subject.slice(0, 8) + "…";
    return t.role === "unknown" ? "token" : t.role;
  }

  function formatDate(date) {
    return date ? date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "?";
  }

  // ---- storage ----

  function loadState() {
    var saved = null;
    try { saved = JSON.parse(readStorage(STATE_KEY) || "null"); } catch (_) { saved = null; }
    saved = saved && typeof saved === "object" ? saved : {};
    return {
      tokens: Array.isArray(saved.tokens) ? saved.tokens.filter(isString) : [],
      // Fingerprints of the Authorization values this page wrote into GraphiQL's tabs.
      applied: Array.isArray(saved.applied) ? saved.applied.filter(isString) : [],
      // Fingerprints of tokens the router refused: an injected one is not offered again.
      rejected: Array.isArray(saved.rejected) ? saved.rejected.filter(isString) : [],
      // Whether this browser's GraphiQL tabs include the tour (see prepareStoredTabs).
      tourAdded: saved.tourAdded === true,
    };
  }

  function saveState(current) {
    if (current) {
      state.tokens = current.map(function (t) { return t.token; });
      var written = current.map(function (t) { return fingerprint("Bearer " + t.token); });
      state.applied = state.applied.filter(function (f) { return written.indexOf(f) < 0; })
        .concat(written).slice(-20);
    }
    writeStorage(STATE_KEY, JSON.stringify(state));
  }

  function readStorage(key) {
    try { return localStorage.getItem(key); } catch (_) { return null; }
  }

  function writeStorage(key, value) {
    try {
      if (value === null || value === undefined) localStorage.removeItem(key);
      else localStorage.setItem(key, value);
    } catch (_) { /* storage disabled: this visit only */ }
  }

  function readConfig() {
    var parsed = readJson("graphiql-config", {});
    return {
      endpoint: typeof parsed.endpoint === "string" ? parsed.endpoint : "/graphql",
      token: typeof parsed.token === "string" && parsed.token ? parsed.token : null,
      role: typeof parsed.role === "string" ? parsed.role : null,
    };
  }

  function readJson(id, fallback) {
    var node = document.getElementById(id);
    try { return JSON.parse(node.textContent) || fallback; } catch (_) { return fallback; }
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function isString(value) {
    return typeof value === "string";
  }

  // The name GraphiQL gives a tab: its operation's.
  function operationName(query) {
    var match = /^(?:query|mutation|subscription)\s+(\w+)/m.exec(query || "");
    return match ? match[1] : null;
  }

  // Tells values apart without keeping them (FNV-1a and a second 32-bit mix).
  function fingerprint(text) {
    var a = 0x811c9dc5;
    var b = 0x9747b28c;
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
})();
