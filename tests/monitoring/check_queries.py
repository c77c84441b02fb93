#!/usr/bin/env python3
"""Checks that the alerts and the dashboard ask for what the gateway exposes.

    python3 tests/monitoring/check_queries.py --scrape SCRAPE \
        deploy/monitoring/alerts.yaml deploy/monitoring/dashboard.json

SCRAPE is a text exposition scraped from a running gateway's /metrics
(Prometheus text 0.0.4, or OpenMetrics); `--scrape` given more than once
reads the scrapes as one (what one gateway cannot show at once, e.g. TLS
and a plaintext listener's identity header). Every PromQL expression of the
files is read: each rule's `expr` in a rules file (YAML: top-level `groups`,
as Prometheus and a PrometheusRule's spec have it), and in a Grafana
dashboard (JSON) every panel target's `expr` and every query variable. For
each metric name and label name an expression uses, the scrape must hold it:

- a counter is asked for by its sample name (`x_total`), a histogram by
  `x_bucket`, `x_sum` or `x_count`, a summary by `x`, `x_sum`, `x_count`;
- a label in a selector (`x{label="v"}`) must be on a series of that
  metric; one in `by`, `without`, `on`, `ignoring`, `group_left`,
  `group_right` (or a label_replace source, or label_values' label) on a
  series of a metric of the expression it groups;
- labels Prometheus adds (job, instance, namespace, pod), `le`, `quantile`
  and `__name__` are not looked for; neither are PromQL's own words.

A metric family the scrape declares (`# TYPE`) with no series has a known
name but no known labels: the labels used with it are reported
"unverifiable: no series", unless `--allow-empty FAMILY` names it.

Exits 0 when every name is found, 1 listing each one that is not (file,
alert or panel, name, why), 2 when a file cannot be read. Standard library
only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Labels the scraper adds, or that belong to the exposition's structure.
IGNORED_LABELS = frozenset({"job", "instance", "namespace", "pod", "le", "__name__", "quantile"})

AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
})

FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "double_exponential_smoothing", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
    "tanh", "time", "timestamp", "vector", "year",
})

KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "start", "end", "inf", "nan",
})

# Clauses followed by a parenthesised list of label names.
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

# Suffixes of the samples of a family, by type.
SAMPLE_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


# --- The scrape ---------------------------------------------------------------


@dataclass
class Family:
    name: str
    type: str = "untyped"
    labels: set[str] = field(default_factory=set)
    has_series: bool = False


@dataclass
class Scrape:
    families: dict[str, Family] = field(default_factory=dict)
    # A sample name (as a query writes it) -> its family.
    samples: dict[str, Family] = field(default_factory=dict)

    def family(self, metric: str) -> Family | None:
        return self.samples.get(metric)

    def find_family(self, name: str) -> Family | None:
        """A family by its own name or by one of its sample names."""
        return self.families.get(name) or self.samples.get(name)


def sample_names(name: str, kind: str) -> list[str]:
    if kind == "counter":
        # 0.0.4 names a counter by its `_total` series; OpenMetrics without.
        base = name[: -len("_total")] if name.endswith("_total") else name
        return [base + "_total", base + "_created"]
    if kind in SAMPLE_SUFFIXES:
        return [name + suffix for suffix in SAMPLE_SUFFIXES[kind]]
    return [name]


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_sample(line: str) -> tuple[str, set[str]] | None:
    """The name and label names of a sample line (an exemplar after `#` is
    not read)."""
    m = _NAME.match(line)
    if not m:
        return None
    labels: set[str] = set()
    pos = m.end()
    if line[pos:pos + 1] == "{":
        pos += 1
        while pos < len(line) and line[pos] != "}":
            lm = _LABEL.match(line, pos)
            if not lm:
                return None
            labels.add(lm.group(1))
            pos = lm.end()
    return m.group(0), labels


def parse_scrape(text: str) -> Scrape:
    scrape = Scrape()
    derived: dict[str, Family] = {}
    seen: dict[str, Family] = {}

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                name, kind = parts[2], parts[3].strip().lower()
                fam = scrape.families.setdefault(name, Family(name))
                fam.type = kind
                for sample in sample_names(name, kind):
                    derived.setdefault(sample, fam)
            continue
        sample = parse_sample(line)
        if sample is None:
            continue
        name, labels = sample
        # Its family: the one whose type names it, else one of its own.
        fam = seen.get(name) or derived.get(name) or scrape.families.get(name)
        if fam is None:
            fam = scrape.families[name] = Family(name)
        seen[name] = fam
        fam.has_series = True
        fam.labels |= labels

    # A family with series is asked for by the names its series have; one
    # without, by the names its type gives its series.
    scrape.samples = dict(seen)
    for name, fam in derived.items():
        if not fam.has_series:
            scrape.samples.setdefault(name, fam)
    return scrape


# --- A subset of YAML: what rules files are written in --------------------------


class YamlError(ValueError):
    pass


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (outside quotes)."""
    quote = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'" and (i == 0 or line[i - 1] in " \t:[{,-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
        i += 1
    return line.rstrip()


