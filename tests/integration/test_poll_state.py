"""The poll state topic on the real Kafka: created compacted with one partition when missing,
the newest state of a pipeline read back, other pipelines' states left alone, and a tombstone
forgetting a state."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from engine_run import unique

from lhpipe.clients.kafka.producer import KafkaProducer
from lhpipe.settings import Settings
from lhpipe.sources.poll import STATE_TOPIC_SETTING
from lhpipe.sources.poll_state import KafkaPollStateStore, PollState
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration


def test_states_round_trip_through_a_compacted_topic(stack: StackAddresses) -> None:
    topic = unique("poll-state")
    settings = Settings(
        environ={"KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, STATE_TOPIC_SETTING: topic}
    )

    async def scenario() -> tuple[PollState | None, ...]:
        producer = KafkaProducer(settings)
        store = KafkaPollStateStore(settings, producer, topic)
        try:
            empty = await store.load("orders")
            await store.save("orders", "http://x/a", PollState(cursor="1"))
            await store.save("other", "http://x/b", PollState(cursor={"page": 9}))
            await store.save(
                "orders", "http://x/a", PollState("2", '"e"', "http://x/a?c=2", ("a", "b"))
            )
            newest = await store.load("orders")
            other = await KafkaPollStateStore(settings, producer, topic).load("other")
            await producer.produce(topic, None, key=b"orders")  # a tombstone
            forgotten = await store.load("orders")
            return empty, newest, other, forgotten
        finally:
            await producer.close()

    empty, newest, other, forgotten = asyncio.run(scenario())
    assert empty is None
    assert newest == PollState("2", '"e"', "http://x/a?c=2", ("a", "b"))
    assert other == PollState(cursor={"page": 9})
    assert forgotten is None

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 1
    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["cleanup.policy"].value == "compact"
