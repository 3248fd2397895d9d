"""Each service only its own (check_manifests.py calls `check`): every subgraph logs into
PostgreSQL as its own role and into RabbitMQ as its own user, with passwords read from
mounted files, never in a URL; no pod mounts another service's credentials and the
router none; the CloudNativePG Cluster declares the roles and each Database is owned by
its service's role; RabbitMQ has each service's user, permissions and topic permissions
(a service may publish only its own events) and the topology, declared once for all:
by the Messaging Topology Operator in production, by the definitions the dev broker
loads at boot in dev. Both are checked against the one table below. In production every
connection to PostgreSQL is TLS, verified against CloudNativePG's CA only
(`check_postgres_tls`), and the server refuses the service roles' plain connections;
every connection to RabbitMQ is AMQPS, verified against the CA of the Secret water-mq-ca
only, and the broker serves no plain listener (`check_rabbitmq_tls`). In every build an
env entry's $(VAR) names a variable defined before it (Kubernetes expands no other), and
AMQP_URL is amqps exactly when AMQP_CA_FILE is set (the service refuses one without the
other)."""

import base64
import json
import re

import check_platform

SUBGRAPHS = ("inventory", "rental", "payment", "delivery")

# The event types each service publishes and the ones it reads: the catalogue and the
# inbox! enums of subgraphs/contracts/src/lib.rs (check_misc.py contract warns when
# they part). A service's TopicPermission may write exactly its own, and read exactly
# what it reads.
PUBLISHES = {
    "inventory": ["product.created", "stock.shortage", "stock.allocated", "stock.returned"],
    "rental": ["rental.accepted", "rental.cancelled", "rental.activated", "rental.period_due", "rental.extended",
               "rental.ended"],
    "payment": ["payment.charged", "payment.refunded", "invoice.paid", "invoice.failed", "invoice.voided",
                "payment_method.updated"],
    "delivery": ["delivery.requested", "delivery.started", "delivery.completed", "delivery.cancelled",
                 "delivery.cancel_refused", "visit.scheduled", "visit.rescheduled", "visit.started", "visit.done",
                 "visit.cancelled"],
}
READS = {
    "inventory": ["delivery.cancelled", "delivery.started", "visit.done"],
    "rental": ["delivery.cancel_refused", "delivery.completed", "delivery.requested", "delivery.started",
               "invoice.failed", "invoice.paid", "invoice.voided", "payment.charged", "payment.refunded",
               "payment_method.updated", "product.created", "stock.returned", "visit.cancelled", "visit.done",
               "visit.rescheduled", "visit.scheduled", "visit.started"],
    "payment": ["delivery.cancelled", "rental.activated", "rental.ended", "rental.period_due"],
    "delivery": ["delivery.cancel_refused", "delivery.cancelled", "delivery.completed", "delivery.requested",
                 "delivery.started", "rental.accepted", "rental.activated", "rental.cancelled", "rental.ended",
                 "rental.extended", "stock.allocated", "stock.shortage"],
}
# What each durable queue binds: what the service reads, except delivery's own delivery.*
# types, which its live listener reads on an exclusive server-named queue (amq.gen-*).
QUEUE_BINDS = {s: [t for t in READS[s] if not (s == "delivery" and t.startswith("delivery."))] for s in SUBGRAPHS}

NAMESPACE = "water"  # EVENTS_NAMESPACE
EXCHANGE = f"{NAMESPACE}.events"
VHOST = "/"
DELIVERY_LIMIT = 10
# Where a service finds its passwords (the contract; the Rust side reads the files).
POSTGRES_PASSWORD_DIR = "/var/run/secrets/water/postgres"
AMQP_PASSWORD_DIR = "/var/run/secrets/water/amqp"
# RabbitMQ over TLS, production only (`check_rabbitmq_tls`): the RabbitmqCluster's
# certificate Secret (tls.secretName, read by the broker's own pods only) and the Secret of
# the CA that signs it (tls.caSecretName), whose ca.crt alone the subgraphs mount.
AMQP_TLS_SECRET = "water-mq-tls"
AMQP_CA_SECRET = "water-mq-ca"
# The administrative credentials: no process and no migration reads them.
ADMIN_SECRETS = ("water-pg-app", "water-pg-superuser", "water-mq-default-user")
# The servers' own workloads in dev, which hold every service's credentials anyway (they
# create the roles and users from them): the only pods that may mount all of them.
SERVERS = {("StatefulSet", "postgres"): "water-db-", ("StatefulSet", "rabbitmq"): "water-mq-"}
HASHED = re.compile(r"^(?P<base>[a-z0-9-]+)-[a-z0-9]{10}$")


def role(service):
    return f"{NAMESPACE}_{service}"


def amqps(build):
    """Whether the build's services speak AMQPS: production only (the dev broker, a
    StatefulSet of the rabbitmq image, serves plain AMQP; the base is the dev shape)."""
    return build == "production"


def amqp_port(build):
    return 5671 if amqps(build) else 5672


def queue(service):
    return f"{NAMESPACE}.{service}"


def dead(service):
    return f"{NAMESPACE}.{service}.dead"


def escaped(name):
    return name.replace(".", r"\.")


def types_regex(types):
    return "^(" + "|".join(escaped(t) for t in types) + ")$"