def _scalar(text: str):
    text = text.strip()
    if not text:
        return None
    if text[0] == '"':
        return json.loads(text)
    if text[0] == "'":
        return text[1:-1].replace("''", "'")
    if text[0] in "[{":
        return _flow(text)
    if text in ("null", "~"):
        return None
    return text


def _flow(text: str):
    """A flow sequence or mapping of scalars (nesting allowed)."""
    pos = 0

    def value():
        nonlocal pos
        while text[pos] == " ":
            pos += 1
        if text[pos] in "[{":
            close = "]" if text[pos] == "[" else "}"
            is_map = text[pos] == "{"
            pos += 1
            items: list | dict = {} if is_map else []
            while True:
                while text[pos] in " ,":
                    pos += 1
                if text[pos] == close:
                    pos += 1
                    return items
                if is_map:
                    key = scalar_until(":")
                    pos += 1
                    items[key] = value()
                else:
                    items.append(value())
        return scalar_until(",]}")

    def scalar_until(stops: str):
        nonlocal pos
        start = pos
        quote = None
        while pos < len(text):
            ch = text[pos]
            if quote:
                if ch == "\\" and quote == '"':
                    pos += 1
                elif ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch in stops:
                break
            pos += 1
        return _scalar(text[start:pos])

    try:
        return value()
    except IndexError as e:
        raise YamlError(f"unfinished flow collection: {text}") from e


