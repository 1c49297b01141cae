"""One pipeline running: source → decode → steps → plans → delivery per target → acknowledge.

A :class:`PipelineRunner` is fed batches of records by its source (a Kafka consumer in its
thread, :class:`lhpipe.clients.kafka.consumer.KafkaSource`) and processes them on the event loop
through a :class:`~lhpipe.runtime.ordering.KeyOrderedScheduler`: up to ``max_in_flight``
records at once, records with the same key (in the same partition) strictly in order.

Each record is registered with the :class:`~lhpipe.runtime.commit.ContiguousCommitTracker` when
read and marked done when every target accepted it, or when it was dead-lettered, skipped, or
dropped by a ``where``. Committable offsets go to the source every second, when partitions are
revoked, and at the end of a drain.

The source holds (stops fetching) while the runner's buffer of records read and not done is
full, and while the pipeline is paused by a paused-class error; after ``permanent = stop`` the
runner stops for good with the failed record unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lhpipe.core import metrics
from lhpipe.core.errors import PausedError, TransientError
from lhpipe.core.plans import Plan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.sink import REVOKE_WAIT_SECONDS, TopicPartition
from lhpipe.runtime.commit import ContiguousCommitTracker, PartitionOffsets
from lhpipe.runtime.delivery import (
    DEFAULT_BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    Failure,
    FailurePolicy,
    RecordFailed,
    TargetStage,
    backoff_delay,
    classify,
    failed,
    run_record,
)
from lhpipe.runtime.limit import AdaptiveLimit
from lhpipe.runtime.ordering import DEFAULT_MAX_IN_FLIGHT, FIXED_LIMIT, KeyOrderedScheduler
from lhpipe.runtime.status import PipelineStatus, State

log = logging.getLogger(__name__)

COMMIT_INTERVAL_SECONDS = 1.0
FIRST_COMMIT_POLL_SECONDS = 0.1
FIRST_COMMIT_SECONDS = 5.0
DRAIN_SECONDS = 30.0
_RNG = random.Random()

Planner = Callable[[Mapping[str, Any], Record], Plan]


class Source(Protocol):
    """What the runner needs of its source (a Kafka consumer)."""

    paused: bool
    error: str | None
    lag: dict[TopicPartition, int]

    def start(self) -> None: ...

    def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    async def stop(self, final_offsets: Callable[[], dict[TopicPartition, int]]) -> None: ...

    def connected(self) -> bool: ...


class SchemaLookup(Protocol):
    """The registry client's lookup of a writer schema by id (cached by the client)."""

    async def schema_by_id(self, schema_id: int) -> Any: ...


