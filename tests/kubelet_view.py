"""The kubelet's view of a rendered Deployment, for tests/kubelet_view.sh:
what a kubelet would do with the pod's one gateway container, as podman
options, files and probes.

    kubelet_view.py pod RENDERED DIR       reads `helm template`'s output and
                                           writes into DIR what running the
                                           gateway container takes (below)
    kubelet_view.py bad-values RENDERED OUT
                                           writes values that break the
                                           configuration: the policy's mode,
                                           or, without a policy, a flag's
                                           environment variable
    kubelet_view.py probe DIR NAME T0      probes container NAME as the
                                           kubelet does (startupProbe, then
                                           readinessProbe, then one
                                           livenessProbe), T0 its start (epoch
                                           seconds); prints the seconds from
                                           T0 to ready
    kubelet_view.py edit-policy DIR good|bad
                                           changes the mounted policy the way
                                           the kubelet does (a new timestamped
                                           directory, then `..data` renamed):
                                           a valid change, or an invalid mode
    kubelet_view.py renew-tls DIR          renews the mounted cert-manager
                                           Secret (a new key and certificate
                                           from the test CA) the way the
                                           kubelet updates it; prints the new
                                           serial number
    kubelet_view.py metric URL NAME [LABEL=VALUE...]
                                           one sample's value from /metrics
    kubelet_view.py handshake DIR NAME     a mutual TLS handshake with the
                                           published gRPC port, as a caller
                                           whose certificate the test CA
                                           signed; says what was served

`pod` writes into DIR:
    options      podman run's options, NUL-separated: user and groups from
                 the security contexts, --read-only, capabilities, resources,
                 the environment (`$(VAR)` expanded as Kubernetes does), the
                 volumes and the published ports
    args         the container's arguments, NUL-separated, `$(VAR)` expanded
    pod.env      shell variables: KV_IMAGE, KV_PRESTOP, KV_GRACE, KV_POLICY,
                 KV_TLS_RENEWAL (a cert-manager Secret is mounted), KV_CALL
                 (quickstart, handshake, anonymous or nothing),
                 KV_GRPC_PORT, KV_ADMIN_PORT
    pod.json     what the other subcommands read
    volumes/     each ConfigMap and Secret volume in the kubelet's layout:
                 files in a timestamped directory, `..data` a symbolic link
                 to it, and each key a symbolic link through `..data`; group
                 fsGroup, modes from defaultMode or the item's mode
    material/    the test CA and its key (for renewals), and a client
                 certificate it signed

Secrets the chart mounts but does not make are written with test material:
the Secret of a rendered cert-manager Certificate (tls.crt with the
Certificate's DNS names and URIs, tls.key in the Certificate's algorithm,
ca.crt the test CA), and any other Secret whose volume names its keys (a
random 32-byte hex key each, as `--from-literal=key=$(openssl rand -hex 32)`
makes).

The downward API's status.podIP and status.podIPs are 127.0.0.1: the
container's own loopback.

Beside it: kubelet_pod.py (the container, its environment and podman's
options), kubelet_volumes.py (the volumes' files and layout) and
kubelet_material.py (the test CA and what it signs).
"""

import http.client
import json
import os
import shlex
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from kubelet_material import Material
from kubelet_pod import Pod, environment, expand, flag, podman_options
from kubelet_volumes import Objects, fail, write_payload

# The kubelet's own User-Agent on HTTP probes (pkg/probe/http).
PROBE_USER_AGENT = "kube-probe/1.36"


