"""``to topic``: one Kafka record per plan, through the process's shared producer.

Serialisation of the plan's ``value``:

- ``bytes`` are written as they are (forwarding a ``bytes`` source keeps it byte for byte);
- ``None`` is written as a null value (a tombstone, for compacted topics);
- anything else is JSON (:mod:`lhpipe.core.jsonenc`);
- with ``schema = NAME`` (the plan's ``schema``), Avro in the registry wire format, the schema
  registered under ``<topic>-value`` on first use (:mod:`lhpipe.core.avro.encode`); a null
  value is still a tombstone.

The key is UTF-8 text (no key when ``None``); headers are UTF-8 text. The call returns when the
brokers acknowledged the record (``acks=all``, idempotent producer), and raises what the
producer raises: :class:`~lhpipe.core.errors.TransientError` for a broker timeout or an
unreachable cluster, :class:`~lhpipe.core.errors.PermanentError` for a record the broker will
never take (too large, topic not authorised). A value with no JSON form is permanent too
(code ``ENCODE``), and so is a value that does not fit its Avro schema. Registry failures are
those of :mod:`lhpipe.clients.registry` (unreachable: transient; refused: permanent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from lhpipe.core.avro.encode import Registry, TopicSchemas
from lhpipe.core.jsonenc import dumps
from lhpipe.core.plans import Plan, TopicPlan
from lhpipe.core.senders import RecordProducer


class ConnectedProducer(RecordProducer, Protocol):
    """The producer, and whether it reaches the broker now (for ``/readyz``)."""

    def connected(self) -> bool: ...


def encode_value(value: object) -> bytes | None:
    """A plan's value as Kafka record bytes (see the module docstring)."""
    if value is None or isinstance(value, bytes):
        return value
    return dumps(value)


class TopicSender:
    """Sends :class:`~lhpipe.core.plans.TopicPlan` records with a producer it shares with
    the dead-letter writer; closing the sender leaves the producer to its owner.

    ``registry`` gives the process's schema registry client, asked for only when a plan has a
    schema (a sender without one refuses such plans)."""

    def __init__(
        self, producer: ConnectedProducer, registry: Callable[[], Registry] | None = None
    ) -> None:
        self._producer = producer
        self._schemas = None if registry is None else TopicSchemas(registry)

    def forget_registry_schemas(self) -> None:
        """The next record with a ``from registry`` schema reads its subject's latest version
        again (hot reload)."""
        if self._schemas is not None:
            self._schemas.forget_registry_schemas()

    async def send(self, plan: Plan) -> None:
        """Produce the record and return once the brokers have it."""
        if not isinstance(plan, TopicPlan):
            raise TypeError(f"the topic sender cannot send a {type(plan).__name__}")
        if plan.schema is None or plan.value is None:
            value = encode_value(plan.value)
        elif self._schemas is None:
            raise TypeError("this topic sender has no schema registry for Avro values")
        else:
            value = await self._schemas.encode(plan.topic, plan.schema, plan.value)
        await self._producer.produce(
            plan.topic,
            value,
            None if plan.key is None else plan.key.encode("utf-8"),
            [(name, text.encode("utf-8")) for name, text in plan.headers.items()],
        )

    async def close(self) -> None:
        """Nothing of its own to release: the Supervisor flushes and closes the producer."""

    def connected(self) -> bool:
        """Whether the shared producer reaches a broker."""
        return self._producer.connected()
