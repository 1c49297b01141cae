"""The sender interface: the adapter half of a target, which performs one plan.

A target is a pure planner (:mod:`lhpipe.core.plans`) and a *sender* that carries the plan
out against LittleHorse, Kafka, an HTTP endpoint, a file or the log. Senders make one attempt
per call and raise the run-time error tree (:mod:`lhpipe.core.errors`); the engine's
``Delivery`` policy decides about retries, dead letters and pauses, so no sender retries on its
own. One sender serves every pipeline that has a target of its kind (they are shared per
process: one gRPC channel, one Kafka producer, one HTTP client).

:class:`SenderRegistry` maps a target kind to the sender that the runners use;
:class:`RecordProducer` is the one Kafka producer interface that senders, dead letters, the
Gateway and the poll state write through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from lhpipe.core.plans import Plan
from lhpipe.syntax.ast import TargetKind


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


class SenderRegistry(Mapping[TargetKind, Sender]):
    """The senders of one process, by target kind; read-only once built.

    A kind may be missing (a process whose pipelines never write files has no file sender);
    asking for it raises ``KeyError`` naming the kind, and :meth:`close_all` closes each distinct
    sender once even when it serves several kinds (the LittleHorse client serves three).
    """

    def __init__(self, senders: Mapping[TargetKind, Sender]) -> None:
        self._senders = dict(senders)

    def __getitem__(self, kind: TargetKind) -> Sender:
        try:
            return self._senders[kind]
        except KeyError:
            raise KeyError(f"no sender for target kind {kind.value!r}") from None

    def __iter__(self) -> Iterator[TargetKind]:
        return iter(self._senders)

    def __len__(self) -> int:
        return len(self._senders)

    def distinct(self) -> list[Sender]:
        """Each sender once, in registration order."""
        seen: dict[int, Sender] = {}
        for sender in self._senders.values():
            seen.setdefault(id(sender), sender)
        return list(seen.values())

    async def close_all(self) -> None:
        """Close every distinct sender once."""
        for sender in self.distinct():
            await sender.close()
