#!/usr/bin/env python3
"""Checks one rendered kustomization (`kubectl kustomize DIR`) against the runtime contract.

    check_manifests.py --build NAME --repo ROOT --core-out CORE.yaml RENDERED.yaml

NAME is base, dev or production. Writes the documents of built-in kinds to CORE.yaml
(for kubernetes-validate) and checks the custom resources itself (RabbitmqCluster and
the topology operator's User, Permission, TopicPermission, Exchange, Queue, Binding;
CloudNativePG Cluster and Database; ServiceMonitor): kubernetes-validate has no schema
for them. Prints each failed check (every check with --verbose); exits 1 if any failed.
"""

import argparse
import base64
import json
import re
import sys

import yaml

import check_credentials
import check_platform

SUBGRAPHS = {"inventory": 4001, "rental": 4002, "payment": 4003, "delivery": 4004}
PROCESSES = {**SUBGRAPHS, "router": 4000}
# Where each process serves /metrics: a port of its own (never its service port).
METRICS_PORTS = {name: 9464 for name in [*SUBGRAPHS, "router"]}
CUSTOM_GROUPS = ("rabbitmq.com/", "postgresql.cnpg.io/", "monitoring.coreos.com/")
# Secrets production creates outside these manifests: documented in deploy/README.md.
OUT_OF_BAND_SECRETS = {"water-rental-service-key": {"key.pem"}, "water-pg-backup": {"ACCESS_KEY_ID", "ACCESS_SECRET_KEY"},
                       "water-payment-tls": {"tls.crt", "tls.key"},
                       # The broker's certificate (the RabbitmqCluster's tls.secretName, read by
                       # the operator's pods only) and the CA that signs it, which the subgraphs
                       # trust (its caSecretName; check_credentials allows a pod only ca.crt).
                       "water-mq-tls": {"tls.crt", "tls.key"}, "water-mq-ca": {"ca.crt"},
                       # Each service's own PostgreSQL role and RabbitMQ user.
                       **{f"water-{kind}-{s}": {"username", "password"} for kind in ("db", "mq") for s in SUBGRAPHS}}
# Config maps production creates outside these manifests (they must match a secret).
OUT_OF_BAND_CONFIGMAPS = {"water-payment-callers": {"jwks.json"}, "water-payment-ca": {"ca.crt"}}
# Deployments that are not one of the five processes: the development issuer, dev only.
DEV_TOOLS = {"dev-issuer"}
CNPG_APP_SECRET_KEYS = {"username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass"}
# CloudNativePG's CA, `<cluster>-ca`: ca.crt the clients trust, ca.key signs the server's
# (and, by default, client) certificates; check_credentials allows a pod only ca.crt.
CNPG_CA_SECRET_KEYS = {"ca.crt", "ca.key"}
RABBITMQ_DEFAULT_USER_KEYS = {"username", "password", "host", "port", "default_user.conf", "provider", "type"}
HASHED = re.compile(r"^(?P<base>[a-z0-9-]+)-[a-z0-9]{10}$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


class Report:
    def __init__(self, build, verbose):
        self.build = build
        self.verbose = verbose
        self.failures = 0
        self.passed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"  ok    [{self.build}] {what}")
        else:
            self.failures += 1
            print(f"  FAIL  [{self.build}] {what}" + (f": {detail}" if detail else ""))
        return ok

    def warn(self, what):
        print(f"  warn  [{self.build}] {what}")


# ---------------------------------------------------------------------------------------
# A small typed schema for the custom resources: the fields we use, with their types.
# A key ending in "!" is required; any key not listed is an error (catches typos).

class Enum:
    def __init__(self, *values):
        self.values = values


class MapOf:
    def __init__(self, value_type):
        self.value_type = value_type


class Pattern:
    def __init__(self, regex, name):
        self.regex, self.name = regex, name


Quantity = Pattern(QUANTITY, "quantity")
Duration = Pattern(DURATION, "duration")
RESOURCES = {"requests": MapOf(Quantity), "limits": MapOf(Quantity)}
LABEL_SELECTOR = {
    "matchLabels": MapOf(str),
    "matchExpressions": [{"key!": str, "operator!": Enum("In", "NotIn", "Exists", "DoesNotExist"), "values": [str]}],
}
METADATA = {"name!": str, "namespace": str, "labels": MapOf(str), "annotations": MapOf(str)}

