"""Parses a metrics exposition with Prometheus's own Python parsers and
prints one line per metric family: its name, its type and its number of
samples. Exits 1 when the parser refuses the text.

    python3 tests/metrics/families.py text FILE         # the 0.0.4 text format
    python3 tests/metrics/families.py openmetrics FILE  # OpenMetrics 1.0
"""

import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text


def main() -> int:
    fmt, path = sys.argv[1], sys.argv[2]
    parse = {"text": parse_text, "openmetrics": parse_openmetrics}[fmt]
    with open(path, encoding="utf-8") as f:
        body = f.read()
    try:
        for family in parse(body):
            print(family.name, family.type, len(family.samples))
    except ValueError as e:
        print(f"{fmt} parser refused {path}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
