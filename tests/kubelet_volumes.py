"""The kubelet's ConfigMap and Secret volumes: their files, and the layout
it writes them in. For tests/kubelet_view.py."""

import base64
import datetime
import os
import random
import secrets
import stat

# A ConfigMap's or Secret's files without defaultMode (the API's default).
DEFAULT_MODE = 0o644
# What the kubelet's ownership change adds for fsGroup to a read-only
# volume's files and directories (pkg/volume/volume_linux.go: roMask, and
# execMask and setgid for directories).
FS_GROUP_FILE_BITS = 0o440
FS_GROUP_DIR_BITS = 0o2550


def fail(message):
    raise SystemExit(f"kubelet_view.py: {message}")


def write_payload(target, payload, gid):
    """Writes `payload` ({path: (bytes, mode)}) into `target` as the
    kubelet's AtomicWriter does (pkg/volume/util/atomic_writer.go): a new
    directory ..<UTC time>.<random>, a ..data_tmp link to it renamed over
    ..data, a link through ..data for each top-level name, the previous
    directory and names gone; then the fsGroup ownership."""
    target.mkdir(parents=True, exist_ok=True)
    data = target / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    old_names = set(os.listdir(target / old)) if old else set()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.")
    ts = target / f"{stamp}{random.randrange(10**9, 4 * 10**9)}"
    ts.mkdir(mode=0o755)
    os.chmod(ts, 0o755)
    for path, (content, mode) in payload.items():
        file = ts / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)
        os.chmod(file, mode)
    tmp = target / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(ts.name, tmp)
    os.rename(tmp, data)
    new_names = {p.split("/", 1)[0] for p in payload}
    for name in sorted(new_names):
        if not (target / name).is_symlink():
            os.symlink(f"..data/{name}", target / name)
    for name in sorted(old_names - new_names):
        (target / name).unlink()
    if old:
        for path in sorted((target / old).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        (target / old).rmdir()
    if gid is not None:
        for path in [target, *target.rglob("*")]:
            os.lchown(path, -1, gid)
            if path.is_symlink():
                continue
            bits = FS_GROUP_DIR_BITS if path.is_dir() else FS_GROUP_FILE_BITS
            os.chmod(path, stat.S_IMODE(path.stat().st_mode) | bits)


def object_data(obj):
    """A ConfigMap's or Secret's keys and their bytes."""
    if obj["kind"] == "Secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


class Objects:
    """The ConfigMaps and Secrets the pod reads: the rendered ones, and test
    material for the Secrets the chart expects others to make."""

    def __init__(self, pod, material, made):
        self.pod = pod
        self.material = material
        self.made = made  # what was written as test material, said at the end
        self.cache = {}

    def get(self, kind, name, keys=None, optional=False):
        if (kind, name) in self.cache:
            return self.cache[(kind, name)]
        obj = self.pod.objects.get((kind, name))
        if obj is not None:
            data = object_data(obj)
        elif kind == "Secret" and name in self.pod.certificates:
            data = self.material.certificate_secret(self.pod.certificates[name])
            self.made.append(
                f"Secret {name}: cert-manager's tls.crt, tls.key and ca.crt (the test CA)"
            )
        elif kind == "Secret" and keys:
            data = {k: secrets.token_hex(32).encode() for k in keys}
            self.made.append(f"Secret {name}: a random 32-byte hex key as {', '.join(keys)}")
        elif optional:
            data = None
        else:
            fail(f"{kind} {name}: not rendered, and no test material is known for it")
        self.cache[(kind, name)] = data
        return data


def volume_payload(volume, objects):
    """A ConfigMap or Secret volume's files: {path: (bytes, mode)}."""
    if "configMap" in volume:
        source, kind, name = volume["configMap"], "ConfigMap", volume["configMap"]["name"]
    else:
        source, kind, name = volume["secret"], "Secret", volume["secret"]["secretName"]
    items = source.get("items")
    keys = [i["key"] for i in items] if items else None
    data = objects.get(kind, name, keys=keys, optional=source.get("optional", False))
    if data is None:
        return {}
    mode = source.get("defaultMode", DEFAULT_MODE)
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    payload = {}
    for item in items:
        if item["key"] not in data:
            fail(f"{kind} {name} has no key {item['key']}")
        payload[item["path"]] = (data[item["key"]], item.get("mode", mode))
    return payload