def expected_permission(service):
    own = rf"^{escaped(queue(service))}(\.dead)?$"
    return {"configure": rf"{own}|^amq\.gen-.*$",
            "write": rf"^{escaped(EXCHANGE)}$|{own}|^amq\.gen-.*$",
            "read": rf"^{escaped(EXCHANGE)}$|{own}|^amq\.gen-.*$"}


def expected_topic_permission(service):
    return {"exchange": EXCHANGE, "write": types_regex(PUBLISHES[service]), "read": types_regex(READS[service])}


def expected_topology():
    """(exchanges, queues, bindings) as RabbitMQ's definitions name their fields."""
    exchanges = [{"name": EXCHANGE, "type": "topic", "durable": True}]
    queues, bindings = [], []
    for s in SUBGRAPHS:
        exchanges.append({"name": dead(s), "type": "fanout", "durable": True})
        queues.append({"name": queue(s), "type": "quorum", "durable": True,
                       "arguments": {"x-delivery-limit": DELIVERY_LIMIT, "x-dead-letter-exchange": "",
                                     "x-dead-letter-routing-key": dead(s)}})
        queues.append({"name": dead(s), "type": "quorum", "durable": True, "arguments": {}})
        bindings += [(EXCHANGE, queue(s), "queue", key) for key in QUEUE_BINDS[s]]
        bindings.append((dead(s), dead(s), "queue", ""))
    return exchanges, queues, bindings


def base_name(name):
    """The name without kustomize's content-hash suffix."""
    m = HASHED.match(name or "")
    return m.group("base") if m else name


def owner_of(secret):
    """'rental' for water-db-rental or water-mq-rental, else None."""
    for prefix in ("water-db-", "water-mq-"):
        if secret.startswith(prefix) and secret[len(prefix):] in SUBGRAPHS:
            return secret[len(prefix):]
    return None


def pod_of(d):
    return d["spec"]["template"]["spec"]


def containers_of(d):
    pod = pod_of(d)
    return pod.get("initContainers", []) + pod.get("containers", [])


def env_entry(c, name):
    return next((e for e in c.get("env", []) if e["name"] == name), None)


def env_value(c, name):
    e = env_entry(c, name)
    return e.get("value") if e else None


def volume_secrets(volume):
    """(secret base name, {key: path}) of the secrets a volume holds."""
    if "secret" in volume:
        s = volume["secret"]
        yield base_name(s["secretName"]), {i["key"]: i["path"] for i in s.get("items", [])} or None
    for source in volume.get("projected", {}).get("sources", []):
        if "secret" in source:
            s = source["secret"]
            yield base_name(s["name"]), {i["key"]: i["path"] for i in s.get("items", [])} or None


def secrets_read(d, c):
    """Base names of the secrets container c reads: its env and the volumes it mounts."""
    names = set()
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            names.add(base_name(ref["name"]))
    for e in c.get("envFrom", []):
        if "secretRef" in e:
            names.add(base_name(e["secretRef"]["name"]))
    volumes = {v["name"]: v for v in pod_of(d).get("volumes", [])}
    for m in c.get("volumeMounts", []):
        names.update(name for name, _ in volume_secrets(volumes.get(m["name"], {})))
    return names


def file_from(d, c, path):
    """(secret base name, key, items, mount) when `path` is a file of a secret volume
    container c mounts, else None."""
    volumes = {v["name"]: v for v in pod_of(d).get("volumes", [])}
    for m in c.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        if "secret" not in v or not path or not path.startswith(m["mountPath"].rstrip("/") + "/"):
            continue
        rest = path[len(m["mountPath"].rstrip("/")) + 1:]
        items = {i["path"]: i["key"] for i in v["secret"].get("items", [])}
        key = items.get(rest) if items else rest
        if key is not None:
            return base_name(v["secret"]["secretName"]), key, items, m
    return None


def password_in(url):
    """Why a URL carries a password, or None."""
    if re.search(r"\$\([^)]*PASSWORD[^)]*\)", url, re.I):
        return "it expands a $(...PASSWORD...) variable"
    rest = url.split("://", 1)[1] if "://" in url else url
    authority = rest.split("/", 1)[0]
    if "@" in authority and ":" in authority.rsplit("@", 1)[0]:
        return "it has user:password@"
    return None


def check(r, build, docs):
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    for d in workloads:
        check_urls_and_mounts(r, d)
        check_env_expansion(r, d, docs)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for s in SUBGRAPHS:
        if s in deployments:
            check_own_credentials(r, deployments[s], deployments[s]["spec"]["template"]["spec"]["containers"][0], s, amqp=True,
                                  build=build)
    for job in (d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "migrate"):
        migrating = {c["name"]: c for c in containers_of(job) if env_entry(c, "POSTGRES_URL")}
        r.check(sorted(migrating) == sorted(SUBGRAPHS), "migrate: one container per service, named after it, each with its POSTGRES_URL",
                str(sorted(migrating)))
        for s, c in migrating.items():
            if s in SUBGRAPHS:
                check_own_credentials(r, job, c, s, amqp=False, build=build)
    if "router" in deployments:
        router = deployments["router"]
        c = router["spec"]["template"]["spec"]["containers"][0]
        names = {n for v in pod_of(router).get("volumes", []) for n, _ in volume_secrets(v)} | secrets_read(router, c)
        r.check(not any(owner_of(n) or n in ADMIN_SECRETS for n in names),
                "router: mounts no database or broker credentials", str(sorted(names)))
        r.check(not any(e["name"].startswith(("POSTGRES_", "PG_", "AMQP_")) for e in c.get("env", [])),
                "router: no POSTGRES_*, PG_* or AMQP_* setting")
    check_backends(r, build, docs)
    check_postgres_tls(r, build, docs)
    check_rabbitmq_tls(r, build, docs)
    if build == "production":
        check_cnpg_roles(r, docs)
        check_cnpg_pg_hba(r, docs)
        check_rabbitmq_resources(r, docs)
    if build == "dev":
        check_dev_secrets(r, docs)
        check_dev_postgres(r, docs)
        check_dev_rabbitmq(r, docs)


