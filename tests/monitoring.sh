#!/usr/bin/env bash
# Checks deploy/monitoring: the alerting rules load (promtool check rules)
# and pass their unit tests (promtool test rules); the dashboard is JSON and
# every query in it is PromQL; the alerts and the dashboard ask only for
# metrics and labels the gateway exposes (check_queries.py on a scrape of
# every family, tests/monitoring/testdata/scrape.txt), and the checker's own
# tests pass. promtool comes from Debian's prometheus package when missing.
#
#     tests/monitoring.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

MONITORING=deploy/monitoring

if ! command -v promtool >/dev/null; then
    install_packages --no-install-recommends prometheus
fi

echo "== promtool check rules" >&2
promtool check rules "$MONITORING/alerts.yaml"

echo "== promtool test rules" >&2
promtool test rules "$MONITORING/tests/alerts_test.yaml"

echo "== dashboard" >&2
python3 -m json.tool "$MONITORING/dashboard.json" >/dev/null
# Each panel's and variable's query, its Grafana variables replaced, as a
# recording rule: promtool then parses them as Prometheus would.
queries=$(mktemp --suffix=.yaml)
trap 'rm -f "$queries"' EXIT
python3 - "$MONITORING/dashboard.json" >"$queries" <<'EOF'
import json
import sys
from pathlib import Path

sys.path.insert(0, "tests/monitoring")
import check_queries

print("groups:\n  - name: dashboard\n    rules:")
for n, q in enumerate(check_queries.dashboard_queries(Path(sys.argv[1]))):
    if q.bare_label is None:
        expr = check_queries.grafana_to_promql(q.expr)
        print(f"      - record: dashboard:query_{n}")
        print(f"        expr: {json.dumps(expr)}  # {q.where}")
EOF
promtool check rules "$queries"

echo "== names against a scrape of every family" >&2
python3 tests/monitoring/check_queries.py --scrape tests/monitoring/testdata/scrape.txt \
    "$MONITORING/alerts.yaml" "$MONITORING/dashboard.json"

echo "== the checker's tests" >&2
if python3 -c 'import pytest' 2>/dev/null; then
    python3 -m pytest tests/monitoring -q
else
    ensure_venv
    "$VENV/bin/python" -m pytest tests/monitoring -q
fi
