# Helpers shared by scripts/test and scripts/dev; source it, don't run it.

# The project's Python virtualenv, (re)installed from tests/requirements.txt
# whenever that file changes.
VENV=.venv

ensure_venv() {
    local stamp="$VENV/.requirements"
    if [ ! -x "$VENV/bin/python" ] || ! cmp -s tests/requirements.txt "$stamp"; then
        echo "installing tests/requirements.txt into $VENV" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
        cp tests/requirements.txt "$stamp"
    fi
}

# A free TCP port on loopback.
free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts moto on a free loopback port, waits until it answers, and sets
# MOTO_ENDPOINT and MOTO_PID. The caller stops it (see stop_moto).
start_moto() {
    mkdir -p target
    local port
    port=$(free_port)
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
    MOTO_PID=$!
    MOTO_ENDPOINT="http://127.0.0.1:$port"
    for _ in $(seq 1 150); do
        if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$MOTO_ENDPOINT/moto-api/')" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "moto did not start; see target/moto.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "moto did not answer within 30 s; see target/moto.log" >&2
    return 1
}

stop_moto() {
    if [ -n "${MOTO_PID:-}" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
}

# Test credentials for loopback emulators: never real ones.
export_test_aws_env() {
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true
}

# Installs Debian packages, as root or through sudo.
install_packages() {
    local sudo_if_needed=()
    [ "$(id -u)" = 0 ] || sudo_if_needed=(sudo)
    echo "installing $*" >&2
    "${sudo_if_needed[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -qq "$@" >/dev/null
}

# Podman and runc, from Debian's packages when missing, with
# scripts/containers.conf unless CONTAINERS_CONF names another.
ensure_podman() {
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
        install_packages podman buildah runc uidmap slirp4netns fuse-overlayfs
    fi
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/scripts/containers.conf}
}

# Tools the project builds for itself live here, out of the way of the
# system's: target/tools/bin, put first on PATH by the ensure_* below.
TOOLS_BIN=$PWD/target/tools/bin

# Helm, built from its Go module into target/tools/bin when missing (the
# Go module proxy is the one place that serves it here), then on PATH.
# HELM_VERSION pins it; a helm of another version there is rebuilt. `go
# install` leaves helm's version and its default Kubernetes version unset
# (it would say "v3.21", and render for Kubernetes 1.20), so the build
# stamps both the way helm's own Makefile does: HELM_KUBE_MINOR is 1.x of
# the k8s.io/client-go helm is built with (v0.36 for helm v3.21.4).
HELM_VERSION=v3.21.4
HELM_KUBE_MINOR=36

ensure_helm() {
    mkdir -p "$TOOLS_BIN"
    case ":$PATH:" in *":$TOOLS_BIN:"*) ;; *) export PATH="$TOOLS_BIN:$PATH" ;; esac
    if [ ! -x "$TOOLS_BIN/helm" ] \
        || [ "$("$TOOLS_BIN/helm" version --template '{{.Version}}' 2>/dev/null)" != "$HELM_VERSION" ]; then
        command -v go >/dev/null || { echo "ensure_helm: go is needed to build helm" >&2; return 1; }
        echo "building helm $HELM_VERSION into $TOOLS_BIN" >&2
        local stamp="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
        local part
        for part in pkg/chartutil pkg/lint/rules; do
            stamp="$stamp -X helm.sh/helm/v3/$part.k8sVersionMajor=1"
            stamp="$stamp -X helm.sh/helm/v3/$part.k8sVersionMinor=$HELM_KUBE_MINOR"
        done
        GOBIN=$TOOLS_BIN go install -ldflags "$stamp" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    fi
}

# checkov (the chart's static checks), in a virtualenv of its own under
# target/tools, (re)installed from tests/checkov-requirements.txt whenever
# that file changes: it pins boto3 to a version tests/requirements.txt
# cannot share. Puts nothing on PATH; run "$CHECKOV_VENV/bin/checkov".
CHECKOV_VENV=target/tools/checkov

ensure_checkov() {
    local stamp="$CHECKOV_VENV/.requirements"
    if [ ! -x "$CHECKOV_VENV/bin/checkov" ] || ! cmp -s tests/checkov-requirements.txt "$stamp"; then
        echo "installing tests/checkov-requirements.txt into $CHECKOV_VENV" >&2
        python3 -m venv "$CHECKOV_VENV"
        "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/checkov-requirements.txt
        cp tests/checkov-requirements.txt "$stamp"
    fi
}
