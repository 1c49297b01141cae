"""The hot path's metrics (``LoopCounter``, ``LoopHistogram``) expose exactly what
prometheus_client's own ``Counter`` and ``Histogram`` expose for the same updates, in both
exposition formats, except the ``_created`` timestamps' values."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from lhpipe.core import metrics
from lhpipe.core.metrics import LoopCounter, LoopHistogram

BUCKETS = (0.001, 0.0025, 0.01, 0.1, 1, 30)
OBSERVED = (0.0, 0.0005, 0.001, 0.0010001, 0.0025, 0.007, 0.1, 0.5, 1.0, 29.9, 30.0, 31, 1e9)


def _created_masked(text: str) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text)


def _pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    library, ours = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    c1 = Counter("t_out", "out", ["pipeline", "target"], registry=library)
    c2 = LoopCounter("t_out", "out", ["pipeline", "target"], registry=ours)
    h1 = Histogram("t_latency_seconds", "lat", ["pipeline"], buckets=BUCKETS, registry=library)
    h2 = LoopHistogram("t_latency_seconds", "lat", ["pipeline"], registry=ours, buckets=BUCKETS)
    for pipeline in ("a", "b"):
        for value in OBSERVED:
            h1.labels(pipeline).observe(value)
            h2.labels(pipeline).observe(value)
        for amount in (1, 2.5, 0):
            c1.labels(pipeline, "run_wf:x").inc(amount)
            c2.labels(pipeline, "run_wf:x").inc(amount)
    c1.labels("c", "to_log")  # a series created and never incremented shows as 0
    c2.labels("c", "to_log")
    return library, ours


@pytest.mark.parametrize("exposition", [generate_latest, generate_openmetrics])
def test_the_loop_metrics_expose_what_the_library_classes_expose(exposition) -> None:  # type: ignore[no-untyped-def]
    library, ours = _pair()
    expected = _created_masked(exposition(library).decode())
    assert "t_latency_seconds_bucket" in expected and 't_out_total{pipeline="a"' in expected
    assert _created_masked(exposition(ours).decode()) == expected


def test_a_counter_refuses_a_negative_amount_and_wrong_labels() -> None:
    counter = LoopCounter("t_refuse", "doc", ["pipeline"], registry=CollectorRegistry())
    with pytest.raises(ValueError):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError):
        counter.labels("a", "b")
    assert counter.labels("a").value == 0


def test_the_engine_metrics_of_the_hot_path_are_loop_metrics_in_the_registry() -> None:
    """The per-record and per-request metrics are the cheap kind, and scraped with the rest."""
    for metric in (
        metrics.RECORDS_IN,
        metrics.RECORDS_OUT,
        metrics.ALREADY_EXISTS,
        metrics.HTTP_REQUESTS,
    ):
        assert isinstance(metric, LoopCounter)
    for histogram in (metrics.TARGET_LATENCY, metrics.RECORD_LATENCY):
        assert isinstance(histogram, LoopHistogram)
    metrics.RECORD_LATENCY.labels("test_loop_metrics").observe(0.003)
    text = generate_latest(metrics.REGISTRY).decode()
    assert (
        'lhpipe_record_latency_seconds_bucket{le="0.005",pipeline="test_loop_metrics"} 1.0' in text
    )