RABBITMQ_CLUSTER = {
    "replicas!": int,
    "image": str,
    "persistence": {"storage!": Quantity, "storageClassName": str},
    "resources": RESOURCES,
    "rabbitmq": {"additionalConfig": str, "additionalPlugins": [str], "advancedConfig": str},
    "tls": {"secretName": str, "caSecretName": str, "disableNonTLSListeners": bool},
    "service": {"type": Enum("ClusterIP", "NodePort", "LoadBalancer")},
    "terminationGracePeriodSeconds": int,
    "affinity": dict,
    "tolerations": list,
    "override": dict,
}
CNPG_CLUSTER = {
    "instances!": int,
    "imageName": str,
    "primaryUpdateStrategy": Enum("unsupervised", "supervised"),
    "postgresql": {"parameters": MapOf(str), "pg_hba": [str]},
    "bootstrap": {"initdb": {"database": str, "owner": str, "secret": {"name!": str}}},
    "storage!": {"size!": Quantity, "storageClass": str},
    "resources": RESOURCES,
    "affinity": {
        "enablePodAntiAffinity": bool,
        "topologyKey": str,
        "podAntiAffinityType": Enum("preferred", "required"),
    },
    "managed": {"roles": [{"name!": str, "comment": str, "ensure": Enum("present", "absent"), "login": bool,
                           "superuser": bool, "createdb": bool, "createrole": bool, "inherit": bool,
                           "replication": bool, "bypassrls": bool, "connectionLimit": int, "inRoles": [str],
                           "disablePassword": bool, "validUntil": str, "passwordSecret": {"name!": str}}]},
    "monitoring": {"enablePodMonitor": bool},
    "backup": dict,
}
CNPG_DATABASE = {
    "cluster!": {"name!": str},
    "name!": str,
    "owner!": str,
    "ensure": Enum("present", "absent"),
    "databaseReclaimPolicy": Enum("retain", "delete"),
}
CNPG_SCHEDULED_BACKUP = {
    "schedule!": str,
    "cluster!": {"name!": str},
    "immediate": bool,
    "suspend": bool,
    "backupOwnerReference": Enum("none", "self", "cluster"),
    "method": Enum("barmanObjectStore", "volumeSnapshot", "plugin"),
    "target": Enum("primary", "prefer-standby"),
}
# The Messaging Topology Operator's kinds (rabbitmq.com/v1beta1), as far as we use them.
CLUSTER_REFERENCE = {"name!": str}
RABBITMQ_USER = {"rabbitmqClusterReference!": CLUSTER_REFERENCE, "tags": [Enum("management", "policymaker", "monitoring", "administrator")],
                 "importCredentialsSecret": {"name!": str}}
RABBITMQ_PERMISSION = {"rabbitmqClusterReference!": CLUSTER_REFERENCE, "vhost!": str, "user": str, "userReference": {"name!": str},
                       "permissions!": {"configure": str, "write": str, "read": str}}
RABBITMQ_TOPIC_PERMISSION = {"rabbitmqClusterReference!": CLUSTER_REFERENCE, "vhost!": str, "user": str,
                             "userReference": {"name!": str}, "permissions!": {"exchange": str, "write": str, "read": str}}
RABBITMQ_EXCHANGE = {"rabbitmqClusterReference!": CLUSTER_REFERENCE, "name!": str, "vhost": str,
                     "type": Enum("direct", "fanout", "headers", "topic"), "durable": bool, "autoDelete": bool, "arguments": dict}
RABBITMQ_QUEUE = {"rabbitmqClusterReference!": CLUSTER_REFERENCE, "name!": str, "vhost": str, "type": Enum("classic", "quorum", "stream"),
                  "durable": bool, "autoDelete": bool, "arguments": dict}
RABBITMQ_BINDING = {"rabbitmqClusterReference!": CLUSTER_REFERENCE, "vhost": str, "source!": str, "destination!": str,
                    "destinationType!": Enum("exchange", "queue"), "routingKey": str, "arguments": dict}
PROMETHEUS_RULE = {
    "groups!": [{"name!": str, "interval": Duration, "rules!": [{
        "alert": str, "record": str, "expr!": str, "for": Duration, "keep_firing_for": Duration,
        "labels": MapOf(str), "annotations": MapOf(str)}]}],
}
SERVICE_MONITOR = {
    "selector!": LABEL_SELECTOR,
    "endpoints!": [{"port!": str, "path": str, "interval": Duration, "scrapeTimeout": Duration,
                    "scheme": Enum("http", "https")}],
    "namespaceSelector": dict,
    "jobLabel": str,
}
CUSTOM_KINDS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): RABBITMQ_CLUSTER,
    ("rabbitmq.com/v1beta1", "User"): RABBITMQ_USER,
    ("rabbitmq.com/v1beta1", "Permission"): RABBITMQ_PERMISSION,
    ("rabbitmq.com/v1beta1", "TopicPermission"): RABBITMQ_TOPIC_PERMISSION,
    ("rabbitmq.com/v1beta1", "Exchange"): RABBITMQ_EXCHANGE,
    ("rabbitmq.com/v1beta1", "Queue"): RABBITMQ_QUEUE,
    ("rabbitmq.com/v1beta1", "Binding"): RABBITMQ_BINDING,
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("postgresql.cnpg.io/v1", "Database"): CNPG_DATABASE,
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): CNPG_SCHEDULED_BACKUP,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}


def type_errors(value, schema, path):
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        errors = []
        known = {key.rstrip("!"): key.endswith("!") for key in schema}
        for key, required in known.items():
            if required and key not in value:
                errors.append(f"{path}.{key}: required")
        for key, item in value.items():
            if key not in known:
                errors.append(f"{path}.{key}: unknown field")
                continue
            sub = schema[key + "!"] if known[key] else schema[key]
            errors += type_errors(item, sub, f"{path}.{key}")
        return errors
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in type_errors(item, schema[0], f"{path}[{i}]")]
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        return [e for k, item in value.items() for e in type_errors(item, schema.value_type, f"{path}.{k}")]
    if isinstance(schema, Enum):
        return [] if value in schema.values else [f"{path}: {value!r} is not one of {list(schema.values)}"]
    if isinstance(schema, Pattern):
        ok = isinstance(value, str) and schema.regex.match(value)
        return [] if ok else [f"{path}: {value!r} is not a {schema.name} string"]
    if schema is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer, got {value!r}"]
    if schema in (str, bool, list, dict):
        return [] if isinstance(value, schema) else [f"{path}: expected {schema.__name__}, got {value!r}"]
    raise TypeError(schema)


