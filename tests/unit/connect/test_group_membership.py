"""Group membership, paused state at assignment, stall detection and singleton ownership, with
fake consumers and leases (the real group is exercised by tests/integration/test_scale_out.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition
from test_connectors import FakeConnect, _connectors, _manager
from test_poll import Feed, Sink, Store, requests_of

from lhpipe.clients.kafka import consumer as consumer_module
from lhpipe.clients.kafka.consumer import (
    DEFAULT_ASSIGNMENT_STRATEGY,
    KafkaSource,
    group_membership,
    settle_then_close,
)
from lhpipe.clients.kafka.ownership import Callback
from lhpipe.core import metrics
from lhpipe.core.plans import Plan
from lhpipe.core.senders import ALREADY_EXISTS
from lhpipe.engine.connectors import ConnectorManager
from lhpipe.runtime.delivery import Delivery
from lhpipe.runtime.status import PipelineStatus, State
from lhpipe.settings import Settings, SettingsError
from lhpipe.sources.poll_source import PollSource


def _settings(**environ: str) -> Settings:
    return Settings(environ={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **environ})


# --- group settings ----------------------------------------------------------------------------


def test_the_session_timeout_sets_a_heartbeat_of_a_third_at_most_3_s() -> None:
    assert group_membership(_settings(LHPIPE_SESSION_TIMEOUT_MS="6000"), "p") == {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000,
    }
    assert (
        group_membership(_settings(LHPIPE_SESSION_TIMEOUT_MS="60000"), "p")["heartbeat.interval.ms"]
        == 3000
    )
    assert group_membership(_settings(), "p") == {}
    with pytest.raises(SettingsError, match="LHPIPE_SESSION_TIMEOUT_MS"):
        group_membership(_settings(LHPIPE_SESSION_TIMEOUT_MS="soon"), "p")


def test_static_membership_is_unique_per_consumer_and_worker() -> None:
    settings = _settings(LHPIPE_INSTANCE_ID="pod-7")
    assert group_membership(settings, "orders")["group.instance.id"] == "pod-7-orders"
    worker = _settings(LHPIPE_INSTANCE_ID="pod-7", LHPIPE_WORKERS="2", LHPIPE_WORKER_INDEX="1")
    assert group_membership(worker, "orders")["group.instance.id"] == "pod-7-orders-1"
    # The owners' groups must hand work over at once on a stop: never static.
    assert "group.instance.id" not in group_membership(settings, "owner-x", static=False)


class _Sink:
    def __init__(self) -> None:
        self.assigned: list[list[tuple[str, int]]] = []

    def room(self) -> int:
        return 1000

    def wait_for_room(self, wanted: int, timeout: float) -> None:
        time.sleep(timeout)

    def on_assigned(self, partitions: list[tuple[str, int]]) -> None:
        self.assigned.append(partitions)

    def on_records(self, records: list[Any]) -> None:
        pass

    async def on_revoked(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {}

    def on_committed(self, offsets: dict[tuple[str, int], int]) -> None:
        pass


def _source(**environ: str) -> KafkaSource:
    return KafkaSource(_settings(**environ), pipeline="p", topic="t", group="g", sink=_Sink())


def test_consumers_use_cooperative_sticky_unless_a_setting_says_otherwise() -> None:
    assert DEFAULT_ASSIGNMENT_STRATEGY == "cooperative-sticky"
    source = _source()
    assert source._config["partition.assignment.strategy"] == "cooperative-sticky"
    assert source._cooperative
    ranged = _source(LHPIPE_KAFKA_PARTITION_ASSIGNMENT_STRATEGY="range")
    assert ranged._config["partition.assignment.strategy"] == "range"
    assert not ranged._cooperative


class FakeClock:
    """A ``time`` module for the code under test whose ``monotonic`` moves only when a
    :class:`FakeConsumer` polls."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeConsumer:
    """Records what the source asks of librdkafka. A poll takes its timeout on ``clock``, and
    the polls numbered in ``rebalance_during`` see a rebalance callback (:attr:`rebalances`)."""

    def __init__(
        self, clock: FakeClock | None = None, rebalance_during: frozenset[int] = frozenset()
    ) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.closed = False
        self.consumed = 0
        self.clock = clock or FakeClock()
        self.rebalance_during = rebalance_during
        self.rebalances: list[float] = []

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

    def assignment(self) -> list[TopicPartition]:
        return []

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.consumed += 1
        self.clock.now += timeout
        if self.consumed in self.rebalance_during:
            self.rebalances.append(self.clock.now)
        return []

    def close(self) -> None:
        self.closed = True


