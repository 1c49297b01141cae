"""``lhpipe lint --online``: the partitions of the topics the pipelines read, against Kafka.

Kafka gives each partition of a topic to one member of a consumer group, so a topic with fewer
partitions than the ``lhpipe run`` processes sharing its group leaves some processes without
records: they run, and wait. Two warnings say so before it is deployed:

* ``LHP910``, when the user declares how many processes they run (``lint --online
  --processes N``, or the setting ``LHPIPE_PROCESSES``): every topic a pipeline reads through a
  consumer group (``from topic``, ``from webhook`` in topic mode, ``from connector``,
  ``from lh_output``) that exists with fewer than N partitions. A webhook's topic that does not
  exist yet is judged by the partitions lhpipe will create it with
  (:mod:`~lhpipe.clients.kafka.topics`); any other missing topic is not judged (lhpipe does
  not decide its partitions). The warning points at the text naming the topic: the
  ``from topic`` string, the webhook's or connector's ``topic``, or the name of a
  ``from lh_output`` pipeline.
* ``LHP911``, whenever a ``partitions`` is written: the topic it is for (a webhook's topic, a
  dead-letter topic) exists with fewer partitions than written, and lhpipe never changes an
  existing topic, so the setting has no effect. It points at the number.

Kafka is asked only when one of them can apply (processes declared, or a ``partitions``
written), so ``lint --online`` of other files needs no Kafka. :func:`partition_diagnostics` is
the judgement on counts already fetched; :func:`partition_counts` fetches them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from lhpipe.check.program import Program
from lhpipe.clients.kafka.topics import PARTITIONS_SETTING, declared_partitions, default_partitions
from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.settings import Settings, SettingsError, resolve_text
from lhpipe.syntax import ast

PROCESSES_SETTING = "LHPIPE_PROCESSES"
METADATA_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class TopicRead:
    """A topic read through a consumer group, and the text that names it. ``created_with`` is
    the partition count lhpipe creates it with when it is missing (the topic of ``webhook``;
    ``declared``: written as its ``partitions``), ``None`` when lhpipe does not create it."""

    topic: str
    span: Span
    created_with: int | None = None
    webhook: str | None = None
    declared: bool = False


@dataclass(frozen=True, slots=True)
class TopicDeclared:
    """A ``partitions`` written for ``topic``, at ``span`` (the number)."""

    topic: str
    partitions: int
    span: Span


def declared_processes(settings: Settings, processes: int | None) -> int | None:
    """``--processes``, else ``LHPIPE_PROCESSES``, else ``None`` (nothing declared); raises
    :class:`~lhpipe.settings.SettingsError` for a setting that is not a whole number ≥ 1."""
    if processes is not None:
        return processes
    if settings.get(PROCESSES_SETTING) is None:
        return None
    return settings.integer(PROCESSES_SETTING, 1, minimum=1)


def topic_reads(program: Program, settings: Settings) -> list[TopicRead]:
    """Every topic the pipelines of ``program`` read through a consumer group, once per text
    that names it; raises :class:`~lhpipe.settings.SettingsError` for a bad
    ``LHPIPE_TOPIC_PARTITIONS``."""
    declared = declared_partitions(program, settings)
    default = default_partitions(settings)
    found: dict[tuple[str, Span], TopicRead] = {}
    for pipeline in program.pipelines.values():
        for read in _reads_of(pipeline.name, program, settings, declared, default):
            found.setdefault((read.topic, read.span), read)
    return list(found.values())


def _reads_of(
    pipeline: str,
    program: Program,
    settings: Settings,
    declared: Mapping[str, int],
    default: int,
) -> Iterator[TopicRead]:
    info = program.pipelines[pipeline]
    source = info.source
    if source.kind == "topic" and source.topic and source.decl.arg is not None:
        yield TopicRead(source.topic, source.decl.arg.span)
    elif source.kind == "webhook" and source.topic and source.webhook:
        webhook = program.webhooks[source.webhook]
        span = _value_span(webhook.decl.body, "topic") or webhook.decl.name.span
        count = declared.get(source.topic, default)
        yield TopicRead(source.topic, span, count, webhook.name, source.topic in declared)
    elif source.kind == "connector" and source.topic and source.connector:
        connector = program.connectors[source.connector]
        yield TopicRead(
            source.topic, _value_span(connector.decl.body, "topic") or connector.decl.name.span
        )
    elif source.kind == "lh_output":
        from lhpipe.sources.lh_output import output_topic

        yield TopicRead(output_topic(settings), info.decl.name.span)


def topic_declarations(program: Program, settings: Settings) -> list[TopicDeclared]:
    """Every ``partitions`` written in ``program``, with the topic it is for (a dead-letter
    topic from an unset ``env()`` is left out)."""
    found: list[TopicDeclared] = []
    for webhook in program.webhooks.values():
        span = _value_span(webhook.decl.body, "partitions")
        if webhook.topic and webhook.partitions is not None and span is not None:
            found.append(TopicDeclared(webhook.topic, webhook.partitions, span))
    for pipeline in program.pipelines.values():
        policy = pipeline.on_error
        block = pipeline.decl.on_error
        span = _value_span(block, "partitions") if block is not None else None
        if policy.dead_letter is None or policy.partitions is None or span is None:
            continue
        try:
            topic = resolve_text(policy.dead_letter, settings, "dead_letter")
        except SettingsError:
            continue
        found.append(TopicDeclared(topic, policy.partitions, span))
    return found


def needs_kafka(program: Program, processes: int | None) -> bool:
    """Whether either check can say anything about ``program``."""
    if processes is not None:
        return True
    return any(w.partitions is not None for w in program.webhooks.values()) or any(
        p.on_error.partitions is not None for p in program.pipelines.values()
    )


def partition_diagnostics(
    program: Program,
    settings: Settings,
    processes: int | None,
    counts: Mapping[str, int],
) -> list[Diagnostic]:
    """``LHP910`` and ``LHP911`` for ``program``, given the partition count of every existing
    topic (``counts``)."""
    diagnostics: list[Diagnostic] = []
    if processes is not None:
        for read in topic_reads(program, settings):
            diagnostic = _too_few_for_processes(read, processes, counts.get(read.topic))
            if diagnostic is not None:
                diagnostics.append(diagnostic)
    for declared in topic_declarations(program, settings):
        actual = counts.get(declared.topic)
        if actual is not None and actual < declared.partitions:
            diagnostics.append(
                make(
                    "LHP911",
                    declared.span,
                    f'topic "{declared.topic}" exists with {_partitions(actual)}, fewer than '
                    f"`partitions = {declared.partitions}`: lhpipe never changes an existing "
                    "topic",
                    f"add partitions with Kafka's tools (kafka-topics.sh --alter --topic "
                    f"{declared.topic} --partitions {declared.partitions}), or write "
                    f"`partitions = {actual}`",
                )
            )
    return diagnostics


def _too_few_for_processes(
    read: TopicRead, processes: int, actual: int | None
) -> Diagnostic | None:
    share = f"only {{}} of the {processes} processes will get records from it"
    if actual is not None:
        if actual >= processes:
            return None
        return make(
            "LHP910",
            read.span,
            f'topic "{read.topic}" has {_partitions(actual)}: {share.format(actual)}',
            "Kafka gives each partition to one process of a consumer group: add partitions "
            f"(kafka-topics.sh --alter --topic {read.topic} --partitions {processes}; lhpipe "
            f"never changes an existing topic), or run at most {actual}",
        )
    if read.created_with is None or read.created_with >= processes:
        return None
    where = f"in webhook `{read.webhook}`"
    return make(
        "LHP910",
        read.span,
        f'topic "{read.topic}" does not exist yet and lhpipe will create it with '
        f"{_partitions(read.created_with)}: {share.format(read.created_with)}",
        f"write `partitions = {processes}` {where}"
        if read.declared
        else f"write `partitions = {processes}` {where}, or set {PARTITIONS_SETTING}",
    )


def _partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"


def _value_span(block: ast.Block, key: str) -> Span | None:
    entry = block.get(key)
    return entry.value.span if isinstance(entry, ast.Setting) else None


def partition_counts(
    settings: Settings, timeout: float = METADATA_TIMEOUT_SECONDS
) -> dict[str, int]:
    """Every topic of the cluster with its partition count (blocking); raises
    ``confluent_kafka.KafkaException`` when Kafka cannot be asked."""
    from lhpipe.clients.kafka.admin import admin_client

    admin = admin_client(settings)
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
