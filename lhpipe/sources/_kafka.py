"""The runner parts of a source that reads a Kafka topic (``from topic``, ``from webhook`` in
topic mode, ``from connector``): a consumer of the topic in the pipeline's group, decoding as
``value =`` and ``key =`` say (or as the kind's own decoder does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lhpipe.runtime.kind import PipelineNotRunnable, SourceParts, consumer_group

if TYPE_CHECKING:
    from lhpipe.check.program import Program
    from lhpipe.core.record import Record
    from lhpipe.graph.model import PipelineSpec
    from lhpipe.runtime.runner import PipelineRunner, RecordDecoder
    from lhpipe.settings import Settings


def kafka_parts(
    spec: PipelineSpec,
    program: Program,
    settings: Settings,
    decoder: RecordDecoder | None = None,
) -> SourceParts:
    """A Kafka consumer of the pipeline's topic in its group, decoding with ``decoder`` (by
    default the source's ``value`` and ``key`` formats, Avro from the registry included)."""
    from lhpipe.clients.kafka.consumer import KafkaSource
    from lhpipe.core.avro.wire import schema_id_of
    from lhpipe.core.decode import Decoder
    from lhpipe.core.steps import initial_env

    info = spec.pipeline
    name = spec.name
    source = info.source
    topic = source.topic
    if topic is None:
        raise PipelineNotRunnable(f"`from {source.kind.value}` has no topic to read")
    group = consumer_group(source, settings)

    def environment(record: Record, key: Any, value: Any) -> dict[str, Any]:
        return initial_env(record, key, value)

    def make_source(runner: PipelineRunner) -> KafkaSource:
        return KafkaSource(settings, pipeline=name, topic=topic, group=group, sink=runner)

    if decoder is None:
        return SourceParts(
            decoder=Decoder(source, program),
            initial_env=environment,
            make_source=make_source,
            schema_id_of=schema_id_of,
        )
    return SourceParts(decoder=decoder, initial_env=environment, make_source=make_source)
