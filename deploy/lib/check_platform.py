"""The platform review's checks of one rendered kustomization (check_manifests.py calls
them): the connection budget, the shutdown deadline, the migration Job, the rollout
phases, the alert rules shipped as PrometheusRules, backups, and the brokers' and
databases' placement. Each takes the Report, the build name and the documents."""

import math
import re
import subprocess
import tempfile

import yaml

SUBGRAPHS = ("inventory", "rental", "payment", "delivery")
# The Rust side's defaults when a Deployment does not set them (docs/configuration.md);
# the manifests must set both, so these only make a missing one visible in the sum.
DEFAULT_DB_POOL_SIZE = 16
DEFAULT_DB_BACKGROUND_POOL_SIZE = 10
# PostgreSQL's default superuser_reserved_connections.
DEFAULT_RESERVED_CONNECTIONS = 3
# Connections kept free for people and tools: psql, `rebuild-history`, the operator.
TOOLS_HEADROOM = 10
# What a shutdown must leave between its last step and the kill at the grace period.
SHUTDOWN_MARGIN_SECONDS = 5

# The phases of deploy/rollout, by app.kubernetes.io/component (anything else is
# infrastructure, applied first). Keep in step with deploy/rollout.
PHASES = (("migration", "migrate"), ("subgraph", "subgraphs"), ("router", "router"))

# Rule files shipped as PrometheusRules by deploy/sync-files.
RULE_FILES = {
    "water-rental-alerts": "deploy/prometheus/alerts.yml",
    "water-pg-backup-alerts": "deploy/prometheus/postgres-alerts.yml",
}


def env_value(container, name, default=None):
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry.get("value", default)
    return default


def seconds(duration):
    """'5s', '1m', '500ms' -> seconds (float)."""
    total = 0.0
    for amount, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", str(duration)):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def phase_of(doc):
    component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
    return dict(PHASES).get(component, "infrastructure")


def surge(deployment, replicas):
    value = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def max_connections(docs):
    """(max_connections, reserved, where) of the build's PostgreSQL, or None."""
    for d in docs:
        if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/"):
            params = d["spec"].get("postgresql", {}).get("parameters", {})
            return (int(params.get("max_connections", 100)),
                    int(params.get("superuser_reserved_connections", DEFAULT_RESERVED_CONNECTIONS)),
                    f"CloudNativePG Cluster {d['metadata']['name']}")
        if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "postgres":
            args = " ".join(d["spec"]["template"]["spec"]["containers"][0].get("args", []))
            found = re.search(r"max_connections=(\d+)", args)
            reserved = re.search(r"superuser_reserved_connections=(\d+)", args)
            return (int(found.group(1)) if found else 100,
                    int(reserved.group(1)) if reserved else DEFAULT_RESERVED_CONNECTIONS,
                    "StatefulSet postgres")
    return None


def deployment_connections(d, hpa):
    """(pods, per pod) of a subgraph Deployment at its HPA maximum plus one surge pod."""
    c = d["spec"]["template"]["spec"]["containers"][0]
    per_pod = int(env_value(c, "DB_POOL_SIZE") or DEFAULT_DB_POOL_SIZE) + int(
        env_value(c, "DB_BACKGROUND_POOL_SIZE") or DEFAULT_DB_BACKGROUND_POOL_SIZE)
    top = hpa["spec"]["maxReplicas"] if hpa else d["spec"].get("replicas", 1)
    return top + surge(d, top), per_pod


def container_connections(c):
    return int(env_value(c, "DB_POOL_SIZE", DEFAULT_DB_POOL_SIZE)) + int(
        env_value(c, "DB_BACKGROUND_POOL_SIZE", DEFAULT_DB_BACKGROUND_POOL_SIZE))


def job_connections(job):
    """{container: connections} of a Job pod's containers that connect, and the pod's peak:
    init containers run one after the other, before the others, which run together."""
    pod = job["spec"]["template"]["spec"]
    init = {c["name"]: container_connections(c) for c in pod.get("initContainers", []) if env_value(c, "POSTGRES_URL")}
    main = {c["name"]: container_connections(c) for c in pod.get("containers", []) if env_value(c, "POSTGRES_URL")}
    return {**init, **main}, max([*init.values(), sum(main.values())])


