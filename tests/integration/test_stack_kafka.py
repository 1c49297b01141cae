"""Kafka on the local stack: what a producer writes, a consumer reads back."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration


def test_a_produced_record_is_consumed_with_its_key_value_and_headers(
    stack: StackAddresses,
) -> None:
    topic = f"it-kafka-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=30
    )

    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"customer-42", value=b'{"amount": 12.5}', headers={"trace": b"t1"})
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"it-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None, "no record arrived"
        assert message.key() == b"customer-42"
        assert message.value() == b'{"amount": 12.5}'
        assert message.headers() == [("trace", b"t1")]
    finally:
        consumer.close()