def load_yaml(text: str):
    """Block mappings and sequences, plain, quoted and block scalars, and
    simple flow collections: enough for Prometheus rules files."""
    lines = []
    for raw in text.splitlines():
        if raw.strip() in ("---", "..."):
            continue
        lines.append(raw)
    pos = 0

    def indent_of(line: str) -> int:
        return len(line) - len(line.lstrip(" "))

    def next_content() -> int | None:
        nonlocal pos
        while pos < len(lines) and not _strip_comment(lines[pos]).strip():
            pos += 1
        return indent_of(lines[pos]) if pos < len(lines) else None

    def block_scalar(header: str, parent: int) -> str:
        nonlocal pos
        style, chomp = header[0], ""
        for ch in header[1:]:
            if ch in "+-":
                chomp = ch
        body: list[str] = []
        block_indent = None
        while pos < len(lines):
            line = lines[pos]
            if line.strip():
                ind = indent_of(line)
                if block_indent is None:
                    block_indent = ind
                if ind < block_indent or ind <= parent:
                    break
                body.append(line[block_indent:])
            else:
                body.append("")
            pos += 1
        while body and body[-1] == "" and chomp != "+":
            body.pop()
        if style == "|":
            out = "\n".join(body)
        else:
            out, prev_blank = "", True
            for b in body:
                if b == "":
                    out += "\n"
                    prev_blank = True
                else:
                    out += ("" if prev_blank else " ") + b
                    prev_blank = False
        return out if chomp == "-" else out + "\n"

    def inline_value(rest: str, parent: int):
        """The value after `key:` or `- ` on its line (and any continuation)."""
        nonlocal pos
        rest = _strip_comment(rest).strip()
        if rest[:1] in ("|", ">"):
            return block_scalar(rest, parent)
        if rest == "":
            ind = next_content()
            if ind is None or ind < parent or (ind == parent and not lines[pos].lstrip().startswith("-")):
                return None
            return block(ind)
        # A plain or quoted scalar may go on over more indented lines.
        parts = [rest]
        while pos < len(lines):
            line = _strip_comment(lines[pos])
            if not line.strip() or indent_of(lines[pos]) <= parent:
                break
            parts.append(line.strip())
            pos += 1
        return _scalar(" ".join(parts))

    def block(indent: int):
        nonlocal pos
        first = lines[pos].lstrip()
        if first.startswith("- ") or first == "-":
            items = []
            while next_content() == indent and lines[pos].lstrip()[:1] == "-":
                content = lines[pos][indent + 1:]
                pos += 1
                stripped = content.lstrip(" ")
                inner = indent + 1 + len(content) - len(stripped)
                if re.match(r"^[^\s\"'\[{][^:]*:(\s|$)", _strip_comment(stripped)) \
                        or stripped.startswith("- ") or stripped.rstrip() == "-":
                    # `- key: value` opens a mapping at the key's column,
                    # `- - item` a sequence.
                    pos -= 1
                    lines[pos] = " " * inner + stripped
                    items.append(block(inner))
                else:
                    items.append(inline_value(stripped, indent))
            return items
        mapping = {}
        while next_content() == indent:
            line = _strip_comment(lines[pos])
            m = re.match(r"^\s*(\"[^\"]*\"|'[^']*'|[^:]+?)\s*:(\s+|$)(.*)$", line)
            if not m:
                raise YamlError(f"line {pos + 1}: expected `key: value`: {lines[pos].strip()}")
            key = _scalar(m.group(1))
            pos += 1
            mapping[key] = inline_value(m.group(3), indent)
        return mapping

    ind = next_content()
    if ind is None:
        return None
    doc = block(ind)
    if next_content() is not None:
        raise YamlError(f"line {pos + 1}: unexpected indentation")
    return doc


