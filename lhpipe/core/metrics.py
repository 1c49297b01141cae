"""The engine's Prometheus metrics, in one registry per process (served at ``/metrics``).

Labels: ``pipeline`` (pipeline or webhook name), ``target`` (``run_wf:know-your-customer``,
``to_topic:audit``...; see :func:`target_label`), ``error_class`` (transient, paused,
permanent), ``outcome`` (reloads: ok, failed), ``kind`` and ``change`` (what a reload did to
each pipeline and webhook: added, removed, changed, unchanged), ``hash`` (the running program's
:meth:`~lhpipe.graph.model.CompiledProgram.program_hash`).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from lhpipe.core.redact import redact_url

REGISTRY = CollectorRegistry(auto_describe=True)


# ---------------------------------------------------------------------------------------------
# Metrics of the hot path
# ---------------------------------------------------------------------------------------------
#
# A prometheus_client Counter or Histogram takes a lock on every update, and a histogram walks
# its buckets in Python: per record, that was a few percent of the event loop's time. The
# metrics updated once per record or per request are therefore plain numbers, changed only on
# the event loop's thread, and turned into metric families by prometheus_client's own collector
# API when ``/metrics`` is scraped (also on the event loop). Names, labels, ``_total``,
# ``_created``, buckets, ``_count`` and ``_sum`` are what the library's own classes expose.


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it (its ``floatToGoString``, untyped)."""
    from prometheus_client.utils import floatToGoString

    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


