"""The engine's Kafka consumer: one per pipeline, in its own thread (:class:`KafkaSource`).

librdkafka calls block, so each pipeline's consumer lives in a dedicated thread that fetches
batches (``consume(num_messages=500)``) and hands each batch to the asyncio loop in one
``call_soon_threadsafe``: no per-record thread hop. Offsets are never committed automatically
(``enable.auto.commit=false``, ``enable.auto.offset.store=false``): the runner decides what is
done (:mod:`lhpipe.runtime.commit`) and the thread commits it. When the runner has no room (its
buffer of read records is full, or the pipeline is paused) the thread pauses its partitions and
keeps polling, so the group membership and rebalance callbacks stay alive however long the pause
lasts. A group that has no committed offset starts at the earliest record
(``auto.offset.reset=earliest``): nothing written before the first start is skipped.

On a revocation the thread asks the runner (on the loop) to drop the revoked partitions'
records that have not started, waits a bounded time for the running ones, and commits what is
done before the rebalance goes on. Lost partitions (the session expired) are only forgotten:
their offsets may already belong to another member.

The client settings (``LHPIPE_KAFKA_*``) are :func:`lhpipe.clients.kafka.config.client_config`'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from lhpipe.clients.kafka.config import client_config
from lhpipe.clients.kafka.refusals import refusal
from lhpipe.core import metrics
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.sink import REVOKE_WAIT_SECONDS, KafkaRecordSink
from lhpipe.core.sink import TopicPartition as TopicPartitionKey
from lhpipe.core.worker import this_worker
from lhpipe.settings import Settings

log = logging.getLogger(__name__)

CONSUME_BATCH = 500
POLL_SECONDS = 0.1
# The runner's buffer is full: wait until it has room (the runner wakes this thread when it
# has), at most this long; pause the partitions only when the wait lasts longer than
# HOLD_BEFORE_PAUSE_SECONDS. A short sleep in a loop here instead cost the event loop's thread
# a fifth of its time: every wake-up takes the GIL from it.
ROOM_WAIT_SECONDS = 0.1
HOLD_BEFORE_PAUSE_SECONDS = 5.0
# How long a revocation waits for the revoked partitions' running records before committing
# what is done; the rest is redelivered to the new owner (at-least-once).

DEFAULT_ASSIGNMENT_STRATEGY = "cooperative-sticky"
SESSION_TIMEOUT_SETTING = "LHPIPE_SESSION_TIMEOUT_MS"
INSTANCE_ID_SETTING = "LHPIPE_INSTANCE_ID"
STALL_SETTING = "LHPIPE_STALL_SECONDS"
DEFAULT_STALL_SECONDS = 30


def worker_suffix(settings: Settings) -> str:
    """``-<index>`` for a worker of ``lhpipe run --workers N`` (N > 1), else ``""``."""
    me = this_worker(settings.environ)
    return f"-{me.index}" if me.one_of_many else ""


def group_membership(settings: Settings, member: str, *, static: bool = True) -> dict[str, Any]:
    """The group settings of a consumer: the session timeout (``LHPIPE_SESSION_TIMEOUT_MS``,
    with a heartbeat a third of it, at most 3 s) and static membership: with
    ``LHPIPE_INSTANCE_ID`` set (a pod name), ``group.instance.id`` is
    ``<instance>-<member>`` (``-<worker>`` added under ``--workers``), stable across restarts
    and unique in the group. A static member does not leave the group when it stops (its
    partitions wait for its return, up to the session timeout); ``static=False`` for groups
    whose work must move at once on a stop (the owners' groups of
    :mod:`lhpipe.clients.kafka.ownership`)."""
    config: dict[str, Any] = {}
    timeout = settings.integer(SESSION_TIMEOUT_SETTING, 0, minimum=0)
    if timeout:
        config["session.timeout.ms"] = timeout
        config["heartbeat.interval.ms"] = max(100, min(3000, timeout // 3))
    instance = settings.get(INSTANCE_ID_SETTING)
    if instance and static:
        config["group.instance.id"] = f"{instance}-{member}{worker_suffix(settings)}"
    return config


#: A consumer that leaves its group waits until no rebalance callback came for this long (more
#: than a heartbeat), at most SETTLE_MAX_SECONDS: see :func:`settle_then_close`.
SETTLE_QUIET_SECONDS = 3.5
SETTLE_MAX_SECONDS = 15.0


def settle_then_close(
    consumer: Consumer, last_rebalance: Callable[[], float], quiet: float = SETTLE_QUIET_SECONDS
) -> None:
    """Close ``consumer`` once its group is not in the middle of a rebalance.

    A cooperative rebalance comes in two rounds a heartbeat apart. A member that closes between
    them has its LeaveGroup held back behind its own JoinGroup on the coordinator's connection;
    the request times out, the coordinator never hears of the leave, and the whole group waits
    for the member's session timeout (45 s by default) with the revoked partitions unassigned.
    So a consumer that saw a rebalance callback recently goes on polling, its partitions
    paused, until a heartbeat passes without one, then leaves. Records that reach it meanwhile
    are not handed on: the partitions' next owner reads them."""
    deadline = time.monotonic() + SETTLE_MAX_SECONDS
    while time.monotonic() - last_rebalance() < quiet and time.monotonic() < deadline:
        try:
            assigned = consumer.assignment()
            if assigned:
                consumer.pause(assigned)
            consumer.consume(num_messages=100, timeout=POLL_SECONDS)
        except KafkaException:
            break
    consumer.close()


