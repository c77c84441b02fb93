"""Tests of check_queries.py on a hand-written scrape (testdata/scrape.txt,
every family the gateway exposes, with series): the project's own alerts
and dashboard pass, and a misspelt metric or label in either is caught.

    python3 -m pytest tests/monitoring -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHECKER = HERE / "check_queries.py"
SCRAPE = HERE / "testdata" / "scrape.txt"
ALERTS = ROOT / "deploy" / "monitoring" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "dashboard.json"

sys.path.insert(0, str(HERE))
import check_queries  # noqa: E402


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The checker as the live-scrape test runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, str(CHECKER), *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )


def rules(tmp_path: Path, expr: str, name: str = "Broken") -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "groups:\n"
        "  - name: test\n"
        "    rules:\n"
        f"      - alert: {name}\n"
        "        expr: |\n"
        f"          {expr}\n"
        "        labels:\n"
        "          severity: warning\n",
        encoding="utf-8",
    )
    return path


def dashboard(tmp_path: Path, edit) -> Path:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    edit(doc)
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def targets(doc):
    for panel in doc["panels"]:
        yield from panel.get("targets", [])


def test_the_project_alerts_and_dashboard_pass():
    done = run("--scrape", SCRAPE, ALERTS, DASHBOARD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_a_misspelt_metric_in_an_alert_is_named(tmp_path):
    path = rules(tmp_path, "sum(rate(gateway_cache_hit_total[5m])) > 0", name="CacheTypo")
    done = run("--scrape", SCRAPE, path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{path}: group test: alert CacheTypo (warning): metric gateway_cache_hit_total: "
        "not in the scrape"
    ]


def test_a_misspelt_label_in_an_alert_is_named(tmp_path):
    path = rules(
        tmp_path,
        'sum by (namespace, opration) (rate(cognito_upstream_calls_total{cde!="OK"}[5m])) > 0',
    )
    done = run("--scrape", SCRAPE, path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert lines[0].endswith(
        "label cde: not on any series of cognito_upstream_calls_total")
    assert lines[1].endswith(
        "label opration: not on any series of cognito_upstream_calls_total")


def test_a_misspelt_metric_in_a_dashboard_panel_is_named(tmp_path):
    def edit(doc):
        for target in targets(doc):
            target["expr"] = target["expr"].replace(
                "grpc_server_handled_total", "grpc_server_handeld_total")
    done = run("--scrape", SCRAPE, dashboard(tmp_path, edit))
    assert done.returncode == 1
    assert "panel 'Request rate by method and code' target A: metric " \
           "grpc_server_handeld_total: not in the scrape" in done.stdout


def test_a_misspelt_label_in_a_dashboard_panel_is_named(tmp_path):
    def edit(doc):
        for target in targets(doc):
            target["expr"] = target["expr"].replace("grpc_method", "grpc_methd")
    done = run("--scrape", SCRAPE, dashboard(tmp_path, edit))
    assert done.returncode == 1
    assert ("panel 'Latency p50 and p99 by method' target A: label grpc_methd: "
            "not on any series of grpc_server_handling_seconds") in done.stdout


def test_a_misspelt_label_in_a_variable_query_is_named(tmp_path):
    def edit(doc):
        for var in doc["templating"]["list"]:
            if var["name"] == "job":
                var["query"]["query"] = 'label_values(gateway_build_info, versoin)'
    done = run("--scrape", SCRAPE, dashboard(tmp_path, edit))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{tmp_path / 'dashboard.json'}: variable job: label versoin: "
        "not on any series of gateway_build_info"
    ]


def test_a_panel_in_a_collapsed_row_is_read(tmp_path):
    def edit(doc):
        doc["panels"].append({
            "type": "row", "title": "Folded", "collapsed": True, "panels": [{
                "type": "timeseries", "title": "Inside",
                "targets": [{"refId": "A", "expr": "sum(rate(gateway_nope_total[$__rate_interval]))"}],
            }],
        })
    done = run("--scrape", SCRAPE, dashboard(tmp_path, edit))
    assert done.returncode == 1
    assert "panel 'Inside' target A: metric gateway_nope_total" in done.stdout


@pytest.mark.parametrize("asked, found", [
    ("gateway_cache_hits_total", True),
    ("gateway_cache_hits", False),  # a counter is asked for by its _total series
    ("grpc_server_handling_seconds_bucket", True),
    ("grpc_server_handling_seconds_count", True),
    ("grpc_server_handling_seconds", False),  # a histogram by its _bucket, _sum, _count
    ("gateway_upstream_up", True),
])
def test_sample_names_by_type(tmp_path, asked, found):
    done = run("--scrape", SCRAPE, rules(tmp_path, f"{asked} > 0"))
    assert done.returncode == (0 if found else 1), done.stdout


OPEN_METRICS = """\
# TYPE gateway_cache_hits counter
# HELP gateway_cache_hits Answers served from the cache.
gateway_cache_hits_total 3
gateway_cache_hits_created 1.7e9
# TYPE cognito_upstream_duration_seconds histogram
cognito_upstream_duration_seconds_bucket{operation="GetId",code="OK",le="+Inf"} 1 # {trace_id="0af7"} 0.2
cognito_upstream_duration_seconds_sum{operation="GetId",code="OK"} 0.2
cognito_upstream_duration_seconds_count{operation="GetId",code="OK"} 1
# EOF
"""


def test_an_open_metrics_scrape_is_read_too(tmp_path):
    scrape = tmp_path / "scrape.txt"
    scrape.write_text(OPEN_METRICS, encoding="utf-8")
    ok = rules(tmp_path, "sum by (operation) (rate(cognito_upstream_duration_seconds_bucket"
                         "{code=\"OK\"}[5m])) > 0 and rate(gateway_cache_hits_total[5m]) > 0")
    assert run("--scrape", scrape, ok).returncode == 0
    trace = rules(tmp_path, "sum by (trace_id) (cognito_upstream_duration_seconds_count) > 0")
    done = run("--scrape", scrape, trace)
    assert done.returncode == 1, "an exemplar's labels are not the series'"


def without_series(family: str) -> str:
    """The hand-written scrape with the family's `# TYPE` but no series."""
    return "".join(
        line for line in SCRAPE.read_text(encoding="utf-8").splitlines(keepends=True)
        if line.startswith("#") or not line.startswith(family)
    )