def cmd_pod(rendered, out):
    out = Path(out)
    pod = Pod(rendered)
    material = Material(out / "material")
    made = []
    objects = Objects(pod, material, made)
    env = environment(pod, objects)
    c = pod.container
    args = [expand(a, env) for a in c.get("args", [])]
    command = [expand(a, env) for a in c.get("command", [])]
    options, ports, host_dirs = podman_options(pod, env, out / "volumes", objects)
    if command:
        options.append("--entrypoint=" + json.dumps(command))
    material.client("spiffe://kubelet-view.test/ns/shop/sa/caller")

    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
    policy = None
    if flag(args, "policy"):
        path = flag(args, "policy")
        directory, key = os.path.split(path)
        if directory not in mounts or mounts[directory] not in host_dirs:
            fail(f"--policy={path}: not in a ConfigMap or Secret volume")
        policy = {"dir": str(host_dirs[mounts[directory]]), "key": key}
    tls = None
    if flag(args, "tls-cert"):
        secret = next((n for n in pod.certificates), None)
        names = pod.certificates[secret]["spec"].get("dnsNames", []) if secret else []
        directory = os.path.dirname(flag(args, "tls-cert"))
        tls = {
            "dir": str(host_dirs[mounts[directory]]) if mounts.get(directory) in host_dirs else None,
            "certificate": pod.certificates[secret] if secret else None,
            "ca": str(material.directory / "ca.crt"),
            "client_cert": str(material.directory / "client.crt"),
            "client_key": str(material.directory / "client.key"),
            # The name a client in the cluster dials: <svc>.<ns>.svc.
            "server_name": next((n for n in names if n.endswith(".svc")), names[0] if names else None),
            "client_auth": flag(args, "tls-client-ca") is not None,
        }
    if tls:
        call = "handshake"
    elif "--emulator" in args:
        call = "quickstart"
    elif flag(args, "caller-identity-header"):
        # Callers named by a mesh's header: a call from outside the mesh
        # is anonymous.
        call = "anonymous"
    else:
        call = ""
    pre_stop = c.get("lifecycle", {}).get("preStop", {})
    if pre_stop and "sleep" not in pre_stop:
        fail(f"preStop {list(pre_stop)}: only the sleep action is known here")
    shell = {
        "KV_IMAGE": c["image"],
        "KV_PRESTOP": pre_stop.get("sleep", {}).get("seconds", 0),
        "KV_GRACE": pod.spec.get("terminationGracePeriodSeconds", 30),
        "KV_POLICY": "yes" if policy else "",
        "KV_TLS_RENEWAL": "yes" if tls and tls["dir"] and tls["certificate"] else "",
        "KV_CALL": call,
        "KV_GRPC_PORT": ports.get("grpc", ""),
        "KV_ADMIN_PORT": ports.get("admin", ""),
    }
    (out / "options").write_bytes(b"".join(o.encode() + b"\0" for o in options))
    (out / "args").write_bytes(b"".join(a.encode() + b"\0" for a in args))
    (out / "pod.env").write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in shell.items()))
    probes = {k: c.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    (out / "pod.json").write_text(
        json.dumps(
            {
                "ports": ports,
                "probes": probes,
                "policy": policy,
                "tls": tls,
                "fs_group": pod.spec.get("securityContext", {}).get("fsGroup"),
            },
            indent=2,
        )
    )
    for line in made:
        print(f"test material: {line}")


def cmd_bad_values(rendered, out):
    pod = Pod(rendered)
    args = pod.container.get("args", [])
    if flag(args, "policy"):
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        directory, key = os.path.split(flag(args, "policy"))
        mount = next(
            m for m in pod.container["volumeMounts"] if m["mountPath"].rstrip("/") == directory
        )
        configmap = pod.objects[("ConfigMap", volumes[mount["name"]]["configMap"]["name"])]
        policy = yaml.safe_load(configmap["data"][key])
        policy["mode"] = "enforcing"
        values = {"policy": {"content": yaml.safe_dump(policy, sort_keys=False)}}
        print("policy mode: enforcing")
    else:
        bad = {"name": "COGNITO_GATEWAY_REQUEST_TIMEOUT", "value": "soon"}
        values = {"gateway": {"env": [bad]}}
        print("COGNITO_GATEWAY_REQUEST_TIMEOUT=soon")
    Path(out).write_text(yaml.safe_dump(values, sort_keys=False))


def published(name, port):
    """The host's end of container `name`'s published `port`."""
    out = subprocess.run(
        ["podman", "port", name, f"{port}/tcp"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0 or not out.stdout.strip():
        fail(f"podman port {name} {port}: {out.stderr.strip() or 'nothing published'}")
    host, _, number = out.stdout.strip().splitlines()[0].rpartition(":")
    return host, int(number)


def running(name):
    out = subprocess.run(
        ["podman", "container", "inspect", "--format", "{{.State.Running}}", name],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip() == "true"


def http_probe(host, port, probe):
    """One HTTP probe as the kubelet makes it: a success is a status from
    200 to 399 within timeoutSeconds."""
    get = probe["httpGet"]
    try:
        conn = http.client.HTTPConnection(host, port, timeout=probe.get("timeoutSeconds", 1))
        headers = {"User-Agent": PROBE_USER_AGENT, "Accept": "*/*"}
        conn.request("GET", get.get("path", "/"), headers=headers)
        status = conn.getresponse().status
        conn.close()
        return 200 <= status < 400, f"HTTP {status}"
    except OSError as e:
        return False, str(e) or type(e).__name__


def cmd_probe(directory, name, t0):
    info = json.loads((Path(directory) / "pod.json").read_text())
    t0 = float(t0)
    probes = info["probes"]
    startup = probes["startupProbe"]
    period = startup.get("periodSeconds", 10)
    budget = startup.get("initialDelaySeconds", 0) + startup.get("failureThreshold", 3) * period

    def endpoint(probe):
        port = probe["httpGet"]["port"]
        return published(name, info["ports"][port] if isinstance(port, str) else port)

    def run(kind, probe, deadline, failures_allowed):
        """Probes every periodSeconds from initialDelaySeconds until one
        succeeds; returns its time, or fails."""
        step = probe.get("periodSeconds", 10)
        at = t0 + probe.get("initialDelaySeconds", 0)
        failures = 0
        while True:
            time.sleep(max(0.0, at - time.time()))
            ok, said = http_probe(*endpoint(probe), probe)
            if ok:
                return time.time()
            failures += 1
            if not running(name):
                fail(f"{kind}: the container exited ({said})")
            if (failures_allowed and failures >= failures_allowed) or time.time() + step > deadline:
                fail(
                    f"{kind} {probe['httpGet']['path']}: {failures} failures in "
                    f"{time.time() - t0:.1f} s, last: {said}"
                )
            at += step

    started = run("startupProbe", startup, t0 + budget, startup.get("failureThreshold", 3))
    # Readiness and liveness begin once the startup probe succeeds; the pod
    # must be ready within the startup budget.
    readiness = dict(probes["readinessProbe"], initialDelaySeconds=started - t0)
    ready = run("readinessProbe", readiness, t0 + budget, None)
    ok, said = http_probe(*endpoint(probes["livenessProbe"]), probes["livenessProbe"])
    if not ok:
        fail(f"livenessProbe {probes['livenessProbe']['httpGet']['path']}: {said}")
    print(
        f"probes: started after {started - t0:.1f} s, ready after {ready - t0:.1f} s, live "
        f"(startup budget {budget} s, period {period} s)",
        file=sys.stderr,
    )
    print(f"{ready - t0:.1f}")


def cmd_edit_policy(directory, kind):
    info = json.loads((Path(directory) / "pod.json").read_text())
    policy = info["policy"]
    target = Path(policy["dir"])
    data_dir = target / os.readlink(target / "..data")
    payload = {}
    for path in data_dir.rglob("*"):
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode) & 0o777
            payload[str(path.relative_to(data_dir))] = (path.read_bytes(), mode)
    # Each file keeps its mode: the fsGroup bits the kubelet adds again
    # are there already.
    gid = info["fs_group"]
    content, mode = payload[policy["key"]]
    text = yaml.safe_load(content)
    if kind == "good":
        # Twice the first caller's rate, or, with none, a rate for unknown
        # callers: a policy that loads and differs.
        callers = text.get("callers") or []
        if callers and "rate_limit" in callers[0]:
            callers[0]["rate_limit"]["per_second"] = callers[0]["rate_limit"]["per_second"] * 2
        else:
            text.setdefault("unknown", {})["rate_limit"] = {"per_second": 3}
    else:
        text["mode"] = "enforcing"
    payload[policy["key"]] = (yaml.safe_dump(text, sort_keys=False).encode(), mode)
    write_payload(target, payload, gid)


def cmd_renew_tls(directory):
    """cert-manager's renewal (rotationPolicy Always: a new key), written
    into the mounted Secret the way the kubelet updates it; prints the new
    certificate's serial number."""
    info = json.loads((Path(directory) / "pod.json").read_text())
    tls = info["tls"]
    if not tls or not tls["dir"] or not tls["certificate"]:
        fail("no cert-manager Certificate's Secret is mounted")
    target = Path(tls["dir"])
    data_dir = target / os.readlink(target / "..data")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir()}
    secret = Material(Path(tls["ca"]).parent).certificate_secret(tls["certificate"])
    write_payload(target, {k: (v, modes[k]) for k, v in secret.items()}, info["fs_group"])
    print(f"{x509.load_pem_x509_certificate(secret['tls.crt']).serial_number:x}")


def cmd_metric(url, name, *labels):
    want = dict(label.split("=", 1) for label in labels)
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                print(f"{sample.value:g}")
                return
    fail(f"{url}: no sample {name}{want}")


def cmd_handshake(directory, name):
    info = json.loads((Path(directory) / "pod.json").read_text())
    tls = info["tls"]
    host, port = published(name, info["ports"]["grpc"])
    context = ssl.create_default_context(cafile=tls["ca"])
    context.load_cert_chain(tls["client_cert"], tls["client_key"])
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=tls["server_name"]) as conn:
            cert = conn.getpeercert()
            names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
            print(
                f"TLS: {conn.version()}, ALPN {conn.selected_alpn_protocol()}, served for "
                f"{tls['server_name']} ({len(names)} DNS names), chains to the test CA"
                + (", client certificate accepted" if tls["client_auth"] else "")
                + f", serial {cert['serialNumber'].lower().lstrip('0')}"
            )
            # The server's verdict on the client certificate comes with its
            # first flight after the handshake: a refused one closes here.
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
            if not conn.recv(9):
                fail("TLS: the server closed the connection after the handshake")


def main():
    commands = {
        "pod": (cmd_pod, 2),
        "bad-values": (cmd_bad_values, 2),
        "probe": (cmd_probe, 3),
        "edit-policy": (cmd_edit_policy, 2),
        "handshake": (cmd_handshake, 2),
        "renew-tls": (cmd_renew_tls, 1),
    }
    if len(sys.argv) >= 2 and sys.argv[1] == "metric" and len(sys.argv) >= 4:
        return cmd_metric(*sys.argv[2:])
    command = commands.get(sys.argv[1]) if len(sys.argv) >= 2 else None
    if command is None or len(sys.argv) - 2 != command[1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    command[0](*sys.argv[2:])


if __name__ == "__main__":
    main()
