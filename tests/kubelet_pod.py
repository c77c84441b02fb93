"""A rendered Deployment's gateway container, and what the kubelet makes of
it: the environment (`$(VAR)` expanded), and podman's options for its
security contexts, resources, volumes and ports. For tests/kubelet_view.py."""

from pathlib import Path

import yaml

from kubelet_volumes import fail, volume_payload, write_payload

POD_IP = "127.0.0.1"
NODE_NAME = "kubelet-view"


def documents(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


# --- $(VAR) references, as Kubernetes expands them
# (third_party/forked/golang/expansion): `$$` is `$`, `$(NAME)` a defined
# variable's value, and an undefined one is left as written.
def expand(text, env):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "$" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : end]
                out.append(env[name] if name in env else f"$({name})")
                i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


class Pod:
    """The rendered Deployment's pod, its gateway container and the objects
    it refers to."""

    def __init__(self, rendered):
        docs = documents(rendered)
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        if len(deployments) != 1:
            fail(f"{rendered}: {len(deployments)} Deployments, not 1")
        self.deployment = deployments[0]
        self.template = self.deployment["spec"]["template"]
        self.spec = self.template["spec"]
        self.namespace = self.deployment["metadata"].get("namespace", "default")
        self.name = f"{self.deployment['metadata']['name']}-5d8f7c9b6-kview"
        self.uid = "0a0a0a0a-0000-4000-8000-00000000cafe"
        containers = self.spec["containers"]
        gateway = [c for c in containers if c["name"] == "gateway"]
        if len(gateway) != 1:
            fail(f"{rendered}: no single container named gateway")
        self.container = gateway[0]
        self.objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        self.certificates = {
            d["spec"]["secretName"]: d
            for d in docs
            if d["kind"] == "Certificate" and d["apiVersion"].startswith("cert-manager.io/")
        }

    def security(self, key):
        """The container's securityContext value, else the pod's."""
        value = self.container.get("securityContext", {}).get(key)
        if value is None:
            value = self.spec.get("securityContext", {}).get(key)
        return value



# --- the container's environment, as the kubelet makes it
# (pkg/kubelet/kubelet_pods.go, makeEnvironmentVariables)
def field_value(pod, path):
    meta = pod.template["metadata"]
    values = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": NODE_NAME,
        "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path in values:
        return values[path]
    for field in ("labels", "annotations"):
        prefix = f"metadata.{field}['"
        if path.startswith(prefix) and path.endswith("']"):
            return (meta.get(field) or {}).get(path[len(prefix) : -2], "")
    fail(f"fieldRef {path}: not known here")


def environment(pod, objects):
    env = {}
    container = pod.container
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        data = objects.get(kind, ref["name"], optional=ref.get("optional", False)) or {}
        for key, value in data.items():
            env[source.get("prefix", "") + key] = value.decode()
    for var in container.get("env", []):
        if "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[var["name"]] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
            ref = source.get("configMapKeyRef") or source.get("secretKeyRef")
            optional = ref.get("optional", False)
            data = objects.get(kind, ref["name"], keys=[ref["key"]], optional=optional)
            if data is not None and ref["key"] in data:
                env[var["name"]] = data[ref["key"]].decode()
            elif not optional:
                fail(f"{kind} {ref['name']} has no key {ref['key']}")
        else:
            fail(f"env {var['name']}: {list(source)} not known here")
    return env