# ---------------------------------------------------------------------------------------

def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name, default=None):
    entry = env_map(container).get(name)
    return entry.get("value", default) if entry else default


def selects(selector, labels):
    match = selector.get("matchLabels", {})
    if not all(labels.get(k) == v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
        if expr["operator"] == "Exists" and value is None:
            return False
        if expr["operator"] == "DoesNotExist" and value is not None:
            return False
    return bool(match or selector.get("matchExpressions"))


def check_deployment(r, d, docs, repo, build):
    name = d["metadata"]["name"]
    pod = d["spec"]["template"]["spec"]
    pod_labels = d["spec"]["template"]["metadata"].get("labels", {})
    annotations = d["spec"]["template"]["metadata"].get("annotations", {})
    containers = pod["containers"]
    c = containers[0]
    is_router = name == "router"
    port = PROCESSES.get(name)
    r.check(port is not None, f"Deployment {name} is one of the five processes")
    if port is None:
        return
    r.check(len(containers) == 1, f"{name}: one container")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    r.check(ports.get("http") == port, f"{name}: container port http is {port}", str(ports))
    if "replicas" in d["spec"]:
        r.check(d["spec"]["replicas"] >= 2, f"{name}: replicas >= 2", str(d["spec"]["replicas"]))

    # Probes.
    ready_path, live_path = ("/readiness", "/health") if is_router else ("/ready", "/health")
    for probe, path in (("readinessProbe", ready_path), ("livenessProbe", live_path), ("startupProbe", None)):
        got = c.get(probe, {}).get("httpGet", {})
        ok = bool(got) and got.get("port") in ("http", port) and (path is None or got.get("path") == path)
        r.check(ok, f"{name}: {probe} is an HTTP GET on the service port" + (f" {path}" if path else ""), str(got))

    # Resources.
    res = c.get("resources", {})
    ok = all(k in res.get("requests", {}) for k in ("cpu", "memory")) and "memory" in res.get("limits", {})
    r.check(ok, f"{name}: resource requests (cpu, memory) and a memory limit", str(res))

    # Security.
    psc = pod.get("securityContext", {})
    csc = c.get("securityContext", {})
    r.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0
            and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
            f"{name}: pod runs as non-root with seccomp RuntimeDefault", str(psc))
    r.check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
            and "ALL" in csc.get("capabilities", {}).get("drop", []),
            f"{name}: read-only root, no privilege escalation, all capabilities dropped", str(csc))
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    r.check("/tmp" in mounts, f"{name}: writable /tmp (emptyDir) under the read-only root")
    r.check(pod.get("automountServiceAccountToken") is False, f"{name}: no service account token mounted")
    r.check(pod.get("enableServiceLinks") is False,
            f"{name}: service links off (they would inject ROUTER_PORT=tcp://... and the like)")

    # Shutdown: one deadline inside the grace period.
    check_platform.check_shutdown(r, d, repo)
    pre = check_platform.prestop_seconds(c)
    r.check(pre > 0, f"{name}: preStop sleep")
    if is_router:
        rp = c.get("readinessProbe", {})
        window = rp.get("periodSeconds", 10) * rp.get("failureThreshold", 3)
        r.check(pre > window, f"router: preStop sleep {pre}s outlasts readiness period x threshold {window}s")

    # Environment.
    env = env_map(c)
    r.check("PORT" not in env and "HOST" not in env, f"{name}: neither PORT nor HOST set (hive-router reads them)")
    defined = set()
    for entry in c.get("env", []):
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", entry.get("value", "")):
            r.check(ref in defined, f"{name}: ${ref} is defined before {entry['name']} uses it")
        defined.add(entry["name"])
    r.check(env_value(c, "LOG_FORMAT") == "json", f"{name}: LOG_FORMAT=json")
    if is_router:
        r.check(env_value(c, "ROUTER_HOST") == "0.0.0.0" and env_value(c, "ROUTER_PORT") == str(port),
                "router: ROUTER_HOST=0.0.0.0, ROUTER_PORT=4000")
        for sub, sub_port in SUBGRAPHS.items():
            if sub != "payment":
                r.check(env_value(c, f"{sub.upper()}_URL") == f"http://{sub}:{sub_port}/graphql",
                        f"router: {sub.upper()}_URL points at Service {sub}")
        check_router_files(r, d, c, docs, repo)
    else:
        r.check(env_value(c, f"{name.upper()}_LISTEN") == f"0.0.0.0:{port}", f"{name}: {name.upper()}_LISTEN=0.0.0.0:{port}")
        for var in ("POSTGRES_URL", "AMQP_URL"):
            r.check(var in env, f"{name}: {var} set")
        r.check("JWT_SECRET" not in env, f"{name}: no shared JWT_SECRET")
        check_service_keys(r, name, d, c)
    check_identity_settings(r, name, c, docs)
    check_payment_tls(r, name, d, c, build)

    # Scraping.
    metrics_port = METRICS_PORTS[name]
    r.check(annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == str(metrics_port)
            and annotations.get("prometheus.io/path") == "/metrics", f"{name}: prometheus.io scrape annotations (port {metrics_port})")
    r.check(ports.get("metrics") == metrics_port and metrics_port != port,
            f"{name}: /metrics on its own port {metrics_port} (container port `metrics`), not its service port", str(ports))
    if not is_router:
        r.check(env_value(c, f"{name.upper()}_METRICS_LISTEN") == f"0.0.0.0:{metrics_port}",
                f"{name}: {name.upper()}_METRICS_LISTEN=0.0.0.0:{metrics_port}")
    r.check(pod_labels.get("app.kubernetes.io/name") == name and pod_labels.get("app.kubernetes.io/part-of") == "water-rental",
            f"{name}: labels app.kubernetes.io/name and part-of")

    # HPA, PDB, Service.
    hpas = [h for h in docs if h["kind"] == "HorizontalPodAutoscaler"
            and h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
    ok = len(hpas) == 1 and hpas[0]["spec"].get("minReplicas", 1) >= 2 and hpas[0]["spec"]["maxReplicas"] >= hpas[0]["spec"]["minReplicas"]
    r.check(ok, f"{name}: one HPA with minReplicas >= 2")
    if hpas:
        cpu = [m for m in hpas[0]["spec"].get("metrics", []) if m.get("resource", {}).get("name") == "cpu"]
        r.check(bool(cpu), f"{name}: the HPA scales on CPU")
    pdbs = [p for p in docs if p["kind"] == "PodDisruptionBudget" and selects(p["spec"]["selector"], pod_labels)]
    r.check(len(pdbs) == 1 and ("minAvailable" in pdbs[0]["spec"] or "maxUnavailable" in pdbs[0]["spec"]),
            f"{name}: one PodDisruptionBudget selects its pods")
    services = [s for s in docs if s["kind"] == "Service" and selects({"matchLabels": s["spec"].get("selector", {})}, pod_labels)]
    ok = len(services) == 1 and services[0]["metadata"]["name"] == name and any(
        p["port"] == port and p.get("targetPort") in ("http", port) for p in services[0]["spec"]["ports"])
    r.check(ok, f"{name}: Service {name} selects it on port {port}")
    r.check(selects(d["spec"]["selector"], pod_labels), f"{name}: the Deployment selector matches its pod labels")


def check_router_files(r, d, c, docs, repo):
    pod = d["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    configmaps = {cm["metadata"]["name"]: cm for cm in docs if cm["kind"] == "ConfigMap"}
    for volume, base_name, key, env, repo_file in (
            ("router-config", "router-config", "router.config.yaml", "ROUTER_CONFIG_FILE_PATH", "router/router.config.yaml"),
            ("supergraph", "supergraph", "supergraph.graphql", "SUPERGRAPH_PATH", "schema/supergraph.graphql")):
        cm_name = volumes.get(volume, {}).get("configMap", {}).get("name", "")
        m = HASHED.match(cm_name)
        r.check(bool(m) and m.group("base") == base_name,
                f"router: ConfigMap {cm_name or '?'} carries a content-hash suffix (a change rolls the router)")
        cm = configmaps.get(cm_name)
        r.check(cm is not None and key in cm.get("data", {}), f"router: ConfigMap {cm_name} exists with key {key}")
        if cm is not None and key in cm.get("data", {}):
            with open(f"{repo}/{repo_file}", encoding="utf-8") as f:
                r.check(cm["data"][key] == f.read(), f"router: ConfigMap {cm_name} holds the current {repo_file}")
        r.check(env_value(c, env) == f"{mounts.get(volume)}/{key}", f"router: {env} is the mounted {key}")
    # The trusted documents travel with the configuration, which names them relative to itself.
    cm = configmaps.get(volumes.get("router-config", {}).get("configMap", {}).get("name", ""))
    with open(f"{repo}/router/trusted-documents.json", encoding="utf-8") as f:
        r.check(cm is not None and cm.get("data", {}).get("trusted-documents.json") == f.read(),
                "router: the router-config ConfigMap holds the current router/trusted-documents.json beside router.config.yaml")


def generated(name, base):
    """Whether `name` is `base` or `base` with kustomize's content-hash suffix."""
    m = HASHED.match(name)
    return name == base or (m is not None and m.group("base") == base)


def check_identity_settings(r, name, c, docs):
    """Every process reads the TOKEN_* settings from the water-identity ConfigMap, which
    names an issuer and a JWKS (an https URL outside development)."""
    refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
    ref = next((n for n in refs if generated(n, "water-identity")), None)
    r.check(ref is not None, f"{name}: TOKEN_* settings from the ConfigMap water-identity (envFrom)", str(refs))
    r.check("JWKS_PATH" not in env_map(c), f"{name}: no JWKS_PATH (the shared-secret JWKS is gone)")
    configmaps = {cm["metadata"]["name"]: cm for cm in docs if cm["kind"] == "ConfigMap"}
    if ref is None or ref not in configmaps:
        return
    data = configmaps[ref].get("data", {})
    r.check(bool(data.get("TOKEN_ISSUER")) and bool(data.get("TOKEN_JWKS")),
            f"{name}: {ref} sets TOKEN_ISSUER and TOKEN_JWKS", str(sorted(data)))
    algorithms = [a.strip() for a in data.get("TOKEN_ALGORITHMS", "ES256,RS256").split(",")]
    r.check(not any(a.upper().startswith("HS") or a.lower() == "none" for a in algorithms),
            f"{name}: {ref} accepts only asymmetric algorithms", str(algorithms))


def check_service_keys(r, name, d, c):
    """rental mounts its own key (and nobody else does); payment mounts that key's
    public half as the only callers it trusts."""
    pod = d["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
    has_key = any(generated(s, "water-rental-service-key") for s in secrets)
    if name == "rental":
        volume = next((n for n, v in volumes.items() if "secret" in v and generated(v["secret"]["secretName"], "water-rental-service-key")), None)
        r.check(volume is not None and env_value(c, "SERVICE_KEY_FILE") == f"{mounts.get(volume)}/key.pem",
                "rental: SERVICE_KEY_FILE is key.pem of the Secret water-rental-service-key")
    else:
        r.check(not has_key, f"{name}: does not mount rental's service key")
    if name == "payment":
        volume = next((n for n, v in volumes.items() if "configMap" in v and generated(v["configMap"]["name"], "water-payment-callers")), None)
        r.check(volume is not None and env_value(c, "SERVICE_CALLERS_JWKS") == f"{mounts.get(volume)}/jwks.json",
                "payment: SERVICE_CALLERS_JWKS is jwks.json of the ConfigMap water-payment-callers")
    else:
        r.check(env_value(c, "SERVICE_CALLERS_JWKS") is None, f"{name}: trusts no calling service")


def check_payment_tls(r, name, d, c, build):
    """The card's path: payment serves TLS from the Secret water-payment-tls (mounted by
    payment only), and rental and the router call it over https trusting only the CA of
    the ConfigMap water-payment-ca; or, outside production, all of it plain."""
    pod = d["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    tls_volume = next((n for n, v in volumes.items() if "secret" in v and generated(v["secret"]["secretName"], "water-payment-tls")), None)
    if name != "payment":
        r.check(tls_volume is None, f"{name}: does not mount payment's TLS key")
    if name == "payment":
        cert, key = env_value(c, "PAYMENT_TLS_CERT_FILE"), env_value(c, "PAYMENT_TLS_KEY_FILE")
        on = cert is not None or key is not None
        if on or build == "production":
            r.check(tls_volume is not None and cert == f"{mounts.get(tls_volume)}/tls.crt" and key == f"{mounts.get(tls_volume)}/tls.key",
                    "payment: PAYMENT_TLS_CERT_FILE and _KEY_FILE are tls.crt and tls.key of the Secret water-payment-tls")
            schemes = {probe: c.get(probe, {}).get("httpGet", {}).get("scheme") for probe in ("readinessProbe", "livenessProbe", "startupProbe")}
            r.check(all(scheme == "HTTPS" for scheme in schemes.values()), "payment: its probes speak HTTPS", str(schemes))
    if name in ("rental", "router"):
        url, ca = env_value(c, "PAYMENT_URL"), env_value(c, "PAYMENT_CA_FILE")
        ca_volume = next((n for n, v in volumes.items() if "configMap" in v and generated(v["configMap"]["name"], "water-payment-ca")), None)
        plain = url == "http://payment:4003/graphql" and ca is None
        sealed = url == "https://payment:4003/graphql" and ca_volume is not None and ca == f"{mounts.get(ca_volume)}/ca.crt"
        r.check(sealed if build == "production" else plain or sealed,
                f"{name}: PAYMENT_URL points at Service payment" + (" over https, trusting ca.crt of the ConfigMap water-payment-ca" if build == "production" else ""),
                f"{url} {ca}")


def secret_refs(docs):
    """(secret name, key or None, where) for every Secret a workload reads."""
    refs = []
    for d in docs:
        if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/"):
            credentials = d["spec"].get("backup", {}).get("barmanObjectStore", {}).get("s3Credentials", {})
            refs += [(ref["name"], ref["key"], f"Cluster {d['metadata']['name']} backup {field}")
                     for field, ref in credentials.items() if isinstance(ref, dict) and "name" in ref]
            for x in d["spec"].get("managed", {}).get("roles", []):
                if "passwordSecret" in x:
                    refs += [(x["passwordSecret"]["name"], key, f"Cluster {d['metadata']['name']} role {x['name']}")
                             for key in ("username", "password")]
        if d["kind"] == "RabbitmqCluster":
            tls = d["spec"].get("tls", {})
            if "secretName" in tls:
                refs += [(tls["secretName"], key, f"RabbitmqCluster {d['metadata']['name']} tls.secretName")
                         for key in ("tls.crt", "tls.key")]
            if "caSecretName" in tls:
                refs.append((tls["caSecretName"], "ca.crt", f"RabbitmqCluster {d['metadata']['name']} tls.caSecretName"))
        if d["kind"] == "User" and d["apiVersion"].startswith("rabbitmq.com/") and "importCredentialsSecret" in d["spec"]:
            refs += [(d["spec"]["importCredentialsSecret"]["name"], key, f"User {d['metadata']['name']}")
                     for key in ("username", "password")]
        if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((ref["name"], ref["key"], f"{d['metadata']['name']} env {e['name']}"))
        for v in pod.get("volumes", []):
            sources = [v["secret"] | {"name": v["secret"]["secretName"]}] if "secret" in v else [
                s["secret"] for s in v.get("projected", {}).get("sources", []) if "secret" in s]
            for source in sources:
                keys = [i["key"] for i in source.get("items", [])] or [None]
                refs += [(source["name"], k, f"{d['metadata']['name']} volume {v['name']}") for k in keys]
    return refs


def check_secrets(r, build, docs):
    refs = secret_refs(docs)
    secrets = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Secret"}
    if build == "base":
        names = sorted({name for name, _, _ in refs})
        want = sorted([f"water-{kind}-{s}" for kind in ("db", "mq") for s in SUBGRAPHS] + ["water-rental-service-key"])
        r.check(names == want, "base references the secrets water-db-<service>, water-mq-<service> (each service's own) "
                               "and water-rental-service-key by name, and no other", str(names))
        return
    operator_made = {}
    for d in docs:
        if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/"):
            operator_made[d["metadata"]["name"] + "-app"] = CNPG_APP_SECRET_KEYS
            operator_made[d["metadata"]["name"] + "-ca"] = CNPG_CA_SECRET_KEYS
        if d["kind"] == "RabbitmqCluster":
            operator_made[d["metadata"]["name"] + "-default-user"] = RABBITMQ_DEFAULT_USER_KEYS
    for name, key, where in refs:
        if name in secrets:
            data = {**secrets[name].get("data", {}), **secrets[name].get("stringData", {})}
            r.check(key is None or key in data, f"{where}: Secret {name} has key {key}")
        elif build == "production" and name in operator_made:
            r.check(key in operator_made[name], f"{where}: {name} is created by its operator, with key {key}")
        elif build == "production" and name in OUT_OF_BAND_SECRETS:
            r.check(key in OUT_OF_BAND_SECRETS[name], f"{where}: {name} is the documented out-of-band secret, key {key}")
        else:
            r.check(False, f"{where}: Secret {name} exists or is created by an operator")
    configmaps = {cm["metadata"]["name"] for cm in docs if cm["kind"] == "ConfigMap"}
    data_of = {cm["metadata"]["name"]: cm.get("data", {}) for cm in docs if cm["kind"] == "ConfigMap"}
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        keyrefs = {(e["valueFrom"]["configMapKeyRef"]["name"], e["valueFrom"]["configMapKeyRef"]["key"])
                   for c in pod.get("initContainers", []) + pod["containers"] for e in c.get("env", [])
                   if "configMapKeyRef" in e.get("valueFrom", {})}
        for name, key in sorted(keyrefs):
            r.check(key in data_of.get(name, {}), f"{d['metadata']['name']} env: ConfigMap {name} exists with key {key}")
        for v in d["spec"]["template"]["spec"].get("volumes", []):
            name = v.get("configMap", {}).get("name")
            if name and name not in configmaps:
                r.check(build == "production" and name in OUT_OF_BAND_CONFIGMAPS,
                        f"{d['metadata']['name']} volume {v['name']}: ConfigMap {name} exists or is the documented out-of-band one")
    if build == "dev":
        check_dev_service_key(r, docs)


def check_dev_service_key(r, docs):
    """The committed development key of rental and the public key payment trusts are one
    key pair (openssl reads the private key's public point)."""
    import subprocess
    secret = next((s for s in docs if s["kind"] == "Secret" and generated(s["metadata"]["name"], "water-rental-service-key")), None)
    callers = next((c for c in docs if c["kind"] == "ConfigMap" and generated(c["metadata"]["name"], "water-payment-callers")), None)
    if not r.check(secret is not None and callers is not None, "dev: rental's key and payment's callers are generated"):
        return
    pem = base64.b64decode(secret["data"]["key.pem"])
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem, capture_output=True, check=True).stdout
    point = der[-65:]
    b64 = lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")
    keys = json.loads(callers["data"]["jwks.json"])["keys"]
    r.check(len(keys) == 1 and point[0] == 4 and keys[0].get("x") == b64(point[1:33]) and keys[0].get("y") == b64(point[33:]),
            "dev: payment's callers JWKS is the public half of rental's key")


def check_custom_resources(r, build, docs):
    for d in docs:
        schema = CUSTOM_KINDS.get((d["apiVersion"], d["kind"]))
        if any(d["apiVersion"].startswith(g) for g in CUSTOM_GROUPS):
            r.check(schema is not None, f"{d['kind']} {d['apiVersion']} is a custom kind this check knows")
        if schema is None:
            continue
        top = type_errors(d, {"apiVersion!": str, "kind!": str, "metadata!": METADATA, "spec!": schema}, d["kind"])
        r.check(not top, f"{d['kind']} {d['metadata']['name']}: fields and types", "; ".join(top))
    clusters = [d for d in docs if d["kind"] == "Cluster" and d["apiVersion"] == "postgresql.cnpg.io/v1"]
    rabbits = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    if build == "production":
        r.check(len(clusters) == 1 and clusters[0]["spec"].get("instances") == 3, "production: CloudNativePG Cluster with 3 instances")
        r.check(len(rabbits) == 1 and rabbits[0]["spec"].get("replicas") == 3, "production: RabbitmqCluster with 3 replicas")
        if clusters:
            dbs = {d["spec"]["name"]: d for d in docs if d["kind"] == "Database"}
            for service in SUBGRAPHS:
                db = dbs.get(f"water_{service}")
                owner = check_credentials.role(service)
                r.check(db is not None and db["spec"]["cluster"]["name"] == clusters[0]["metadata"]["name"]
                        and db["spec"]["owner"] == owner and db["spec"].get("ensure", "present") == "present",
                        f"production: database water_{service} declared in {clusters[0]['metadata']['name']}, "
                        f"owned by its service's role {owner}")
    services = [s for s in docs if s["kind"] == "Service"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    scraped = []
    for sm in monitors:
        picked = [s for s in services if selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        scraped += [s["metadata"]["name"] for s in picked]
        for ep in sm["spec"]["endpoints"]:
            for s in picked:
                named = [p for p in s["spec"]["ports"] if p.get("name") == ep["port"]]
                r.check(len(named) == 1 and named[0]["port"] == METRICS_PORTS.get(s["metadata"]["name"]),
                        f"ServiceMonitor {sm['metadata']['name']}: Service {s['metadata']['name']} port {ep['port']} is its metrics port")
    if monitors:
        r.check(sorted(scraped) == sorted(PROCESSES), "the ServiceMonitors select each of the five Services once", str(sorted(scraped)))


def check_network_policies(r, build, docs):
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    r.check(len(deny) == 1, "NetworkPolicy: default deny of all ingress and egress")
    dns = [p for p in policies if p["spec"]["podSelector"] == {} and any(
        {"port": 53, "protocol": "UDP"} in rule.get("ports", []) for rule in p["spec"].get("egress", []))]
    r.check(len(dns) == 1, "NetworkPolicy: DNS egress for every pod")

    def allowed_ingress(target_labels, port, source_labels):
        for p in policies:
            if "Ingress" not in p["spec"].get("policyTypes", []) or not selects_or_all(p["spec"]["podSelector"], target_labels):
                continue
            for rule in p["spec"].get("ingress", []):
                if not port_in(rule, port):
                    continue
                peers = rule.get("from")
                if not peers or (source_labels is not None and any(
                        "namespaceSelector" not in peer and selects_or_all(peer.get("podSelector", {}), source_labels)
                        for peer in peers)):
                    return True
        return False

    def allowed_egress(source_labels, port, target_labels):
        for p in policies:
            if "Egress" not in p["spec"].get("policyTypes", []) or not selects_or_all(p["spec"]["podSelector"], source_labels):
                continue
            for rule in p["spec"].get("egress", []):
                if port_in(rule, port) and (not rule.get("to") or any(
                        "namespaceSelector" not in peer and "ipBlock" not in peer and selects_or_all(peer.get("podSelector", {}), target_labels)
                        for peer in rule["to"])):
                    return True
        return False

    amqps = check_credentials.amqps(build)
    amqp_port = check_credentials.amqp_port(build)

    def labels(name, component):
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": "water-rental"}

    router = labels("router", "router")
    r.check(allowed_ingress(router, 4000, None), "NetworkPolicy: anyone -> router:4000")
    r.check(not allowed_ingress(router, METRICS_PORTS["router"], None),
            f"NetworkPolicy: not anyone -> router:{METRICS_PORTS['router']} (its metrics)")
    for sub, port in SUBGRAPHS.items():
        sl = labels(sub, "subgraph")
        r.check(not allowed_ingress(sl, METRICS_PORTS[sub], router),
                f"NetworkPolicy: the router may not reach {sub}:{METRICS_PORTS[sub]} (its metrics)")
        r.check(allowed_egress(router, port, sl) and allowed_ingress(sl, port, router), f"NetworkPolicy: router -> {sub}:{port}")
        r.check(allowed_egress(sl, 5432, {}) and allowed_egress(sl, amqp_port, {}),
                f"NetworkPolicy: {sub} -> PostgreSQL 5432, RabbitMQ {amqp_port} ({'AMQPS' if amqps else 'AMQP'})")
        if amqps:
            r.check(not allowed_egress(sl, 5672, {}), f"NetworkPolicy: {sub} may not reach plain AMQP 5672")
    migration = labels("migrate", "migration")
    r.check(allowed_egress(migration, 5432, {}), "NetworkPolicy: the migration Job -> PostgreSQL 5432")
    r.check(not allowed_egress(migration, 5672, {}) and not allowed_egress(migration, 5671, {}),
            "NetworkPolicy: the migration Job may not reach RabbitMQ (5672, 5671)")
    rabbits = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    if amqps and rabbits:
        # The broker's own pods (the operator labels them app.kubernetes.io/name=<cluster>):
        # the subgraphs in over AMQPS only, the operators over the HTTPS management API.
        broker = {"app.kubernetes.io/name": rabbits[0]["metadata"]["name"]}
        name = rabbits[0]["metadata"]["name"]
        for sub in SUBGRAPHS:
            sl = labels(sub, "subgraph")
            r.check(allowed_ingress(broker, 5671, sl) and not allowed_ingress(broker, 5672, sl),
                    f"NetworkPolicy: {sub} -> {name}:5671 (AMQPS), not 5672")

        def from_namespace(port, namespace):
            return any("Ingress" in p["spec"].get("policyTypes", []) and selects_or_all(p["spec"]["podSelector"], broker)
                       and any(port_in(rule, port) and any(
                           peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == namespace
                           for peer in rule.get("from", [])) for rule in p["spec"].get("ingress", [])) for p in policies)

        r.check(from_namespace(15671, "rabbitmq-system") and not from_namespace(15672, "rabbitmq-system"),
                f"NetworkPolicy: rabbitmq-system (the topology operator) -> {name}:15671 (management API over HTTPS), not 15672")
    rental, payment = labels("rental", "subgraph"), labels("payment", "subgraph")
    r.check(allowed_egress(rental, 4003, payment) and allowed_ingress(payment, 4003, rental), "NetworkPolicy: rental -> payment:4003")
    r.check(not allowed_ingress(labels("inventory", "subgraph"), 4001, rental), "NetworkPolicy: rental may not call inventory directly")
    r.check(not allowed_ingress(payment, 4003, labels("delivery", "subgraph")), "NetworkPolicy: delivery may not call payment")
    for name in PROCESSES:
        source = labels(name, "router" if name == "router" else "subgraph")
        r.check(allowed_egress(source, 443, {}), f"NetworkPolicy: {name} -> the identity provider's JWKS (HTTPS 443)")
    for name, port in METRICS_PORTS.items():
        target = labels(name, "router" if name == "router" else "subgraph")
        ok = any("Ingress" in p["spec"].get("policyTypes", []) and selects_or_all(p["spec"]["podSelector"], target)
                 and any(port_in(rule, port) and any("namespaceSelector" in peer for peer in rule.get("from", []))
                         for rule in p["spec"].get("ingress", [])) for p in policies)
        r.check(ok, f"NetworkPolicy: Prometheus (another namespace) -> {name}:{port}")


def selects_or_all(selector, labels):
    return selector == {} or selects(selector, labels)


def port_in(rule, port):
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("port") == port or (isinstance(p.get("port"), int) and p["port"] <= port <= p.get("endPort", p["port"]))
               for p in ports)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True, choices=["base", "dev", "production"])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--core-out", required=True)
    parser.add_argument("--verbose", action="store_true", help="print every check, not only failures")
    parser.add_argument("rendered")
    args = parser.parse_args()
    r = Report(args.build, args.verbose)
    with open(args.rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    core = [d for d in docs if not any(d["apiVersion"].startswith(g) for g in CUSTOM_GROUPS)]
    with open(args.core_out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)

    tools = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] in DEV_TOOLS]
    r.check(args.build == "dev" or not tools, f"{args.build}: no development issuer", str([d["metadata"]["name"] for d in tools]))
    deployments = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] not in DEV_TOOLS]
    r.check(sorted(d["metadata"]["name"] for d in deployments) == sorted(PROCESSES), "a Deployment for each of the five processes")
    for d in deployments:
        check_deployment(r, d, docs, args.repo, args.build)
    check_network_policies(r, args.build, docs)
    check_secrets(r, args.build, docs)
    check_credentials.check(r, args.build, docs)
    check_custom_resources(r, args.build, docs)
    check_platform.check_connection_budget(r, args.build, docs)
    check_platform.check_migrations(r, args.build, docs)
    check_platform.check_phases(r, args.build, docs)
    check_platform.check_prometheus_rules(r, args.build, docs, args.repo)

    if args.build != "base":
        namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
        r.check(len(namespaces) == 1 and None not in namespaces, f"{args.build}: every resource in one namespace", str(namespaces))
        images = {c["image"] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]}
        r.check(len(images) == 1, f"{args.build}: every process runs the same image", str(images))
        image = next(iter(images))
        r.check(":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{args.build}: image {image} has a fixed tag")
    if args.build == "production":
        router = next(d for d in deployments if d["metadata"]["name"] == "router")
        r.check(env_value(router["spec"]["template"]["spec"]["containers"][0], "ROUTER_INTROSPECTION") == "false",
                "production: ROUTER_INTROSPECTION=false")
        r.check(env_value(router["spec"]["template"]["spec"]["containers"][0], "ROUTER_GRAPHIQL") == "false",
                "production: ROUTER_GRAPHIQL=false (no GraphiQL page)")
        r.check(env_value(router["spec"]["template"]["spec"]["containers"][0], "ROUTER_TRUSTED_DOCUMENTS") == "refuse",
                "production: ROUTER_TRUSTED_DOCUMENTS=refuse (only the trusted documents run)")
        r.check("/" in image.split(":")[0], "production: image comes from a registry", image)
        r.check(all("replicas" not in d["spec"] for d in deployments), "production: the HPAs own the replica counts")
        check_platform.check_production_data(r, docs)

    print(f"  {'FAILED' if r.failures else 'passed'} [{args.build}]: {r.passed} checks passed, {r.failures} failed "
          "(per Deployment: probes, resources, security context, shutdown deadline, env, scrape annotations, "
          "HPA, PDB, Service; router config maps; network policy paths; secret references; each service's own "
          "database role and broker user, passwords from files; TLS to PostgreSQL and RabbitMQ; custom resources; "
          "connection budget; the migration Job; rollout phases; PrometheusRules; backups and placement)")
    sys.exit(1 if r.failures else 0)


if __name__ == "__main__":
    main()
