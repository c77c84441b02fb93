#!/usr/bin/env bash
# Each example of deploy/examples/ as a kubelet runs its Deployment: the
# chart rendered with `helm template` (namespace identity, the image the
# local one built by scripts/image, without a registry digest), and its
# gateway container run with podman from what was rendered, through
# tests/kubelet_view.py:
#
# - the image, args and env it names (`$(VAR)` expanded as Kubernetes
#   does; the downward API's pod IPs are 127.0.0.1), its and the pod's
#   securityContext (user, group, fsGroup, read-only root, no capabilities,
#   no privilege escalation), its resources, and its volumes: each
#   ConfigMap and Secret written in the kubelet's layout (a timestamped
#   directory, `..data`, a link per key, group fsGroup) and mounted
#   read-only; the Secrets the chart does not make are test material (the
#   cert-manager Certificate's, signed for its DNS names by a test CA that
#   is its ca.crt; the audit key). Its ports are published on 127.0.0.1.
# - check-config in the same container exits 0; and exits 2, naming the
#   problem, for values with a bad edit (the policy's mode; without a
#   policy, a flag's environment variable).
# - The startup, readiness and liveness probes as the kubelet makes them,
#   within the startup probe's budget.
# - A call where the example allows one: the quickstart example against
#   the dev image's emulator (plaintext); behind a mesh's header, the same
#   call from outside the mesh, refused as anonymous by the policy; with
#   TLS, a mutual TLS handshake for the Certificate's name, as a caller the
#   test CA signed.
# - Where a policy is mounted, an edit the way the kubelet makes it (a
#   new timestamped directory, `..data` renamed): "caller policy reloaded"
#   in the log and gateway_policy_reloads_total{outcome="ok"} up one; then
#   an invalid one: outcome="error" up one, and the replica still ready.
#   Where the Certificate's Secret is mounted, cert-manager's renewal passed
#   on the same way: gateway_tls_reloads_total{outcome="ok"} up one, and
#   the new certificate served.
# - The stop: the preStop sleep waited here as the kubelet waits it, then
#   SIGTERM with the rest of terminationGracePeriodSeconds before SIGKILL
#   (podman stop --time): exit 0, well before the deadline.
#
# Needs the images of scripts/image, and the quickstart example built
# (target/{release,debug}/examples/quickstart: tests/image.sh builds it).
# Sets up .venv, helm and podman. Writes what it renders and mounts to
# target/kubelet-view/; removes only the containers it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
ensure_helm
ensure_podman

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
chart=deploy/helm/cognito-identity-gateway
# What podman names the images scripts/image builds.
repository=localhost/cognito-identity-gateway
out=target/kubelet-view
view=("$VENV/bin/python" tests/kubelet_view.py)
prefix="cig-kubelet-view-$$"
rm -rf "$out"
mkdir -p "$out"

