"""A :class:`KafkaSource`'s settings and its fetch loop, driven turn by turn: a fake consumer
whose polls move a fake clock and that stops the loop at the end of its script, and a runner
whose room the test sets. No event loop: batches handed over stay in transit."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from test_rebalance import FakeConsumer, FakeSink, Message, _tps, settled
from test_rebalance import loop as loop  # the fixture
from waiting import wait_for

from lhpipe.clients.kafka import consumer as consumer_module
from lhpipe.clients.kafka.consumer import KafkaSource
from lhpipe.settings import Settings

TP = tuple[str, int]


def _settings(**environ: str) -> Settings:
    return Settings(environ={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **environ})


# --- the consumer's settings -------------------------------------------------------------------


def test_the_consumer_config_leaves_commits_to_lhpipe_and_starts_a_new_group_at_the_earliest() -> (
    None
):
    settings = _settings(LHPIPE_INSTANCE_ID="pod-7", LHPIPE_SESSION_TIMEOUT_MS="6000")
    source = KafkaSource(settings, pipeline="orders", topic="t", group="g", sink=FakeSink())
    config = dict(source._config)
    logger = config.pop("logger")
    assert config == {
        "partition.assignment.strategy": "cooperative-sticky",
        "bootstrap.servers": "127.0.0.1:1",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000,
        "group.instance.id": "pod-7-orders",
        "group.id": "g",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "client.id": "lhpipe-orders",
        "queued.max.messages.kbytes": 8192,
        "topic.metadata.refresh.interval.ms": 10_000,
        "error_cb": source._on_error,
    }
    assert logger is logging.getLogger("lhpipe.kafka.consumer")


def test_a_kafka_setting_overrides_the_defaults_but_not_what_delivery_relies_on() -> None:
    settings = _settings(
        LHPIPE_KAFKA_QUEUED_MAX_MESSAGES_KBYTES="1024",  # set after the settings: ours wins
        LHPIPE_KAFKA_ENABLE_AUTO_COMMIT="true",
        LHPIPE_KAFKA_GROUP_ID="other",
        LHPIPE_KAFKA_FETCH_MAX_BYTES="1000",
    )
    source = KafkaSource(settings, pipeline="p", topic="t", group="g", sink=FakeSink())
    assert source._config["fetch.max.bytes"] == "1000"
    assert source._config["enable.auto.commit"] is False
    assert source._config["group.id"] == "g"
    assert source._config["queued.max.messages.kbytes"] == 8192
    # The caller's own config comes last and wins over everything.
    source = KafkaSource(
        settings,
        pipeline="p",
        topic="t",
        group="g",
        sink=FakeSink(),
        config={"client.id": "mine", "auto.offset.reset": "latest"},
    )
    assert source._config["client.id"] == "mine"
    assert source._config["auto.offset.reset"] == "latest"


def test_a_new_source_is_neither_connected_nor_failing() -> None:
    source = KafkaSource(_settings(), pipeline="p", topic="t", group="g", sink=FakeSink())
    assert source.connected() is False
    assert source.error is None
    assert source.stalled == {} and source.lag == {}


def test_kafka_errors_are_logged_and_only_a_lost_broker_disconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = KafkaSource(_settings(), pipeline="p", topic="t", group="g", sink=FakeSink())
    source._connected = True
    timeout = KafkaError(KafkaError._MSG_TIMED_OUT)
    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        source._on_error(timeout)
        assert (source._connected, source.error) == (True, None)
        for code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            source._connected = True
            source._on_error(KafkaError(code))
            assert source._connected is False
            assert source.error == f"Kafka: {KafkaError(code).str()}"
    assert [r.getMessage() for r in caplog.records] == [
        f"pipeline p: kafka consumer: {timeout.str()}",
        f"pipeline p: kafka consumer: {KafkaError(KafkaError._ALL_BROKERS_DOWN).str()}",
        f"pipeline p: kafka consumer: {KafkaError(KafkaError._TRANSPORT).str()}",
    ]


def test_the_stopped_future_is_settled_once_whatever_calls_it() -> None:
    source = KafkaSource(_settings(), pipeline="p", topic="t", group="g", sink=FakeSink())
    source._settle_stopped()  # never started: nothing to settle
    loop = asyncio.new_event_loop()
    try:
        source._stopped = loop.create_future()
        source._settle_stopped()
        source._settle_stopped()
        assert source._stopped.done()
    finally:
        loop.close()


# --- the consumer thread -----------------------------------------------------------------------


class ClosingConsumer(FakeConsumer):
    """Subscribes, polls nothing until the test lets it, and is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.polls = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.calls.append(("subscribe", topics))

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.polls += 1
        threading.Event().wait(timeout)
        return []

    def assignment(self) -> list[TopicPartition]:
        return []

    def close(self) -> None:
        self.closed = True


