#!/usr/bin/env bash
# The images as a user runs them (run by scripts/test after scripts/image):
# as uid 65532, with a read-only root file system and no capabilities.
#
# - The dev image with --emulator answers a real gRPC call (the quickstart
#   example: a developer token, then credentials) and its admin port's
#   /healthz and /readyz, then `podman stop` (SIGTERM to PID 1) drains it
#   and it exits 0 well within the stop timeout.
# - The production image has no emulator, and reaches an upstream named by
#   a host name that only the container's /etc/hosts resolves (moto on
#   loopback stands in for Cognito): /upstreamz says reachable, and says
#   unreachable for a name nothing resolves.
#
# Needs: MOTO_ENDPOINT (scripts/test starts moto), podman (scripts/image
# installs it), the example built. Removes only the containers it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_podman

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
production="cognito-identity-gateway:$version"
dev="$production-dev"
prefix="cig-image-test-$$"
containers=()
cleanup() {
    for name in "${containers[@]}"; do
        podman rm -f "$name" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
failures=0
fail() {
    echo "image test FAILED: $*" >&2
    failures=$((failures + 1))
}

# As the kubelet runs it with the chart's securityContext.
run_locked_down() {
    local name=$1
    shift
    containers+=("$name")
    podman run -d --name "$name" --user 65532:65532 --read-only --cap-drop=all \
        --security-opt no-new-privileges "$@" >/dev/null
}

# Waits until URL answers 200 (20 s at most).
wait_for() {
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# --- the dev image, with its embedded emulator
grpc=$(free_port)
admin=$(free_port)
name="$prefix-dev"
run_locked_down "$name" -p "127.0.0.1:$grpc:50051" -p "127.0.0.1:$admin:9464" "$dev" \
    --emulator --listen 0.0.0.0:50051 --admin-listen 0.0.0.0:9464 --shutdown-grace 5s
if wait_for "http://127.0.0.1:$admin/healthz"; then
    echo "dev image: /healthz 200"
else
    fail "the dev image's /healthz never answered 200"
    podman logs "$name" >&2 || true
fi
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz")" = 200 ] \
    && echo "dev image: /readyz 200" || fail "the dev image's /readyz is not 200"
if out=$(cargo run --quiet --example quickstart -- --gateway "http://127.0.0.1:$grpc") \
    && grep -q "^identity id: *us-east-1:" <<<"$out" \
    && grep -q "^credentials expire at: *20" <<<"$out"; then
    echo "dev image: a developer token, then credentials"
else
    fail "the dev image did not answer the quickstart's calls: $out"
fi
started=$(date +%s.%N)
podman stop -t 30 "$name" >/dev/null
took=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $started}")
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
if [ "$code" = 0 ] && awk "BEGIN {exit !($took < 10)}"; then
    echo "dev image: podman stop drained it, exit 0 in ${took}s (stop timeout 30s)"
else
    fail "podman stop: exit $code after ${took}s"
    podman logs "$name" >&2 || true
fi

# --- the production image: no emulator, the upstream by a container-only name
name="$prefix-emulator"
containers+=("$name")
refused=$(podman run --name "$name" --user 65532:65532 --read-only --cap-drop=all "$production" \
    --emulator 2>&1 || true)
if grep -q "unexpected argument '--emulator'" <<<"$refused"; then
    echo "production image: no --emulator"
else
    fail "the production image did not refuse --emulator: $refused"
fi
moto_port=${MOTO_ENDPOINT##*:}
for upstream in reachable unreachable; do
    admin=$(free_port)
    grpc=$(free_port)
    name="$prefix-$upstream"
    host=cognito-stand-in.test
    [ "$upstream" = unreachable ] && host=nothing-resolves-this.test
    run_locked_down "$name" --network host --add-host cognito-stand-in.test:127.0.0.1 \
        -e AWS_ACCESS_KEY_ID=test -e AWS_SECRET_ACCESS_KEY=test -e AWS_EC2_METADATA_DISABLED=true \
        "$production" --listen "127.0.0.1:$grpc" --admin-listen "127.0.0.1:$admin" \
        --region us-east-1 --endpoint-url "http://$host:$moto_port"
    if ! wait_for "http://127.0.0.1:$admin/readyz"; then
        fail "the production image never became ready"
        podman logs "$name" >&2 || true
        continue
    fi
    answer=$(curl -s "http://127.0.0.1:$admin/upstreamz")
    if [ "$answer" = "upstream $upstream" ]; then
        echo "production image: an upstream at $host: $answer"
    else
        fail "production image, $host: /upstreamz said '$answer'"
        podman logs "$name" >&2 || true
    fi
    podman stop -t 30 "$name" >/dev/null
done

for image in "$production" "$dev"; do
    size=$(podman image inspect --format '{{.Size}}' "$image")
    printf 'image size: %s %s bytes (%s MB)\n' "$image" "$size" "$(awk "BEGIN {printf \"%.1f\", $size / 1000000}")"
done
[ "$failures" = 0 ]