def _tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition("t", p) for p in partitions]


def test_new_partitions_are_paused_while_the_consumer_holds_and_resumed_otherwise() -> None:
    source, consumer = _source(), FakeConsumer()
    source._held = True
    source._on_assign(consumer, _tps(0, 1))  # type: ignore[arg-type]
    assert consumer.calls == [("incremental_assign", [0, 1]), ("pause", [0, 1])]
    consumer.calls.clear()
    source._held = False
    source._on_assign(consumer, _tps(2))  # type: ignore[arg-type]
    assert consumer.calls == [("incremental_assign", [2]), ("resume", [2])]
    assert source._assigned == {("t", 0), ("t", 1), ("t", 2)}


def test_an_eager_assignment_resumes_what_the_client_kept_paused() -> None:
    source, consumer = _source(LHPIPE_KAFKA_PARTITION_ASSIGNMENT_STRATEGY="range"), FakeConsumer()
    source._on_assign(consumer, _tps(0, 1, 2))  # type: ignore[arg-type]
    assert consumer.calls == [("assign", [0, 1, 2]), ("resume", [0, 1, 2])]


# --- stalls ------------------------------------------------------------------------------------


def _stalled_gauge(partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "lhpipe_partition_stalled", {"pipeline": "p", "topic": "t", "partition": str(partition)}
    )


def test_a_partition_with_unread_records_that_reads_nothing_is_stalled_and_resumed() -> None:
    source, consumer = _source(LHPIPE_STALL_SECONDS="5"), FakeConsumer()
    source._on_assign(consumer, _tps(0, 1))  # type: ignore[arg-type]
    consumer.calls.clear()
    source._positions = {("t", 0): 100, ("t", 1): 50}
    source.lag = {("t", 0): 40, ("t", 1): 0}
    start = time.monotonic()
    source._check_stalls(consumer, start, holding=False)  # type: ignore[arg-type]
    source._check_stalls(consumer, start + 4, holding=False)  # type: ignore[arg-type]
    assert source.stalled == {}
    source._check_stalls(consumer, start + 6, holding=False)  # type: ignore[arg-type]
    assert source.stalled == {("t", 0): 40}  # partition 1 has nothing to read
    assert consumer.calls == [("resume", [0])]
    assert _stalled_gauge(0) == 1
    # It reads again: no longer stalled.
    source._positions[("t", 0)] = 120
    source._check_stalls(consumer, start + 7, holding=False)  # type: ignore[arg-type]
    assert source.stalled == {}
    assert _stalled_gauge(0) == 0


def test_a_partition_held_by_lhpipe_is_never_stalled() -> None:
    source, consumer = _source(LHPIPE_STALL_SECONDS="1"), FakeConsumer()
    source._on_assign(consumer, _tps(0))  # type: ignore[arg-type]
    source._positions = {("t", 0): 100}
    source.lag = {("t", 0): 40}
    start = time.monotonic()
    for step in range(5):
        source._check_stalls(consumer, start + step * 2, holding=True)  # type: ignore[arg-type]
    source.paused = True
    source._check_stalls(consumer, start + 20, holding=False)  # type: ignore[arg-type]
    assert source.stalled == {}


def test_a_stalled_pipeline_is_not_ready_and_says_which_partition() -> None:
    status = PipelineStatus("p", State.RUNNING, True, {"to_log": True}, stalled=("t[0]",))
    assert not status.ready
    assert status.to_json()["stalled"] == ["t[0]"]
    assert PipelineStatus("p", State.STANDBY, False).ready


# --- closing -----------------------------------------------------------------------------------


