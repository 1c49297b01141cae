"""Rebalances of a :class:`KafkaSource` without a broker: its callbacks driven by hand, or by a
fake consumer that calls them from ``consume`` as librdkafka does, against a fake runner whose
coroutines run on an event loop in another thread (the real group is exercised by
tests/integration/test_scale_out.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from waiting import wait_for

from lhpipe.clients.kafka import consumer as consumer_module
from lhpipe.clients.kafka.consumer import KafkaSource
from lhpipe.core import metrics
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.runtime import runner
from lhpipe.settings import Settings

TP = tuple[str, int]


class FakeSink:
    """The runner: notes each call in order; ``on_revoked`` returns ``offsets``."""

    def __init__(self, offsets: dict[TP, int] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.offsets = offsets or {}

    def room(self) -> int:
        return 1000

    def wait_for_room(self, wanted: int, timeout: float) -> None:
        consumer_module.time.sleep(timeout)  # the tests' clock, where they set one

    def on_assigned(self, partitions: list[TP]) -> None:
        self.calls.append(("assigned", partitions))

    def on_records(self, records: list[Record]) -> None:
        self.calls.append(("records", [r.origin.coordinates() for r in records]))

    async def on_revoked(self, partitions: list[TP]) -> dict[TP, int]:
        self.calls.append(("revoked", partitions))
        return dict(self.offsets)

    def on_committed(self, offsets: dict[TP, int]) -> None:
        self.calls.append(("committed", offsets))


class FakeConsumer:
    """Notes what the source asks of librdkafka: partitions by number (one topic, "t"),
    commits as ``{(topic, partition): offset}`` with their ``asynchronous`` flag."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.failing_commits = 0
        self.commit_error = KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))

    def _note(self, name: str, partitions: list[TopicPartition]) -> None:
        self.calls.append((name, sorted(tp.partition for tp in partitions)))

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._note("assign", partitions)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._note("incremental_assign", partitions)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._note("pause", partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._note("resume", partitions)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.calls.append(
            ("commit", {(tp.topic, tp.partition): tp.offset for tp in offsets}, asynchronous)
        )
        if self.failing_commits:
            self.failing_commits -= 1
            raise self.commit_error

    def commits(self) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == "commit"]


class Message:
    """A fetched record of topic "t"."""

    def __init__(
        self, partition: int, offset: int, code: int | None = None, *, timestamp_type: int = 1
    ) -> None:
        self._partition, self._offset = partition, offset
        self._error = None if code is None else KafkaError(code)
        self._timestamp_type = timestamp_type  # 1: create time, 0: none

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (self._timestamp_type, 1000 + self._offset)

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v%d" % self._offset

    def headers(self) -> list[tuple[str, bytes]]:
        return [("h", b"1")]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The runner's event loop, in its own thread; the test's thread is the consumer's. Not a
    daemon: a thread started from it must be made one on purpose, not by inheritance."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=False)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def settled(loop: asyncio.AbstractEventLoop) -> None:
    """Return once the loop has run every callback this thread handed it so far (they run in
    the order they were handed over)."""
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)


def _source(
    loop: asyncio.AbstractEventLoop | None,
    sink: FakeSink,
    pipeline: str = "p",
    **environ: str,
) -> KafkaSource:
    settings = Settings(environ={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **environ})
    source = KafkaSource(settings, pipeline=pipeline, topic="t", group="g", sink=sink)
    source._loop = loop  # what start() sets, without a consumer thread
    return source


def _tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition("t", p) for p in partitions]


def _waits(source: KafkaSource) -> list[float]:
    """The timeouts of the source's waits on the loop, noted from now on."""
    waits: list[float] = []
    wait = source._from_loop

    def noted(coroutine: Any, timeout: float) -> Any:
        waits.append(timeout)
        return wait(coroutine, timeout)

    source._from_loop = noted  # type: ignore[method-assign]
    return waits


def _stalled_gauge(pipeline: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "lhpipe_partition_stalled",
        {"pipeline": pipeline, "topic": "t", "partition": str(partition)},
    )


# --- assignment --------------------------------------------------------------------------------


