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
