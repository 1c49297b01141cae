"""The poll sources' saved state against an in-process Kafka: the JSON a state is written as
(docs/poll.md), the newest state of a pipeline read back from the topic's beginning to its end
(compaction gaps, several partitions, other pipelines, tombstones), the topic created once, and
every way a read fails: a TransientError the source retries, the reader closed all the same."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from lhpipe.core.errors import TransientError
from lhpipe.settings import Settings
from lhpipe.sources.poll import DEFAULT_STATE_TOPIC, STATE_TOPIC_SETTING, state_topic
from lhpipe.sources.poll_state import KafkaPollStateStore, PollState

TOPIC = "poll_state_test"
SETTINGS = Settings(environ={"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"})
FIRST = PollState(cursor="1")
NEWEST = PollState({"after": 700}, '"v7"', "https://x/items?after=700", ("a-1", "a-2"))


class FakeClock:
    """Monotonic seconds that move only when the fake broker makes a poll wait."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeMessage:
    def __init__(
        self,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: KafkaError | None = None,
    ) -> None:
        self._partition, self._offset = partition, offset
        self._key, self._value, self._error = key, value, error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> KafkaError | None:
        return self._error


class FakeKafka:
    """One topic in memory: the producer that appends to it, the consumers that read it (the
    factory given to the store), and the topic's creation. Offsets may have gaps, as in a
    compacted topic; ``low`` is each partition's first offset still kept."""

    def __init__(self, clock: FakeClock, partitions: int = 1) -> None:
        self.clock = clock
        self.records: dict[int, list[FakeMessage]] = {p: [] for p in range(partitions)}
        self.low = dict.fromkeys(range(partitions), 0)
        self.on_broker = False  # the topic was created (by this test's stores or another)
        self.in_metadata = True
        self.metadata_error: KafkaError | None = None
        self.poll_error: KafkaError | None = None
        self.quiet_for = 0.0  # seconds after an assignment before the broker sends anything
        self.ensured: list[tuple[Settings, str]] = []
        self.create_error: KafkaException | None = None
        self.consumers: list[FakeConsumer] = []
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []

    def high(self, partition: int) -> int:
        kept = self.records[partition]
        return kept[-1].offset() + 1 if kept else self.low[partition]

    def append(
        self, key: bytes, value: bytes | None, partition: int = 0, offset: int | None = None
    ) -> None:
        at = self.high(partition) if offset is None else offset
        self.records[partition].append(FakeMessage(partition, at, key, value))

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        self.produced.append((topic, key, value))
        assert key is not None
        self.append(key, value)

    def ensure_topic(self, settings: Settings, topic: str) -> bool:
        if self.create_error is not None:
            raise self.create_error
        self.ensured.append((settings, topic))
        created, self.on_broker = not self.on_broker, True
        return created

    def consumer(self, config: dict[str, Any]) -> Consumer:
        consumer = FakeConsumer(self, config)
        self.consumers.append(consumer)
        return cast(Consumer, consumer)

    def store(self, settings: Settings = SETTINGS) -> KafkaPollStateStore:
        return KafkaPollStateStore(
            settings,
            self,
            TOPIC,
            consumer=self.consumer,
            ensure_topic=self.ensure_topic,
            clock=self.clock,
        )


class FakeConsumer:
    """Reads :class:`FakeKafka` from the assigned offsets, one partition after the other in
    turn. Without an offset it starts at the end (``auto.offset.reset=latest``). A poll with
    nothing to give waits its whole timeout; every call must have one (without, librdkafka
    may wait for ever)."""

    def __init__(self, kafka: FakeKafka, config: dict[str, Any]) -> None:
        self.kafka = kafka
        self.config = config
        self.positions: dict[int, int] = {}
        self.ready_at = 0.0
        self.closed = False
        self._turn = 0

    def list_topics(self, topic: str, *, timeout: float) -> SimpleNamespace:
        assert timeout > 0
        kafka = self.kafka
        topics = {}
        if kafka.in_metadata and topic == TOPIC:
            partitions = dict.fromkeys(kafka.records)
            topics[TOPIC] = SimpleNamespace(partitions=partitions, error=kafka.metadata_error)
        return SimpleNamespace(topics=topics)

    def get_watermark_offsets(self, tp: TopicPartition, *, timeout: float) -> tuple[int, int]:
        assert tp.topic == TOPIC and timeout > 0
        return self.kafka.low[tp.partition], self.kafka.high(tp.partition)

    def assign(self, partitions: list[TopicPartition]) -> None:
        assert all(tp.topic == TOPIC for tp in partitions)
        self.positions = {
            tp.partition: tp.offset if tp.offset >= 0 else self.kafka.high(tp.partition)
            for tp in partitions
        }
        self.ready_at = self.kafka.clock.now + self.kafka.quiet_for

    def poll(self, timeout: float) -> FakeMessage | None:
        assert timeout > 0
        kafka = self.kafka
        if kafka.clock.now >= self.ready_at:
            if kafka.poll_error is not None:
                return FakeMessage(0, 0, None, None, kafka.poll_error)
            order = sorted(self.positions)
            for i in range(len(order)):
                partition = order[(self._turn + i) % len(order)]
                waiting = [
                    m for m in kafka.records[partition] if m.offset() >= self.positions[partition]
                ]
                if waiting:
                    self._turn += i + 1
                    self.positions[partition] = waiting[0].offset() + 1
                    return waiting[0]
        kafka.clock.now += timeout
        return None

    def close(self) -> None:
        self.closed = True