def test_assigned_partitions_are_paused_while_holding_resumed_otherwise_and_told_to_the_sink(
    loop: asyncio.AbstractEventLoop,
) -> None:
    sink = FakeSink()
    consumer: Any = FakeConsumer()
    source = _source(loop, sink)
    before = time.monotonic()
    source._held = True
    source._on_assign(consumer, _tps(0, 1))
    assert consumer.calls == [("incremental_assign", [0, 1]), ("pause", [0, 1])]
    assert before <= source._last_rebalance <= time.monotonic()
    source._held = False
    source._on_assign(consumer, _tps(2))
    assert consumer.calls[2:] == [("incremental_assign", [2]), ("resume", [2])]
    # An empty assignment (a cooperative round that brings nothing) pauses or resumes nothing.
    source._on_assign(consumer, [])
    assert consumer.calls[4:] == [("incremental_assign", [])]
    assert source._assigned == {("t", 0), ("t", 1), ("t", 2)}
    assert source._connected is True
    # Each new partition starts its stall watch with no position yet.
    assert {tp: position for tp, (position, _) in source._progress.items()} == {
        ("t", 0): -1,
        ("t", 1): -1,
        ("t", 2): -1,
    }
    assert all(before <= since <= time.monotonic() for _, since in source._progress.values())
    settled(loop)
    assert sink.calls == [
        ("assigned", [("t", 0), ("t", 1)]),
        ("assigned", [("t", 2)]),
        ("assigned", []),
    ]


def test_an_eager_assignment_assigns_them_all_and_sets_their_paused_state(
    loop: asyncio.AbstractEventLoop,
) -> None:
    consumer: Any = FakeConsumer()
    source = _source(loop, FakeSink(), LHPIPE_KAFKA_PARTITION_ASSIGNMENT_STRATEGY="range")
    source._held = True
    source._on_assign(consumer, _tps(0, 1))
    assert consumer.calls == [("assign", [0, 1]), ("pause", [0, 1])]


# --- revocation --------------------------------------------------------------------------------


