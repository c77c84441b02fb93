"""Checks of the Helm chart that helm, kubernetes-validate and checkov do
not make; run by tests/chart.sh.

    chart_check.py values CHART          every value has a comment in
                                         values.yaml, an entry in the schema
                                         and a row in README.md
    chart_check.py table CHART           prints README.md's table of values
    chart_check.py describe CHART        rewrites the schema's descriptions
                                         from values.yaml's comments
    chart_check.py newest-kubernetes     the newest version kubernetes-validate
                                         has schemas for
    chart_check.py core RENDERED OUT     writes RENDERED's documents less the
                                         custom resources (CUSTOM_KINDS) to OUT
    chart_check.py deployment RENDERED   the Deployment keeps its promises
                                         (below)
    chart_check.py alerts RENDERED FILE  the PrometheusRule's spec is FILE

A value is a key of a mapping in values.yaml; its description is the block
of comment lines right above it. Mappings are walked into, except those the
schema leaves free-form (no "properties": annotations, resources...), whose
keys are the user's; lists and block texts are single values.
"""

import json
import os
import re
import sys
from pathlib import Path

import yaml

# Kinds that are custom resources: Kubernetes' own schemas do not know
# them, so kubernetes-validate skips them (by name, and only these).
CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?: |$)")


def documented(values_path):
    """values.yaml's data, and (path, description) for each of its keys, in
    file order."""
    text = values_path.read_text()
    data = yaml.safe_load(text)
    out = []
    stack = []  # (indent, key)
    comment = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        m = KEY.match(line)
        if not m:
            if not stripped:
                comment = []
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = [k for _, k in stack]
        node = data
        for k in parent:
            node = node.get(k) if isinstance(node, dict) else None
        key = m.group("key")
        if isinstance(node, dict) and key in node:
            out.append((".".join(parent + [key]), " ".join(comment)))
            stack.append((indent, key))
        comment = []
    return data, out


def schema_node(schema, path):
    """The schema of `path`, and whether it lies inside a free-form object."""
    node = schema
    for k in path.split("."):
        props = node.get("properties")
        if props is None:
            return None, True
        if k not in props:
            return None, False
        node = props[k]
    return node, False


def lookup(data, path):
    for k in path.split("."):
        data = data[k]
    return data


def rows(chart):
    """(path, default, description) of each value README.md lists: every
    key but the mappings the schema describes key by key."""
    data, keys = documented(chart / "values.yaml")
    schema = json.loads((chart / "values.schema.json").read_text())
    out = []
    for path, description in keys:
        node, free = schema_node(schema, path)
        if free or (node is not None and "properties" in node):
            continue
        out.append((path, lookup(data, path), description))
    return out


def check_values(chart):
    _, keys = documented(chart / "values.yaml")
    schema = json.loads((chart / "values.schema.json").read_text())
    readme = (chart / "README.md").read_text()
    problems = []
    known = set()
    for path, description in keys:
        node, free = schema_node(schema, path)
        if free:
            continue
        known.add(path)
        if not description:
            problems.append(f"values.yaml: {path} has no comment")
        if node is None:
            problems.append(f"values.schema.json: no entry for {path}")
        elif node.get("description") != description:
            problems.append(
                f"values.schema.json: {path}'s description is not values.yaml's comment "
                "(chart_check.py describe rewrites them)"
            )
    for path, _, _ in rows(chart):
        if f"| `{path}` |" not in readme:
            problems.append(f"README.md: no row for {path}")

    def walk(node, prefix):
        for k, sub in node.get("properties", {}).items():
            path = f"{prefix}{k}"
            if path not in known:
                problems.append(f"values.schema.json: {path} is not in values.yaml")
            walk(sub, path + ".")

    walk(schema, "")
    if schema.get("additionalProperties") is not False:
        problems.append("values.schema.json: the top level must refuse unknown values")
    return problems


def table(chart):
    print("| value | default | description |")
    print("|---|---|---|")
    for path, default, description in rows(chart):
        if isinstance(default, str) and "\n" in default:
            shown = "(see values.yaml)"
        else:
            shown = json.dumps(default)
        shown = shown.replace("|", "\\|")
        description = description.replace("|", "\\|")
        print(f"| `{path}` | `{shown}` | {description} |")


def describe(chart):
    """Puts each value's comment in the schema as its description."""
    _, keys = documented(chart / "values.yaml")
    path = chart / "values.schema.json"
    schema = json.loads(path.read_text())
    for key, description in keys:
        node, free = schema_node(schema, key)
        if node is not None and not free:
            node["description"] = description
    path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")