def test_a_consumer_is_connected_once_subscribed_and_no_longer_once_stopped(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = threading.Event()
    go_on = threading.Event()
    consumer = ClosingConsumer()

    def make(config: dict[str, Any]) -> ClosingConsumer:
        made.set()
        go_on.wait(10)
        return consumer

    monkeypatch.setattr(consumer_module, "Consumer", make)
    source = KafkaSource(_settings(), pipeline="p", topic="t", group="g", sink=FakeSink())

    async def start() -> None:
        source.start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    wait_for(made.is_set, "the consumer to be made")
    assert source.connected() is False  # the thread runs, nothing subscribed yet
    go_on.set()
    wait_for(lambda: consumer.polls, "the first poll")
    assert source.connected() is True
    asyncio.run_coroutine_threadsafe(source.stop(dict), loop).result(10)
    # It never saw a rebalance: it leaves the group at once, without settling polls.
    assert consumer.closed
    assert source.connected() is False
    assert source.error is None
    settled(loop)


# --- the fetch loop ----------------------------------------------------------------------------


class Clock:
    """The consumer module's ``time``: ``sleep`` moves the clock, as each poll does."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Room(FakeSink):
    def __init__(self, room: int) -> None:
        super().__init__()
        self.free = room

    def room(self) -> int:
        return self.free


class LoopConsumer(FakeConsumer):
    """Each poll takes ``poll_seconds`` on the clock and returns the next batch of its script
    (a number of records of partition 0, or a step to run); when the script is played out it
    stops the source. Notes polls, pauses and resumes with the clock's time."""

    def __init__(self, clock: Clock, source: KafkaSource, script: list[Any]) -> None:
        super().__init__()
        self.clock, self.source, self.script = clock, source, list(script)
        self.poll_seconds = 0.5
        self.offset = 0
        self.positions: dict[TP, int] = {}
        self.high: dict[TP, int] = {}
        self.measured: list[float] = []

    def _note(self, name: str, partitions: list[TopicPartition]) -> None:
        pairs = sorted((tp.topic, tp.partition) for tp in partitions)
        self.calls.append((name, pairs, self.clock.now))

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.calls.append(("consume", num_messages, self.clock.now))
        self.clock.now += self.poll_seconds
        if not self.script:
            self.source._stopping.set()
            return []
        step = self.script.pop(0)
        if callable(step):
            step()
            return []
        batch = [Message(0, self.offset + i) for i in range(step)]
        self.offset += step
        return batch

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self.measured.append(self.clock.now)
        pairs = sorted((tp.topic, tp.partition) for tp in partitions)
        return [TopicPartition(t, p, self.positions.get((t, p), -1001)) for t, p in pairs]

    def get_watermark_offsets(
        self, tp: TopicPartition, cached: bool = False, timeout: float | None = None
    ) -> tuple[int, int]:
        assert cached is True  # the thread never waits on a broker for its lag
        return (0, self.high.get((tp.topic, tp.partition), -1))

    def polls(self) -> list[int]:
        return [call[1] for call in self.calls if call[0] == "consume"]

    def pauses(self) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] in ("pause", "resume")]