def test_a_revocation_commits_the_runners_offsets_for_the_revoked_partitions_before_it_returns(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # The runner answers with an offset for a kept partition too: only revoked ones count.
    sink = FakeSink({("t", 0): 11, ("t", 1): 22, ("t", 2): 33})
    consumer: Any = FakeConsumer()
    source = _source(loop, sink)
    source._on_assign(consumer, _tps(0, 1, 2))
    consumer.calls.clear()
    waits = _waits(source)
    before = time.monotonic()
    source._on_revoke(consumer, _tps(0, 1))
    assert before <= source._last_rebalance <= time.monotonic()
    # Synchronous: done when the callback returns, that is before librdkafka gives them up.
    assert consumer.calls == [("commit", {("t", 0): 11, ("t", 1): 22}, False)]
    assert source._assigned == {("t", 2)}
    # The consumer outwaits the runner's own bounded wait for the running records.
    assert waits == [15.0]
    assert waits[0] > runner.REVOKE_WAIT_SECONDS
    settled(loop)
    assert sink.calls[1:] == [
        ("revoked", [("t", 0), ("t", 1)]),
        ("committed", {("t", 0): 11, ("t", 1): 22}),
    ]


def test_a_revocation_the_runner_does_not_answer_commits_nothing_and_forgets_them() -> None:
    gone = asyncio.new_event_loop()
    gone.close()  # the runner's loop has ended
    consumer: Any = FakeConsumer()
    source = _source(gone, FakeSink({("t", 0): 11}))
    source._on_assign(consumer, _tps(0, 1))
    consumer.calls.clear()
    source._on_revoke(consumer, _tps(0))
    assert consumer.calls == []
    assert source._assigned == {("t", 1)}


def test_a_runner_that_does_not_answer_in_time_is_given_up_on(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    source = _source(loop, FakeSink())
    cancelled = threading.Event()

    async def never() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    answers: list[Any] = []

    def wait() -> None:
        answers.append(source._from_loop(never(), timeout=0.05))

    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        threading.Thread(target=wait, daemon=True).start()
        wait_for(lambda: answers, "the consumer thread to give up", timeout=5)
    assert answers == [None]
    wait_for(cancelled.is_set, "the wait on the loop to be cancelled")
    assert [r.getMessage() for r in caplog.records] == [
        "pipeline p: the runner did not answer in 0 s"
    ]


def test_lost_partitions_are_forgotten_without_a_commit(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FakeSink({("t", 0): 11, ("t", 1): 22})
    consumer: Any = FakeConsumer()
    source = _source(loop, sink)
    source._on_assign(consumer, _tps(0, 1, 2))
    consumer.calls.clear()
    waits = _waits(source)
    before = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        source._on_lost(consumer, _tps(0, 1))
    assert before <= source._last_rebalance <= time.monotonic()
    # Another member may own them already: its commits must not be overwritten.
    assert consumer.calls == []
    assert source._assigned == {("t", 2)}
    assert waits == [15.0]
    assert [r.getMessage() for r in caplog.records] == [
        "pipeline p: lost t[0], t[1] (the group session expired); their records are read "
        "again by their new owner"
    ]
    settled(loop)
    # The runner drops their records all the same; nothing reports a commit.
    assert sink.calls[1:] == [("revoked", [("t", 0), ("t", 1)])]


@pytest.mark.parametrize("how", ["revoke", "lost"])
def test_a_partition_given_up_leaves_no_lag_stall_watch_or_stalled_state_behind(
    loop: asyncio.AbstractEventLoop, how: str
) -> None:
    pipeline = f"forget-{how}"
    consumer: Any = FakeConsumer()
    source = _source(loop, FakeSink(), pipeline)
    source._on_assign(consumer, _tps(0, 1, 2))
    source.lag = {("t", 0): 5, ("t", 1): 6, ("t", 2): 7}
    source.stalled = {("t", 0): 5, ("t", 2): 7}
    source._set_stalled_gauge(("t", 0), 1)
    source._set_stalled_gauge(("t", 2), 1)
    kept = source._progress[("t", 2)]
    given_up = source._on_revoke if how == "revoke" else source._on_lost
    given_up(consumer, _tps(0, 1))
    assert source.lag == {("t", 2): 7}
    assert source.stalled == {("t", 2): 7}
    assert source._progress == {("t", 2): kept}
    assert _stalled_gauge(pipeline, 0) == 0
    assert _stalled_gauge(pipeline, 1) is None  # never stalled: no series made for it
    assert _stalled_gauge(pipeline, 2) == 1
    # Giving them up again (a loss after their revocation) changes nothing.
    given_up(consumer, _tps(0, 1))
    assert (source.lag, source.stalled) == ({("t", 2): 7}, {("t", 2): 7})
    assert source._progress == {("t", 2): kept}
    assert _stalled_gauge(pipeline, 1) is None


# --- commits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["revoke", "lost"])
def test_a_commit_asked_for_before_a_partition_went_leaves_it_out(
    loop: asyncio.AbstractEventLoop, how: str
) -> None:
    sink = FakeSink({("t", 1): 7})
    consumer: Any = FakeConsumer()
    source = _source(loop, sink)
    source._on_assign(consumer, _tps(0, 1))
    source.commit({("t", 0): 5, ("t", 1): 6})
    given_up = source._on_revoke if how == "revoke" else source._on_lost
    given_up(consumer, _tps(1))
    consumer.calls.clear()
    source._commit_requested(consumer)
    assert consumer.calls == [("commit", {("t", 0): 5}, False)]
    # A request only for the partition gone commits nothing at all.
    source.commit({("t", 1): 8})
    source._commit_requested(consumer)
    assert consumer.calls == [("commit", {("t", 0): 5}, False)]
    settled(loop)
    assert sink.calls[-1] == ("committed", {("t", 0): 5})


def test_commit_requests_merge_into_one_commit_the_latest_offset_winning(
    loop: asyncio.AbstractEventLoop,
) -> None:
    sink = FakeSink()
    consumer: Any = FakeConsumer()
    source = _source(loop, sink)
    source._on_assign(consumer, _tps(0, 1))
    consumer.calls.clear()
    source.commit({("t", 0): 5, ("t", 1): 3})
    source.commit({})
    assert source._commits.qsize() == 1  # an empty request is not even queued
    source.commit({("t", 0): 8})
    source._commit_requested(consumer)
    source._commit_requested(consumer)  # nothing asked since: no commit
    assert consumer.calls == [("commit", {("t", 0): 8, ("t", 1): 3}, False)]
    settled(loop)
    assert sink.calls[1:] == [("committed", {("t", 0): 8, ("t", 1): 3})]


def test_a_failed_commit_is_not_reported_as_committed(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FakeSink()
    consumer: Any = FakeConsumer()
    source = _source(loop, sink)
    source._on_assign(consumer, _tps(0))
    consumer.failing_commits = 1
    source.commit({("t", 0): 5})
    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        source._commit_requested(consumer)
    assert [r.getMessage() for r in caplog.records] == [
        f"pipeline p: commit failed: {consumer.commit_error}"
    ]
    # The runner asks again (its offsets were never reported done): this time it works.
    source.commit({("t", 0): 5})
    source._commit_requested(consumer)
    assert consumer.commits() == [("commit", {("t", 0): 5}, False)] * 2
    settled(loop)
    assert sink.calls[1:] == [("committed", {("t", 0): 5})]


def test_the_final_commit_covers_the_partitions_still_assigned(
    loop: asyncio.AbstractEventLoop,
) -> None:
    sink = FakeSink()
    consumer: Any = FakeConsumer()
    source = _source(loop, sink)
    source._on_assign(consumer, _tps(0, 1))
    source._on_revoke(consumer, _tps(1))
    consumer.calls.clear()
    source._commit_final(consumer)  # stopped without final offsets
    on_loop: list[bool] = []

    def final() -> dict[TP, int]:
        on_loop.append(threading.current_thread().name == "test-loop")
        return {("t", 0): 9, ("t", 1): 4}

    source._final_offsets = final
    waits = _waits(source)
    source._commit_final(consumer)
    assert consumer.calls == [("commit", {("t", 0): 9}, False)]
    assert on_loop == [True]
    assert waits == [10.0]
    source._final_offsets = dict
    source._commit_final(consumer)  # nothing to commit
    assert consumer.calls == [("commit", {("t", 0): 9}, False)]
    settled(loop)
    assert sink.calls[-1] == ("committed", {("t", 0): 9})


# --- records -----------------------------------------------------------------------------------


def test_records_of_a_partition_revoked_in_the_meantime_are_not_handed_on(
    loop: asyncio.AbstractEventLoop,
) -> None:
    consumer: Any = FakeConsumer()
    source = _source(loop, FakeSink())
    source._on_assign(consumer, _tps(0, 1))
    source._on_revoke(consumer, _tps(1))
    batch = [
        Message(1, 4),
        Message(0, 5),
        Message(0, 6, KafkaError._PARTITION_EOF),
        Message(0, 6, timestamp_type=0),
    ]
    assert source._records(batch) == [
        Record(KafkaOrigin("t", 0, 5), b"k", b"v5", (("h", b"1"),), timestamp_ms=1005),
        Record(KafkaOrigin("t", 0, 6), b"k", b"v6", (("h", b"1"),), timestamp_ms=None),
    ]
    assert source.error is None  # the end of a partition is no error


def test_a_fetch_error_is_reported_until_records_come_again(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    consumer: Any = FakeConsumer()
    source = _source(loop, FakeSink())
    source._on_assign(consumer, _tps(0))
    source._connected = False
    failure = Message(0, 0, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        assert source._records([failure]) == []
    assert source.error == f"topic 't': {KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED).str()}"
    assert [r.getMessage() for r in caplog.records] == [f"pipeline p: {source.error}"]
    assert source._connected is False
    assert len(source._records([Message(0, 1)])) == 1
    assert source.error is None
    assert source._connected is True


# --- the consumer thread -----------------------------------------------------------------------


Step = Callable[["ScriptedConsumer"], None]


class ScriptedConsumer(FakeConsumer):
    """A consumer whose ``consume`` runs the next step of a script (the rebalance callbacks
    are called from inside ``consume``, as librdkafka does) and returns its batch."""

    def __init__(self, script: list[tuple[Step, list[Any]]]) -> None:
        super().__init__()
        self.script = script
        self.done = threading.Event()
        self.callbacks: dict[str, Any] = {}
        self.thread: threading.Thread | None = None
        self.closed = False
        self.close_error: Exception | None = None

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.calls.append(("subscribe", topics))
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.thread = threading.current_thread()
        if not self.script:
            self.done.set()
            time.sleep(timeout)
            return []
        step, batch = self.script.pop(0)
        step(self)
        return batch

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, -1001) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return (-1, -1)

    def close(self) -> None:
        self.closed = True
        if self.close_error is not None:
            raise self.close_error


def _start(source: KafkaSource, loop: asyncio.AbstractEventLoop) -> None:
    async def start() -> None:
        source.start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(5)


def _stop(
    source: KafkaSource, loop: asyncio.AbstractEventLoop, final: dict[TP, int] | None = None
) -> None:
    asyncio.run_coroutine_threadsafe(source.stop(lambda: final or {}), loop).result(10)


def _ended(source: KafkaSource) -> bool:
    return source._thread is not None and not source._thread.is_alive()


def test_a_consumer_thread_commits_through_rebalances_and_its_stop(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected: list[bool] = []

    def assign(c: ScriptedConsumer) -> None:
        connected.append(source.connected())  # subscribed: connected before any assignment
        c.callbacks["on_assign"](c, _tps(0, 1))

    def revoke(c: ScriptedConsumer) -> None:
        c.callbacks["on_revoke"](c, _tps(1))

    def assign_more(c: ScriptedConsumer) -> None:
        c.callbacks["on_assign"](c, _tps(2))

    def lose(c: ScriptedConsumer) -> None:
        c.callbacks["on_lost"](c, _tps(2))

    consumer = ScriptedConsumer(
        [
            (assign, [Message(0, 0), Message(1, 0)]),
            # Fetched before the revocation, returned after it: partition 1's is dropped.
            (revoke, [Message(0, 1), Message(1, 1)]),
            (assign_more, []),
            (lose, [Message(2, 0)]),
        ]
    )
    configs: list[dict[str, Any]] = []

    def make(config: dict[str, Any]) -> ScriptedConsumer:
        configs.append(config)
        return consumer

    settling: list[tuple[bool, float]] = []

    def settle(c: ScriptedConsumer, last_rebalance: Callable[[], float]) -> None:
        settling.append((source._held, last_rebalance()))
        c.close()

    monkeypatch.setattr(consumer_module, "Consumer", make)
    monkeypatch.setattr(consumer_module, "settle_then_close", settle)
    sink = FakeSink({("t", 1): 1, ("t", 2): 1})
    source = _source(None, sink)
    _start(source, loop)
    wait_for(lambda: consumer.done.is_set() or source.error, "the consumer to play its script")
    assert source.error is None
    _stop(source, loop, {("t", 0): 2, ("t", 1): 2, ("t", 2): 2})
    assert configs == [source._config]
    assert consumer.thread is not None
    assert (consumer.thread.name, consumer.thread.daemon) == ("lhpipe-consumer-p", True)
    assert connected == [True]
    assert consumer.calls[0] == ("subscribe", ["t"])
    assert consumer.commits() == [
        ("commit", {("t", 1): 1}, False),  # the revocation; none for the loss
        ("commit", {("t", 0): 2}, False),  # the stop: partition 0 only is still assigned
    ]
    assert sink.calls == [
        ("assigned", [("t", 0), ("t", 1)]),
        ("records", ["t-0-0", "t-1-0"]),
        ("revoked", [("t", 1)]),
        ("committed", {("t", 1): 1}),
        ("records", ["t-0-1"]),
        ("assigned", [("t", 2)]),
        ("revoked", [("t", 2)]),
        ("committed", {("t", 0): 2}),
    ]
    assert source._in_transit == 0
    # It leaves the group holding whatever is assigned meanwhile, after the last rebalance.
    assert settling == [(True, source._last_rebalance)]
    assert consumer.closed


def test_a_failing_consumer_reports_it_and_is_closed_all_the_same(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failure = KafkaException(KafkaError(KafkaError._FATAL))

    def fail(c: ScriptedConsumer) -> None:
        raise failure

    consumer = ScriptedConsumer([(fail, [])])
    consumer.close_error = KafkaException(KafkaError(KafkaError._DESTROY))
    monkeypatch.setattr(consumer_module, "Consumer", lambda config: consumer)
    monkeypatch.setattr(consumer_module, "settle_then_close", lambda c, last_rebalance: c.close())
    source = _source(None, FakeSink())
    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        _start(source, loop)
        wait_for(lambda: _ended(source), "the consumer thread to end")
        _stop(source, loop)
    assert source.error == f"consumer failed: {failure}"
    assert source._connected is False
    assert consumer.closed
    assert [r.getMessage() for r in caplog.records] == [
        "pipeline p: the consumer stopped",
        "pipeline p: closing the consumer failed",
    ]


def test_a_consumer_that_cannot_be_made_is_reported_and_nothing_is_closed(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(config: dict[str, Any]) -> None:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG))

    monkeypatch.setattr(consumer_module, "Consumer", refuse)
    source = _source(None, FakeSink())
    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        _start(source, loop)
        wait_for(lambda: _ended(source), "the consumer thread to end")
        _stop(source, loop)
    assert source.error is not None and source.error.startswith("consumer failed: ")
    assert [r.getMessage() for r in caplog.records] == ["pipeline p: the consumer stopped"]