def newest_kubernetes():
    import kubernetes_validate

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = [
        tuple(int(n) for n in d.name[1:].split("-")[0].split("."))
        for d in schemas.iterdir()
        if d.name.endswith("-local-strict")
    ]
    print(".".join(str(n) for n in max(versions)))


def documents(rendered):
    return [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]


def core(rendered, out):
    kept, skipped = [], []
    for doc in documents(rendered):
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            skipped.append(doc["kind"])
        else:
            kept.append(doc)
    Path(out).write_text(yaml.safe_dump_all(kept, sort_keys=False))
    print(" ".join(skipped))


def flag(args, name):
    """The value of --name=VALUE in args, or None."""
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def check_deployment(rendered):
    """What the chart promises of its Deployment, for any values:
    - the grace period is longer than the preStop pause and the drain
      (--shutdown-grace) together;
    - the preStop pause is the kubelet's sleep action (the image has no
      shell, nor a sleep binary);
    - every file the gateway is told to read is in a directory mounted
      whole (never a subPath), so that the kubelet's updates reach it;
    - the probes are on the admin port: /healthz, and /readyz for
      readiness, never /upstreamz;
    - the container runs as 65532, read-only, without privileges."""
    problems = []
    deployments = [d for d in documents(rendered) if d["kind"] == "Deployment"]
    if len(deployments) != 1:
        return [f"{len(deployments)} Deployments rendered, not 1"]
    pod = deployments[0]["spec"]["template"]["spec"]
    gateway = next(c for c in pod["containers"] if c["name"] == "gateway")
    args = gateway["args"]

    grace = flag(args, "shutdown-grace")
    m = re.fullmatch(r"([0-9]+)s", grace or "")
    pause = gateway.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if not m:
        problems.append(f"--shutdown-grace is {grace!r}, not whole seconds")
    elif not isinstance(pause, int):
        problems.append("the preStop hook is not the sleep action")
    elif not pod["terminationGracePeriodSeconds"] > pause + int(m.group(1)):
        problems.append(
            f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} is not "
            f"longer than the preStop pause {pause} s and the drain {m.group(1)} s"
        )

    mounts = gateway.get("volumeMounts", [])
    for mount in mounts:
        if "subPath" in mount or "subPathExpr" in mount:
            problems.append(f"the mount {mount['name']} uses a subPath: its files would never change")
    mounted = {m["mountPath"].rstrip("/") for m in mounts}
    for name in ["policy", "tls-cert", "tls-key", "tls-client-ca", "audit-hmac-key-file"]:
        path = flag(args, name)
        if path and os.path.dirname(path) not in mounted:
            problems.append(f"--{name}={path}: its directory is not a mounted volume")

    admin = next(p["containerPort"] for p in gateway["ports"] if p["name"] == "admin")
    if flag(args, "admin-listen").rsplit(":", 1)[1] != str(admin):
        problems.append("--admin-listen is not the admin port")
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = gateway.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", admin):
            problems.append(f"{probe} is not GET {path} on the admin port")

    sc, psc = gateway.get("securityContext", {}), pod.get("securityContext", {})
    wanted = {
        "container readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
        "container allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
        "container capabilities drop ALL": sc.get("capabilities", {}).get("drop") == ["ALL"],
        "pod runAsNonRoot": psc.get("runAsNonRoot") is True,
        "pod runAsUser 65532": psc.get("runAsUser") == 65532,
        "pod runAsGroup 65532": psc.get("runAsGroup") == 65532,
        "pod fsGroup 65532": psc.get("fsGroup") == 65532,
        "pod seccompProfile RuntimeDefault": psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
    }
    problems += [f"not {what}" for what, ok in wanted.items() if not ok]
    return problems


def check_alerts(rendered, alerts):
    rules = [d for d in documents(rendered) if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        return [f"{len(rules)} PrometheusRules rendered, not 1"]
    if rules[0]["spec"] != yaml.safe_load(Path(alerts).read_text()):
        return [f"the PrometheusRule's spec is not {alerts}"]
    return []


def report(problems):
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    what, rest = sys.argv[1], sys.argv[2:]
    if what == "values":
        report(check_values(Path(rest[0])))
    elif what == "table":
        table(Path(rest[0]))
    elif what == "describe":
        describe(Path(rest[0]))
    elif what == "newest-kubernetes":
        newest_kubernetes()
    elif what == "core":
        core(*rest)
    elif what == "deployment":
        report(check_deployment(rest[0]))
    elif what == "alerts":
        report(check_alerts(*rest))
    else:
        sys.exit(f"unknown check {what}")