def _fetching(
    monkeypatch: pytest.MonkeyPatch,
    room: int,
    script: list[Any],
    batch_size: int = 100,
    assigned: tuple[int, ...] = (0,),
    **environ: str,
) -> tuple[KafkaSource, LoopConsumer, Clock, Room]:
    clock = Clock()
    monkeypatch.setattr(consumer_module, "time", clock)
    sink = Room(room)
    source = KafkaSource(
        _settings(**environ), pipeline="p", topic="t", group="g", sink=sink, batch_size=batch_size
    )
    consumer = LoopConsumer(clock, source, script)
    source._on_assign(consumer, _tps(*assigned))  # type: ignore[arg-type]
    consumer.calls.clear()
    return source, consumer, clock, sink


def test_each_poll_asks_for_no_more_than_the_room_left_counting_batches_in_transit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer, clock, _ = _fetching(monkeypatch, room=100, script=[60, 20])
    source._fetch_loop(consumer)  # type: ignore[arg-type]
    # 100 free; 60 handed over and not yet taken; then 20 more: 20 left, under a quarter
    # batch, so it waits, and polls its partitions paused once it has waited 5 s.
    assert consumer.polls() == [100, 40, 20]
    assert source._in_transit == 80
    assert clock.sleeps and set(clock.sleeps) == {consumer_module.ROOM_WAIT_SECONDS}


@pytest.mark.parametrize(
    ("batch_size", "room", "polls"),
    [
        (10, 2, [2]),  # a quarter of 10 (rounded down) is enough
        (10, 1, []),
        (8, 2, [2]),
        (8, 1, []),
        (3, 1, [1]),  # a batch under 4: any room is enough
    ],
)
def test_it_polls_once_a_quarter_batch_is_free_and_waits_otherwise(
    monkeypatch: pytest.MonkeyPatch, batch_size: int, room: int, polls: list[int]
) -> None:
    source, consumer, clock, _ = _fetching(monkeypatch, room, [0], batch_size=batch_size)

    def stop_waiting() -> None:
        source._stopping.set()

    if not polls:  # it would wait 5 s before pausing: stop it once it sleeps
        clock.sleep = lambda seconds: stop_waiting()  # type: ignore[method-assign]
    source._fetch_loop(consumer)  # type: ignore[arg-type]
    assert consumer.polls()[:1] == polls
    assert consumer.pauses() == []
    if polls:  # polled at once, without waiting for room
        assert clock.sleeps == []


def test_a_full_buffer_pauses_the_partitions_only_after_5_s_and_resumes_them_with_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "ROOM_WAIT_SECONDS", 0.5)
    source, consumer, clock, sink = _fetching(monkeypatch, 0, [0, 0], assigned=(0, 1))

    def room_again() -> None:
        sink.free = 100

    consumer.script.insert(1, room_again)
    source._fetch_loop(consumer)  # type: ignore[arg-type]
    both = [("t", 0), ("t", 1)]
    assert clock.sleeps == [0.5] * 10
    # Paused once, 5 s after the buffer filled, and polled on (membership, rebalances).
    assert consumer.calls[:3] == [
        ("pause", both, 1005.0),
        ("consume", 1, 1005.0),
        ("consume", 1, 1005.5),
    ]
    assert consumer.calls[3:] == [
        ("resume", both, 1006.0),
        ("consume", 100, 1006.0),
        ("consume", 100, 1006.5),
    ]
    assert source._held is False


def test_a_paused_pipeline_pauses_its_partitions_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer, clock, _ = _fetching(monkeypatch, 100, [0, 0])
    source.paused = True
    source._fetch_loop(consumer)  # type: ignore[arg-type]
    assert clock.sleeps == []
    assert consumer.pauses() == [("pause", [("t", 0)], 1000.0)]
    assert source._held is True


