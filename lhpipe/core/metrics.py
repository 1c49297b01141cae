"""The engine's Prometheus metrics, in one registry per process (served at ``/metrics``).

Labels: ``pipeline`` (pipeline or webhook name), ``target`` (``run_wf:know-your-customer``,
``to_topic:audit``...; see :func:`target_label`), ``error_class`` (transient, paused,
permanent), ``outcome`` (reloads: ok, failed), ``kind`` and ``change`` (what a reload did to
each pipeline and webhook: added, removed, changed, unchanged), ``hash`` (the running program's
:meth:`~lhpipe.graph.model.CompiledProgram.program_hash`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lhpipe.core.redact import redact_url

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_IN = Counter(
    "lhpipe_records_in", "Records read by a pipeline's source", ["pipeline"], registry=REGISTRY
)
RECORDS_DROPPED = Counter(
    "lhpipe_records_dropped", "Records dropped by a `where` step", ["pipeline"], registry=REGISTRY
)
RECORDS_OUT = Counter(
    "lhpipe_records_out",
    "Records a target accepted (ALREADY_EXISTS included)",
    ["pipeline", "target"],
    registry=REGISTRY,
)
ALREADY_EXISTS = Counter(
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
LAG = Gauge(
    "lhpipe_consumer_lag",
    "Records behind the end of the partition",
    ["pipeline", "topic", "partition"],
    registry=REGISTRY,
)
TARGET_LATENCY = Histogram(
    "lhpipe_target_latency_seconds",
    "Time from the first attempt to acceptance by a target",
    ["pipeline", "target"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECORD_LATENCY = Histogram(
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
HTTP_REQUESTS = Counter(
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
