"""Topic creation. Webhook and dead-letter topics are created when missing, at start, with the
partitions :mod:`lhpipe.clients.kafka.topics` gives them (the declaration's ``partitions``, else
``LHPIPE_TOPIC_PARTITIONS``, else 6) and the broker's default replication: production brokers
usually have topic auto-creation off, and a dead letter must never wait on a topic that does
not exist. Existing topics are never altered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from lhpipe.clients.kafka.config import client_config
from lhpipe.settings import Settings

log = logging.getLogger(__name__)


def admin_client(settings: Settings) -> AdminClient:
    """An admin client with the settings every Kafka client gets."""
    config: dict[str, Any] = {
        **client_config(settings),
        "logger": logging.getLogger("lhpipe.kafka"),
    }
    return AdminClient(config)


def ensure_compacted_topic(settings: Settings, topic: str, timeout: float = 15.0) -> bool:
    """Create ``topic`` with one partition, ``cleanup.policy=compact`` and the broker's
    replication when it is missing (the poll state, the coordination topic); True when this
    call created it. Raises ``KafkaException`` for a failure other than "already exists"."""
    admin = admin_client(settings)
    if topic in admin.list_topics(timeout=timeout).topics:
        return False
    new = NewTopic(
        topic, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"}
    )
    future = admin.create_topics([new], request_timeout=timeout)[topic]
    try:
        future.result(timeout)
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


def ensure_topics(
    settings: Settings,
    topics: Iterable[str],
    timeout: float = 15.0,
    *,
    partitions: Mapping[str, int] | None = None,
) -> list[str]:
    """Create the topics that do not exist; returns the ones created. A topic in
    ``partitions`` gets that many partitions (:mod:`lhpipe.clients.kafka.topics` decides them for
    webhook and dead-letter topics), any other the broker's default; replication is always the
    broker's default. An existing topic is never altered: one with fewer partitions than
    ``partitions`` asks is logged. Failures other than "already exists" are logged, not
    raised: a broker that forbids creation may still have the topic made by its operators."""
    wanted = sorted(set(topics))
    if not wanted:
        return []
    counts = partitions or {}
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout).topics
    for topic in wanted:
        metadata = existing.get(topic)
        asked = counts.get(topic)
        if metadata is not None and asked is not None and len(metadata.partitions) < asked:
            log.warning(
                "topic %r exists with %d partition(s), fewer than the %d asked for; lhpipe "
                "does not change existing topics",
                topic,
                len(metadata.partitions),
                asked,
            )
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=counts.get(t, -1), replication_factor=-1) for t in missing],
        request_timeout=timeout,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout)
            created.append(topic)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            log.warning("could not create topic %r: %s", topic, exc)
    return created