def quantity(text):
    """A Kubernetes quantity as a number (CPU in cores, memory in bytes)."""
    text = str(text)
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def podman_options(pod, env, volumes_dir, objects):
    """podman run's options for the gateway container, and the published
    ports by name."""
    c = pod.container
    # The image is the one scripts/image built: present, so IfNotPresent
    # pulls nothing, and no registry is reachable anyway.
    options = ["--pull=never", f"--hostname={pod.name}"]
    user, group = pod.security("runAsUser"), pod.security("runAsGroup")
    if pod.security("runAsNonRoot") and user in (None, 0):
        fail("runAsNonRoot, but runAsUser is root or left to the image")
    if user is not None:
        options.append(f"--user={user}" + (f":{group}" if group is not None else ""))
    pod_security = pod.spec.get("securityContext", {})
    fs_group = pod_security.get("fsGroup")
    groups = [fs_group] if fs_group is not None else []
    groups += pod_security.get("supplementalGroups", [])
    options += [f"--group-add={gid}" for gid in groups]
    if pod.security("readOnlyRootFilesystem"):
        # No tmpfs on /tmp, /run and /var/tmp: podman adds them to a
        # read-only container, a kubelet does not.
        options += ["--read-only", "--read-only-tmpfs=false"]
    caps = c.get("securityContext", {}).get("capabilities", {})
    options += [f"--cap-drop={cap.lower()}" for cap in caps.get("drop", [])]
    options += [f"--cap-add={cap.lower()}" for cap in caps.get("add", [])]
    if c.get("securityContext", {}).get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    if c.get("securityContext", {}).get("privileged"):
        options.append("--privileged")
    seccomp = (pod.security("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp != "RuntimeDefault":
        fail(f"seccompProfile {seccomp}: only RuntimeDefault (podman's default profile) is known here")
    limits = c.get("resources", {}).get("limits", {})
    requests = c.get("resources", {}).get("requests", {})
    if "memory" in limits:
        options.append(f"--memory={int(quantity(limits['memory']))}b")
    if "cpu" in limits:
        options.append(f"--cpus={quantity(limits['cpu']):g}")
    if "cpu" in requests:
        # The kubelet's MilliCPUToShares.
        shares = max(2, round(quantity(requests["cpu"]) * 1000) * 1024 // 1000)
        options.append(f"--cpu-shares={shares}")
    # The kubelet sets no pids limit of a container's own by default
    # (podPidsLimit -1); podman would set 2048.
    options.append("--pids-limit=-1")
    if "workingDir" in c:
        options.append(f"--workdir={c['workingDir']}")
    for name, value in env.items():
        options.append(f"--env={name}={value}")
    volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
    host_dirs = {}
    for mount in c.get("volumeMounts", []):
        if "subPath" in mount or "subPathExpr" in mount:
            fail(f"the mount {mount['name']} uses a subPath")
        volume = volumes[mount["name"]]
        ro = ",ro=true" if mount.get("readOnly") else ""
        if "configMap" in volume or "secret" in volume:
            host = volumes_dir / volume["name"]
            if volume["name"] not in host_dirs:
                write_payload(host, volume_payload(volume, objects), fs_group)
                host_dirs[volume["name"]] = host
            options.append(f"--mount=type=bind,src={host.resolve()},dst={mount['mountPath']}{ro}")
        elif "emptyDir" in volume:
            # The kubelet's emptyDir is 0777 (pkg/volume/emptydir), then
            # setgid with group fsGroup; podman's tmpfs takes no group, and
            # every user may write there anyway.
            size = volume["emptyDir"].get("sizeLimit")
            tmpfs = ["ro" if mount.get("readOnly") else "rw"]
            tmpfs += [f"size={int(quantity(size))}"] if size else []
            tmpfs.append("mode=2777" if fs_group is not None else "mode=777")
            options.append(f"--tmpfs={mount['mountPath']}:{','.join(tmpfs)}")
        else:
            fail(f"volume {volume['name']}: {sorted(set(volume) - {'name'})} not known here")
    ports = {}
    for port in c.get("ports", []):
        protocol = port.get("protocol", "TCP").lower()
        # Loopback only; the host picks the port.
        options.append(f"--publish=127.0.0.1::{port['containerPort']}/{protocol}")
        ports[port.get("name", str(port["containerPort"]))] = port["containerPort"]
    return options, ports, host_dirs


def flag(args, name):
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None

