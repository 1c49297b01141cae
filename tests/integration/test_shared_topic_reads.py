"""How the integration tests read topics they share with earlier runs (LittleHorse's output topic,
the poll state topic), checked without a stack: a consumer that stands in for Kafka holds
200,000 records per partition from earlier runs, and the readers (tests/topic_reading.py and
the helpers of engine_run.py and test_lh_output_run.py built on it) must start where the topic
ended when the test started and be done once they have read the test's own records to the end.

It lives beside the helpers it checks and, like test_stack_cli.py, is not marked
``integration``: it needs no stack, so ``make unit`` runs it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import engine_run
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from engine_run import poll_state, read_all, topic_ends
from littlehorse.model import OutputTopicRecord, Variable, VariableId, WfRunId
from test_lh_output_run import _records_of
from topic_reading import ends, read, starts

from lhpipe.sources.poll import DEFAULT_STATE_TOPIC

TOPIC = "lhpipe_default_execution"
#: What earlier runs left in each partition: a stack that ran the benchmarks.
EARLIER = 200_000


@dataclass
class Topic:
    """Per partition, ``earlier`` records from before the test, then those the test wrote."""

    name: str
    partitions: int = 3
    earlier: int = EARLIER
    written: dict[int, list[tuple[bytes, bytes | None]]] = field(default_factory=dict)

    def size(self, partition: int) -> int:
        return self.earlier + len(self.written.get(partition, []))

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.written.setdefault(partition, []).append((key, value))

    def record(self, partition: int, offset: int) -> tuple[bytes, bytes | None]:
        if offset < self.earlier:
            return f"earlier-{offset}".encode(), b"?"
        return self.written[partition][offset - self.earlier]


@dataclass
class _Message:
    """A record, or the end-of-partition event (``eof``)."""

    _partition: int
    _offset: int
    _key: bytes | None = None
    _value: bytes | None = None
    eof: bool = False

    def error(self) -> Any:
        if not self.eof:
            return None
        return SimpleNamespace(code=lambda: KafkaError._PARTITION_EOF)

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


@dataclass
class FakeConsumer:
    """A consumer of ``topics``: hands out records from where each partition was assigned,
    then its end-of-partition event, as one with ``enable.partition.eof`` does; counts the
    records it hands out in ``handed_out`` (shared by every consumer of one test)."""

    topics: dict[str, Topic]
    handed_out: list[int]
    assigned: list[TopicPartition] = field(default_factory=list)
    _positions: dict[int, int] = field(default_factory=dict)
    _told_end: set[int] = field(default_factory=set)
    _topic: Topic | None = None

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(
            topics={
                name: SimpleNamespace(partitions={p: object() for p in range(t.partitions)})
                for name, t in self.topics.items()
            }
        )

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        return 0, self.topics[partition.topic].size(partition.partition)

    def subscribe(self, topics: list[str]) -> None:
        raise AssertionError("a reader of a shared topic must not start where a group says")

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)
        for tp in partitions:
            self._topic = self.topics[tp.topic]
            self._positions[tp.partition] = 0 if tp.offset == OFFSET_BEGINNING else tp.offset

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        batch: list[_Message] = []
        topic = self._topic
        assert topic is not None
        for partition, position in self._positions.items():
            end = topic.size(partition)
            if position < end:
                count = min(num_messages - len(batch), end - position)
                for offset in range(position, position + count):
                    batch.append(_Message(partition, offset, *topic.record(partition, offset)))
                self._positions[partition] = position + count
                self.handed_out[0] += count
                self._told_end.discard(partition)
            elif partition not in self._told_end:
                self._told_end.add(partition)
                batch.append(_Message(partition, position, eof=True))
            if len(batch) >= num_messages:
                break
        return batch

    def close(self) -> None:
        pass


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The topics, the count of records handed out, and engine_run's helpers pointed at
    consumers of those topics."""
    topics = {TOPIC: Topic(TOPIC), DEFAULT_STATE_TOPIC: Topic(DEFAULT_STATE_TOPIC, partitions=1)}
    handed_out = [0]
    monkeypatch.setattr(engine_run, "Consumer", lambda config: FakeConsumer(topics, handed_out))
    return SimpleNamespace(topics=topics, handed_out=handed_out)


STACK: Any = SimpleNamespace(kafka_bootstrap="127.0.0.1:1", execution_output_topic=TOPIC)


# -- tests/topic_reading.py ---------------------------------------------------------------------


def _consumer(topic: Topic) -> Any:
    return FakeConsumer({topic.name: topic}, [0])