def test_without_partitions_a_full_buffer_pauses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "ROOM_WAIT_SECONDS", 1.0)
    source, consumer, clock, _ = _fetching(monkeypatch, 0, [0], assigned=())
    source._fetch_loop(consumer)  # type: ignore[arg-type]
    assert len(clock.sleeps) == 5
    assert consumer.pauses() == []
    assert source._held is False  # a partition assigned now is not paused


def test_it_commits_what_was_asked_for_between_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    source, consumer, _, _ = _fetching(monkeypatch, 100, [0])
    source.commit({("t", 0): 7})
    source._fetch_loop(consumer)  # type: ignore[arg-type]
    assert consumer.commits() == [("commit", {("t", 0): 7}, False)]


def test_lag_is_measured_at_the_first_turn_then_once_more_than_a_second_has_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer, _, _ = _fetching(monkeypatch, 100, [0] * 6)
    consumer.positions = {("t", 0): 5}
    consumer.high = {("t", 0): 9}
    source._fetch_loop(consumer)  # type: ignore[arg-type]
    # Polls every 0.5 s: 1.0 s after a measure is not yet more than a second.
    assert consumer.measured == [1000.0, 1001.5, 1003.0]
    assert source.lag == {("t", 0): 4}


# --- lag ---------------------------------------------------------------------------------------


def test_lag_is_the_high_watermark_less_the_position_when_both_are_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer, _, _ = _fetching(monkeypatch, 100, [], assigned=(0, 1, 2, 3, 4, 5, 6))
    consumer.positions = {("t", 0): 100, ("t", 1): 0, ("t", 2): 5, ("t", 4): 0, ("t", 5): 7}
    consumer.high = {("t", 0): 140, ("t", 1): 10, ("t", 2): 5, ("t", 3): 10, ("t", 4): 0}
    consumer.high[("t", 6)] = 3
    consumer.positions[("t", 6)] = 12  # ahead of a stale cached watermark
    source._measure_lag(consumer)  # type: ignore[arg-type]
    assert source.lag == {
        ("t", 0): 40,
        ("t", 1): 10,
        ("t", 2): 0,  # caught up
        # 3: no position yet; 5: no watermark yet
        ("t", 4): 0,  # an empty partition
        ("t", 6): 0,
    }
    assert source._positions == {
        ("t", 0): 100,
        ("t", 1): 0,
        ("t", 2): 5,
        ("t", 3): -1001,
        ("t", 4): 0,
        ("t", 5): 7,
        ("t", 6): 12,
    }


def test_lag_skips_a_partition_whose_watermark_fails_and_nothing_when_positions_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer, _, _ = _fetching(monkeypatch, 100, [], assigned=(0, 1))
    consumer.positions = {("t", 0): 1, ("t", 1): 2}
    consumer.high = {("t", 0): 5, ("t", 1): 5}
    watermarks = consumer.get_watermark_offsets

    def failing_for_0(
        tp: TopicPartition, cached: bool = False, timeout: float | None = None
    ) -> tuple[int, int]:
        if tp.partition == 0:  # the first asked
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return watermarks(tp, cached)

    consumer.get_watermark_offsets = failing_for_0  # type: ignore[method-assign]
    source._measure_lag(consumer)  # type: ignore[arg-type]
    assert source.lag == {("t", 1): 3}

    def failing(partitions: list[TopicPartition]) -> list[TopicPartition]:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    consumer.position = failing  # type: ignore[method-assign]
    consumer.high = {("t", 1): 9}
    source._measure_lag(consumer)  # type: ignore[arg-type]
    assert source.lag == {("t", 1): 3}


def test_without_partitions_lag_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    source, consumer, _, _ = _fetching(monkeypatch, 100, [], assigned=())
    source._measure_lag(consumer)  # type: ignore[arg-type]
    assert consumer.measured == []
    assert source.lag == {} and source._positions == {}
