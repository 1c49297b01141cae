"""docs/operations.md stays true to the metrics the listener serves."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from lhpipe.core import metrics

PAGE = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
_ROW = re.compile(r"^\| `(lhpipe_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)


def documented() -> dict[str, tuple[str, set[str]]]:
    rows = _ROW.findall(PAGE.read_text(encoding="utf-8"))
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def defined() -> dict[str, tuple[str, set[str]]]:
    found: dict[str, tuple[str, set[str]]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, Counter | Gauge | Histogram):
            # prometheus-client has no public accessor for a metric's label names.
            labels = set(metric._labelnames)
            name = metric._name
            kind = metric._type
            found[name + "_total" if kind == "counter" else name] = (kind, labels)
        elif isinstance(metric, metrics.LoopCounter):
            found[metric.name + "_total"] = ("counter", set(metric.labelnames))
        elif isinstance(metric, metrics.LoopHistogram):
            found[metric.name] = ("histogram", set(metric.labelnames))
    return found


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    assert documented() == defined()


def test_every_documented_metric_is_served() -> None:
    exposed = {family.name for family in metrics.REGISTRY.collect()}
    for name in documented():
        assert name.removesuffix("_total") in exposed, name
