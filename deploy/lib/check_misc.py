#!/usr/bin/env python3
"""Cross-checks that no tool does for us.

    check_misc.py dashboard DASHBOARD.json RULES_OUT.yml   (then promtool check rules RULES_OUT.yml)
    check_misc.py compose compose.yaml deploy/prometheus/prometheus.yml
    check_misc.py dockerfile Dockerfile ROOT
    check_misc.py contract ROOT        (warnings only: what the Rust side has yet to provide)

Prints failures and warnings; exits 1 on a failure.
"""

import glob
import json
import re
import sys

import yaml

SUBGRAPHS = {"inventory": 4001, "rental": 4002, "payment": 4003, "delivery": 4004}
PROCESSES = {**SUBGRAPHS, "router": 4000}
# Where each process serves /metrics: a port of its own (never its service port).
METRICS_PORTS = {name: 9464 for name in [*SUBGRAPHS, "router"]}
# The metric families of the runtime contract (deploy/prometheus/alerts.yml uses them too).
METRIC_FAMILIES = [
    "water_graphql_requests_total", "water_graphql_request_duration_seconds_bucket",
    "water_db_pool_connections", "water_db_pool_waiting", "water_outbox_backlog",
    "water_outbox_oldest_age_seconds", "water_events_published_total", "water_events_consumed_total",
    "water_events_retried_total", "water_events_dead_lettered_total", "water_dead_letters",
    "water_consumer_lag_seconds_bucket", "water_payment_breaker_open", "water_live_subscriptions",
    "water_reconciler_actions_total",
]
# The router's own families (hive-router 0.2.19's exporter) the dashboard and the alerts use.
ROUTER_FAMILIES = [
    "http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket",
    "http_client_request_duration_seconds_bucket", "hive_router_subscriptions_clients_active",
    "hive_router_subscriptions_subgraphs_dropped_messages_total", "hive_router_subscriptions_clients_lagged_messages_total",
]
BINARIES = ["inventory", "rental", "payment", "delivery", "router", "dead-letters", "rebuild-history"]
# The development identity provider: only in the Dockerfile's dev targets.
DEV_BINARIES = ["dev-issuer", "dev-token"]

failures = 0


def check(ok, what, detail=""):
    global failures
    if not ok:
        failures += 1
        print(f"  FAIL  {what}" + (f": {detail}" if detail else ""))
    return ok


def warn(what):
    print(f"  warn  {what}")