def state_json(pipeline: str, state: PollState) -> bytes:
    return state.to_bytes(pipeline, f"https://x/{pipeline}")


def load(store: KafkaPollStateStore, pipeline: str) -> PollState | None:
    return asyncio.run(store.load(pipeline))


def read_failure(kafka: FakeKafka) -> TransientError:
    with pytest.raises(TransientError) as raised:
        load(kafka.store(), "orders")
    assert raised.value.code == "KAFKA"
    assert kafka.consumers[-1].closed
    return raised.value


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka(FakeClock())


def test_a_state_is_written_as_the_json_the_docs_describe() -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    data = orjson.loads(NEWEST.to_bytes("orders", "https://x/items"))

    updated = data.pop("updated")
    assert data == {
        "pipeline": "orders",
        "url": "https://x/items",
        "cursor": {"after": 700},
        "etag": '"v7"',
        "etag_url": "https://x/items?after=700",
        "seen": ["a-1", "a-2"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", updated)
    assert before <= datetime.fromisoformat(updated) <= datetime.now(UTC)


def test_a_state_before_the_first_answer_is_written_with_nulls() -> None:
    data = orjson.loads(PollState().to_bytes("orders", "https://x/items"))

    assert (data["cursor"], data["etag"], data["etag_url"], data["seen"]) == (None, None, None, [])


@pytest.mark.parametrize("state", [PollState(), FIRST, NEWEST, PollState(cursor=[1, "two"])])
def test_a_state_reads_back_as_written(state: PollState) -> None:
    assert PollState.from_bytes(state.to_bytes("orders", "https://x/items")) == state


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        (b"{}", PollState()),
        (b'{"cursor": 5, "etag": 5, "etag_url": ["u"], "seen": "abc"}', PollState(cursor=5)),
        (b'{"seen": ["a", 1, null, "b"]}', PollState(seen=("a", "b"))),
        (
            b'{"etag": "\\"e\\"", "etag_url": "https://x", "extra": 1}',
            PollState(None, '"e"', "https://x"),
        ),
    ],
    ids=["empty", "wrong-kinds", "non-string-ids", "extra-field"],
)
def test_fields_missing_or_of_the_wrong_kind_read_as_their_defaults(
    raw: bytes, state: PollState
) -> None:
    assert PollState.from_bytes(raw) == state


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"cursor"', b"7"])
def test_a_state_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"^a poll state must be a JSON object$"):
        PollState.from_bytes(raw)


@pytest.mark.parametrize(
    ("environ", "topic"),
    [
        ({}, DEFAULT_STATE_TOPIC),
        ({STATE_TOPIC_SETTING: ""}, DEFAULT_STATE_TOPIC),
        ({STATE_TOPIC_SETTING: "team_a_poll_state"}, "team_a_poll_state"),
    ],
    ids=["default", "empty", "named"],
)
def test_a_state_is_saved_to_the_state_topic_keyed_by_pipeline(
    kafka: FakeKafka, environ: dict[str, str], topic: str
) -> None:
    settings = Settings(environ=environ)
    store = KafkaPollStateStore(settings, kafka, state_topic(settings))

    asyncio.run(store.save("commandes_été", "https://x/items", NEWEST))

    [(written_topic, key, value)] = kafka.produced
    assert (written_topic, key) == (topic, "commandes_été".encode())
    assert value is not None
    data = orjson.loads(value)
    assert (data["pipeline"], data["url"]) == ("commandes_été", "https://x/items")
    assert PollState.from_bytes(value) == NEWEST


def test_a_pipeline_that_never_saved_has_no_state(kafka: FakeKafka) -> None:
    kafka.append(b"other", state_json("other", FIRST))

    assert load(kafka.store(), "orders") is None
    assert load(kafka.store(), "other") == FIRST


def test_an_empty_topic_gives_no_state_without_waiting(kafka: FakeKafka) -> None:
    kafka.low[0] = 4  # everything compacted or deleted away

    assert load(kafka.store(), "orders") is None
    assert kafka.clock.now == 1_000.0
    assert kafka.consumers[0].closed


def test_the_newest_saved_state_of_each_pipeline_is_read_back(kafka: FakeKafka) -> None:
    store = kafka.store()

    async def scenario() -> tuple[PollState | None, PollState | None]:
        await store.save("orders", "https://x/orders", FIRST)
        await store.save("café", "https://x/cafe", PollState(cursor={"page": 9}))
        await store.save("orders", "https://x/orders", NEWEST)
        return await store.load("orders"), await store.load("café")

    assert asyncio.run(scenario()) == (NEWEST, PollState(cursor={"page": 9}))


