"""``from lh_output { kinds = [...] wf_spec = "..." group = ... }``: LittleHorse's output
topic, each record described as an ``event`` (lh_output.md), filtered by ``kinds`` and
``wf_spec``, read ``read_committed`` in the consumer group ``group`` (default
``lhpipe-<pipeline>``). The reading itself (the events, the memory of each WfRun's variables,
the replay at assignment) is :mod:`lhpipe.sources.lh_output_reader`, loaded when a pipeline
runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lhpipe.check import scopes
from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, SourceCheck
from lhpipe.check.program import PipelineInfo, Program, SourceInfo
from lhpipe.graph.kinds import KAFKA_SETTINGS, LITTLEHORSE_SETTINGS, GraphBuilder, SourceGraph
from lhpipe.graph.model import Node, NodeKind
from lhpipe.runtime.kind import (
    Given,
    PipelineNotRunnable,
    SourceDef,
    SourceParts,
    consumer_group,
    kafka_given,
)
from lhpipe.settings import Settings
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.core.record import Record
    from lhpipe.graph.model import PipelineSpec
    from lhpipe.runtime.kind import Clients
    from lhpipe.runtime.runner import PipelineRunner

#: Overrides the whole topic name.
OUTPUT_TOPIC_SETTING = "LHPIPE_LH_OUTPUT_TOPIC"
#: The LittleHorse server's ``LHS_CLUSTER_ID`` (the topic's prefix).
CLUSTER_ID_SETTING = "LHPIPE_LH_CLUSTER_ID"
DEFAULT_CLUSTER_ID = "lhpipe"
TENANT_SETTING = "LHC_TENANT_ID"
DEFAULT_TENANT = "default"
#: How many records before the committed offset are replayed into the memory at assignment.
LOOKBACK_SETTING = "LHPIPE_LH_OUTPUT_LOOKBACK"
DEFAULT_LOOKBACK = 10_000


def output_topic(settings: Settings) -> str:
    """The execution output topic of the configured tenant."""
    topic = settings.get(OUTPUT_TOPIC_SETTING)
    if topic:
        return topic
    cluster = settings.get(CLUSTER_ID_SETTING) or DEFAULT_CLUSTER_ID
    tenant = settings.get(TENANT_SETTING) or DEFAULT_TENANT
    return f"{cluster}_{tenant}_execution"


def lookback(settings: Settings) -> int:
    """``LHPIPE_LH_OUTPUT_LOOKBACK``: records replayed per partition at assignment (0: none)."""
    return settings.integer(LOOKBACK_SETTING, DEFAULT_LOOKBACK, error=PipelineNotRunnable)


def _check(ctx: CheckContext, info: SourceInfo, found: Entries) -> SourceInfo:
    kinds: list[str] = []
    kinds_expr = ctx.setting(found, "kinds")
    if kinds_expr is not None:
        if isinstance(kinds_expr, ast.ListLit):
            for item in kinds_expr.items:
                kind = ctx.choice(item, scopes.LH_OUTPUT_KINDS, "lh_output kind", "LHP409")
                if kind is not None:
                    kinds.append(kind)
        else:
            ctx.report("LHP209", kinds_expr.span, "`kinds` must be a list, e.g. `[wf_run]`")
    wf_spec_expr = ctx.setting(found, "wf_spec")
    wf_spec = ctx.lh_name(wf_spec_expr, "WfSpec") if wf_spec_expr else None
    return replace(info, kinds=tuple(kinds), wf_spec=wf_spec)


def _label(source: SourceInfo) -> str:
    details = []
    if source.kinds:
        details.append(f"kinds {', '.join(source.kinds)}")
    if source.wf_spec:
        details.append(f'wf_spec "{source.wf_spec}"')
    return "\n".join(["from lh_output", *details])


def _upstream(graph: GraphBuilder, source: SourceInfo) -> str | None:
    if source.wf_spec is not None:
        return graph.wf_spec(source.wf_spec)
    return graph.node(Node("lh:output_topic", NodeKind.LITTLEHORSE, "LittleHorse output topic"))


def _settings(source: SourceInfo, program: Program) -> tuple[str, ...]:
    return (
        *KAFKA_SETTINGS,
        *LITTLEHORSE_SETTINGS,
        OUTPUT_TOPIC_SETTING,
        CLUSTER_ID_SETTING,
        LOOKBACK_SETTING,
    )


def lh_output_filter(
    kinds: tuple[str, ...], wf_spec: str | None
) -> Callable[[Mapping[str, Any]], bool]:
    """``from lh_output { kinds wf_spec }`` as a test of a record's names: ``event`` must be
    an object (the source gives ``None`` for output-topic records it does not describe), of
    one of ``kinds`` (when written) and of the WfSpec named ``wf_spec`` (when written; an
    unknown WfSpec, null, does not match).

    The source's events always have both fields; an event given by hand in ``lhpipe test``
    may leave one out, and that filter then does not apply to it.
    """
    wanted = frozenset(kinds)

    def keeps(env: Mapping[str, Any]) -> bool:
        event = env.get("event")
        if not isinstance(event, Mapping):
            return False
        if wanted and "kind" in event and event["kind"] not in wanted:
            return False
        if wf_spec is not None and "wf_spec" in event:
            spec = event["wf_spec"]
            return isinstance(spec, Mapping) and spec.get("name") == wf_spec
        return True

    return keeps


def _filter(source: SourceInfo) -> Callable[[Mapping[str, Any]], bool]:
    return lh_output_filter(source.kinds, source.wf_spec)


def _given(pipeline: PipelineInfo, program: Program, key: Any, value: Any) -> Given:
    """The given value is the event; its key, unless given, is the event's ``wf_run_id``,
    as the output topic keys its records (lh_output.md)."""
    if key is None and isinstance(value, dict):
        key = value.get("wf_run_id")
    return kafka_given(pipeline, program, key, value)


def _parts(
    spec_: PipelineSpec, program: Program, settings: Settings, clients: Clients
) -> SourceParts:
    """A read_committed Kafka consumer of the output topic in the pipeline's group, decoding
    with an :class:`~lhpipe.sources.lh_output_reader.EventDecoder`; ``value`` and ``event``
    are the same dict."""
    from lhpipe.core.steps import initial_env
    from lhpipe.sources.lh_output_reader import EventDecoder, OutputTopicSource

    name = spec_.name
    topic = output_topic(settings)
    group = consumer_group(spec_.pipeline.source, settings)
    replay = lookback(settings)
    decoder = EventDecoder()

    def environment(record: Record, key: Any, value: Any) -> dict[str, Any]:
        return initial_env(record, key, value, event=value)

    def make_source(runner: PipelineRunner) -> OutputTopicSource:
        return OutputTopicSource(
            settings,
            pipeline=name,
            topic=topic,
            group=group,
            sink=runner,
            memory=decoder.memory,
            replay=replay,
        )

    return SourceParts(decoder=decoder, initial_env=environment, make_source=make_source)


SOURCE = SourceDef(
    kind=ast.SourceKind("lh_output"),
    check=SourceCheck(spec("`from lh_output`", "kinds wf_spec group"), _check, event=True),
    graph=SourceGraph(label=_label, upstream=_upstream, settings=_settings),
    parts=_parts,
    given=_given,
    filter=_filter,
)