class LoopCounterChild:
    """One labelled series of a :class:`LoopCounter`."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class LoopHistogramChild:
    """One labelled series of a :class:`LoopHistogram`: counts per bucket (not cumulative:
    summed at scrape) and the sum."""

    __slots__ = ("_bounds", "counts", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # A bucket's upper bound is inclusive (``le``): bisect_left finds the first bound >= it.
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.total += amount


Child = TypeVar("Child", LoopCounterChild, LoopHistogramChild)


class _LoopMetric(Collector, Generic[Child]):
    """What both loop metrics share: name, labels, and one child per label values, made by
    :meth:`_new_child` on first use."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        registry.register(self)

    def labels(self, *values: object) -> Child:
        """The series of these label values (made on first use)."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}, got {values}")
        key = tuple(str(value) for value in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _new_child(self) -> Child:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError


class LoopCounter(_LoopMetric[LoopCounterChild]):
    """A counter for the hot path (see above); ``labels(...)`` gives a child to ``inc``."""

    def _new_child(self) -> LoopCounterChild:
        return LoopCounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in list(self._children.items()):
            family.add_metric(key, child.value, created=child.created)
        yield family


class LoopHistogram(_LoopMetric[LoopHistogramChild]):
    """A histogram for the hot path (see above); ``labels(...)`` gives a child to
    ``observe``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        self._bounds = bounds
        self._les = [_le(b) for b in bounds] + ["+Inf"]
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> LoopHistogramChild:
        return LoopHistogramChild(self._bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, child in list(self._children.items()):
            cumulative = 0
            buckets = []
            for le, count in zip(self._les, child.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric(key, buckets, child.total)
            labels = dict(zip(self.labelnames, key, strict=True))
            family.samples.append(Sample(self.name + "_created", labels, child.created))
        yield family


RECORDS_IN = LoopCounter(
    "lhpipe_records_in", "Records read by a pipeline's source", ["pipeline"], registry=REGISTRY
)
RECORDS_DROPPED = Counter(
    "lhpipe_records_dropped", "Records dropped by a `where` step", ["pipeline"], registry=REGISTRY
)
RECORDS_OUT = LoopCounter(
    "lhpipe_records_out",
    "Records a target accepted (ALREADY_EXISTS included)",
    ["pipeline", "target"],
    registry=REGISTRY,
)
ALREADY_EXISTS = LoopCounter(
    "lhpipe_lh_already_exists",
    "Records LittleHorse already had (ALREADY_EXISTS: sent before, e.g. again after a "
    "rebalance or a crash; also in lhpipe_records_out)",
    ["pipeline", "target"],
    registry=REGISTRY,
)
RECORDS_REREAD = Counter(
    "lhpipe_records_reread",
    "Records read and given back uncommitted at a revocation, a lost partition or a drain: "
    "the partition's next owner reads them again",
    ["pipeline"],
    registry=REGISTRY,
)
PARTITION_STALLED = Gauge(
    "lhpipe_partition_stalled",
    "1 while an assigned partition that lhpipe has not paused has unread records and reads "
    "nothing (see LHPIPE_STALL_SECONDS)",
    ["pipeline", "topic", "partition"],
    registry=REGISTRY,
)
STALLS = Counter("lhpipe_stalls", "Partitions found stalled", ["pipeline"], registry=REGISTRY)
RECORDS_FAILED = Counter(
    "lhpipe_records_failed",
    "Failed attempts by error class",
    ["pipeline", "target", "error_class"],
    registry=REGISTRY,
)
RECORDS_DEAD_LETTERED = Counter(
    "lhpipe_records_dead_lettered",
    "Records written to the dead-letter topic",
    ["pipeline"],
    registry=REGISTRY,
)
RECORDS_SKIPPED = Counter(
    "lhpipe_records_skipped",
    "Records given up under `permanent = skip`",
    ["pipeline"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "lhpipe_retries", "Retries of a target call", ["pipeline", "target"], registry=REGISTRY
)
IN_FLIGHT = Gauge(
    "lhpipe_in_flight", "Records being processed now", ["pipeline"], registry=REGISTRY
)
CONCURRENCY_LIMIT = Gauge(
    "lhpipe_concurrency_limit",
    "How many records a pipeline processes at once now: adaptive (moved by its LittleHorse or "
    "to http target's answer times and overloads) up to LHPIPE_MAX_IN_FLIGHT, else fixed",
    ["pipeline"],
    registry=REGISTRY,
)
LAG = Gauge(
    "lhpipe_consumer_lag",
    "Records behind the end of the partition",
    ["pipeline", "topic", "partition"],
    registry=REGISTRY,
)
TARGET_LATENCY = LoopHistogram(
    "lhpipe_target_latency_seconds",
    "Time from the first attempt to acceptance by a target",
    ["pipeline", "target"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECORD_LATENCY = LoopHistogram(
    "lhpipe_record_latency_seconds",
    "Time from reading a record to acknowledging it",
    ["pipeline"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RELOADS = Counter("lhpipe_reloads", "Hot reloads by outcome", ["outcome"], registry=REGISTRY)
CONNECTOR_ROUNDS = Counter(
    "lhpipe_connector_rounds",
    "Background rounds of the connector manager (the cluster read, and changed by the process "
    "that manages the connectors)",
    registry=REGISTRY,
)
RELOAD_DURATION = Histogram(
    "lhpipe_reload_duration_seconds",
    "Time from a reload's start to the new program running (or to its failure)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RELOAD_CHANGES = Counter(
    "lhpipe_reload_changes",
    "What successful reloads did, per pipeline and per webhook",
    ["kind", "change"],
    registry=REGISTRY,
)
PROGRAM_INFO = Gauge(
    "lhpipe_program_info",
    "1 for the hash of the program running now",
    ["hash"],
    registry=REGISTRY,
)
HTTP_REFUSED = Counter(
    "lhpipe_http_refused",
    "Requests and connections the listener refused before any route: reason connections "
    "(over LHPIPE_HTTP_MAX_CONNECTIONS), head (431), target (414), head-timeout and "
    "body-timeout (408), invalid (400: not HTTP)",
    ["reason"],
    registry=REGISTRY,
)
HTTP_REQUESTS = LoopCounter(
    "lhpipe_http_requests",
    "Webhook requests by route and status",
    ["route", "status"],
    registry=REGISTRY,
)


def target_label(kind: str, name: str | None) -> str:
    """``run_wf:know-your-customer``, ``to_topic:audit``, ``to_log``.

    A ``to http`` URL is redacted (:func:`~lhpipe.core.redact.redact_url`:
    ``to_http:https://***@crm.example.com/customers?api_key=***``): the label is what
    ``/metrics``, ``/readyz``, the status page, log lines and the dead-letter envelope's
    ``lhpipe.target`` show."""
    if name is None:
        return kind
    if kind == "to_http":
        name = redact_url(name)
    return f"{kind}:{name}"