def role_connections(docs):
    """{service: (connections, how)}: what one service's role may have open at once, its
    pods at the HPA maximum plus one surge pod and its migration container (each service
    logs in as its own role, whose connectionLimit must hold this)."""
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in docs if h["kind"] == "HorizontalPodAutoscaler"}
    jobs = [d for d in docs if d["kind"] == "Job"]
    need = {}
    for name in SUBGRAPHS:
        if name not in deployments:
            continue
        pods, per_pod = deployment_connections(deployments[name], hpas.get(name))
        migration = sum(job_connections(job)[0].get(name, 0) for job in jobs)
        need[name] = (pods * per_pod + migration, f"{pods} pods x {per_pod} + {migration} for its migration = {pods * per_pod + migration}")
    return need


def check_connection_budget(r, build, docs):
    """Every pool of every pod that can exist at once must fit PostgreSQL's limit."""
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in docs if h["kind"] == "HorizontalPodAutoscaler"}
    terms, total = [], 0
    for name in SUBGRAPHS:
        d = deployments.get(name)
        if d is None:
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        pool, background = env_value(c, "DB_POOL_SIZE"), env_value(c, "DB_BACKGROUND_POOL_SIZE")
        r.check(pool is not None and background is not None,
                f"{name}: DB_POOL_SIZE and DB_BACKGROUND_POOL_SIZE set explicitly (the budget counts both)")
        pods, per_pod = deployment_connections(d, hpas.get(name))
        terms.append(f"{name} {pods} x {per_pod}")
        total += pods * per_pod
    for job in (d for d in docs if d["kind"] == "Job"):
        connecting, per_pod = job_connections(job)
        if not connecting:
            continue
        pods = job["spec"].get("parallelism", 1)
        terms.append(f"job {job['metadata']['name']} {pods} x {per_pod}")
        total += pods * per_pod
    server = max_connections(docs)
    if server is None:
        r.check(build == "base", f"{build}: a PostgreSQL whose max_connections the budget is checked against")
        return
    limit, reserved, where = server
    need = total + reserved + TOOLS_HEADROOM
    summary = (f"connection budget: pods at the HPA maximum + 1 surge x (DB_POOL_SIZE + DB_BACKGROUND_POOL_SIZE): "
               f"{' + '.join(terms)} = {total}, + {reserved} reserved + {TOOLS_HEADROOM} for tools = {need} "
               f"<= max_connections {limit} ({where})")
    r.check(need <= limit, summary, f"{need} > {limit}: lower the pools or maxReplicas, or raise max_connections")
    if need <= limit:
        print(f"  [{build}] {summary}")


def check_shutdown(r, d, repo):
    """preStop, then the drain window, then ONE deadline for serving, the event bus and
    the background tasks: all of it, plus a margin, inside the grace period."""
    name = d["metadata"]["name"]
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    pre = prestop_seconds(c)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if name == "router":
        with open(f"{repo}/router/router.config.yaml", encoding="utf-8") as f:
            config = yaml.safe_load(f)
        timeout = seconds(config.get("http", {}).get("shutdown_timeout", "30s"))
        need = pre + timeout + SHUTDOWN_MARGIN_SECONDS
        r.check(grace >= need, f"router: terminationGracePeriodSeconds {grace} >= preStop {pre} + http.shutdown_timeout "
                               f"{timeout:g} (router.config.yaml) + margin {SHUTDOWN_MARGIN_SECONDS}")
        return
    drain = env_value(c, "DRAIN_SECONDS")
    timeout = env_value(c, "SHUTDOWN_TIMEOUT_SECONDS")
    r.check(drain is not None and timeout is not None, f"{name}: DRAIN_SECONDS and SHUTDOWN_TIMEOUT_SECONDS set explicitly")
    need = pre + int(drain or 0) + int(timeout or 10) + SHUTDOWN_MARGIN_SECONDS
    r.check(grace >= need, f"{name}: terminationGracePeriodSeconds {grace} >= preStop {pre} + DRAIN_SECONDS {drain} + "
                           f"SHUTDOWN_TIMEOUT_SECONDS {timeout} (one deadline) + margin {SHUTDOWN_MARGIN_SECONDS}")


def prestop_seconds(container):
    pre = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    command = pre.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0].endswith("sleep"):
        return int(command[1])
    return 0


