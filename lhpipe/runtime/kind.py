"""What a source or target kind is made of: the parts every stage asks of it.

A kind is one module (``lhpipe/sources/topic.py``, ``lhpipe/targets/to_file.py``...) that
builds one :class:`SourceDef` or :class:`TargetDef` holding everything about the kind:

* its **check** (:class:`~lhpipe.check.kinds.SourceCheck`,
  :class:`~lhpipe.check.kinds.TargetCheck`): the keys of its block and the rules of its
  argument and settings, for ``lhpipe lint``;
* its **graph** part (:class:`~lhpipe.graph.kinds.SourceGraph`,
  :class:`~lhpipe.graph.kinds.TargetGraph`): the nodes it is drawn with and the connection
  settings it reads (fingerprints, reloads);
* for a target, its **planner** (pure: what it would send for one record, which
  ``lhpipe test`` runs), the plan fields an ``expect`` block compares, what ``lhpipe test``
  checks of a plan besides, and its **sender** (built from the process's shared clients);
* for a source, its **parts** for a runner (decoder, first names, the source itself), how
  ``lhpipe test`` makes the record a ``given`` block describes, and its own filter of records.

The registry (:mod:`lhpipe.kinds`) holds one of each per kind of the grammar and refuses to be
built when one is missing; the generic stages (checker, compiler, ``lhpipe test``, the pipeline
builder, the Supervisor) loop over it and never name a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lhpipe.check.kinds import SourceCheck, TargetCheck
from lhpipe.check.program import PipelineInfo, Program, SourceInfo, TargetInfo, Text
from lhpipe.core.planning import PlannedTarget, Planner
from lhpipe.core.plans import Plan
from lhpipe.core.record import KafkaOrigin, Origin, Record
from lhpipe.core.senders import Sender
from lhpipe.graph.kinds import SourceGraph, TargetGraph
from lhpipe.settings import Settings
from lhpipe.settings import resolve_text as read_setting
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.program import WebhookInfo
    from lhpipe.graph.model import PipelineSpec
    from lhpipe.runtime.runner import PipelineRunner, RecordDecoder, Source


class PipelineNotRunnable(Exception):
    """A pipeline whose source this process cannot run (the message says why)."""


class Clients(Protocol):
    """The process's shared clients, each made on first need (the Supervisor's)."""

    settings: Settings

    def kafka_producer(self) -> Any: ...

    def schema_registry(self) -> Any: ...

    def littlehorse(self) -> Any: ...

    def sender(self, kind: ast.TargetKind) -> Sender: ...


def resolve_text(value: Text, settings: Settings, what: str) -> str:
    """A literal, or an ``env("NAME", "default")`` read from the settings now
    (:class:`PipelineNotRunnable` when it is unset)."""
    return read_setting(value, settings, what, PipelineNotRunnable)


def consumer_group(source: SourceInfo, settings: Settings) -> str:
    """The consumer group of a source that reads Kafka, ``env(...)`` read now."""
    if source.group is None:
        raise PipelineNotRunnable(f"`from {source.kind.value}` has no consumer group")
    return resolve_text(source.group, settings, "group")


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


@dataclass(frozen=True, slots=True)
class Given:
    """The record a test's ``given`` block describes, as the source would receive it: its
    origin, its key and value (not yet encoded), and, for a direct-mode webhook, the webhook
    whose request body checks the value (the record then arrives as a request, not from
    Kafka)."""

    origin: Origin
    key: Any
    value: Any
    request: WebhookInfo | None = None


def kafka_given(pipeline: PipelineInfo, program: Program, key: Any, value: Any) -> Given:
    """A given record of a source that reads Kafka: partition 0, offset 0 of its topic (the
    source kind as the topic when it has none)."""
    source = pipeline.source
    return Given(KafkaOrigin(source.topic or source.kind.value, 0, 0), key, value)


def _no_filter(source: SourceInfo) -> None:
    return None


def _nothing_to_verify(plan: Plan) -> None:
    return None


SourceFilter = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class SourceDef:
    """Everything about one source kind (see the module docstring). ``parts`` raises
    :class:`PipelineNotRunnable` when the pipeline cannot run in this process; ``given``
    makes ``lhpipe test``'s record; ``filter`` is the kind's own test of a record's names
    (``None``: it keeps every record)."""

    kind: ast.SourceKind
    check: SourceCheck
    graph: SourceGraph
    parts: Callable[[PipelineSpec, Program, Settings, Clients], SourceParts]
    given: Callable[[PipelineInfo, Program, Any, Any], Given] = kafka_given
    filter: Callable[[SourceInfo], SourceFilter | None] = _no_filter


@dataclass(frozen=True, slots=True)
class TargetDef:
    """Everything about one target kind (see the module docstring). ``compares`` maps each
    key an ``expect`` block may write to the plan's field it is compared with; ``verify``
    checks a plan as the sender would before sending (``lhpipe test`` has no sender), raising
    the sender's permanent error."""

    kind: ast.TargetKind
    check: TargetCheck
    graph: TargetGraph
    planner: Callable[[PlannedTarget], Planner]
    compares: Mapping[str, str]
    sender: Callable[[Clients], Sender]
    verify: Callable[[Plan], None] = _nothing_to_verify


def compile_planner(
    definition: TargetDef, target: TargetInfo, pipeline: PipelineInfo, program: Program
) -> Planner:
    """``target`` of ``pipeline`` compiled into its kind's :data:`Planner`."""
    return definition.planner(PlannedTarget(target, pipeline, program))