class RecordDecoder(Protocol):
    """A source's decoder (:class:`lhpipe.core.decode.Decoder`)."""

    is_avro: bool

    def decode_key(self, raw: bytes | None) -> Any: ...

    def decode_value(self, raw: bytes | None, writer_schema: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class PipelineLogic:
    """Everything pure about a pipeline, compiled once: how records decode, the initial
    environment, the steps, and the targets in declaration order."""

    decoder: RecordDecoder
    initial_env: Callable[[Record, Any, Any], dict[str, Any]]
    steps: Callable[[dict[str, Any]], dict[str, Any] | None]
    targets: Sequence[TargetStage]
    schema_id_of: Callable[[bytes | None], int | None] = lambda raw: None
    schemas: SchemaLookup | None = None


class _Item:
    """A record on its way through the runner, with the partition assignment it was read in."""

    __slots__ = ("offset", "offsets", "read_at", "record")

    def __init__(self, record: Record, offsets: PartitionOffsets | None, offset: int) -> None:
        self.record = record
        self.offsets = offsets
        self.offset = offset
        self.read_at = time.monotonic()


class PipelineRunner:
    """Runs one pipeline; see the module docstring. ``source_factory`` builds the source with
    this runner as its sink, so a runner can be stopped and started again."""

    def __init__(
        self,
        name: str,
        logic: PipelineLogic,
        policy: FailurePolicy,
        source_factory: Callable[[PipelineRunner], Source],
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_buffered: int | None = None,
    ) -> None:
        self.name = name
        self._logic = logic
        self._policy = policy
        self._source_factory = source_factory
        self.max_in_flight = max_in_flight
        self.max_buffered = max_buffered or max(1000, 4 * max_in_flight)
        self.state = State.STARTING
        self.detail: str | None = None
        #: Set while the schema registry refuses lhpipe's credentials (the status: paused).
        self._registry_refusal: str | None = None
        self._source: Source | None = None
        self._tracker = ContiguousCommitTracker()
        self._scheduler: KeyOrderedScheduler[_Item] = KeyOrderedScheduler(
            self._process, max_in_flight
        )
        self._outstanding = 0  # read and not yet done (running, waiting, or about to stop)
        # The source's thread waiting for room (wait_for_room): how much, and its wake-up.
        self._room_wanted = 0
        self._room_freed = threading.Event()
        self._live: dict[PartitionOffsets, int] = {}  # not done, per partition assignment
        self._accepting = False
        self._paused_records = 0
        self._committer: asyncio.Task[None] | None = None
        self._draining: asyncio.Task[None] | None = None
        self._stopped_at: Failure | None = None
        self._fixed_limit = min(max_in_flight, FIXED_LIMIT)
        self.limit: AdaptiveLimit | None = None
        for target in logic.targets:
            target.delivery.pauses = self
        if any(target.delivery.adaptive for target in logic.targets):
            self.limit = AdaptiveLimit(
                max_in_flight, lambda: self._scheduler.running, on_change=self._limit_moved
            )
            for target in logic.targets:
                if target.delivery.adaptive:
                    target.delivery.limit = self.limit
        self._scheduler.set_limit(self._current_limit())
        self._limit_gauge = metrics.CONCURRENCY_LIMIT.labels(name)
        self._limit_gauge.set(self._current_limit())
        self._records_in = metrics.RECORDS_IN.labels(name)
        self._dropped = metrics.RECORDS_DROPPED.labels(name)
        self._in_flight = metrics.IN_FLIGHT.labels(name)
        self._latency = metrics.RECORD_LATENCY.labels(name)
        self._reread = metrics.RECORDS_REREAD.labels(name)
        self.read = 0
        self.acknowledged = 0

    # -- the concurrency limit ----------------------------------------------------------------

    def _current_limit(self) -> int:
        return self.limit.limit if self.limit is not None else self._fixed_limit

    def _limit_moved(self, limit: int) -> None:
        self._scheduler.set_limit(limit)
        self._limit_gauge.set(limit)

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the source and the periodic commit."""
        self._source = self._source_factory(self)
        self._tracker = ContiguousCommitTracker()
        self._draining = None
        self._stopped_at = None
        self._accepting = True
        self.state = State.RUNNING
        self.detail = None
        self._source.start()
        self._committer = asyncio.get_running_loop().create_task(self._commit_periodically())
        log.info("pipeline %s: started", self.name)

    async def stop(self, deadline: float = DRAIN_SECONDS) -> None:
        """Drain: stop fetching, let records in flight finish within ``deadline`` seconds
        (then abandon them for redelivery), commit what is done, close the source."""
        if self.state is not State.STOPPED:
            self.state = State.DRAINING
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain(deadline))
        await self._draining
        if self._stopped_at is None:
            self.state = State.STOPPED
            self.detail = "stopped"
        log.info("pipeline %s: stopped", self.name)

    async def _drain(self, deadline: float) -> None:
        self._accepting = False
        source = self._source
        if source is not None:
            source.paused = True
        try:
            await asyncio.wait_for(self._scheduler.wait_idle(), deadline)
        except TimeoutError:
            log.warning(
                "pipeline %s: %d record(s) still in flight after %.0f s; left for redelivery",
                self.name,
                self._scheduler.running + self._scheduler.queued,
                deadline,
            )
            self._scheduler.cancel()
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        if source is not None:
            await source.stop(self._tracker.committable)
            self._source = None
        if given_back := self._tracker.outstanding():
            self._reread.inc(given_back)

    # -- the source's sink (called on the loop) ------------------------------------------------

    def room(self) -> int:
        """How many more records the source may hand over now."""
        return self.max_buffered - self._outstanding

    def wait_for_room(self, wanted: int, timeout: float) -> None:
        """From the source's thread: return once :meth:`room` is at least ``wanted``, or after
        ``timeout`` seconds. The loop sets the event when records finish (:meth:`_forget`), so
        the source's thread sleeps instead of waking to look (each wake-up takes the GIL from
        the loop)."""
        self._room_freed.clear()
        self._room_wanted = wanted
        if self.room() >= wanted:
            self._room_wanted = 0
            return
        self._room_freed.wait(timeout)
        self._room_wanted = 0

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        for topic, partition in partitions:
            self._tracker.assign(topic, partition)
        log.info("pipeline %s: assigned %s", self.name, _describe(partitions))

    def on_records(self, records: list[Record]) -> None:
        if not self._accepting:
            return  # draining or stopped: never registered, so redelivered later
        tracker = self._tracker
        submit = self._scheduler.submit
        live = self._live
        for record in records:
            origin = record.origin
            offsets: PartitionOffsets | None = None
            offset = -1
            chain: Any = record.key
            if isinstance(origin, KafkaOrigin):
                offset = origin.offset
                offsets = tracker.get(origin.topic, origin.partition)
                if offsets is None:
                    offsets = tracker.assign(origin.topic, origin.partition)
                offsets.register(offset)
                live[offsets] = live.get(offsets, 0) + 1
                if chain is not None:
                    chain = (origin.partition, chain)
            submit(_Item(record, offsets, offset), chain)
        count = len(records)
        self.read += count
        self._outstanding += count
        self._records_in.inc(count)

    async def on_revoked(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        revoked = [self._tracker.get(t, p) for t, p in partitions]
        gone = {offsets for offsets in revoked if offsets is not None}
        if gone:
            dropped = self._scheduler.discard(lambda item: item.offsets in gone)
            for item in dropped:
                self._forget(item)
            waited = 0.0
            while any(self._live.get(o) for o in gone) and waited < REVOKE_WAIT_SECONDS:
                await asyncio.sleep(0.01)
                waited += 0.01
        # What is registered and not committable now is read again by the next owner.
        given_back = sum(offsets.outstanding for offsets in gone)
        if given_back:
            self._reread.inc(given_back)
        log.info(
            "pipeline %s: revoked %s (%d record(s) left to be read again)",
            self.name,
            _describe(partitions),
            given_back,
        )
        return self._tracker.revoke(partitions)

    def on_committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._tracker.mark_committed(offsets)

    def committable(self) -> dict[TopicPartition, int]:
        """The offsets to commit now (a source that hands work over asks before it does)."""
        return self._tracker.committable()

    # -- paused-class errors ---------------------------------------------------------------------

    def enter_pause(self, detail: str) -> None:
        self._paused_records += 1
        if self._paused_records == 1:
            log.warning("pipeline %s: paused: %s", self.name, detail)
        self.detail = detail
        if self.state is State.RUNNING:
            self.state = State.PAUSED
        if self._source is not None:
            self._source.paused = True

    def leave_pause(self) -> None:
        self._paused_records -= 1
        if self._paused_records == 0 and self.state is State.PAUSED:
            log.info("pipeline %s: resumed", self.name)
            self.state = State.RUNNING
            self.detail = None
            if self._source is not None and self._accepting:
                self._source.paused = False

    # -- processing ------------------------------------------------------------------------------

    async def _process(self, item: _Item) -> None:
        record = item.record
        logic = self._logic
        try:
            try:
                decoder = logic.decoder
                if decoder.is_avro and logic.schemas is not None and record.value is not None:
                    key, value = await self._decode_avro(record)
                else:
                    try:
                        key = decoder.decode_key(record.key)
                        value = decoder.decode_value(record.value)
                    except Exception as exc:
                        raise failed(classify(exc), "decode") from exc
                await run_record(
                    record, key, value, logic.initial_env, logic.steps, logic.targets, self._dropped
                )
            except RecordFailed as exc:
                outcome, why = await self._policy.handle(record, exc.failure)
                if outcome == "stop":
                    self._stop_at(why)
                    self._forget(item)
                    return
            self._done(item)
        except asyncio.CancelledError:
            self._forget(item)
            raise

    async def _decode_avro(self, record: Record) -> tuple[Any, Any]:
        """Key and value of a record whose value is registry Avro: the writer schema is looked
        up by the id in the value's header (cached by the registry client)."""
        decoder = self._logic.decoder
        try:
            key = decoder.decode_key(record.key)
            schema_id = self._logic.schema_id_of(record.value)
        except Exception as exc:
            raise failed(classify(exc), "decode") from exc
        schema = None if schema_id is None else await self._writer_schema(schema_id)
        try:
            return key, decoder.decode_value(record.value, schema)
        except Exception as exc:
            raise failed(classify(exc), "decode") from exc

    async def _writer_schema(self, schema_id: int) -> Any:
        """The writer schema by id; a registry that cannot be reached is waited for (it is
        not the record's fault), an unknown id fails the record."""
        schemas = self._logic.schemas
        assert schemas is not None
        retries = 0
        while True:
            try:
                schema = await schemas.schema_by_id(schema_id)
                self._registry_refusal = None
                return schema
            except Exception as exc:
                error = classify(exc)
                if isinstance(error, PausedError):
                    # The registry refuses lhpipe's credentials: the pipeline is paused (its
                    # status says why) until they change; the record waits, never dead-lettered.
                    self._registry_refusal = str(error)
                elif not isinstance(error, TransientError):
                    raise failed(error, "decode") from exc
                delay = backoff_delay(retries, DEFAULT_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, _RNG)
                log.warning(
                    "pipeline %s: schema %d: %s; retrying in %.2f s",
                    self.name,
                    schema_id,
                    error,
                    delay,
                )
                retries += 1
                await asyncio.sleep(delay)

    def _done(self, item: _Item) -> None:
        offsets = item.offsets
        if offsets is not None:
            offsets.mark_done(item.offset)
        self._forget(item)
        self.acknowledged += 1
        self._latency.observe(time.monotonic() - item.read_at)

    def _forget(self, item: _Item) -> None:
        offsets = item.offsets
        if offsets is not None:
            left = self._live.get(offsets, 0) - 1
            if left > 0:
                self._live[offsets] = left
            else:
                self._live.pop(offsets, None)
        self._outstanding -= 1
        wanted = self._room_wanted
        if wanted and self.max_buffered - self._outstanding >= wanted:
            self._room_wanted = 0
            self._room_freed.set()

    def _stop_at(self, failure: Failure) -> None:
        """``permanent = stop``: no further records start; the failed one stays
        unacknowledged. The drain itself runs in its own task."""
        if self._stopped_at is not None:
            return
        self._stopped_at = failure
        self.state = State.STOPPED
        self.detail = f"stopped by a permanent error: {failure.describe()}"
        self._accepting = False
        for item in self._scheduler.discard(lambda _item: True):
            self._forget(item)
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(
                self._drain(REVOKE_WAIT_SECONDS)
            )

    async def _commit_periodically(self) -> None:
        # Until the first commit (within FIRST_COMMIT_SECONDS of the start) the committer looks
        # every FIRST_COMMIT_POLL_SECONDS, so that the first records done are committed at
        # once rather than up to a second later; then every COMMIT_INTERVAL_SECONDS.
        started = time.monotonic()
        interval = FIRST_COMMIT_POLL_SECONDS
        while True:
            await asyncio.sleep(interval)
            # The gauge is set here, not per record: a metric update takes a lock.
            self._in_flight.set(self._outstanding)
            source = self._source
            if source is None:
                continue
            offsets = self._tracker.committable()
            source.commit(offsets)
            if offsets or time.monotonic() - started > FIRST_COMMIT_SECONDS:
                interval = COMMIT_INTERVAL_SECONDS

    def publish_lag(self) -> None:
        """Copy the source's per-partition lag into the metrics."""
        source = self._source
        if source is not None:
            for (topic, partition), lag in list(source.lag.items()):
                metrics.LAG.labels(self.name, topic, str(partition)).set(lag)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> PipelineStatus:
        """The pipeline's health for ``/readyz`` and the status page."""
        source = self._source
        targets = {t.label: t.delivery.healthy() for t in self._logic.targets}
        detail = self.detail
        stalled = dict(getattr(source, "stalled", None) or {})
        if detail is None:
            if source is not None and source.error:
                detail = source.error
            elif stalled:
                detail = "stalled: " + ", ".join(
                    f"{t}[{p}] has {lag} record(s) unread and reads nothing"
                    for (t, p), lag in sorted(stalled.items())
                )
            else:
                retrying = [
                    f"{t.label}: retrying ({t.delivery.retrying} record(s)): "
                    f"{t.delivery.last_error}"
                    for t in self._logic.targets
                    if t.delivery.retrying and t.delivery.last_error
                ]
                detail = "; ".join(retrying) or None
                if detail is None and not all(targets.values()):
                    down = [label for label, ok in targets.items() if not ok]
                    detail = f"not connected: {', '.join(down)}"
        state = self.state
        refused = getattr(source, "refused", None) or self._registry_refusal
        if refused is not None and state is State.RUNNING:
            # Kafka refused the source's connection: nothing is read, so nothing is lost;
            # paused until the settings change (docs/security.md).
            state, detail = State.PAUSED, refused
        standby = getattr(source, "standby", None)
        if standby is not None and state is State.RUNNING:
            state, detail = State.STANDBY, standby
        return PipelineStatus(
            name=self.name,
            state=state,
            source_connected=source is not None and source.connected(),
            targets=targets,
            detail=detail,
            stalled=tuple(f"{t}[{p}]" for t, p in sorted(stalled)),
            stats={
                "read": self.read,
                "acknowledged": self.acknowledged,
                "in_flight": self._scheduler.running,
                "limit": self._current_limit(),
                "buffered": self._outstanding,
            },
        )


def _describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in partitions) or "nothing"
