"""Kafka client settings: what every consumer, producer and admin client of lhpipe gets.

Extra librdkafka properties come from settings named ``LHPIPE_KAFKA_<PROPERTY>``, the property
upper-cased with dots as underscores (``LHPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL``), applied to
the consumer, the producer and the admin client alike. The consumer is
:mod:`lhpipe.clients.kafka.consumer`, the producer :mod:`lhpipe.clients.kafka.producer`, topic
creation :mod:`lhpipe.clients.kafka.admin`.
"""

from __future__ import annotations

from typing import Any

from lhpipe.settings import Settings

EXTRA_PREFIX = "LHPIPE_KAFKA_"


def client_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka properties every client gets: bootstrap servers and the extra ones."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    for name in settings.names(EXTRA_PREFIX):
        if (value := settings.get(name)) is not None:
            config[name[len(EXTRA_PREFIX) :].lower().replace("_", ".")] = value
    return config