# --- PromQL ---------------------------------------------------------------------


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![a-zA-Z0-9_:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:])
    """,
    re.VERBOSE,
)

# Grafana's interval variables, which stand for a duration.
_GRAFANA_DURATION = re.compile(r"\$(?:__rate_interval|__interval|__range)(?:_ms|_s)?\b|\$\{__(?:rate_interval|interval|range)\}")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]*\]\]")


class PromQLError(ValueError):
    pass


def grafana_to_promql(expr: str) -> str:
    """Replaces Grafana's variables outside strings: durations by 5m, others
    (a variable standing for a name) by a marker that is skipped."""
    out, pos = [], 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', expr):
        out.append(_substitute(expr[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_substitute(expr[pos:]))
    return "".join(out)


def _substitute(text: str) -> str:
    text = _GRAFANA_DURATION.sub("5m", text)
    return _GRAFANA_VARIABLE.sub("__grafana_variable__", text)


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r}")
        kind = m.lastgroup
        if kind != "space":
            tokens.append((kind, m.group(0)))
        pos = m.end()
    return tokens


def _unquote(token: str) -> str:
    if token[0] == "`":
        return token[1:-1]
    if token[0] == "'":
        token = '"' + token[1:-1].replace('\\\'', "'").replace('"', '\\"') + '"'
    return json.loads(token)


@dataclass
class Uses:
    """What one expression asks for."""

    # (metric, token index)
    metrics: list[tuple[str, int]] = field(default_factory=list)
    # (label, metric) for labels in a selector
    selector_labels: list[tuple[str, str]] = field(default_factory=list)
    # (label, first token index, last token index) for labels that group:
    # the metrics used between the indices are the ones that should carry it
    grouping_labels: list[tuple[str, int, int]] = field(default_factory=list)
    # labels an expression makes (label_replace, label_join, count_values)
    made_labels: set[str] = field(default_factory=set)


def analyse(expr: str) -> Uses:
    tokens = tokenize(grafana_to_promql(expr))
    uses = Uses()
    n = len(tokens)
    # The matching parenthesis of each opening one.
    closing: dict[int, int] = {}
    stack: list[int] = []
    for i, (kind, text) in enumerate(tokens):
        if text == "(":
            stack.append(i)
        elif text == ")":
            if not stack:
                raise PromQLError("unbalanced parentheses")
            closing[stack.pop()] = i
    if stack:
        raise PromQLError("unbalanced parentheses")
    opening = {c: o for o, c in closing.items()}

    def aggregation_scope(clause: int, after: int) -> tuple[int, int]:
        """The tokens a `by`/`without` list at `clause` groups."""
        # `sum by (a) ( expr )`: the parenthesis after the list.
        if after < n and tokens[after][1] == "(":
            return after, closing[after]
        # `sum ( expr ) by (a)`: the parenthesis before the clause.
        if clause > 0 and tokens[clause - 1][1] == ")":
            return opening[clause - 1], clause - 1
        return 0, n - 1

    def label_list(i: int) -> tuple[list[str], int]:
        """The labels of `( a, b )` opening at i, and the index after it."""
        end = closing[i]
        names = [t for k, t in tokens[i + 1:end] if k in ("ident", "string")]
        return [_unquote(t) if t[0] in "\"'`" else t for t in names], end + 1

    def matchers(i: int) -> tuple[list[tuple[str, str, str]], int]:
        """The matchers of `{ ... }` opening at i, and the index after it."""
        out, j = [], i + 1
        while j < n and tokens[j][1] != "}":
            if tokens[j][0] in ("ident", "string") and j + 2 < n and tokens[j + 1][0] == "op" \
                    and tokens[j + 1][1] in ("=", "!=", "=~", "!~"):
                name = tokens[j][1] if tokens[j][0] == "ident" else _unquote(tokens[j][1])
                value = _unquote(tokens[j + 2][1]) if tokens[j + 2][0] == "string" else ""
                out.append((name, tokens[j + 1][1], value))
                j += 3
            elif tokens[j][0] == "string":
                # `{"metric.name"}`: a quoted metric name (UTF-8 names).
                out.append(("__name__", "=", _unquote(tokens[j][1])))
                j += 1
            else:
                j += 1
        return out, j + 1

    # Function calls whose string arguments name labels.
    calls: list[tuple[str, int]] = []  # (function, index of its "(")
    i = 0
    while i < n:
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < n else None
        if kind == "op" and text == "[":
            # A range or subquery: durations only.
            depth = 1
            i += 1
            while i < n and depth:
                depth += {"[": 1, "]": -1}.get(tokens[i][1], 0)
                i += 1
            continue
        if kind == "ident" and text.lower() in LABEL_LISTS and nxt == "(":
            names, after = label_list(i + 1)
            lowered = text.lower()
            if lowered in ("by", "without"):
                scope = aggregation_scope(i, after)
            else:
                scope = (0, n - 1)
            for name in names:
                uses.grouping_labels.append((name, *scope))
            i = after
            continue
        if kind == "ident" and nxt == "(" and (text in FUNCTIONS or text in AGGREGATIONS
                                               or text.lower() not in KEYWORDS):
            calls.append((text, i + 1))
            i += 1
            continue
        if kind == "ident" and text.lower() in KEYWORDS:
            i += 1
            continue
        if kind == "ident" and text == "__grafana_variable__":
            i += 1
            continue
        if kind == "ident" or (kind == "op" and text == "{"):
            metric = None
            if kind == "ident":
                if text in FUNCTIONS or text in AGGREGATIONS:
                    i += 1
                    continue
                metric = text
                j = i + 1
            else:
                j = i
            found: list[tuple[str, str, str]] = []
            if j < n and tokens[j][1] == "{":
                found, j = matchers(j)
            for name, op, value in found:
                if name == "__name__" and op == "=" and metric is None:
                    metric = value
            if metric is not None:
                uses.metrics.append((metric, i))
                for name, _, _ in found:
                    if name != "__name__":
                        uses.selector_labels.append((name, metric))
            else:
                for name, _, _ in found:
                    if name != "__name__":
                        uses.grouping_labels.append((name, 0, n - 1))
            i = j
            continue
        i += 1

    # Labels named by string arguments.
    for function, open_i in calls:
        args = _arguments(tokens, open_i, closing[open_i])
        strings = [
            _unquote(arg[0][1]) if len(arg) == 1 and arg[0][0] == "string" else None
            for arg in args
        ]
        scope = (open_i, closing[open_i])
        if function == "label_replace" and len(strings) >= 5:
            if strings[1]:
                uses.made_labels.add(strings[1])
            if strings[3]:
                uses.grouping_labels.append((strings[3], *scope))
        elif function == "label_join" and len(strings) >= 3:
            if strings[1]:
                uses.made_labels.add(strings[1])
            for src in strings[3:]:
                if src:
                    uses.grouping_labels.append((src, *scope))
        elif function == "count_values" and strings and strings[0]:
            uses.made_labels.add(strings[0])
        elif function in ("sort_by_label", "sort_by_label_desc"):
            for src in strings[1:]:
                if src:
                    uses.grouping_labels.append((src, *scope))
    return uses


def _arguments(tokens, open_i: int, close_i: int) -> list[list[tuple[str, str]]]:
    args: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for tok in tokens[open_i + 1:close_i]:
        if tok[1] in "([{":
            depth += 1
        elif tok[1] in ")]}":
            depth -= 1
        if tok[1] == "," and depth == 0:
            args.append([])
        else:
            args[-1].append(tok)
    return args


# --- Where the expressions are --------------------------------------------------


@dataclass
class Query:
    file: str
    where: str
    expr: str
    # label_values(label) with no metric: the label may be on any family.
    bare_label: str | None = None


def rules_queries(path: Path) -> list[Query]:
    doc = load_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise YamlError(f"{path}: no top-level `groups` list")
    out = []
    for group in doc["groups"]:
        gname = group.get("name", "?") if isinstance(group, dict) else "?"
        for rule in (group.get("rules") or []) if isinstance(group, dict) else []:
            if not isinstance(rule, dict) or rule.get("expr") is None:
                continue
            if "alert" in rule:
                where = f"alert {rule['alert']}"
                severity = (rule.get("labels") or {}).get("severity")
                if severity:
                    where += f" ({severity})"
            else:
                where = f"record {rule.get('record')}"
            out.append(Query(str(path), f"group {gname}: {where}", str(rule["expr"])))
    return out


def recorded_names(path: Path) -> set[str]:
    if path.suffix not in (".yaml", ".yml"):
        return set()
    doc = load_yaml(path.read_text(encoding="utf-8")) or {}
    return {
        str(rule["record"])
        for group in doc.get("groups") or []
        for rule in group.get("rules") or []
        if isinstance(rule, dict) and rule.get("record")
    }


_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*)\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((.*)\)\s*$", re.S)


def variable_query(file: str, where: str, query: str) -> list[Query]:
    m = _LABEL_VALUES.match(query)
    if m:
        inner = m.group(1)
        # The label is the last argument; a metric or selector comes before it.
        head, _, label = inner.rpartition(",")
        label = label.strip()
        if not head.strip():
            return [Query(file, where, "", bare_label=label)]
        # As a selector that groups by the label, so that it is checked
        # against the selector's metric.
        return [Query(file, where, f"group by ({label}) ({head.strip()})")]
    m = _QUERY_RESULT.match(query)
    if m:
        return [Query(file, where, m.group(1))]
    if re.match(r"^\s*(metrics|label_names)\s*\(", query):
        return []
    return [Query(file, where, query)]


def dashboard_queries(path: Path) -> list[Query]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    file = str(path)
    out: list[Query] = []
    for var in (doc.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if isinstance(query, str) and query.strip():
            out += variable_query(file, f"variable {var.get('name')}", query)

    def panels(items):
        for panel in items or []:
            yield panel
            yield from panels(panel.get("panels"))

    for panel in panels(doc.get("panels")):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if isinstance(expr, str) and expr.strip():
                where = f"panel {panel.get('title')!r} target {target.get('refId', '?')}"
                out.append(Query(file, where, expr))
    return out


# --- The check ------------------------------------------------------------------


def check(queries: list[Query], scrape: Scrape, allow_empty: set[str],
          recorded: set[str]) -> list[str]:
    allowed = {scrape.find_family(name).name for name in allow_empty if scrape.find_family(name)}
    problems: list[str] = []

    def report(q: Query, what: str, why: str):
        line = f"{q.file}: {q.where}: {what}: {why}"
        if line not in problems:
            problems.append(line)

    def label_on(label: str, families: list[Family], q: Query, whose: str):
        if label in IGNORED_LABELS:
            return
        if any(label in f.labels for f in families):
            return
        if any(not f.has_series and f.name in allowed for f in families):
            return  # may be on the series the scrape did not have
        empty = [f for f in families if not f.has_series and f.name not in allowed]
        if empty:
            names = ", ".join(sorted({f.name for f in empty}))
            report(q, f"label {label}", f"unverifiable: no series ({names})")
        elif families or whose:
            report(q, f"label {label}", f"not on any series of {whose or 'the scrape'}")

    for q in queries:
        if q.bare_label is not None:
            label_on(q.bare_label, list(scrape.families.values()), q, "")
            continue
        try:
            uses = analyse(q.expr)
        except PromQLError as e:
            report(q, "expression", f"not PromQL as read here ({e})")
            continue
        found: list[tuple[Family, int]] = []
        for metric, at in uses.metrics:
            fam = scrape.family(metric)
            if fam is None:
                if metric not in recorded:
                    report(q, f"metric {metric}", "not in the scrape")
                continue
            found.append((fam, at))
        for label, metric in uses.selector_labels:
            fam = scrape.family(metric)
            if fam is None:
                continue
            label_on(label, [fam], q, metric)
        for label, first, last in uses.grouping_labels:
            if label in uses.made_labels:
                continue
            inside = [fam for fam, at in found if first <= at <= last]
            if not inside and any(m not in recorded for m, _ in uses.metrics):
                continue  # its metrics are missing: reported already
            label_on(label, inside, q, ", ".join(sorted({f.name for f in inside})) or "")
    return problems


def queries_of(path: Path) -> list[Query]:
    if path.suffix == ".json":
        return dashboard_queries(path)
    if path.suffix in (".yaml", ".yml"):
        return rules_queries(path)
    raise ValueError(f"{path}: neither a rules file (.yaml, .yml) nor a dashboard (.json)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check that the metric and label names of alerting rules and Grafana "
                    "dashboards are in a scrape of the gateway's /metrics.")
    parser.add_argument("--scrape", required=True, type=Path, action="append",
                        help="a text exposition scraped from a running gateway; given more "
                             "than once, the scrapes count as one")
    parser.add_argument("--allow-empty", action="append", default=[], metavar="FAMILY",
                        help="a metric family that may have no series in the scrape (its "
                             "labels go unchecked); may be given more than once")
    parser.add_argument("files", nargs="+", type=Path,
                        help="rules files (.yaml) and Grafana dashboards (.json)")
    args = parser.parse_args(argv)
    try:
        scrape = parse_scrape("\n".join(p.read_text(encoding="utf-8") for p in args.scrape))
        queries: list[Query] = []
        recorded: set[str] = set()
        for path in args.files:
            queries += queries_of(path)
            recorded |= recorded_names(path)
    except (OSError, ValueError) as e:
        print(f"check_queries: {e}", file=sys.stderr)
        return 2
    unknown = [name for name in args.allow_empty if scrape.find_family(name) is None]
    for name in unknown:
        print(f"check_queries: --allow-empty {name}: no such family in the scrape", file=sys.stderr)
    problems = check(queries, scrape, set(args.allow_empty), recorded)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} name(s) the scrape does not hold "
              f"({len(queries)} expressions read)", file=sys.stderr)
        return 1
    print(f"all names found ({len(queries)} expressions read)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