containers=()
cleanup() {
    for container in "${containers[@]}"; do
        podman rm -f --time 0 "$container" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
# Stopped from outside (a timeout, ^C): the containers go too.
trap 'exit 130' INT TERM

quickstart=
for built in target/release/examples/quickstart target/debug/examples/quickstart; do
    if [ -x "$built" ] && { [ -z "$quickstart" ] || [ "$built" -nt "$quickstart" ]; }; then
        quickstart=$built
    fi
done

now() { date +%s.%N; }
since() { awk "BEGIN {printf \"%.1f\", $(now) - $1}"; }

render() { # EXAMPLE OUT [HELM ARGS...]
    local example=$1 rendered=$2
    shift 2
    helm template gw "$chart" -n identity -f "$example" \
        --set image.repository="$repository" --set image.digest= "$@" \
        >"$rendered" 2> >(grep -v 'found symbolic link in path' >&2)
}

# The state of the example being run, shared by the steps below: its name
# (example), its directory under $out (dir), its container's name (name),
# and what tests/kubelet_view.py wrote (pod.env's KV_*, options, args).
example= dir= name=
options=() args=()

# Says why the example failed, with its container's log, and removes the
# container.
broke() {
    echo "$example: FAILED: $*" >&2
    if podman container exists "$name" 2>/dev/null; then
        echo "--- podman logs $name" >&2
        podman logs "$name" 2>&1 | tail -n 60 >&2 || true
        echo "---" >&2
        podman rm -f --time 0 "$name" >/dev/null 2>&1 || true
    fi
    return 1
}

say() { echo "$example: $*"; }

admin_url() { echo "http://$(podman port "$name" "$KV_ADMIN_PORT/tcp" | head -1)"; }

reloads() { # METRIC OUTCOME
    "${view[@]}" metric "$(admin_url)/metrics" "$1" "outcome=$2"
}

# Waits up to 30 s (three of the gateway's 10 s rescans) for the log to say
# WHAT and for METRIC{outcome=OUTCOME} to pass BEFORE. Each WHAT asked for
# is said once in a container's life here, so its presence is enough.
wait_reload() { # WHAT METRIC OUTCOME BEFORE
    local what=$1 metric=$2 outcome=$3 before=$4 count
    local deadline=$(($(date +%s) + 30))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        count=$(reloads "$metric" "$outcome" 2>/dev/null || echo "$before")
        if podman logs "$name" 2>&1 | grep -q -- "$what" \
            && awk "BEGIN {exit !($count > $before)}"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Runs check-config in the container as rendered into POD_DIR, as
# container NAME; sets checked_code and checked_said.
check_config() { # POD_DIR NAME
    local pod_dir=$1 check_name=$2 check_options check_args
    mapfile -d '' check_options <"$pod_dir/options"
    mapfile -d '' check_args <"$pod_dir/args"
    containers+=("$check_name")
    checked_code=0
    checked_said=$(timeout 60 podman run --rm --name "$check_name" "${check_options[@]}" \
        "$KV_IMAGE" check-config "${check_args[@]}" 2>&1) || checked_code=$?
}

# 1. The chart, rendered; 2. what the kubelet would run, into $dir/pod.
render_pod() { # EXAMPLE_FILE
    render "$1" "$dir/rendered.yaml" || { broke "helm template"; return 1; }
    "${view[@]}" pod "$dir/rendered.yaml" "$dir/pod" | sed "s/^/$example: /" \
        || { broke "the rendered pod"; return 1; }
    # shellcheck source=/dev/null
    source "$dir/pod/pod.env"
    case $KV_IMAGE in
        "$repository:$version" | "$repository:$version-dev") ;;
        *) broke "the chart names $KV_IMAGE, not $repository:$version(-dev) (Cargo.toml's)"; return 1 ;;
    esac
    podman image exists "$KV_IMAGE" || { broke "no image $KV_IMAGE: run scripts/image first"; return 1; }
    mapfile -d '' options <"$dir/pod/options"
    mapfile -d '' args <"$dir/pod/args"
    # For a person who wants to run it by hand.
    {
        printf '%q ' podman run -d --name "$name" "${options[@]}" "$KV_IMAGE" "${args[@]}"
        echo
    } >"$dir/podman-run.sh"
}

# 3. check-config: 0 as rendered; 2 for values with a bad edit, naming it.
check_configs() { # EXAMPLE_FILE
    check_config "$dir/pod" "$name-check"
    [ "$checked_code" = 0 ] || { broke "check-config exited $checked_code: $checked_said"; return 1; }
    say "check-config: $checked_said"
    local bad expected
    bad=$("${view[@]}" bad-values "$dir/rendered.yaml" "$dir/bad-values.yaml") \
        || { broke "bad values"; return 1; }
    render "$1" "$dir/bad.yaml" -f "$dir/bad-values.yaml" || { broke "helm template with $bad"; return 1; }
    "${view[@]}" pod "$dir/bad.yaml" "$dir/bad" >/dev/null || { broke "the rendered pod with $bad"; return 1; }
    check_config "$dir/bad" "$name-check-bad"
    case $bad in
        policy*) expected="mode" ;;
        *) expected="request-timeout" ;;
    esac
    if [ "$checked_code" != 2 ] || ! grep -q -- "$expected" <<<"$checked_said"; then
        broke "check-config with $bad exited $checked_code, saying: $checked_said"
        return 1
    fi
    say "check-config with $bad: exit 2, $(grep -m1 -- '  - ' <<<"$checked_said" | sed 's/^ *- //')"
}

