"""How each source kind is read: its decoder, its records' first environment, its source.

:func:`source_parts` is the one place that knows the source kinds. The
:class:`~lhpipe.engine.supervisor.Supervisor` asks it for a pipeline's :class:`SourceParts` and
wires them into a :class:`~lhpipe.runtime.runner.PipelineRunner`; everything after decoding
(steps, plans, delivery, commits) is the same for every kind.

* ``from topic`` and ``from webhook`` (topic mode): a Kafka consumer of the topic.
* ``from connector``: :mod:`lhpipe.engine.connectors` (a Kafka consumer of the topic its
  declaration names, values as JSON or text).
* ``from lh_output``: :mod:`lhpipe.sources.lh_output`.
* ``from poll``: :mod:`lhpipe.sources.poll`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lhpipe.core.record import Record
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.program import Program
    from lhpipe.core.senders import Sender
    from lhpipe.graph.model import PipelineSpec
    from lhpipe.runtime.runner import PipelineRunner, RecordDecoder, Source
    from lhpipe.settings import Settings


class PipelineNotRunnable(Exception):
    """A pipeline whose source this process cannot run (the message says why)."""


class Clients(Protocol):
    """The process's shared clients, each made on first need (the Supervisor's)."""

    def kafka_producer(self) -> Any: ...

    def schema_registry(self) -> Any: ...

    def sender(self, kind: ast.TargetKind) -> Sender: ...


def _no_schema_id(raw: bytes | None) -> int | None:
    return None


@dataclass(frozen=True, slots=True)
class SourceParts:
    """What a runner needs from its source kind: how values and keys decode, the names a
    record's expressions start with, and a factory of the source (called with the runner as
    its sink at every start)."""

    decoder: RecordDecoder
    initial_env: Callable[[Record, Any, Any], dict[str, Any]]
    make_source: Callable[[PipelineRunner], Source]
    schema_id_of: Callable[[bytes | None], int | None] = _no_schema_id


def source_parts(
    spec: PipelineSpec, program: Program, settings: Settings, clients: Clients
) -> SourceParts:
    """The parts of ``spec``'s source; :class:`PipelineNotRunnable` when it cannot run."""
    kind = spec.pipeline.source.kind
    if kind is ast.SourceKind.LH_OUTPUT:
        from lhpipe.sources import lh_output

        return lh_output.source_parts(spec, program, settings, clients)
    if kind is ast.SourceKind.POLL:
        from lhpipe.sources import poll

        return poll.source_parts(spec, program, settings, clients)
    if kind is ast.SourceKind.CONNECTOR:
        from lhpipe.engine import connectors

        return connectors.source_parts(spec, program, settings, clients)
    return kafka_parts(spec, program, settings)


def kafka_parts(spec: PipelineSpec, program: Program, settings: Settings) -> SourceParts:
    """A Kafka consumer of the pipeline's topic, in the group ``source.group`` (default
    ``lhpipe-<pipeline>``), decoding as ``value =`` and ``key =`` say."""
    from lhpipe.clients.kafka.consumer import KafkaSource
    from lhpipe.core.decode import Decoder, schema_id_of
    from lhpipe.core.steps import initial_env

    info = spec.pipeline
    name = spec.name
    source = info.source
    topic = source.topic
    if topic is None:
        raise PipelineNotRunnable(f"`from {source.kind.value}` has no topic to read")
    group = source.group or f"lhpipe-{name}"

    def environment(record: Record, key: Any, value: Any) -> dict[str, Any]:
        return initial_env(record, key, value, info)

    def make_source(runner: PipelineRunner) -> KafkaSource:
        return KafkaSource(settings, pipeline=name, topic=topic, group=group, sink=runner)

    return SourceParts(
        decoder=Decoder(source, program),
        initial_env=environment,
        make_source=make_source,
        schema_id_of=schema_id_of,
    )