def stall_seconds(settings: Settings) -> int:
    """How long an assigned partition with unread records may read nothing before it counts
    as stalled (``LHPIPE_STALL_SECONDS``, default 30)."""
    return settings.integer(STALL_SETTING, DEFAULT_STALL_SECONDS, minimum=1)


class KafkaSource:
    """One pipeline's consumer: subscribes to ``topic`` as ``group``, in its own thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: str,
        topic: str,
        group: str,
        sink: KafkaRecordSink,
        batch_size: int = CONSUME_BATCH,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.topic = topic
        self.group = group
        self._sink = sink
        self._batch_size = batch_size
        # Fetch when at least this much room is free: fewer, larger hand-offs to the loop.
        self._min_batch = max(1, batch_size // 4)
        self._config: dict[str, Any] = {
            # Defaults that a LHPIPE_KAFKA_* setting may override.
            "partition.assignment.strategy": DEFAULT_ASSIGNMENT_STRATEGY,
            **client_config(settings),
            **group_membership(settings, pipeline),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "client.id": f"lhpipe-{pipeline}",
            # Smaller fetch buffers than librdkafka's default 64 MiB: many pipelines share one
            # process, and the runner never holds more than a few batches anyway.
            "queued.max.messages.kbytes": 8192,
            # Notice a topic created after the start within seconds, not librdkafka's 5 min.
            "topic.metadata.refresh.interval.ms": 10_000,
            "error_cb": self._on_error,
            "logger": logging.getLogger("lhpipe.kafka.consumer"),
            **(config or {}),
        }
        self._cooperative = "cooperative" in str(self._config["partition.assignment.strategy"])
        self._stall_seconds = stall_seconds(settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped: asyncio.Future[None] | None = None
        self._commits: queue.SimpleQueue[dict[TopicPartitionKey, int]] = queue.SimpleQueue()
        self._final_offsets: Callable[[], dict[TopicPartitionKey, int]] | None = None
        self._assigned: set[TopicPartitionKey] = set()
        self._held = False  # partitions paused because the runner has no room
        self.paused = False  # set by the runner: the pipeline is paused (a paused-class error)
        self._connected = False
        self.error: str | None = None
        #: Kafka refused the connection (credentials, TLS, authorization): the pipeline is
        #: paused until the consumer connects again (:mod:`lhpipe.clients.kafka.refusals`).
        self.refused: str | None = None
        self.lag: dict[TopicPartitionKey, int] = {}
        # Records handed to the loop and not yet taken by the sink: the sink's room does not
        # count them yet, so the thread does (the buffer bound holds across the hand-off).
        self._in_transit = 0
        self._in_transit_lock = threading.Lock()
        # Stall detection: each partition's last position and when it last moved (or had
        # nothing to read, or was held by lhpipe's choice); the partitions stalled now.
        self._progress: dict[TopicPartitionKey, tuple[int, float]] = {}
        #: Partitions stalled now, with how many records they have unread.
        self.stalled: dict[TopicPartitionKey, int] = {}
        self._positions: dict[TopicPartitionKey, int] = {}
        self._last_rebalance = 0.0  # monotonic time of the last rebalance callback

    # -- control, from the loop --------------------------------------------------------------

    def start(self) -> None:
        """Start the consumer thread; records flow to the sink from now on."""
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, name=f"lhpipe-consumer-{self.pipeline}", daemon=True
        )
        self._thread.start()

    def commit(self, offsets: dict[TopicPartitionKey, int]) -> None:
        """Ask the thread to commit ``offsets`` (next offsets to read) at its next turn."""
        if offsets:
            self._commits.put(dict(offsets))

    async def stop(self, final_offsets: Callable[[], dict[TopicPartitionKey, int]]) -> None:
        """Stop fetching, commit ``final_offsets()`` (called on the loop, once the thread is
        out of ``consume``), leave the group and end the thread."""
        if self._thread is None or self._stopped is None:
            return
        self._final_offsets = final_offsets
        self._stopping.set()
        await self._stopped

    def connected(self) -> bool:
        """The consumer is running and a broker answers."""
        return self._connected and self._thread is not None and self._thread.is_alive()

    # -- the consumer thread -----------------------------------------------------------------

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self._config)
            consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._connected = True
            self._fetch_loop(consumer)
            self._commit_final(consumer)
        except Exception as exc:  # the thread must report, never die silently
            log.exception("pipeline %s: the consumer stopped", self.pipeline)
            self.error = f"consumer failed: {exc}"
            self._connected = False
        finally:
            if consumer is not None:
                try:
                    self._held = True  # partitions assigned while settling stay paused
                    settle_then_close(consumer, lambda: self._last_rebalance)
                except Exception:
                    log.exception("pipeline %s: closing the consumer failed", self.pipeline)
            self._call_loop(self._settle_stopped)

    def _fetch_loop(self, consumer: Consumer) -> None:
        last_lag = 0.0
        short_of_room_since: float | None = None
        while not self._stopping.is_set():
            self._commit_requested(consumer)
            now = time.monotonic()
            if now - last_lag > 1.0:
                last_lag = now
                self._measure_lag(consumer)
                self._check_stalls(consumer, now, holding=short_of_room_since is not None)
            room = self._sink.room() - self._in_transit
            if room < self._min_batch and not self.paused:
                # A short wait for room is a sleep: librdkafka keeps prefetching, and pausing
                # would throw its fetched records away. Only a long one pauses the partitions,
                # so that polling can go on (group membership, rebalances) without records.
                short_of_room_since = short_of_room_since or now
                if now - short_of_room_since < HOLD_BEFORE_PAUSE_SECONDS:
                    self._sink.wait_for_room(self._min_batch + self._in_transit, ROOM_WAIT_SECONDS)
                    continue
            else:
                short_of_room_since = None
            hold = self.paused or room < self._min_batch
            if hold != self._held and self._assigned:
                partitions = [TopicPartition(t, p) for t, p in self._assigned]
                if hold:
                    consumer.pause(partitions)
                else:
                    consumer.resume(partitions)
                self._held = hold
            batch = consumer.consume(
                num_messages=max(1, min(self._batch_size, room)), timeout=POLL_SECONDS
            )
            if batch:
                records = self._records(batch)
                if records:
                    with self._in_transit_lock:
                        self._in_transit += len(records)
                    self._call_loop(self._hand_over, records)

    def _hand_over(self, records: list[Record]) -> None:
        """On the loop: give a batch to the sink; from now on its room counts them."""
        try:
            self._sink.on_records(records)
        finally:
            with self._in_transit_lock:
                self._in_transit -= len(records)

    def _records(self, batch: list[Any]) -> list[Record]:
        records: list[Record] = []
        append = records.append
        assigned = self._assigned
        for message in batch:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self.error = f"topic {self.topic!r}: {error.str()}"
                    log.warning("pipeline %s: %s", self.pipeline, self.error)
                continue
            topic = message.topic()
            partition = message.partition()
            if (topic, partition) not in assigned:
                continue  # fetched before its partition was revoked: its new owner reads it
            timestamp_type, timestamp = message.timestamp()
            headers = message.headers()
            append(
                Record(
                    KafkaOrigin(topic, partition, message.offset()),
                    message.key(),
                    message.value(),
                    tuple(headers) if headers else (),
                    timestamp if timestamp_type else None,
                )
            )
        if records:
            self.error = None
            self.refused = None
            self._connected = True
        return records

    def _commit_requested(self, consumer: Consumer) -> None:
        merged: dict[TopicPartitionKey, int] = {}
        while True:
            try:
                merged.update(self._commits.get_nowait())
            except queue.Empty:
                break
        # Only partitions still assigned: a request made before a revocation is stale.
        self._commit(consumer, {tp: o for tp, o in merged.items() if tp in self._assigned})

    def _commit(self, consumer: Consumer, offsets: dict[TopicPartitionKey, int]) -> None:
        if not offsets:
            return
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            # Not fatal: the offsets stay committable and are retried at the next turn.
            log.warning("pipeline %s: commit failed: %s", self.pipeline, exc)
            return
        self._call_loop(self._sink.on_committed, offsets)

    def _commit_final(self, consumer: Consumer) -> None:
        final = self._final_offsets
        if final is None:
            return
        offsets = self._from_loop(_as_coroutine(final), timeout=REVOKE_WAIT_SECONDS)
        if offsets:
            self._commit(consumer, {tp: o for tp, o in offsets.items() if tp in self._assigned})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_rebalance = time.monotonic()
        keys = [(tp.topic, tp.partition) for tp in partitions]
        # The assignment is made here rather than by the client after this callback, so that
        # the partitions' paused state can be set right: librdkafka keeps a partition paused
        # across a revocation and a new assignment (an eager rebalance gives every partition
        # back), and a partition new to this consumer is not paused even while the others are
        # held. With cooperative-sticky, ``partitions`` are only the new ones; the kept ones
        # keep their state, which is the consumer's one ``_held`` state.
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if partitions:
            if self._held:
                consumer.pause(partitions)
            else:
                consumer.resume(partitions)
        self._assigned.update(keys)
        now = time.monotonic()
        for key in keys:
            self._progress[key] = (-1, now)
        self._connected = True
        if self.refused is not None:
            self.refused = self.error = None
        self._call_loop(self._sink.on_assigned, keys)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_rebalance = time.monotonic()
        keys = [(tp.topic, tp.partition) for tp in partitions]
        offsets = self._from_loop(self._sink.on_revoked(keys), timeout=REVOKE_WAIT_SECONDS + 5)
        self._commit(consumer, {tp: o for tp, o in (offsets or {}).items() if tp in keys})
        self._forget_partitions(keys)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them, so nothing is committed.
        self._last_rebalance = time.monotonic()
        keys = [(tp.topic, tp.partition) for tp in partitions]
        log.warning(
            "pipeline %s: lost %s (the group session expired); their records are read again "
            "by their new owner",
            self.pipeline,
            ", ".join(f"{t}[{p}]" for t, p in keys),
        )
        self._from_loop(self._sink.on_revoked(keys), timeout=REVOKE_WAIT_SECONDS + 5)
        self._forget_partitions(keys)

    def _forget_partitions(self, keys: list[TopicPartitionKey]) -> None:
        self._assigned.difference_update(keys)
        for tp in keys:
            self.lag.pop(tp, None)
            self._progress.pop(tp, None)
            if self.stalled.pop(tp, None) is not None:
                self._set_stalled_gauge(tp, 0)

    def _check_stalls(self, consumer: Consumer, now: float, *, holding: bool) -> None:
        """A partition that is assigned, not held by lhpipe (full buffer, paused pipeline),
        has records to read and whose position has not moved for ``LHPIPE_STALL_SECONDS`` is
        stalled: logged, counted, shown in the status (not ready) and resumed, in case the
        client kept a pause lhpipe no longer wants."""
        held = holding or self._held or self.paused
        for tp in list(self._assigned):
            position, since = self._progress.get(tp, (-1, now))
            current = self._positions.get(tp, -1)
            lag = self.lag.get(tp, 0)
            if held or lag <= 0 or current != position:
                self._progress[tp] = (current, now)
                if self.stalled.pop(tp, None) is not None:
                    self._set_stalled_gauge(tp, 0)
                    log.info("pipeline %s: %s[%d] reads again", self.pipeline, *tp)
                continue
            if now - since < self._stall_seconds:
                continue
            first = tp not in self.stalled
            self.stalled[tp] = lag
            if first:
                metrics.STALLS.labels(self.pipeline).inc()
                self._set_stalled_gauge(tp, 1)
                log.warning(
                    "pipeline %s: %s[%d] is stalled: %d record(s) unread and nothing read for "
                    "%.0f s although lhpipe has not paused it; resuming it",
                    self.pipeline,
                    tp[0],
                    tp[1],
                    lag,
                    now - since,
                )
                consumer.resume([TopicPartition(*tp)])

    def _set_stalled_gauge(self, tp: TopicPartitionKey, value: int) -> None:
        metrics.PARTITION_STALLED.labels(self.pipeline, tp[0], str(tp[1])).set(value)

    def _measure_lag(self, consumer: Consumer) -> None:
        if not self._assigned:
            return
        partitions = [TopicPartition(t, p) for t, p in self._assigned]
        try:
            positions = consumer.position(partitions)
        except KafkaException:
            return
        for tp in positions:
            self._positions[(tp.topic, tp.partition)] = tp.offset
            try:
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0 and tp.offset >= 0:
                self.lag[(tp.topic, tp.partition)] = max(0, high - tp.offset)

    def _on_error(self, error: KafkaError) -> None:
        refused = refusal(error)
        if refused is not None:
            self._connected = False
            self.refused = self.error = refused
        elif error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._connected = False
            if self.refused is None:  # "brokers are down" says less than the refusal
                self.error = f"Kafka: {error.str()}"
        log.warning("pipeline %s: kafka consumer: %s", self.pipeline, error.str())

    # -- hand-offs to the loop ---------------------------------------------------------------

    def _call_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _from_loop(self, coroutine: Any, timeout: float) -> Any:
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            return None
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            future.cancel()
            log.warning("pipeline %s: the runner did not answer in %.0f s", self.pipeline, timeout)
            return None

    def _settle_stopped(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)


async def _as_coroutine(
    function: Callable[[], dict[TopicPartitionKey, int]],
) -> dict[TopicPartitionKey, int]:
    return function()