# 4. Runs it, and probes it as the kubelet does; sets ready (seconds).
start_and_probe() {
    containers+=("$name")
    timeout 60 podman run -d --name "$name" "${options[@]}" "$KV_IMAGE" "${args[@]}" >/dev/null \
        || { broke "podman run (see $dir/podman-run.sh)"; return 1; }
    local t0
    t0=$(now)
    ready=$("${view[@]}" probe "$dir/pod" "$name" "$t0" 2> >(sed "s/^/$example: /" >&2)) \
        || { broke "the probes"; return 1; }
}

# The quickstart example's calls (a developer token, then credentials) to
# the published gRPC port; sets said.
quickstart_call() {
    local grpc
    grpc=$(podman port "$name" "$KV_GRPC_PORT/tcp" | head -1)
    said=$(timeout 30 "$quickstart" --gateway "http://$grpc" 2>&1)
}

# 5. A call, where the example allows one; sets call (what was done).
make_call() {
    call="no call"
    case $KV_CALL in
        quickstart | anonymous)
            [ -n "$quickstart" ] \
                || { broke "no quickstart example built (cargo build --example quickstart)"; return 1; }
            ;;&
        quickstart)
            quickstart_call || { broke "quickstart: $said"; return 1; }
            grep -q "^identity id: *us-east-1:" <<<"$said" && grep -q "^credentials expire at: *20" <<<"$said" \
                || { broke "quickstart said: $said"; return 1; }
            sed "s/^/$example: quickstart: /" <<<"$said"
            call="call ok"
            ;;
        anonymous)
            # No mesh header: refused by the policy, before the cache and
            # the upstream.
            if quickstart_call || ! grep -q "code: Unauthenticated" <<<"$said" \
                || ! grep -q CALLER_UNAUTHENTICATED <<<"$said"; then
                broke "a call without the mesh's identity was not refused as anonymous: $said"
                return 1
            fi
            say "a call without the mesh's header: Unauthenticated, CALLER_UNAUTHENTICATED"
            call="anonymous call refused"
            ;;
        handshake)
            said=$(timeout 30 "${view[@]}" handshake "$dir/pod" "$name" 2>&1) \
                || { broke "the TLS handshake: $said"; return 1; }
            say "$said"
            call="mutual TLS ok"
            ;;
    esac
    # Not a probe (the chart never asks it): what the replica says of AWS,
    # which no network reaches here.
    if [ "$KV_CALL" != quickstart ]; then
        say "/upstreamz: $(curl -s -m 20 "$(admin_url)/upstreamz" || echo 'no answer') (no network to AWS here)"
    fi
}

# 6. The policy, edited in place as the kubelet does: a good edit, then a
# bad one.
reload_policy() {
    local metric=gateway_policy_reloads_total before edited
    before=$(reloads "$metric" ok) || { broke "no $metric on /metrics"; return 1; }
    "${view[@]}" edit-policy "$dir/pod" good || { broke "editing the policy"; return 1; }
    edited=$(now)
    if ! wait_reload "caller policy reloaded" "$metric" ok "$before"; then
        broke "'caller policy reloaded' not logged, or $metric{ok} $before -> $(reloads "$metric" ok)"
        return 1
    fi
    say "policy edited (..data swapped): 'caller policy reloaded'," \
        "$metric{ok} $before -> $(reloads "$metric" ok) in $(since "$edited") s"
    before=$(reloads "$metric" error)
    "${view[@]}" edit-policy "$dir/pod" bad || { broke "editing the policy"; return 1; }
    if ! wait_reload "caller policy in force stays" "$metric" error "$before"; then
        broke "an invalid policy: 'caller policy in force stays' not logged," \
            "or $metric{error} $before -> $(reloads "$metric" error)"
        return 1
    fi
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$(admin_url)/readyz")" = 200 ] \
        || { broke "not ready after an invalid policy"; return 1; }
    say "invalid policy: the one in force kept, $metric{error} $before -> $(reloads "$metric" error), still ready"
}

