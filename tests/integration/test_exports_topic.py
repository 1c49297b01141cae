"""``to topic`` against the real Kafka: what a consumer of the target topic reads back."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from lhpipe.clients.kafka.producer import KafkaProducer
from lhpipe.core.errors import PermanentError, TransientError
from lhpipe.core.plans import TopicPlan
from lhpipe.settings import Settings
from lhpipe.stack.addresses import StackAddresses
from lhpipe.targets.to_topic_sender import TopicSender

pytestmark = pytest.mark.integration


def settings_for(bootstrap: str) -> Settings:
    return Settings(environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})


def create_topic(stack: StackAddresses, config: dict[str, str] | None = None) -> str:
    topic = f"it-export-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config=config or {})
    admin.create_topics([new])[topic].result(timeout=30)
    return topic


def read_all(stack: StackAddresses, topic: str, count: int) -> list[tuple[object, ...]]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"it-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    found: list[tuple[object, ...]] = []
    try:
        consumer.subscribe([topic])
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                found.append((message.key(), message.value(), message.headers()))
                if len(found) == count:
                    break
    finally:
        consumer.close()
    return found


def send_plans(bootstrap: str, plans: list[TopicPlan], **config: object) -> None:
    async def go() -> None:
        producer = KafkaProducer(settings_for(bootstrap), config=config)
        sender = TopicSender(producer)
        try:
            for plan in plans:
                await sender.send(plan)
        finally:
            await producer.close(timeout=5)

    asyncio.run(go())


def test_records_arrive_as_json_with_key_and_headers_in_order(stack: StackAddresses) -> None:
    topic = create_topic(stack)
    plans = [
        TopicPlan(topic, "customer-1", {"n": 1, "at": datetime(2024, 5, 1, tzinfo=UTC)}),
        TopicPlan(topic, "customer-1", {"n": 2, "raw": b"\x01"}, {"origin": "kyc"}),
        TopicPlan(topic, None, b"passed through"),
        TopicPlan(topic, "gone", None),
    ]
    send_plans(stack.kafka_bootstrap, plans)
    found = read_all(stack, topic, 4)
    assert len(found) == 4
    (key1, value1, headers1), (key2, value2, headers2), third, fourth = found
    assert key1 == b"customer-1"
    assert isinstance(value1, bytes)
    assert json.loads(value1) == {"n": 1, "at": "2024-05-01T00:00:00.000Z"}
    assert headers1 is None
    assert isinstance(value2, bytes)
    assert json.loads(value2) == {"n": 2, "raw": "AQ=="}
    assert key2 == b"customer-1"
    assert headers2 == [("origin", b"kyc")]
    assert third == (None, b"passed through", None)
    assert fourth == (b"gone", None, None)


def test_a_record_over_the_topics_size_limit_is_permanent(stack: StackAddresses) -> None:
    topic = create_topic(stack, {"max.message.bytes": "2048"})
    with pytest.raises(PermanentError) as caught:
        send_plans(stack.kafka_bootstrap, [TopicPlan(topic, None, {"blob": "x" * 50_000})])
    assert caught.value.code == "KAFKA_MSG_SIZE_TOO_LARGE"


def test_no_broker_within_the_timeout_is_transient() -> None:
    # Port 1 on loopback: nothing listens, so the record times out in the producer's queue.
    with pytest.raises(TransientError) as caught:
        send_plans("127.0.0.1:1", [TopicPlan("anything", None, {})], **{"message.timeout.ms": 1500})
    assert caught.value.code == "KAFKA_MSG_TIMED_OUT"