def test_a_consumer_closes_at_once_without_a_recent_rebalance_and_waits_one_out_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(consumer_module, "time", clock)
    consumer = FakeConsumer(clock)
    settle_then_close(consumer, lambda: 0.0, quiet=0.5)  # type: ignore[arg-type]
    assert consumer.closed and consumer.consumed == 0
    # A rebalance just now, and another during the second poll: it polls on until 0.5 s
    # have passed since that one.
    consumer = FakeConsumer(clock, rebalance_during=frozenset({2}))
    consumer.rebalances.append(clock.now)
    settle_then_close(consumer, lambda: consumer.rebalances[-1], quiet=0.5)  # type: ignore[arg-type]
    assert consumer.closed and len(consumer.rebalances) == 2
    assert consumer.consumed > 2 and clock.now - consumer.rebalances[-1] >= 0.5


# --- ALREADY_EXISTS ----------------------------------------------------------------------------


class _Existing:
    async def send(self, plan: Plan) -> str | None:
        return ALREADY_EXISTS

    async def close(self) -> None:
        pass

    def connected(self) -> bool:
        return True


def test_already_exists_is_a_success_counted_apart() -> None:
    labels = {"pipeline": "dup", "target": "run_wf:x"}

    def count(name: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before_out, before = count("lhpipe_records_out_total"), count("lhpipe_lh_already_exists_total")
    delivery = Delivery(pipeline="dup", target="run_wf:x", sender=_Existing())
    asyncio.run(delivery.deliver(object()))  # type: ignore[arg-type]
    assert count("lhpipe_records_out_total") == before_out + 1
    assert count("lhpipe_lh_already_exists_total") == before + 1


# --- ownership ---------------------------------------------------------------------------------


class FakeLease:
    """A lease the test hands over by hand."""

    def __init__(
        self, acquire: Callback, release: Callback, version: Callable[[], str] | None = None
    ) -> None:
        self.acquire, self.release = acquire, release
        self.owned = False
        self.error: str | None = None
        self.started = self.stopped = False
        self.version = version
        self.reclaims = 0

    def start(self) -> None:
        self.started = True

    def reclaim(self) -> None:
        self.reclaims += 1

    async def stop(self) -> None:
        self.stopped = True
        if self.owned:
            await self.give_up()

    async def take(self) -> None:
        self.owned = True
        await self.acquire()

    async def give_up(self) -> None:
        self.owned = False
        await self.release()

    @property
    def standing_by(self) -> bool:
        return not self.owned

    def describe(self) -> str:
        return "owned by this process" if self.owned else "standing by: p2 owns it (group g)"


def _leased() -> tuple[Callable[[Callback, Callback], Any], list[FakeLease]]:
    made: list[FakeLease] = []

    def factory(
        acquire: Callback, release: Callback, version: Callable[[], str] | None = None
    ) -> FakeLease:
        made.append(FakeLease(acquire, release, version))
        return made[-1]

    return factory, made


FEED = """
pipeline feed {
  from poll "http://feed.test/items?after=${cursor}" {
    every = 1h
    items = response.items
    cursor = response.next
    id = item.id
  }
  to log
}
"""


def test_a_poll_pipeline_polls_only_while_this_process_owns_it() -> None:
    feed, store, sink = Feed(total=30, page=10), Store(), Sink()
    factory, leases = _leased()

    transport = ClosingTransport(feed)

    async def until(condition: Callable[[], Any]) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.005)

    async def scenario() -> None:
        poll = PollSource(
            requests_of(FEED),
            store,
            sink,
            transport=transport,
            lease=factory,
            committable=sink.tracker.committable,
        )
        poll.start()
        (lease,) = leases
        assert poll.standby == "standing by: p2 owns it (group g)"
        # A source without a lease, started after it, asks at once: by the time it has, the
        # one standing by would have asked too.
        other_feed = Feed(total=0)
        other = PollSource(
            requests_of(FEED), Store(), Sink(), transport=httpx.MockTransport(other_feed)
        )
        other.start()
        await until(lambda: other_feed.requests)
        await other.stop(dict)
        assert feed.requests == [], "a process standing by never polls"
        await lease.take()
        await until(lambda: len(sink.records) == 30)
        assert poll.standby is None
        sink.finish(30)
        # Another process takes over: the state of what is done is written first.
        await lease.give_up()
        assert store.states["feed"].cursor == "30"
        assert transport.closed, "polling ended: the client it asked with is closed"
        assert poll.standby is not None
        await poll.stop(sink.tracker.committable)
        assert lease.stopped

    asyncio.run(scenario())