def check_urls_and_mounts(r, d):
    kind, name = d["kind"], d["metadata"]["name"]
    for c in containers_of(d):
        where = f"{kind} {name} container {c['name']}"
        for var in ("POSTGRES_URL", "AMQP_URL"):
            e = env_entry(c, var)
            if e is None:
                continue
            r.check("value" in e and "valueFrom" not in e, f"{where}: {var} is a plain value (not from a Secret)")
            why = password_in(e.get("value", ""))
            r.check(why is None, f"{where}: {var} carries no password", f"{e.get('value')}: {why}")
        read = secrets_read(d, c)
        server = SERVERS.get((kind, name))
        for secret in sorted(read):
            service = owner_of(secret)
            if service is None:
                continue
            own = (kind == "Deployment" and name == service) or (
                kind == "Job" and name == "migrate" and c["name"] == service and secret.startswith("water-db-")) or (
                server is not None and secret.startswith(server))
            r.check(own, f"{where}: reads Secret {secret} only if it is its own service's (or its server's)")
        if kind == "Job" or name in (*SUBGRAPHS, "router"):
            admin = sorted(read & set(ADMIN_SECRETS))
            r.check(not admin, f"{where}: reads no administrative credentials", str(admin))
            from_env = [e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
            r.check(not from_env, f"{where}: no secret in its environment (files only)", str(from_env))
    if kind == "Deployment" and name in SUBGRAPHS:
        # A volume of another service's secret is a mistake even when nothing mounts it.
        others = sorted({n for v in pod_of(d).get("volumes", []) for n, _ in volume_secrets(v)
                         if owner_of(n) not in (None, name)})
        r.check(not others, f"{name}: its pods hold no other service's db/mq Secret", str(others))


def check_own_credentials(r, d, c, service, amqp, build):
    where = f"{service}" if d["kind"] == "Deployment" else f"migrate container {service}"
    checks = [("POSTGRES_URL", f"postgres://{role(service)}@$(PG_HOST):$(PG_PORT)",
               "POSTGRES_PASSWORD_FILE", f"{POSTGRES_PASSWORD_DIR}/password", f"water-db-{service}")]
    if amqp:
        scheme = "amqps" if amqps(build) else "amqp"
        checks.append(("AMQP_URL", f"{scheme}://{role(service)}@$(AMQP_HOST):$(AMQP_PORT)/%2f",
                       "AMQP_PASSWORD_FILE", f"{AMQP_PASSWORD_DIR}/password", f"water-mq-{service}"))
    else:
        r.check(all(env_entry(c, var) is None for var in ("AMQP_URL", "AMQP_CA_FILE")),
                f"{where}: no AMQP_URL or AMQP_CA_FILE (a migration needs no broker)")
    for url_var, url, file_var, path, secret in checks:
        r.check(env_value(c, url_var) == url, f"{where}: {url_var} is {url} (its own role, no password)",
                str(env_value(c, url_var)))
        got = file_from(d, c, env_value(c, file_var))
        ok = got is not None and got[0] == secret and got[1] == "password"
        r.check(ok and env_value(c, file_var) == path,
                f"{where}: {file_var}={path} is key `password` of its own Secret {secret}",
                f"{env_value(c, file_var)} -> {got[:2] if got else None}")
        if ok:
            _, _, items, mount = got
            r.check(mount.get("readOnly") is True and sorted(items.values()) == ["password"],
                    f"{where}: mounts only the key `password` of {secret}, read-only", str(items))


def check_backends(r, build, docs):
    """The servers' addresses come from the ConfigMap water-backends, which points at the
    overlay's own PostgreSQL and RabbitMQ."""
    if build == "base":
        return
    cms = [cm for cm in docs if cm["kind"] == "ConfigMap" and base_name(cm["metadata"]["name"]) == "water-backends"]
    if not r.check(len(cms) == 1, f"{build}: ConfigMap water-backends (PG_HOST, PG_PORT, AMQP_HOST, AMQP_PORT)"):
        return
    data = cms[0].get("data", {})
    services = {s["metadata"]["name"] for s in docs if s["kind"] == "Service"}
    clusters = [d for d in docs if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/")]
    rabbits = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    pg_host = f"{clusters[0]['metadata']['name']}-rw" if clusters else "postgres" if "postgres" in services else None
    mq_host = rabbits[0]["metadata"]["name"] if rabbits else "rabbitmq" if "rabbitmq" in services else None
    want = {"PG_HOST": pg_host, "PG_PORT": "5432", "AMQP_HOST": mq_host, "AMQP_PORT": str(amqp_port(build))}
    r.check(data == want, f"{build}: water-backends points at the overlay's PostgreSQL ({pg_host}) and RabbitMQ ({mq_host})",
            f"{data} != {want}")


def check_postgres_tls(r, build, docs):
    """Production: each subgraph and each of its migrate containers sets POSTGRES_CA_FILE
    to key ca.crt of CloudNativePG's CA Secret (`<cluster>-ca`), mounted read-only and
    alone; the service then requires TLS and verifies the server's certificate for
    PG_HOST (`<cluster>-rw`, one of the names CloudNativePG signs) against that CA only.
    No pod mounts the CA's key (it signs server and client certificates, streaming_replica's
    included), the router nothing of it. The dev overlay's PostgreSQL (a StatefulSet of the
    postgres image) serves no TLS, so dev and base set no POSTGRES_CA_FILE and are not
    held to this."""
    if build != "production":
        return
    clusters = [d for d in docs if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/")]
    if not r.check(len(clusters) == 1, "production: one CloudNativePG Cluster, whose CA the services trust"):
        return
    ca_secret = f"{clusters[0]['metadata']['name']}-ca"
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    targets = [(d, d["spec"]["template"]["spec"]["containers"][0], s) for d in workloads
               if d["kind"] == "Deployment" and d["metadata"]["name"] in SUBGRAPHS for s in [d["metadata"]["name"]]]
    targets += [(d, c, c["name"]) for d in workloads if d["kind"] == "Job" and d["metadata"]["name"] == "migrate"
                for c in pod_of(d).get("initContainers", []) if env_entry(c, "POSTGRES_URL")]
    r.check(sorted(s for d, _, s in targets if d["kind"] == "Deployment") == sorted(SUBGRAPHS)
            and sorted(s for d, _, s in targets if d["kind"] == "Job") == sorted(SUBGRAPHS),
            "production: TLS to PostgreSQL checked for the four subgraphs and their four migrate containers",
            str([(d["metadata"]["name"], s) for d, _, s in targets]))
    for d, c, service in targets:
        where = f"{service}" if d["kind"] == "Deployment" else f"migrate container {service}"
        check_ca_file(r, d, c, where, "POSTGRES_CA_FILE", ca_secret, "CloudNativePG's CA Secret", "TLS, verify-full")
    for d in workloads:
        for v in pod_of(d).get("volumes", []):
            for name, items in volume_secrets(v):
                if name == ca_secret:
                    r.check(items is not None and sorted(items) == ["ca.crt"],
                            f"{d['kind']} {d['metadata']['name']} volume {v['name']}: only ca.crt of {ca_secret}, never ca.key",
                            str(items))
    router = next((d for d in workloads if d["kind"] == "Deployment" and d["metadata"]["name"] == "router"), None)
    if router is not None:
        names = {n for v in pod_of(router).get("volumes", []) for n, _ in volume_secrets(v)}
        r.check(ca_secret not in names, f"router: mounts nothing of {ca_secret} (it has no database)")


def check_ca_file(r, d, c, where, variable, secret, whose, what):
    """Container `c` of workload `d` names in `variable` the key ca.crt of `secret`,
    mounted read-only with nothing else of it: what a service trusts for TLS."""
    path = env_value(c, variable)
    got = file_from(d, c, path)
    ok = got is not None and got[0] == secret and got[1] == "ca.crt"
    r.check(ok, f"{where}: {variable} is key ca.crt of {whose} {secret} ({what})", f"{path} -> {got[:2] if got else None}")
    if ok:
        _, _, items, mount = got
        r.check(mount.get("readOnly") is True and sorted(items.values()) == ["ca.crt"],
                f"{where}: mounts only the key ca.crt of {secret}, read-only", f"{items} readOnly={mount.get('readOnly')}")


REFERENCE = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def check_env_expansion(r, d, docs):
    """Kubernetes expands $(VAR) in an env value only when VAR is defined before it: by an
    earlier entry of the list or by envFrom (the base's AMQP_URL needs AMQP_HOST and
    AMQP_PORT first; a patch that merges env by name may reorder the list). Otherwise the
    value keeps a literal $(VAR). And each name once. For every container of every
    workload, init containers and Jobs included (check_manifests.py checks the five
    processes' containers entry by entry too)."""
    kind, name = d["kind"], d["metadata"]["name"]
    configmaps = {x["metadata"]["name"]: x.get("data", {}) for x in docs if x["kind"] == "ConfigMap"}
    secrets = {x["metadata"]["name"]: {**x.get("data", {}), **x.get("stringData", {})} for x in docs if x["kind"] == "Secret"}
    for c in containers_of(d):
        where = f"{kind} {name} container {c['name']}"
        defined = set()
        for source in c.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef") or {}
            data = (configmaps if "configMapRef" in source else secrets).get(ref.get("name"), {})
            defined |= {source.get("prefix", "") + key for key in data}
        names = [e["name"] for e in c.get("env", [])]
        r.check(len(names) == len(set(names)), f"{where}: each env name once",
                str(sorted({n for n in names if names.count(n) > 1})))
        late = []
        for e in c.get("env", []):
            late += [f"{e['name']} uses $({v})" for v in REFERENCE.findall(e.get("value", "")) if v not in defined]
            defined.add(e["name"])
        r.check(not late, f"{where}: every $(VAR) in its env names a variable defined before it", ", ".join(late))
        url, ca = env_value(c, "AMQP_URL"), env_value(c, "AMQP_CA_FILE")
        if url is not None or ca is not None:
            r.check((url or "").startswith("amqps://") == (ca is not None),
                    f"{where}: AMQP_URL is amqps exactly when AMQP_CA_FILE is set (the service refuses one without the other)",
                    f"AMQP_URL={url} AMQP_CA_FILE={ca}")


def check_rabbitmq_tls(r, build, docs):
    """Production: the RabbitmqCluster serves TLS with the certificate of the Secret
    water-mq-tls (tls.secretName) and names water-mq-ca as its CA (tls.caSecretName), with
    no plain listener (disableNonTLSListeners); each subgraph's AMQP_URL is amqps as its
    own user (`check_own_credentials`) on the port of water-backends (5671), and its
    AMQP_CA_FILE is key ca.crt of water-mq-ca, mounted read-only and alone: the service
    then verifies the broker's certificate for AMQP_HOST against that CA only. No pod here
    mounts water-mq-tls (the broker's key: the operator's pods read it), nor more than
    ca.crt of water-mq-ca; the router and the Job migrate have no broker and mount none of
    it. The dev overlay's broker (a StatefulSet of the rabbitmq image) serves plain AMQP on
    5672: dev and base keep amqp:// and set no AMQP_CA_FILE, and are not held to this."""
    if not amqps(build):
        return
    rabbits = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    if not r.check(len(rabbits) == 1, "production: one RabbitmqCluster, whose CA the services trust"):
        return
    cluster = rabbits[0]["metadata"]["name"]
    tls = rabbits[0]["spec"].get("tls", {})
    r.check(tls.get("secretName") == AMQP_TLS_SECRET and tls.get("caSecretName") == AMQP_CA_SECRET,
            f"RabbitmqCluster {cluster}: tls.secretName {AMQP_TLS_SECRET} (its certificate), tls.caSecretName {AMQP_CA_SECRET}",
            str(tls))
    r.check(tls.get("disableNonTLSListeners") is True,
            f"RabbitmqCluster {cluster}: disableNonTLSListeners (no plain AMQP, management or metrics listener)", str(tls))
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    deployments = {d["metadata"]["name"]: d for d in workloads if d["kind"] == "Deployment"}
    r.check(all(s in deployments for s in SUBGRAPHS), "production: AMQPS checked for the four subgraphs", str(sorted(deployments)))
    for s in SUBGRAPHS:
        if s not in deployments:
            continue
        d = deployments[s]
        c = d["spec"]["template"]["spec"]["containers"][0]
        check_ca_file(r, d, c, s, "AMQP_CA_FILE", AMQP_CA_SECRET, "the broker's CA Secret", "AMQPS, verified")
    holders = [f"{d['kind']} {d['metadata']['name']} volume {v['name']}" for d in workloads
               for v in pod_of(d).get("volumes", []) if any(n == AMQP_TLS_SECRET for n, _ in volume_secrets(v))]
    r.check(not holders, f"no pod here mounts {AMQP_TLS_SECRET} (the broker's key: the operator's pods read it)", str(holders))
    for d in workloads:
        for v in pod_of(d).get("volumes", []):
            for name, items in volume_secrets(v):
                if name == AMQP_CA_SECRET:
                    r.check(d["kind"] == "Deployment" and d["metadata"]["name"] in SUBGRAPHS and items is not None
                            and sorted(items) == ["ca.crt"],
                            f"{d['kind']} {d['metadata']['name']} volume {v['name']}: only a subgraph mounts {AMQP_CA_SECRET}, "
                            "and only its ca.crt", str(items))
    router = deployments.get("router")
    if router is not None:
        names = {n for v in pod_of(router).get("volumes", []) for n, _ in volume_secrets(v)}
        r.check(not names & {AMQP_CA_SECRET, AMQP_TLS_SECRET}, f"router: mounts nothing of {AMQP_CA_SECRET} or {AMQP_TLS_SECRET} (it has no broker)")


def hba_rules(lines):
    """(type, databases, users, address, method) of each pg_hba line."""
    rules = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "local":
            kind, database, user, address, rest = fields[0], fields[1], fields[2], None, fields[3:]
        else:
            kind, database, user, address, rest = fields[0], fields[1], fields[2], fields[3], fields[4:]
            if rest and re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", rest[0]):
                rest = rest[1:]  # an IP mask in a column of its own
        rules.append((kind, database.split(","), user.split(","), address, rest[0] if rest else None))
    return rules


def check_cnpg_pg_hba(r, docs):
    """The server side: the Cluster's pg_hba refuses a plain-text connection of each service
    role. CloudNativePG puts its own rules (local peer, certificate login of
    streaming_replica and the pooler over TLS) before ours and `host all all all
    scram-sha-256` after them, so a `hostnossl ... reject` of the service roles touches
    nothing the operator needs; no rule of ours may let them in first, or trust anyone."""
    clusters = [d for d in docs if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/")]
    if not clusters:
        return
    name = clusters[0]["metadata"]["name"]
    rules = hba_rules(clusters[0]["spec"].get("postgresql", {}).get("pg_hba", []))
    r.check(all(method != "trust" for *_, method in rules), f"Cluster {name}: pg_hba trusts no one", str(rules))
    for s in SUBGRAPHS:
        covers = lambda rule: ("all" in rule[1] or role(s) in rule[1]) and ("all" in rule[2] or role(s) in rule[2])
        first = next((rule for rule in rules if rule[0] in ("host", "hostnossl") and covers(rule)), None)
        r.check(first is not None and first[0] == "hostnossl" and first[1] == ["all"] and first[3] == "all"
                and first[4] == "reject",
                f"Cluster {name}: pg_hba refuses {role(s)} without TLS (hostnossl all ... all reject, before any rule admitting it)",
                str(first))


def check_cnpg_roles(r, docs):
    clusters = [d for d in docs if d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/")]
    if not clusters:
        return
    cluster = clusters[0]
    roles = {x["name"]: x for x in cluster["spec"].get("managed", {}).get("roles", [])}
    need = check_platform.role_connections(docs)
    for s in SUBGRAPHS:
        x = roles.get(role(s))
        if not r.check(x is not None, f"Cluster {cluster['metadata']['name']}: managed role {role(s)}"):
            continue
        r.check(x.get("ensure", "present") == "present" and x.get("login") is True and x.get("inherit", True) is True
                and not any(x.get(flag) for flag in ("superuser", "createdb", "createrole", "replication", "bypassrls"))
                and not x.get("inRoles"),
                f"role {role(s)}: present, login, no superuser, createdb, createrole, replication, bypassrls or membership")
        r.check(x.get("passwordSecret", {}).get("name") == f"water-db-{s}", f"role {role(s)}: password from Secret water-db-{s}")
        limit = x.get("connectionLimit", -1)
        r.check(limit == -1 or limit >= need[s][0],
                f"role {role(s)}: connectionLimit {limit} >= its connections {need[s][1]}")


def check_rabbitmq_resources(r, docs):
    rabbits = [d for d in docs if d["kind"] == "RabbitmqCluster"]
    if not rabbits:
        return
    cluster = rabbits[0]["metadata"]["name"]
    topology_kinds = ("User", "Permission", "TopicPermission", "Exchange", "Queue", "Binding")
    resources = [d for d in docs if d["apiVersion"].startswith("rabbitmq.com/") and d["kind"] in topology_kinds]
    r.check(all(d["spec"].get("rabbitmqClusterReference", {}).get("name") == cluster for d in resources),
            f"the topology resources ({len(resources)}) reference RabbitmqCluster {cluster}")
    r.check(all(d["spec"].get("vhost", VHOST) == VHOST for d in resources), f"the topology resources are in vhost {VHOST}")
    of = lambda kind: [d for d in resources if d["kind"] == kind]
    users = {d["metadata"]["name"]: d for d in of("User")}

    def user_of(d):
        ref = d["spec"].get("userReference", {}).get("name")
        return role(ref[len("water-"):]) if ref and ref.startswith("water-") else d["spec"].get("user")

    for s in SUBGRAPHS:
        u = users.get(f"water-{s}")
        r.check(u is not None and u["spec"].get("importCredentialsSecret", {}).get("name") == f"water-mq-{s}"
                and not u["spec"].get("tags"),
                f"User water-{s}: credentials from Secret water-mq-{s}, no tags")
        perms = [p for p in of("Permission") if user_of(p) == role(s)]
        r.check(len(perms) == 1 and perms[0]["spec"]["permissions"] == expected_permission(s),
                f"Permission of {role(s)}: configure, write, read only its own queues, {EXCHANGE} and amq.gen-*",
                str([p["spec"]["permissions"] for p in perms]))
        if perms:
            check_permission_regexes(r, s, perms[0]["spec"]["permissions"])
        topics = [p for p in of("TopicPermission") if user_of(p) == role(s)]
        r.check(len(topics) == 1 and topics[0]["spec"]["permissions"] == expected_topic_permission(s),
                f"TopicPermission of {role(s)} on {EXCHANGE}: writes its own events, reads what it reads",
                str([p["spec"]["permissions"] for p in topics]))
        if topics:
            check_topic_regexes(r, s, topics[0]["spec"]["permissions"])
    r.check(sorted(users) == sorted(f"water-{s}" for s in SUBGRAPHS), "RabbitMQ Users: one per service, no other",
            str(sorted(users)))
    exchanges, queues, bindings = expected_topology()
    got_exchanges = [{"name": d["spec"]["name"], "type": d["spec"].get("type", "direct"), "durable": d["spec"].get("durable", False)}
                     for d in of("Exchange") if not d["spec"].get("autoDelete")]
    r.check(sorted(got_exchanges, key=str) == sorted(exchanges, key=str) and len(of("Exchange")) == len(exchanges),
            f"Exchanges: {EXCHANGE} (topic) and each service's dead-letter exchange (fanout), durable", str(got_exchanges))
    got_queues = [{"name": d["spec"]["name"], "type": d["spec"].get("type"), "durable": d["spec"].get("durable", False),
                   "arguments": d["spec"].get("arguments", {})} for d in of("Queue") if not d["spec"].get("autoDelete")]
    r.check(sorted(got_queues, key=str) == sorted(queues, key=str) and len(of("Queue")) == len(queues),
            f"Queues: each service's quorum queue (delivery limit {DELIVERY_LIMIT}, dead letters to its .dead queue) and dead-letter queue",
            str(got_queues))
    got_bindings = [(d["spec"].get("source"), d["spec"].get("destination"), d["spec"].get("destinationType"),
                     d["spec"].get("routingKey", "")) for d in of("Binding")]
    check_bindings(r, got_bindings, bindings)


def check_bindings(r, got, want):
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    r.check(not missing and not extra and len(got) == len(set(got)),
            f"Bindings ({len(want)}): each queue binds exactly the events its service reads from it, each dead-letter exchange its queue",
            f"missing {missing}, extra {extra}")


def check_permission_regexes(r, service, permissions):
    """Beyond the strings: what the regexes let through, as RabbitMQ would match them."""
    own = [queue(service), dead(service), "amq.gen-JzTY20BRgKO-HjmUJj0wLg"]
    others = [name for s in SUBGRAPHS if s != service for name in (queue(s), dead(s))]
    ok = all(re.search(permissions["configure"], name) for name in own) and not any(
        re.search(permissions["configure"], name) for name in [*others, EXCHANGE, "amq.default", ""])
    ok = ok and all(re.search(permissions[p], name) for p in ("read", "write") for name in [*own, EXCHANGE]) and not any(
        re.search(permissions[p], name) for p in ("read", "write") for name in [*others, "amq.default", f"{EXCHANGE}x"])
    r.check(ok, f"Permission of {role(service)}: its regexes match its own queues and none of another service's")


def check_topic_regexes(r, service, permissions):
    every = sorted({t for types in PUBLISHES.values() for t in types})
    probes = every + [f"{t}x" for t in every] + [f"x{t}" for t in every] + ["#", "*", "", "rental", "rental.#"]
    for field, allowed in (("write", PUBLISHES[service]), ("read", READS[service])):
        wrong = [t for t in probes if bool(re.search(permissions.get(field, ""), t)) != (t in allowed)]
        r.check(not wrong, f"TopicPermission of {role(service)}: {field} allows exactly "
                           f"{'its own events' if field == 'write' else 'the events it reads'}", str(wrong))


def decoded(secret):
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return {**data, **secret.get("stringData", {})}


def check_dev_secrets(r, docs):
    secrets = {base_name(s["metadata"]["name"]): s for s in docs if s["kind"] == "Secret"}
    for s in SUBGRAPHS:
        for prefix in ("water-db-", "water-mq-"):
            secret = secrets.get(prefix + s)
            data = decoded(secret) if secret else {}
            r.check(secret is not None and secret.get("type") == "kubernetes.io/basic-auth"
                    and data.get("username") == role(s) and bool(data.get("password")),
                    f"dev: Secret {prefix}{s} (basic-auth) with username {role(s)} and a password")
    passwords = [decoded(secrets[p + s])["password"] for p in ("water-db-", "water-mq-") for s in SUBGRAPHS
                 if p + s in secrets]
    r.check(len(set(passwords)) == len(passwords), "dev: every role and user has a password of its own")


def mounted_items(d, c, path_prefix):
    """{(secret, key): file} of the secret volumes container c mounts at or under path_prefix."""
    volumes = {v["name"]: v for v in pod_of(d).get("volumes", [])}
    found = {}
    for m in c.get("volumeMounts", []):
        if not m["mountPath"].startswith(path_prefix):
            continue
        for secret, items in volume_secrets(volumes.get(m["name"], {})):
            for key, path in (items or {}).items():
                found[(secret, key)] = f"{m['mountPath'].rstrip('/')}/{path}"
    return found


def check_dev_postgres(r, docs):
    """The dev PostgreSQL creates each role and database at its first start, from the
    mounted Secrets (an init script of the postgres image)."""
    sts = next((d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "postgres"), None)
    if not r.check(sts is not None, "dev: StatefulSet postgres"):
        return
    c = sts["spec"]["template"]["spec"]["containers"][0]
    volumes = {v["name"]: v for v in pod_of(sts).get("volumes", [])}
    init = next((volumes.get(m["name"], {}).get("configMap", {}).get("name") for m in c.get("volumeMounts", [])
                 if m["mountPath"] == "/docker-entrypoint-initdb.d"), None)
    cm = next((x for x in docs if x["kind"] == "ConfigMap" and x["metadata"]["name"] == init), None)
    scripts = "\n".join(cm.get("data", {}).values()) if cm else ""
    r.check(bool(scripts), "dev postgres: an init script from a ConfigMap in /docker-entrypoint-initdb.d")
    for statement in (r'CREATE ROLE :"role" LOGIN PASSWORD', r'CREATE DATABASE :"database" OWNER :"role"',
                      r'REVOKE ALL ON DATABASE :"database" FROM PUBLIC'):
        r.check(statement in scripts, f"dev postgres init: {statement} ...")
    loop = re.search(r"^for service in ([a-z ]+); do$", scripts, re.M)
    r.check(loop is not None and loop.group(1).split() == list(SUBGRAPHS) and 'database="water_$service"' in scripts,
            f"dev postgres init: creates the role and database water_<service> of each of {', '.join(SUBGRAPHS)}")
    files = mounted_items(sts, c, "/var/run/secrets/water/db")
    for s in SUBGRAPHS:
        r.check(files.get((f"water-db-{s}", "username")) == f"/var/run/secrets/water/db/{s}/username"
                and files.get((f"water-db-{s}", "password")) == f"/var/run/secrets/water/db/{s}/password",
                f"dev postgres: the init script reads {s}'s role and password from Secret water-db-{s}")


def check_dev_rabbitmq(r, docs):
    """The dev broker loads definitions at boot: the same users, permissions and topology
    the operator declares in production (there is no operator in dev)."""
    sts = next((d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "rabbitmq"), None)
    if not r.check(sts is not None, "dev: StatefulSet rabbitmq"):
        return
    cms = {base_name(x["metadata"]["name"]): x for x in docs if x["kind"] == "ConfigMap"}
    cm = cms.get("rabbitmq-definitions", {}).get("data", {})
    template = cm.get("definitions.template.json")
    if not r.check(template is not None, "dev rabbitmq: ConfigMap rabbitmq-definitions with definitions.template.json"):
        return
    defs = json.loads(template)
    conf = cm.get("20-water.conf", "")
    path = re.search(r"^definitions\.local\.path\s*=\s*(\S+)$", conf, re.M)
    r.check(re.search(r"^definitions\.import_backend\s*=\s*local_filesystem$", conf, re.M) is not None and path is not None,
            "dev rabbitmq: 20-water.conf imports definitions from a local file at boot")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    r.check("/etc/rabbitmq/conf.d/20-water.conf" in mounts, "dev rabbitmq: 20-water.conf mounted in /etc/rabbitmq/conf.d")
    inits = sts["spec"]["template"]["spec"].get("initContainers", [])
    written = path.group(1).rsplit("/", 1)[0] if path else None
    r.check(any(written in {m["mountPath"] for m in i.get("volumeMounts", [])} for i in inits) and written in mounts,
            f"dev rabbitmq: an init container writes {path.group(1) if path else '?'} for the broker")
    files = {}
    for i in inits:
        files.update(mounted_items(sts, i, "/etc/water"))
    admin = next((s for s in docs if s["kind"] == "Secret" and base_name(s["metadata"]["name"]) == "water-mq-default-user"), None)
    admin_name = decoded(admin).get("username") if admin else None
    want_users = {role(s): (f"water-mq-{s}", "") for s in SUBGRAPHS}
    want_users[admin_name] = ("water-mq-default-user", "administrator")
    got_users = {u["name"]: u for u in defs.get("users", [])}
    for name, (secret, tags) in want_users.items():
        u = got_users.get(name, {})
        placeholder = re.fullmatch(r"@password:([a-z0-9-]+)@", u.get("password", ""))
        r.check(placeholder is not None and placeholder.group(1) == secret and u.get("tags") == tags
                and files.get((secret, "password")) is not None and files[(secret, "password")].endswith("/" + secret),
                f"dev rabbitmq: user {name} with tags {tags!r} and the password of Secret {secret} (filled in at start)")
    r.check(sorted(got_users) == sorted(want_users), "dev rabbitmq: no other user", str(sorted(got_users)))
    r.check(defs.get("vhosts") == [{"name": VHOST}], f"dev rabbitmq: vhost {VHOST}")
    perms = {p["user"]: {k: p[k] for k in ("configure", "write", "read")} for p in defs.get("permissions", [])
             if p.get("vhost") == VHOST}
    want_perms = {role(s): expected_permission(s) for s in SUBGRAPHS}
    want_perms[admin_name] = {"configure": ".*", "write": ".*", "read": ".*"}
    r.check(perms == want_perms and len(defs.get("permissions", [])) == len(want_perms),
            "dev rabbitmq: each service's permissions as in production; the default user all (the operator tools)")
    topics = {p["user"]: {k: p[k] for k in ("exchange", "write", "read")} for p in defs.get("topic_permissions", [])
              if p.get("vhost") == VHOST}
    r.check(topics == {role(s): expected_topic_permission(s) for s in SUBGRAPHS}
            and len(defs.get("topic_permissions", [])) == len(SUBGRAPHS),
            "dev rabbitmq: each service's topic permissions as in production")
    for s in SUBGRAPHS:
        if role(s) in perms:
            check_permission_regexes(r, s, perms[role(s)])
        if role(s) in topics:
            check_topic_regexes(r, s, topics[role(s)])
    exchanges, queues, bindings = expected_topology()
    got_exchanges = [{"name": x["name"], "type": x["type"], "durable": x["durable"]} for x in defs.get("exchanges", [])
                     if x.get("vhost") == VHOST and not x.get("auto_delete") and not x.get("internal")]
    r.check(sorted(got_exchanges, key=str) == sorted(exchanges, key=str) and len(defs.get("exchanges", [])) == len(exchanges),
            "dev rabbitmq: the exchanges as in production")
    got_queues = []
    for q in defs.get("queues", []):
        arguments = dict(q.get("arguments", {}))
        got_queues.append({"name": q["name"], "type": arguments.pop("x-queue-type", "classic"), "durable": q["durable"],
                           "arguments": arguments})
    r.check(sorted(got_queues, key=str) == sorted(queues, key=str) and all(q.get("vhost") == VHOST for q in defs.get("queues", [])),
            "dev rabbitmq: the queues as in production", str(got_queues))
    got_bindings = [(b["source"], b["destination"], b["destination_type"], b["routing_key"]) for b in defs.get("bindings", [])
                    if b.get("vhost") == VHOST]
    check_bindings(r, got_bindings, bindings)