def dashboard(path, rules_out):
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    check(variables.get("DS_PROMETHEUS", {}).get("type") == "datasource", "dashboard: data source variable DS_PROMETHEUS")
    namespace = variables.get("namespace", {})
    check(namespace.get("includeAll") is True and namespace.get("allValue") == ".*",
          "dashboard: a namespace variable whose All matches no namespace too (compose)")
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    exprs = []
    for p in panels:
        check(p.get("datasource", {}).get("uid") == "${DS_PROMETHEUS}", f"dashboard: panel {p['title']!r} uses ${{DS_PROMETHEUS}}")
        for t in p.get("targets", []):
            check(t.get("datasource", {}).get("uid") == "${DS_PROMETHEUS}", f"dashboard: a query of {p['title']!r} uses ${{DS_PROMETHEUS}}")
            exprs.append((p["title"], t["expr"]))
    ids = [p["id"] for p in dash["panels"]]
    check(len(ids) == len(set(ids)), "dashboard: panel ids are unique")
    text = " ".join(e for _, e in exprs)
    for family in METRIC_FAMILIES + ROUTER_FAMILIES:
        check(re.search(rf"\b{family}\b", text) is not None, f"dashboard: a panel shows {family}")
    for title, expr in exprs:
        selectors = re.findall(r"\b[a-z_][a-z0-9_]*\{[^}]*\}", expr)
        check(bool(selectors) and all('namespace=~"$namespace"' in sel for sel in selectors),
              f"dashboard: every selector of {title!r} is scoped to $namespace", expr)
    # Every query as a recording rule, with Grafana's variables filled in, for promtool.
    rules = []
    for i, (title, expr) in enumerate(exprs):
        concrete = (expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$service", ".*")
                    .replace("$namespace", ".*"))
        check("$" not in concrete, f"dashboard: {title!r} uses only known variables", expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    with open(rules_out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    print(f"  dashboard: {len(panels)} panels, {len(exprs)} queries, all {len(METRIC_FAMILIES)} metric families of the contract "
          f"and {len(ROUTER_FAMILIES)} of the router, every query scoped to $namespace")


def duration_seconds(text):
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", str(text)))


def env_of(service):
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def compose(path, prometheus_path):
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)  # resolves the anchors and << merges
    services = spec["services"]
    for name in ("postgres", "rabbitmq"):
        check("healthcheck" in services.get(name, {}), f"compose: {name} has a healthcheck")
    check("check_port_connectivity" in " ".join(services["rabbitmq"]["healthcheck"]["test"]),
          "compose: RabbitMQ is healthy once its AMQP port accepts connections (check_port_connectivity, not ping)")
    for name, default in (("postgres", "postgres:15"), ("rabbitmq", "rabbitmq:3.13-management")):
        image = services[name]["image"]
        check(image.startswith("${") and image.endswith(f":-{default}}}"),
              f"compose: {name}'s image is a variable defaulting to the official {default}", image)
    for name, s in services.items():
        if s.get("profiles"):
            continue
        check(s.get("init") is True, f"compose: {name} runs with init: true (a PID-1 shell ignores SIGTERM)")
        for port in s.get("ports", []):
            check(str(port).split(":")[-1] not in ("5432", "5672"),
                  f"compose: {name} does not publish PostgreSQL's or RabbitMQ's port", str(port))
    # The connection budget and the shutdown deadline, as in Kubernetes (check_platform).
    subgraph_envs = [env_of(services[n]) for n in SUBGRAPHS if n in services]
    pools = sum(int(e.get("DB_POOL_SIZE", 16)) + int(e.get("DB_BACKGROUND_POOL_SIZE", 10)) for e in subgraph_envs)
    command = " ".join(services["postgres"].get("command", []))
    found = re.search(r"max_connections=(\d+)", command)
    limit = int(found.group(1)) if found else 100
    check(all("DB_POOL_SIZE" in e and "DB_BACKGROUND_POOL_SIZE" in e for e in subgraph_envs),
          "compose: every subgraph sets DB_POOL_SIZE and DB_BACKGROUND_POOL_SIZE")
    check(pools + 3 + 10 <= limit, f"compose: connection budget {pools} + 3 reserved + 10 for tools <= max_connections {limit}")
    for name in SUBGRAPHS:
        if name not in services:
            continue
        env = env_of(services[name])
        grace = duration_seconds(services[name].get("stop_grace_period", "10s"))
        need = int(env.get("DRAIN_SECONDS", 0)) + int(env.get("SHUTDOWN_TIMEOUT_SECONDS", 10)) + 5
        check(grace >= need, f"compose: {name} stop_grace_period {grace:g}s >= DRAIN_SECONDS + SHUTDOWN_TIMEOUT_SECONDS + 5")
    for name, port in PROCESSES.items():
        s = services.get(name)
        if not check(s is not None, f"compose: service {name}"):
            continue
        env = env_of(s)
        check(bool(s.get("command")), f"compose: {name} sets its command")
        test = " ".join(s.get("healthcheck", {}).get("test", []))
        path_ = "/readiness" if name == "router" else "/ready"
        check(f"127.0.0.1:{port}{path_}" in test, f"compose: {name} healthcheck probes {path_}", test)
        check(env.get("LOG_FORMAT") == "json", f"compose: {name} LOG_FORMAT=json")
        check(env.get("TOKEN_ISSUER") and env.get("TOKEN_JWKS"), f"compose: {name} sets TOKEN_ISSUER and TOKEN_JWKS")
        check(s.get("depends_on", {}).get("dev-issuer", {}).get("condition") == "service_healthy",
              f"compose: {name} waits for the development issuer")
        check("PORT" not in env and "HOST" not in env, f"compose: {name} sets neither PORT nor HOST")
        deps = s.get("depends_on", {})
        if name == "router":
            check(env.get("ROUTER_HOST") == "0.0.0.0", "compose: router ROUTER_HOST=0.0.0.0")
            for sub, sub_port in SUBGRAPHS.items():
                check(deps.get(sub, {}).get("condition") == "service_healthy", f"compose: router waits for {sub} to be healthy")
                check(env.get(f"{sub.upper()}_URL") == f"http://{sub}:{sub_port}/graphql", f"compose: router {sub.upper()}_URL")
            check(any(str(p).endswith(":4000") for p in s.get("ports", [])), "compose: router publishes its port 4000")
            check(not any("9464" in str(p) for p in s.get("ports", [])), "compose: the router's metrics port 9464 is not published")
        else:
            check(env.get(f"{name.upper()}_LISTEN") == f"0.0.0.0:{port}", f"compose: {name} listens on 0.0.0.0:{port}")
            check(env.get(f"{name.upper()}_METRICS_LISTEN") == f"0.0.0.0:{METRICS_PORTS[name]}",
                  f"compose: {name} serves /metrics on 0.0.0.0:{METRICS_PORTS[name]}")
            check(not s.get("ports"), f"compose: {name} publishes no port")
            for var in ("POSTGRES_URL", "AMQP_URL", "DRAIN_SECONDS"):
                check(var in env, f"compose: {name} sets {var}")
            for dep in ("postgres", "rabbitmq") + (("payment",) if name == "rental" else ()):
                check(deps.get(dep, {}).get("condition") == "service_healthy", f"compose: {name} waits for {dep} to be healthy")
    with open(prometheus_path, encoding="utf-8") as f:
        prom = yaml.safe_load(f)
    targets = {t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    check(targets == {f"{n}:{p}" for n, p in METRICS_PORTS.items()}, "prometheus.yml scrapes the five compose services", str(sorted(targets)))
    jobs = {job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc["targets"]] for job in prom["scrape_configs"]}
    check(all(jobs.get(n) == [f"{n}:{p}"] for n, p in METRICS_PORTS.items()),
          "prometheus.yml: one job per process, named after it (the NoTargetUp alerts need it)", str(jobs))
    check(all(job.get("metrics_path", "/metrics") == "/metrics" for job in prom["scrape_configs"]), "prometheus.yml scrapes /metrics")
    print(f"  compose: {len(services)} services; the five processes, their healthchecks, env and start order; prometheus targets")


def dockerfile(path, root):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    check(re.search(r"^ARG RUST_IMAGE=rust:1\.95-bookworm$", text, re.M) is not None, "Dockerfile: ARG RUST_IMAGE defaults to rust:1.95-bookworm")
    check(re.search(r"^ARG RUNTIME_IMAGE=debian:bookworm-slim$", text, re.M) is not None, "Dockerfile: ARG RUNTIME_IMAGE defaults to debian:bookworm-slim")
    check(re.search(r"^FROM \$\{RUST_IMAGE\} AS build$", text, re.M) is not None, "Dockerfile: build stage FROM ${RUST_IMAGE}")
    check(re.search(r"^FROM \$\{RUNTIME_IMAGE\} AS runtime$", text, re.M) is not None, "Dockerfile: runtime stage FROM ${RUNTIME_IMAGE}")
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)
    check(stages and stages[-1] == ("runtime", "release"), "Dockerfile: the last (default) target is `release`, the compiled build", str(stages))
    check(("runtime", "prebuilt") in stages and re.search(r"^COPY prebuilt-bin/ /app/bin/$", text, re.M) is not None,
          "Dockerfile: target `prebuilt` takes binaries from prebuilt-bin/")
    check(not re.search(r"^# syntax=", text, re.M), "Dockerfile: no `# syntax=` line (it would pull a frontend image from a registry)")
    check("--locked" in text and "--mount=type=cache" in text, "Dockerfile: cargo build --locked with cache mounts")
    check(re.search(r"^USER 10001", text, re.M) is not None, "Dockerfile: runs as uid 10001")
    copied = re.search(r"&& cp ([^\n]+) /out/ ", text)
    for binary in BINARIES:
        check(copied is not None and binary in copied.group(1).split(), f"Dockerfile: the release stage copies {binary}")
    for binary in DEV_BINARIES:
        check(copied is not None and binary not in copied.group(1).split(),
              f"Dockerfile: the production image has no {binary} (it would sign user tokens)")
    dev_copied = re.search(r"&& cp ([^\n]+) /out-dev/", text)
    check(dev_copied is not None and sorted(dev_copied.group(1).split()) == sorted(DEV_BINARIES),
          "Dockerfile: the development issuer goes to /out-dev/ only (targets dev and prebuilt-dev)")
    check(("runtime", "dev") in stages and ("prebuilt", "prebuilt-dev") in stages, "Dockerfile: targets dev and prebuilt-dev")
    for src in ("router/router.config.yaml", "schema/supergraph.graphql"):
        check(f"COPY {src} " in text, f"Dockerfile: copies {src}")
    check("COPY router/trusted-documents.json /app/config/trusted-documents.json" in text,
          "Dockerfile: copies router/trusted-documents.json beside router.config.yaml (which names it relative to itself)")
    # The bins the workspace declares now: a missing one would fail the image build.
    declared = set()
    for manifest in glob.glob(f"{root}/**/Cargo.toml", recursive=True):
        if "/target/" in manifest:
            continue
        with open(manifest, encoding="utf-8") as f:
            cargo = f.read()
        declared.update(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', cargo))
        m = re.search(r'^\[package\]\s*name\s*=\s*"([^"]+)"', cargo, re.M)
        if m and glob.glob(manifest.rsplit("/", 1)[0] + "/src/main.rs"):
            declared.add(m.group(1))
    missing = [b for b in BINARIES if b not in declared]
    if missing:
        warn(f"Dockerfile: not (yet) a binary of the workspace: {', '.join(missing)}; `docker build` fails until it is")
    print(f"  Dockerfile: base images as arguments, targets release and prebuilt, user, cache mounts, the {len(BINARIES)} binaries, config files")


def contract(root):
    with open(f"{root}/router/router.config.yaml", encoding="utf-8") as f:
        config = f.read()
    if "ROUTER_INTROSPECTION" not in config:
        warn("router/router.config.yaml does not read ROUTER_INTROSPECTION yet: production cannot turn introspection off")
    if "prometheus" not in config:
        warn("router/router.config.yaml has no Prometheus exporter yet: the router's /metrics (scraped on 9464) is missing")
    # What the Kubernetes manifests assume of the subgraphs (docs/deployment.md, last section).
    sources = ""
    for path in glob.glob(f"{root}/subgraphs/**/*.rs", recursive=True):
        with open(path, encoding="utf-8") as f:
            sources += f.read()
    for needle, what in (("DB_BACKGROUND_POOL_SIZE", "DB_BACKGROUND_POOL_SIZE (the connection budget counts it)"),
                         ("DB_MIGRATE_ON_START", "DB_MIGRATE_ON_START (the Deployments set it to false)"),
                         ('"migrate"', "a `migrate` command (the Job `migrate` runs `<service> migrate`)"),
                         ("POSTGRES_PASSWORD_FILE", "POSTGRES_PASSWORD_FILE (each service's role's password, a mounted file)"),
                         ("AMQP_PASSWORD_FILE", "AMQP_PASSWORD_FILE (each service's broker password, a mounted file)")):
        if needle not in sources:
            warn(f"the subgraphs do not read {what} yet: Kubernetes needs it")
    event_table(root)


def event_table(root):
    """check_credentials' table of who publishes and reads which event (the broker's
    permissions and bindings in both overlays) against the catalogue and the inbox!
    enums of subgraphs/contracts/src/lib.rs: a new event fails the check until the manifests grant it."""
    import check_credentials as cc
    path = f"{root}/subgraphs/contracts/src/lib.rs"
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError:
        warn(f"{path} not found: the event table of the broker's permissions is not cross-checked")
        return
    types, published = {}, {}
    for name, event_type, service in re.findall(r'^\s*(\w+) = "([a-z_.]+)", version \d+, by "(\w+)"', source, re.M):
        types[name] = event_type
        published.setdefault(service, set()).add(event_type)
    inboxes = {}
    for service, body in re.findall(r'pub enum \w+ for "([\w-]+)" \{(.*?)\n    \}', source, re.S):
        inboxes[service] = {types.get(t, t) for t in re.findall(r"\w+\((\w+)\)", body)}
    for s in cc.SUBGRAPHS:
        if published.get(s, set()) != set(cc.PUBLISHES[s]):
            check(False, f"events: {s} publishes {sorted(published.get(s, set()))} in contracts, {sorted(cc.PUBLISHES[s])} in "
                 "deploy/lib/check_credentials.py (its topic permissions)")
        if inboxes.get(s, set()) != set(cc.QUEUE_BINDS[s]):
            check(False, f"events: {s}'s queue takes {sorted(inboxes.get(s, set()))} in contracts, {sorted(cc.QUEUE_BINDS[s])} in "
                 "deploy/lib/check_credentials.py (its bindings)")
    live = inboxes.get("delivery", set()) | inboxes.get("delivery-live", set())
    if live != set(cc.READS["delivery"]):
        check(False, f"events: delivery reads {sorted(live)} in contracts (its queue and its live listener's), "
             f"{sorted(cc.READS['delivery'])} in deploy/lib/check_credentials.py")


def main():
    command, *args = sys.argv[1:]
    {"dashboard": dashboard, "compose": compose, "dockerfile": dockerfile, "contract": contract}[command](*args)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
