"""Stall detection (docs/scaling.md) at its thresholds, in the fetch loop and check by check;
the group settings' edges; leaving the group after a rebalance."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from test_consumer_loop import Clock, _fetching, _settings
from test_rebalance import FakeConsumer, FakeSink, _tps

from lhpipe.clients.kafka import consumer as consumer_module
from lhpipe.clients.kafka.consumer import (
    KafkaSource,
    group_membership,
    settle_then_close,
    stall_seconds,
)
from lhpipe.core import metrics
from lhpipe.settings import SettingsError

TP = tuple[str, int]


def _stalls(pipeline: str) -> float:
    value = metrics.REGISTRY.get_sample_value("lhpipe_stalls_total", {"pipeline": pipeline})
    return value or 0.0


def _gauge(pipeline: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "lhpipe_partition_stalled",
        {"pipeline": pipeline, "topic": "t", "partition": str(partition)},
    )


def _messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records]


def _watched(
    pipeline: str, partitions: dict[int, tuple[int, int]], since: float, stall: str = "5"
) -> tuple[KafkaSource, Any]:
    """A source with ``partitions`` (number: (position, lag)) assigned and unmoved since
    ``since``."""
    source = KafkaSource(
        _settings(LHPIPE_STALL_SECONDS=stall),
        pipeline=pipeline,
        topic="t",
        group="g",
        sink=FakeSink(),
    )
    consumer: Any = FakeConsumer()
    source._on_assign(consumer, _tps(*partitions))
    consumer.calls.clear()
    for p, (position, lag) in partitions.items():
        source._progress[("t", p)] = (position, since)
        source._positions[("t", p)] = position
        source.lag[("t", p)] = lag
    return source, consumer


# --- the rule ----------------------------------------------------------------------------------


def test_a_partition_is_stalled_at_exactly_the_threshold_logged_counted_and_resumed_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, consumer = _watched("stall-edge", {3: (100, 1)}, since=1000.0)
    counted = _stalls("stall-edge")
    with caplog.at_level(logging.INFO, logger="lhpipe.clients.kafka.consumer"):
        source._check_stalls(consumer, 1004.9, holding=False)
        assert source.stalled == {}
        source._check_stalls(consumer, 1005.0, holding=False)  # one record unread is enough
        assert source.stalled == {("t", 3): 1}
        source.lag[("t", 3)] = 6
        source._check_stalls(consumer, 1009.0, holding=False)  # still stalled: not again
    assert source.stalled == {("t", 3): 6}
    assert consumer.calls == [("resume", [3])]
    assert _stalls("stall-edge") == counted + 1
    assert _gauge("stall-edge", 3) == 1
    assert _messages(caplog) == [
        (
            "WARNING",
            "pipeline stall-edge: t[3] is stalled: 1 record(s) unread and nothing read for 5 s "
            "although lhpipe has not paused it; resuming it",
        )
    ]


def test_a_partition_without_unread_records_or_a_known_lag_is_never_stalled() -> None:
    source, consumer = _watched("stall-none", {0: (100, 0), 1: (100, 0)}, since=1000.0)
    del source.lag[("t", 1)]  # not measured yet
    del source._positions[("t", 1)]
    source._progress[("t", 1)] = (-1, 1000.0)
    source._check_stalls(consumer, 2000.0, holding=False)
    assert source.stalled == {}
    assert consumer.calls == []


@pytest.mark.parametrize("how", ["holding", "held", "paused"])
def test_a_partition_lhpipe_holds_back_is_never_stalled_and_its_watch_restarts(
    caplog: pytest.LogCaptureFixture, how: str
) -> None:
    source, consumer = _watched(f"stall-{how}", {0: (100, 40)}, since=1000.0)
    source._held = how == "held"
    source.paused = how == "paused"
    with caplog.at_level(logging.INFO, logger="lhpipe.clients.kafka.consumer"):
        source._check_stalls(consumer, 1100.0, holding=how == "holding")
    assert source.stalled == {}
    assert source._progress == {("t", 0): (100, 1100.0)}
    assert caplog.records == []
    assert consumer.calls == []


def test_partitions_that_read_again_are_logged_and_cleared_each_of_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, consumer = _watched("stall-again", {0: (10, 4), 1: (20, 4)}, since=1000.0)
    counted = _stalls("stall-again")
    source._check_stalls(consumer, 1010.0, holding=False)
    assert source.stalled == {("t", 0): 4, ("t", 1): 4}
    assert _stalls("stall-again") == counted + 2
    source._positions = {("t", 0): 11, ("t", 1): 21}
    with caplog.at_level(logging.INFO, logger="lhpipe.clients.kafka.consumer"):
        source._check_stalls(consumer, 1011.0, holding=False)
    assert source.stalled == {}
    assert (_gauge("stall-again", 0), _gauge("stall-again", 1)) == (0, 0)
    assert sorted(m for m in _messages(caplog) if m[0] == "INFO") == [
        ("INFO", "pipeline stall-again: t[0] reads again"),
        ("INFO", "pipeline stall-again: t[1] reads again"),
    ]


def test_a_partition_is_found_stalled_whatever_the_others_do() -> None:
    # The partition the check meets first is still under the threshold; the one it meets
    # last is stalled all the same.
    source, consumer = _watched("stall-order", {0: (100, 5), 1: (100, 5)}, since=1000.0)
    first, last = list(source._assigned)
    source._progress[first] = (100, 1008.0)  # unmoved for 2 s only
    source._check_stalls(consumer, 1010.0, holding=False)
    assert source.stalled == {last: 5}
    assert consumer.calls == [("resume", [last[1]])]


def test_stalls_are_found_in_the_fetch_loop_whenever_lhpipe_does_not_hold(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source, consumer, _, _ = _fetching(
        monkeypatch, 100, [0, 0, 0, 0], assigned=(0, 1), LHPIPE_STALL_SECONDS="1"
    )
    source.pipeline = "stall-loop"
    consumer.positions = {("t", 0): 100, ("t", 1): 100}
    consumer.high = {("t", 0): 140, ("t", 1): 110}
    source._progress[("t", 0)] = (100, 990.0)  # unmoved for 10 s already
    with caplog.at_level(logging.WARNING, logger="lhpipe.clients.kafka.consumer"):
        source._fetch_loop(consumer)  # type: ignore[arg-type]
    # Partition 0 at the first turn, partition 1 (first seen at 100 then) at the next check.
    assert [c for c in consumer.calls if c[0] == "resume"] == [
        ("resume", [("t", 0)], 1000.0),
        ("resume", [("t", 1)], 1001.5),
    ]
    assert source.stalled == {("t", 0): 40, ("t", 1): 10}
    assert _messages(caplog) == [
        (
            "WARNING",
            "pipeline stall-loop: t[0] is stalled: 40 record(s) unread and nothing read for 10 s "
            "although lhpipe has not paused it; resuming it",
        ),
        (
            "WARNING",
            "pipeline stall-loop: t[1] is stalled: 10 record(s) unread and nothing read for 2 s "
            "although lhpipe has not paused it; resuming it",
        ),
    ]


# --- settings ----------------------------------------------------------------------------------


def test_the_stall_threshold_is_30_s_unless_set_and_at_least_1_s() -> None:
    assert stall_seconds(_settings()) == 30
    assert stall_seconds(_settings(LHPIPE_STALL_SECONDS="1")) == 1
    with pytest.raises(SettingsError, match="LHPIPE_STALL_SECONDS must be at least 1, not 0"):
        stall_seconds(_settings(LHPIPE_STALL_SECONDS="0"))


def test_the_heartbeat_is_a_third_of_the_session_rounded_down_and_at_least_100_ms() -> None:
    def heartbeat(timeout: str) -> Any:
        config = group_membership(_settings(LHPIPE_SESSION_TIMEOUT_MS=timeout), "p")
        return config["heartbeat.interval.ms"]

    assert heartbeat("7000") == 2333 and isinstance(heartbeat("7000"), int)
    assert heartbeat("150") == 100
    assert heartbeat("303") == 101
    assert group_membership(_settings(LHPIPE_SESSION_TIMEOUT_MS="0"), "p") == {}
    with pytest.raises(SettingsError, match="LHPIPE_SESSION_TIMEOUT_MS must not be negative"):
        group_membership(_settings(LHPIPE_SESSION_TIMEOUT_MS="-1"), "p")


# --- leaving the group -------------------------------------------------------------------------


class Settling(FakeConsumer):
    """Polls take ``step`` seconds on the clock; notes pauses and polls."""

    def __init__(self, clock: Clock, step: float, assigned: list[int]) -> None:
        super().__init__()
        self.clock, self.step = clock, step
        self.assigned = assigned
        self.closed = False
        self.fail = False

    def assignment(self) -> list[TopicPartition]:
        return _tps(*self.assigned)

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.calls.append(("consume", num_messages, timeout))
        self.clock.now += self.step
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._STATE))
        return []

    def close(self) -> None:
        self.closed = True


def test_settling_pauses_what_is_assigned_and_ends_at_exactly_the_quiet_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(consumer_module, "time", clock)
    consumer: Any = Settling(clock, 0.5, [0, 2])
    settle_then_close(consumer, lambda: 1000.0, quiet=1.0)
    assert consumer.calls == [
        ("pause", [0, 2]),
        ("consume", 100, 0.1),
        ("pause", [0, 2]),
        ("consume", 100, 0.1),
    ]
    assert consumer.closed and clock.now == 1001.0
    # Nothing assigned: nothing to pause.
    consumer = Settling(clock, 0.5, [])
    settle_then_close(consumer, lambda: 1001.0, quiet=0.5)
    assert consumer.calls == [("consume", 100, 0.1)]


def test_settling_ends_at_exactly_15_s_however_often_the_group_rebalances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(consumer_module, "time", clock)
    consumer: Any = Settling(clock, 7.5, [])
    settle_then_close(consumer, lambda: clock.now)
    assert len(consumer.calls) == 2 and clock.now == 1015.0
    assert consumer.closed


def test_a_consumer_failing_while_settling_is_closed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(consumer_module, "time", clock)
    consumer: Any = Settling(clock, 0.5, [])
    consumer.fail = True
    settle_then_close(consumer, lambda: clock.now)
    assert len(consumer.calls) == 1
    assert consumer.closed
