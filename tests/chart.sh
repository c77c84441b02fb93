#!/usr/bin/env bash
# The Helm chart's static checks (deploy/helm/cognito-identity-gateway),
# with each example of deploy/examples/, and the value sets of tests/chart/
# that take the templates' other branches:
#
# - every value has a comment in values.yaml, an entry in
#   values.schema.json and a row in the chart's README.md;
# - `helm lint --strict`;
# - what `helm template` renders validates against Kubernetes' own schemas
#   (kubernetes-validate --strict) for 1.30, the oldest the chart supports,
#   and the newest kubernetes-validate knows. The custom resources
#   (Certificate, ServiceMonitor, PrometheusRule) have no schema there and
#   are left out, by kind (tests/chart_check.py, CUSTOM_KINDS); any other
#   kind without a schema fails;
# - checkov (framework kubernetes, with nothing downloaded from its
#   vendor's service) finds nothing in what the examples render: what it
#   would find is fixed in the chart, or waived there with the reason;
# - the Deployment keeps the chart's promises (the grace period against the
#   pause and the drain, directories mounted whole, the probes, the
#   security context), and the PrometheusRule's spec is
#   deploy/monitoring/alerts.yaml, through the chart's symbolic link;
# - and what must fail does: a grace period too short to render, a value
#   the schema does not know to lint or render.
#
# Sets up what it needs: .venv (ensure_venv), helm (ensure_helm, built with
# Go into target/tools/bin), checkov (ensure_checkov, its own virtualenv).
# Writes what it renders to target/chart/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
ensure_helm
ensure_checkov

chart=deploy/helm/cognito-identity-gateway
out=target/chart
rm -rf "$out"
mkdir -p "$out"
python=$VENV/bin/python
passed=0
failures=0
ok() {
    echo "ok: $*"
    passed=$((passed + 1))
}
fail() {
    echo "FAILED: $*" >&2
    failures=$((failures + 1))
}

# helm says on standard error, each time it loads the chart, that it
# follows files/alerts.yaml; the link is checked once, below.
helm_quiet() {
    local status=0
    helm "$@" 2> >(grep -v 'found symbolic link in path' >&2) || status=$?
    return "$status"
}

oldest=1.30.0
newest=$("$python" tests/chart_check.py newest-kubernetes)

if "$python" tests/chart_check.py values "$chart"; then
    ok "every value documented, in the schema and in README.md"
else
    fail "values.yaml, values.schema.json and README.md disagree"
fi

for example in deploy/examples/*.yaml tests/chart/*.yaml; do
    name=$(basename "$example" .yaml)
    [[ $example == tests/* ]] && name=test-$name
    if helm_quiet lint --strict "$chart" -f "$example" >"$out/$name.lint" 2>&1; then
        ok "$name: helm lint --strict"
    else
        fail "$name: helm lint --strict"
        cat "$out/$name.lint" >&2
    fi
    for version in "$oldest" "$newest"; do
        rendered=$out/$name-$version.yaml
        if ! helm_quiet template gw "$chart" -n identity -f "$example" \
            --kube-version "$version" >"$rendered"; then
            fail "$name: helm template for Kubernetes $version"
            continue
        fi
        skipped=$("$python" tests/chart_check.py core "$rendered" "$out/$name-$version.core.yaml")
        if validated=$("$VENV/bin/kubernetes-validate" --strict -k "$version" \
            "$out/$name-$version.core.yaml" 2>&1) \
            && ! grep -q "Couldn't find schema" <<<"$validated"; then
            ok "$name: Kubernetes $version schemas${skipped:+ (custom resources left out: $skipped)}"
        else
            fail "$name: Kubernetes $version schemas"
            grep -v '^INFO' <<<"$validated" >&2
        fi
    done
    rendered=$out/$name-$newest.yaml
    # The examples only: a test's sidecar stands for one of the user's.
    if [[ $example == deploy/* ]]; then
        if "$CHECKOV_VENV/bin/checkov" --skip-download --quiet --compact \
            --framework kubernetes -f "$rendered" >"$out/$name.checkov" 2>&1; then
            ok "$name: checkov"
        else
            fail "$name: checkov"
            cat "$out/$name.checkov" >&2
        fi
    fi
    if "$python" tests/chart_check.py deployment "$rendered"; then
        ok "$name: the Deployment's grace period, mounts, probes and security context"
    else
        fail "$name: the Deployment"
    fi
done

# The PrometheusRule reads files/alerts.yaml, a link out of the chart.
if [ -L "$chart/files/alerts.yaml" ] \
    && "$python" tests/chart_check.py alerts "$out/production-$newest.yaml" deploy/monitoring/alerts.yaml; then
    ok "the PrometheusRule's spec is deploy/monitoring/alerts.yaml, through files/alerts.yaml"
else
    fail "the PrometheusRule's spec is not deploy/monitoring/alerts.yaml"
fi

# What must not render.
refused() { # WHAT MESSAGE VALUES...
    local what=$1 message=$2
    shift 2
    local said
    if said=$(helm_quiet template gw "$chart" "$@" 2>&1); then
        fail "$what: rendered"
    elif grep -q -- "$message" <<<"$said"; then
        ok "$what: refused ($message)"
    else
        fail "$what: refused, but not for '$message': $said"
    fi
}
cat >"$out/short-grace.yaml" <<'EOF'
shutdown:
  preStopSleepSeconds: 5
  drainSeconds: 20
terminationGracePeriodSeconds: 25
EOF
refused "a grace period no longer than the pause and the drain" \
    "terminationGracePeriodSeconds 25 is too short: the pod needs more than 25 s" -f "$out/short-grace.yaml"
refused "a grace period without room for the audit log's flush" \
    "needs more than 30 s" -f deploy/examples/production.yaml \
    --set traces.endpoint= --set terminationGracePeriodSeconds=30
cat >"$out/unknown-value.yaml" <<'EOF'
gateway:
  regoin: eu-west-1
EOF
refused "a value the schema does not know (template)" "additional properties 'regoin' not allowed" \
    -f "$out/unknown-value.yaml"
refused "a value the schema does not know, at the top" "additional properties 'replicas' not allowed" \
    --set replicas=3
if helm_quiet lint --strict "$chart" -f "$out/unknown-value.yaml" >"$out/unknown-value.lint" 2>&1; then
    fail "a value the schema does not know: helm lint passed"
elif grep -q "additional properties 'regoin' not allowed" "$out/unknown-value.lint"; then
    ok "a value the schema does not know: helm lint fails"
else
    fail "a value the schema does not know: helm lint failed otherwise"
    cat "$out/unknown-value.lint" >&2
fi
refused "no policy, and serving every caller not asked for" "policy.enabled is off" \
    --set policy.enabled=false
refused "the mesh's header with TLS" "callerIdentity.header is for plaintext listeners" \
    -f deploy/examples/production.yaml --set callerIdentity.header=l5d-client-id
refused "the audit log without its key" "audit.enabled needs audit.hmacKeySecret.name" \
    --set audit.enabled=true

echo "$passed passed, $failures failed"
[ "$failures" = 0 ]