class ClosingTransport(httpx.MockTransport):
    """A mock transport that notes when the client using it is closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True


def test_only_the_owner_changes_the_connect_cluster(tmp_path: Path) -> None:
    fake = FakeConnect()
    factory, leases = _leased()
    plain = _manager(fake)
    manager = ConnectorManager(
        plain.settings, rest=plain.rest, create_topics=fake.create_topics, lease=factory
    )
    declared = _connectors(
        tmp_path,
        """
connector lines {
  class = "FileStreamSource"
  topic = "lines-topic"
  config { file = "/data/in.txt" }
}
""",
    )
    fake.configs["gone"] = {"name": "gone", "lhpipe.owner": "lhpipe"}

    async def scenario() -> None:
        await manager.sync(declared)
        (lease,) = leases
        assert lease.started
        assert fake.puts() == [] and fake.deletes() == []
        (status,) = manager.statuses()
        assert status.state is State.STANDBY and status.ready
        assert "p2 owns it" in (status.detail or "")
        assert lease.version is not None
        first_version = lease.version()
        await lease.take()
        assert fake.puts() == ["/connectors/lines/config"]
        assert fake.deletes() == ["/connectors/gone"]
        # A reload with other declarations: a new claim of a new version.
        await manager.sync({})
        assert lease.reclaims >= 1 and lease.version() != first_version
        await manager.close()
        assert lease.stopped

    asyncio.run(scenario())


def test_a_program_without_connectors_joins_no_group_when_none_of_ours_is_left() -> None:
    fake = FakeConnect()
    factory, leases = _leased()
    plain = _manager(fake)
    manager = ConnectorManager(
        plain.settings, rest=plain.rest, create_topics=fake.create_topics, lease=factory
    )
    fake.configs["theirs"] = {"name": "theirs", "lhpipe.owner": "someone-else"}

    async def scenario() -> None:
        await manager.sync({})
        await manager.close()

    asyncio.run(scenario())
    assert leases == [] and fake.deletes() == []


# --- the newest program ------------------------------------------------------------------------


def _lease_with(claims: list[tuple[str, str, int]], live: list[str] | None) -> Any:
    from lhpipe.clients.kafka.ownership import Lease

    async def nothing() -> None:
        pass

    lease = Lease(
        _settings(), "connectors-x", acquire=nothing, release=nothing, version=lambda: "v1"
    )
    lease.me = "me"
    for member, version, started in claims:
        raw = json.dumps(
            {"group": lease.group, "member": member, "version": version, "started": started}
        )
        lease._note_claim(raw.encode())
    lease._members = lambda admin: live  # type: ignore[method-assign]
    return lease


def test_a_live_member_of_another_version_started_later_is_newer() -> None:
    claims = [("me", "v1", 100), ("old", "v0", 50), ("new", "v2", 200), ("twin", "v1", 300)]
    assert _lease_with(claims, ["me", "old", "new", "twin"])._newer_member(None) == "new"
    # Dead members, older ones and members of the same version never take it.
    assert _lease_with(claims, ["me", "old", "twin"])._newer_member(None) is None
    # Without its own claim or the member list, a holder keeps the work.
    assert _lease_with(claims[1:], ["me", "new"])._newer_member(None) is None
    assert _lease_with(claims, None)._newer_member(None) is None


def test_claims_of_other_groups_and_garbage_are_ignored() -> None:
    lease = _lease_with([], ["me"])
    lease._note_claim(b"not json")
    lease._note_claim(
        b'{"group": "lhpipe-owner-other", "member": "a", "version": "v", "started": 1}'
    )
    lease._note_claim(json.dumps({"group": lease.group, "member": "b"}).encode())
    lease._note_claim(None)
    assert lease._claims == {}