def test_ends_are_the_high_watermarks_and_nothing_for_a_missing_topic() -> None:
    topic = Topic(TOPIC, earlier=5)
    topic.write(2, b"k", b"v")
    consumer = _consumer(topic)
    assert ends(consumer, TOPIC) == {0: 5, 1: 5, 2: 6}
    assert ends(consumer, "not-there") == {}


def test_a_reader_starts_where_the_topic_ended_when_the_test_started() -> None:
    topic = Topic(TOPIC)
    consumer = _consumer(topic)
    since = ends(consumer, TOPIC)
    topic.write(0, b"a", b"1")
    topic.write(0, b"b", b"2")
    topic.write(2, b"c", b"3")

    found = read(consumer, TOPIC, expected=3, timeout=5, since=since)

    assert [(tp.partition, tp.offset) for tp in consumer.assigned] == [
        (0, EARLIER),
        (1, EARLIER),
        (2, EARLIER),
    ]
    assert sorted((m.partition(), m.offset(), m.key()) for m in found) == [
        (0, EARLIER, b"a"),
        (0, EARLIER + 1, b"b"),
        (2, EARLIER, b"c"),
    ]
    assert consumer.handed_out == [3]  # not one of the 600,000 records from before


def test_nothing_new_is_read_to_the_end_at_once() -> None:
    consumer = _consumer(Topic(TOPIC))
    assert read(consumer, TOPIC, expected=0, timeout=5, since=ends(consumer, TOPIC)) == []
    assert consumer.handed_out == [0]


def test_a_partition_the_start_does_not_name_is_read_from_its_beginning() -> None:
    assert [(tp.partition, tp.offset) for tp in starts(TOPIC, [0, 1], {0: 40})] == [
        (0, 40),
        (1, OFFSET_BEGINNING),
    ]
    topic = Topic("created-by-the-test", partitions=2, earlier=0)
    for n in range(3):
        topic.write(n % 2, b"k", str(n).encode())
    found = read(_consumer(topic), topic.name, expected=3, timeout=5)
    assert sorted(m.value() for m in found) == [b"0", b"1", b"2"]


def test_a_missing_topic_has_no_records() -> None:
    consumer = _consumer(Topic(TOPIC))
    assert read(consumer, "not-there", expected=0, timeout=5) == []
    assert consumer.assigned == []


def test_fewer_records_than_expected_fail_after_the_timeout() -> None:
    topic = Topic(TOPIC, partitions=1, earlier=1)
    with pytest.raises(AssertionError, match="1 of at least 2 records"):
        read(_consumer(topic), TOPIC, expected=2, timeout=0.2)


# -- the helpers built on it --------------------------------------------------------------------


def test_read_all_from_the_start_of_the_test(kafka: SimpleNamespace) -> None:
    start = topic_ends(STACK, TOPIC)
    assert start == {0: EARLIER, 1: EARLIER, 2: EARLIER}
    kafka.topics[TOPIC].write(1, b"mine", b"x")
    (message,) = read_all(STACK, TOPIC, expected=1, since=start)
    assert (message.partition(), message.offset(), message.key()) == (1, EARLIER, b"mine")
    assert kafka.handed_out == [1]


def test_the_records_of_a_wf_run_are_read_from_the_start_of_the_test(
    kafka: SimpleNamespace,
) -> None:
    start = topic_ends(STACK, TOPIC)
    variable = OutputTopicRecord(
        variable=Variable(id=VariableId(wf_run_id=WfRunId(id="run-1"), name="applicant"))
    )
    kafka.topics[TOPIC].write(2, b"other", b"")
    kafka.topics[TOPIC].write(2, b"run-1", variable.SerializeToString())

    ((partition, offset, record),) = _records_of(STACK, "run-1", start)

    assert (partition, offset) == (2, EARLIER + 1)
    assert record.variable.id.name == "applicant"
    assert kafka.handed_out == [2]


def test_a_poll_state_is_read_from_the_start_of_the_test(kafka: SimpleNamespace) -> None:
    states = kafka.topics[DEFAULT_STATE_TOPIC]
    start = topic_ends(STACK, DEFAULT_STATE_TOPIC)
    states.write(0, b"poll_a", b'{"cursor": "1"}')
    states.write(0, b"poll_b", b'{"cursor": "9"}')
    states.write(0, b"poll_a", b'{"cursor": "2"}')
    assert poll_state(STACK, "poll_a", start) == {"cursor": "2"}
    assert poll_state(STACK, "poll_c", start) is None
    assert kafka.handed_out == [6]