def test_a_tombstone_forgets_the_state(kafka: FakeKafka) -> None:
    kafka.append(b"orders", state_json("orders", FIRST))
    kafka.append(b"orders", None)
    kafka.append(b"other", state_json("other", FIRST))

    assert load(kafka.store(), "orders") is None


def test_a_compacted_topic_is_read_from_its_first_kept_offset_to_its_last(
    kafka: FakeKafka,
) -> None:
    kafka.low[0] = 3
    kafka.append(b"orders", state_json("orders", FIRST), offset=3)
    kafka.append(b"other", state_json("other", FIRST), offset=7)
    kafka.append(b"orders", state_json("orders", NEWEST), offset=9)

    assert load(kafka.store(), "orders") == NEWEST


def test_every_partition_is_read_to_its_end() -> None:
    kafka = FakeKafka(FakeClock(), partitions=3)
    kafka.append(b"orders", state_json("orders", FIRST), partition=0)
    kafka.append(b"orders", state_json("orders", NEWEST), partition=0)
    for n in range(4):
        kafka.append(b"other", state_json("other", PollState(cursor=n)), partition=1)
    kafka.low[2] = 5  # emptied: nothing to wait for there

    store = kafka.store()

    assert load(store, "orders") == NEWEST
    assert load(store, "other") == PollState(cursor=3)


def test_the_topic_is_created_at_the_first_read_only(
    kafka: FakeKafka, caplog: pytest.LogCaptureFixture
) -> None:
    store = kafka.store()
    caplog.set_level(logging.INFO, logger="lhpipe.sources.poll_state")

    load(store, "orders")
    load(store, "orders")

    assert kafka.ensured == [(SETTINGS, TOPIC)]
    assert caplog.messages == [f"created the poll state topic {TOPIC!r}"]


def test_a_topic_that_already_existed_is_not_reported_created(
    kafka: FakeKafka, caplog: pytest.LogCaptureFixture
) -> None:
    kafka.on_broker = True  # another process created it
    caplog.set_level(logging.INFO, logger="lhpipe.sources.poll_state")

    load(kafka.store(), "orders")

    assert caplog.messages == []


def test_a_topic_that_cannot_be_created_fails_the_read_and_is_tried_again(
    kafka: FakeKafka,
) -> None:
    store = kafka.store()
    kafka.create_error = KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))

    with pytest.raises(TransientError) as raised:
        load(store, "orders")

    assert raised.value.code == "KAFKA"
    assert str(raised.value) == (
        f"could not create the poll state topic {TOPIC!r}: {kafka.create_error}"
    )
    assert kafka.consumers == []
    kafka.create_error = None
    kafka.append(b"orders", state_json("orders", FIRST))
    assert load(store, "orders") == FIRST
    assert kafka.ensured == [(SETTINGS, TOPIC)]


def test_the_reader_is_a_group_less_consumer_with_the_processs_kafka_settings(
    kafka: FakeKafka,
) -> None:
    settings = Settings(
        environ={"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "LHPIPE_KAFKA_SECURITY_PROTOCOL": "SSL"}
    )

    load(kafka.store(settings), "orders")

    [reader] = kafka.consumers
    config = dict(reader.config)
    assert config.pop("logger").name == "lhpipe.kafka.consumer"
    assert config == {
        "bootstrap.servers": "kafka:9092",
        "security.protocol": "SSL",
        "group.id": "lhpipe-poll-state-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }
    assert reader.closed


@pytest.mark.parametrize("missing", ["topic", "metadata"])
def test_a_topic_without_metadata_cannot_be_read(kafka: FakeKafka, missing: str) -> None:
    if missing == "topic":
        kafka.in_metadata = False
    else:
        kafka.metadata_error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)

    assert str(read_failure(kafka)) == f"the poll state topic {TOPIC!r} cannot be read"


def test_an_error_while_reading_fails_the_read(kafka: FakeKafka) -> None:
    kafka.append(b"orders", state_json("orders", FIRST))
    kafka.poll_error = KafkaError(KafkaError._TRANSPORT, "broker down")

    assert str(read_failure(kafka)) == f"reading the poll state topic {TOPIC!r}: broker down"


def test_records_arriving_exactly_at_the_read_timeout_are_still_read(kafka: FakeKafka) -> None:
    kafka.append(b"orders", state_json("orders", FIRST))
    kafka.quiet_for = 30.0

    assert load(kafka.store(), "orders") == FIRST


def test_a_read_that_hears_nothing_for_over_30_s_fails(kafka: FakeKafka) -> None:
    kafka.append(b"orders", state_json("orders", FIRST))
    kafka.quiet_for = 30.5

    assert str(read_failure(kafka)) == f"reading the poll state topic {TOPIC!r} took over 30 s"
