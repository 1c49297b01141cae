"""The sender interface: the adapter half of a target, which performs one plan.

A target is a pure planner (:mod:`lhpipe.core.plans`) and a *sender* that carries the plan
out against LittleHorse, Kafka, an HTTP endpoint, a file or the log. Senders make one attempt
per call and raise the run-time error tree (:mod:`lhpipe.core.errors`); the engine's
``Delivery`` policy decides about retries, dead letters and pauses, so no sender retries on its
own. One sender serves every pipeline that has a target of its kind (they are shared per
process: one gRPC channel, one Kafka producer, one HTTP client).

Each target kind makes its sender (:attr:`lhpipe.runtime.kind.TargetDef.sender`), once per
process; :class:`RecordProducer` is the one Kafka producer interface that senders, dead letters, the
Gateway and the poll state write through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol, runtime_checkable

from lhpipe.core.plans import Plan


class RecordProducer(Protocol):
    """Writes one Kafka record; the awaitable resolves once the broker acknowledged it and
    raises the run-time error tree otherwise (:class:`lhpipe.clients.kafka.producer.KafkaProducer`,
    :class:`lhpipe.gateway.producer.GatewayProducer`)."""

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> Awaitable[None]: ...


#: What :meth:`Sender.send` returns when the other side already had the record (LittleHorse's
#: ``ALREADY_EXISTS``): a success, counted apart (``lhpipe_lh_already_exists_total``).
ALREADY_EXISTS = "already_exists"


@runtime_checkable
class Sender(Protocol):
    """Performs plans of one or more kinds; one attempt per :meth:`send` call."""

    async def send(self, plan: Plan) -> str | None:
        """Deliver ``plan`` once; return when the other side durably accepted it
        (:data:`ALREADY_EXISTS` when it had it already, else ``None``).

        Raises a :class:`~lhpipe.core.errors.TransientError`,
        :class:`~lhpipe.core.errors.PausedError` or
        :class:`~lhpipe.core.errors.PermanentError` subclass on failure; an
        ``ALREADY_EXISTS`` answer from LittleHorse is a success. Every call is bounded by the
        sender's own deadline.
        """
        ...

    async def close(self) -> None:
        """Release connections; pending work is flushed where the sender can."""
        ...

    def connected(self) -> bool:
        """Whether the sender can reach its system now (for ``/readyz``)."""
        ...