# cert-manager's renewal of the mounted Secret, as the kubelet passes it
# on: the gateway serves the new certificate.
renew_tls() {
    local metric=gateway_tls_reloads_total before serial renewed
    before=$(reloads "$metric" ok) || { broke "no $metric on /metrics"; return 1; }
    serial=$("${view[@]}" renew-tls "$dir/pod") || { broke "renewing the certificate"; return 1; }
    renewed=$(now)
    if ! wait_reload "TLS certificate and client CA reloaded" "$metric" ok "$before"; then
        broke "'TLS certificate and client CA reloaded' not logged," \
            "or $metric{ok} $before -> $(reloads "$metric" ok)"
        return 1
    fi
    said=$(timeout 30 "${view[@]}" handshake "$dir/pod" "$name" 2>&1) \
        || { broke "the TLS handshake after the renewal: $said"; return 1; }
    grep -q "serial $serial\$" <<<"$said" \
        || { broke "the renewed certificate ($serial) is not served: $said"; return 1; }
    say "certificate renewed (..data swapped): reloaded," \
        "$metric{ok} $before -> $(reloads "$metric" ok) in $(since "$renewed") s, serial $serial served"
}

# 7. The stop: the preStop sleep, then SIGTERM with what is left of the
# grace period before SIGKILL; sets took (seconds).
stop_pod() {
    local stop_timeout=$((KV_GRACE - KV_PRESTOP)) started code
    sleep "$KV_PRESTOP"
    started=$(now)
    timeout $((stop_timeout + 30)) podman stop --time "$stop_timeout" "$name" >/dev/null \
        || { broke "podman stop"; return 1; }
    took=$(since "$started")
    code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
    podman logs "$name" >"$dir/gateway.log" 2>&1 || true
    # Nothing is in flight: the drain ends at once, and only the last
    # trace export (when on) may take a while. Half the time left is far
    # from the SIGKILL.
    if [ "$code" != 0 ] || ! awk "BEGIN {exit !($took < $stop_timeout / 2)}"; then
        broke "stopped with exit $code after ${took}s (SIGKILL at ${stop_timeout}s)"
        return 1
    fi
    say "preStop sleep ${KV_PRESTOP}s, then SIGTERM: exit 0 after ${took}s" \
        "(SIGKILL at ${stop_timeout}s, grace ${KV_GRACE}s)"
}

# One example, every step; returns 1 at the first that fails, having said
# why and shown the container's log.
run_example() { # EXAMPLE_FILE
    example=$(basename "$1" .yaml)
    dir=$out/$example
    name=$prefix-$example
    mkdir -p "$dir"
    render_pod "$1" || return 1
    check_configs "$1" || return 1
    start_and_probe || return 1
    make_call || return 1
    # dev-emulator mounts no policy (it serves every caller): nothing to
    # reload there.
    local reload="no policy mounted"
    if [ -n "$KV_POLICY" ]; then
        reload_policy || return 1
        reload="reload ok"
    fi
    if [ -n "$KV_TLS_RENEWAL" ]; then
        renew_tls || return 1
        reload="$reload, renewal ok"
    fi
    stop_pod || return 1
    summaries+=("$example: ready after ${ready} s, $call, $reload, exit 0 after ${took} s")
}

failures=0
summaries=()
started_all=$(now)
for example_file in deploy/examples/*.yaml; do
    if ! run_example "$example_file"; then
        failures=$((failures + 1))
        summaries+=("$(basename "$example_file" .yaml): FAILED")
    fi
done

echo "--- each example as the kubelet runs it ($(since "$started_all") s)"
printf '%s\n' "${summaries[@]}"
[ "$failures" = 0 ]
