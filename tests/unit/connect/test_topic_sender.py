"""``to topic``: the bytes a consumer of the target topic reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from lhpipe.core.errors import PermanentError, TransientError
from lhpipe.core.plans import LogPlan, TopicPlan
from lhpipe.targets.to_topic_sender import TopicSender

Produced = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]


class FakeProducer:
    """Speaks the ``produce`` of :class:`~lhpipe.clients.kafka.producer.KafkaProducer`."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.records: list[Produced] = []
        self.failure = failure
        self.up = True

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        if self.failure is not None:
            raise self.failure
        self.records.append((topic, value, key, list(headers)))

    def connected(self) -> bool:
        return self.up


def send(plan: TopicPlan, producer: FakeProducer) -> None:
    asyncio.run(TopicSender(producer).send(plan))


def test_a_value_is_written_as_json_with_a_utf8_key_and_headers() -> None:
    producer = FakeProducer()
    value = {"id": "ü-1", "at": datetime(2024, 1, 1, tzinfo=UTC), "n": [1, 2.5, None]}
    send(TopicPlan("audit", "clé", value, {"source": "kyc"}), producer)
    ((topic, raw, key, headers),) = producer.records
    assert topic == "audit"
    assert key == "clé".encode()
    assert headers == [("source", b"kyc")]
    assert raw is not None
    assert json.loads(raw) == {"id": "ü-1", "at": "2024-01-01T00:00:00.000Z", "n": [1, 2.5, None]}


def test_bytes_are_forwarded_as_they_are() -> None:
    producer = FakeProducer()
    send(TopicPlan("raw", None, b"\x00\x00\x00\x00\x07avro"), producer)
    assert producer.records == [("raw", b"\x00\x00\x00\x00\x07avro", None, [])]


def test_a_null_value_is_a_tombstone() -> None:
    producer = FakeProducer()
    send(TopicPlan("compacted", "k", None), producer)
    assert producer.records == [("compacted", None, b"k", [])]


def test_a_string_value_is_a_json_string() -> None:
    producer = FakeProducer()
    send(TopicPlan("t", None, 'say "hi"'), producer)
    assert producer.records[0][1] == b'"say \\"hi\\""'


def test_producer_failures_keep_their_class() -> None:
    too_large = PermanentError("too large", code="KAFKA_MSG_SIZE_TOO_LARGE")
    with pytest.raises(PermanentError) as permanent:
        send(TopicPlan("t", None, {}), FakeProducer(too_large))
    assert permanent.value.code == "KAFKA_MSG_SIZE_TOO_LARGE"
    timed_out = TransientError("timed out", code="KAFKA_MSG_TIMED_OUT")
    with pytest.raises(TransientError):
        send(TopicPlan("t", None, {}), FakeProducer(timed_out))


def test_a_value_without_json_form_is_permanent_and_produces_nothing() -> None:
    producer = FakeProducer()
    with pytest.raises(PermanentError) as caught:
        send(TopicPlan("t", None, {"x": object()}), producer)
    assert caught.value.code == "ENCODE"
    assert producer.records == []


def test_connected_follows_the_shared_producer() -> None:
    producer = FakeProducer()
    sender = TopicSender(producer)
    assert sender.connected()
    producer.up = False
    assert not sender.connected()


def test_closing_the_sender_leaves_the_shared_producer_usable() -> None:
    producer = FakeProducer()
    sender = TopicSender(producer)
    asyncio.run(sender.close())
    send(TopicPlan("t", None, 1), producer)
    assert producer.records == [("t", b"1", None, [])]


def test_the_sender_refuses_other_plans() -> None:
    with pytest.raises(TypeError):
        asyncio.run(TopicSender(FakeProducer()).send(LogPlan(1)))