def check_migrations(r, build, docs):
    """Migrations are their own step: one Job runs `<service> migrate` for each subgraph
    with the services' database settings, and no Deployment migrates at start."""
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    jobs = [d for d in docs if d["kind"] == "Job"]
    r.check(len(jobs) == 1 and jobs[0]["metadata"]["name"] == "migrate", "one Job `migrate`", str([j["metadata"]["name"] for j in jobs]))
    for name in SUBGRAPHS:
        if name in deployments:
            c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
            r.check(env_value(c, "DB_MIGRATE_ON_START") == "false", f"{name}: DB_MIGRATE_ON_START=false (the Job migrates)")
    if not jobs:
        return
    job = jobs[0]
    spec = job["spec"]
    pod = spec["template"]["spec"]
    containers = pod.get("initContainers", []) + pod.get("containers", [])
    for name in SUBGRAPHS:
        mine = [c for c in containers if c["name"] == name]
        command = " ".join(mine[0].get("command", []) + mine[0].get("args", [])) if mine else ""
        r.check(len(mine) == 1 and re.search(rf"/app/bin/{name} migrate$", command) is not None,
                f"migrate: container {name} runs `{name} migrate`", command)
    # Init containers run one after the other and stop the pod at the first failure.
    r.check(sorted(c["name"] for c in pod.get("initContainers", [])) == sorted(SUBGRAPHS),
            "migrate: the four migrations are init containers (one after the other, the first failure stops the Job)")
    r.check(pod.get("restartPolicy") == "Never" and "backoffLimit" in spec and "activeDeadlineSeconds" in spec,
            "migrate: restartPolicy Never, a backoffLimit and an activeDeadlineSeconds")
    r.check(job["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "migration"
            and spec["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "migration",
            "migrate: labelled component=migration (its rollout phase and network policy)")
    psc = pod.get("securityContext", {})
    r.check(psc.get("runAsNonRoot") is True and pod.get("automountServiceAccountToken") is False and all(
        c.get("securityContext", {}).get("readOnlyRootFilesystem") is True
        and c.get("securityContext", {}).get("allowPrivilegeEscalation") is False for c in containers),
            "migrate: non-root, read-only root, no privilege escalation, no service account token (every container)")
    for name in SUBGRAPHS:
        mine = next((c for c in containers if c["name"] == name), None)
        if name not in deployments or mine is None:
            continue
        sc = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        r.check(mine["image"] == sc["image"], f"migrate: {name} runs the services' image", f"{mine['image']} vs {sc['image']}")
        server = lambda c: [e for e in c.get("env", []) if e["name"].startswith("PG_") or e["name"].startswith("POSTGRES_")]
        r.check(server(mine) == server(sc), f"migrate: {name} has its Deployment's PostgreSQL settings (PG_*, POSTGRES_*)")


def check_phases(r, build, docs):
    """deploy/rollout applies by label: infrastructure, then the migration Job, then the
    subgraphs, then the router with its config and supergraph."""
    by_phase = {}
    for d in docs:
        by_phase.setdefault(phase_of(d), []).append(d)
    names = lambda phase, kind=None: sorted(d["metadata"]["name"] for d in by_phase.get(phase, []) if kind in (None, d["kind"]))
    r.check(names("subgraphs", "Deployment") == sorted(SUBGRAPHS), "rollout phase subgraphs: the four subgraph Deployments",
            str(names("subgraphs", "Deployment")))
    r.check(names("router", "Deployment") == ["router"], "rollout phase router: the router Deployment")
    cms = [n.rsplit("-", 1)[0] for n in names("router", "ConfigMap")]
    r.check(sorted(cms) == ["router-config", "supergraph"], "rollout phase router: the router config and supergraph ConfigMaps",
            str(names("router", "ConfigMap")))
    r.check(names("migrate") == ["migrate"], "rollout phase migrate: the migration Job only", str(names("migrate")))
    # The development issuer (dev only) comes first, with the infrastructure: the
    # services read its keys when they start.
    left = [n for n in names("infrastructure", "Deployment") if n != "dev-issuer"]
    r.check(not left and not names("infrastructure", "Job"),
            "no Deployment or Job is left to the infrastructure phase", str(names("infrastructure", "Deployment")))
    counts = ", ".join(f"{phase} {len(by_phase.get(phase, []))}" for phase in ("infrastructure", "migrate", "subgraphs", "router"))
    r.check(True, f"rollout phases: {counts} documents")


def normalized(groups):
    """Rule groups with each expression's whitespace collapsed: kustomize adds blank lines
    to folded multi-line expressions, which PromQL ignores."""
    return {**groups, "groups": [{**g, "rules": [{**rule, "expr": " ".join(str(rule["expr"]).split())}
                                                 for rule in g["rules"]]} for g in groups["groups"]]}


def check_prometheus_rules(r, build, docs, repo):
    for rule in (d for d in docs if d["kind"] == "PrometheusRule"):
        name = rule["metadata"]["name"]
        source = RULE_FILES.get(name)
        if not r.check(source is not None, f"PrometheusRule {name} comes from a rule file of deploy/prometheus"):
            continue
        with open(f"{repo}/{source}", encoding="utf-8") as f:
            expected = yaml.safe_load(f)
        r.check(normalized(rule["spec"]) == normalized(expected), f"PrometheusRule {name} = {source} (else run deploy/sync-files)")
        # As rendered (kustomize reflows folded multi-line scalars), the rules still load.
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as rendered:
            yaml.safe_dump(rule["spec"], rendered)
            rendered.flush()
            checked = subprocess.run(["promtool", "check", "rules", rendered.name], capture_output=True, text=True)
        r.check(checked.returncode == 0, f"PrometheusRule {name}: promtool check rules, as kustomize renders it",
                checked.stdout + checked.stderr)
    shipped = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "PrometheusRule")
    if build == "production":
        r.check(shipped == sorted(RULE_FILES), "production: the alerts and the backup alerts as PrometheusRules", str(shipped))


def check_production_data(r, docs):
    """Backups, and where the stateful pods may run."""
    clusters = [d for d in docs if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/")]
    for cluster in clusters:
        name, spec = cluster["metadata"]["name"], cluster["spec"]
        affinity = spec.get("affinity", {})
        r.check(affinity.get("enablePodAntiAffinity") is True and affinity.get("podAntiAffinityType") == "required"
                and affinity.get("topologyKey") == "kubernetes.io/hostname",
                f"Cluster {name}: required pod anti-affinity per node")
        backup = spec.get("backup", {})
        store = backup.get("barmanObjectStore", {})
        r.check(bool(store.get("destinationPath")) and "wal" in store and bool(backup.get("retentionPolicy")),
                f"Cluster {name}: object-store backups with WAL archiving and a retention policy")
        r.check(spec.get("monitoring", {}).get("enablePodMonitor") is True, f"Cluster {name}: PodMonitor (backup metrics)")
        scheduled = [d for d in docs if d["kind"] == "ScheduledBackup" and d["spec"]["cluster"]["name"] == name]
        r.check(len(scheduled) == 1 and len(scheduled[0]["spec"]["schedule"].split()) == 6
                and scheduled[0]["spec"].get("method", "barmanObjectStore") == "barmanObjectStore",
                f"Cluster {name}: one ScheduledBackup (six-field cron, object store)")
    for mq in (d for d in docs if d["kind"] == "RabbitmqCluster"):
        name, spec = mq["metadata"]["name"], mq["spec"]
        required = spec.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
        r.check(any(t.get("topologyKey") == "kubernetes.io/hostname"
                    and t.get("labelSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == name for t in required),
                f"RabbitmqCluster {name}: required pod anti-affinity per node")
        spread = (spec.get("override", {}).get("statefulSet", {}).get("spec", {}).get("template", {}).get("spec", {})
                  .get("topologySpreadConstraints", []))
        r.check(any(t.get("topologyKey") == "topology.kubernetes.io/zone" and t.get("maxSkew") == 1 for t in spread),
                f"RabbitmqCluster {name}: spread over zones (topologySpreadConstraints, maxSkew 1)")
        pdbs = [p for p in docs if p["kind"] == "PodDisruptionBudget"
                and p["spec"]["selector"].get("matchLabels", {}).get("app.kubernetes.io/name") == name]
        r.check(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1,
                f"RabbitmqCluster {name}: a PodDisruptionBudget with maxUnavailable 1")