def test_labels_of_a_family_with_no_series_are_unverifiable(tmp_path):
    scrape = tmp_path / "scrape.txt"
    scrape.write_text(without_series("gateway_connections_closed_total"), encoding="utf-8")
    done = run("--scrape", scrape, ALERTS, DASHBOARD)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{DASHBOARD}: panel 'Connections closed by reason' target A: "
        "label reason: unverifiable: no series (gateway_connections_closed_total)"
    ]
    allowed = run("--scrape", scrape, "--allow-empty", "gateway_connections_closed_total",
                  ALERTS, DASHBOARD)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


def test_a_metric_of_a_family_with_no_series_is_known(tmp_path):
    scrape = tmp_path / "scrape.txt"
    scrape.write_text(without_series("gateway_audit_lines_dropped_total"), encoding="utf-8")
    assert run("--scrape", scrape, ALERTS).returncode == 0


def test_words_of_promql_and_added_labels_are_not_looked_for(tmp_path):
    expr = (
        'sum without (pod) (rate(gateway_cache_hits_total{job=~"$job", instance!=""}[5m] offset 1h))'
        ' / on (namespace, job) group_left () sum by (namespace, job) (gateway_upstream_up)'
        ' > bool 0 unless absent(gateway_build_info) or vector(1) and time() > 0'
        ' or label_replace(gateway_build_info, "release", "$1", "version", "(.*)")'
        ' or count_values("value", gateway_upstream_up)'
        ' or sum by (release, value) (label_replace(gateway_build_info, "release", "", "version", ""))'
        ' or max_over_time(gateway_upstream_up[10m:1m] @ end())'
        ' or histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket[5m])))'
    )
    done = run("--scrape", SCRAPE, rules(tmp_path, expr))
    assert done.returncode == 0, done.stdout


def test_grouping_labels_are_looked_for_on_the_metrics_they_group(tmp_path):
    # `operation` is on cognito_upstream_calls_total, not on
    # grpc_server_handled_total, which this aggregation groups.
    expr = ("sum by (operation) (rate(grpc_server_handled_total[5m]))"
            " / ignoring (operation) sum(rate(cognito_upstream_calls_total[5m]))")
    done = run("--scrape", SCRAPE, rules(tmp_path, expr))
    assert done.returncode == 1
    assert done.stdout.rstrip().endswith(
        "label operation: not on any series of grpc_server_handled_total")


def test_scrapes_given_twice_count_as_one(tmp_path):
    text = SCRAPE.read_text(encoding="utf-8")
    cut = text.index("# HELP gateway_policy_decisions_total")
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text(text[:cut], encoding="utf-8")
    second.write_text(text[cut:], encoding="utf-8")
    assert run("--scrape", first, ALERTS, DASHBOARD).returncode == 1
    done = run("--scrape", first, "--scrape", second, ALERTS, DASHBOARD)
    assert done.returncode == 0, done.stdout


def test_an_unreadable_file_is_an_error_of_its_own(tmp_path):
    path = tmp_path / "alerts.txt"
    path.write_text("groups: []\n", encoding="utf-8")
    assert run("--scrape", SCRAPE, path).returncode == 2


def test_the_yaml_reader_reads_the_rules_as_yaml_does():
    yaml = pytest.importorskip("yaml")
    for path in (ALERTS, ROOT / "deploy" / "monitoring" / "tests" / "alerts_test.yaml"):
        text = path.read_text(encoding="utf-8")
        assert check_queries.load_yaml(text) == yaml.safe_load(text), path


def test_every_expression_is_read():
    queries = check_queries.queries_of(ALERTS) + check_queries.queries_of(DASHBOARD)
    alerts = [q for q in queries if q.file.endswith("alerts.yaml")]
    assert len(alerts) == 14
    assert {q.where.split(": ", 1)[0] for q in queries if "variable" in q.where} == {
        "variable namespace", "variable job", "variable instance"}
    for q in queries:
        if q.bare_label is None:
            uses = check_queries.analyse(q.expr)
            assert uses.metrics, (q.where, q.expr)
