"""``to connector NAME { key = ... value = ... headers { ... } schema = ... }``: a Kafka record
per record on the topic that the declared sink connector ``NAME`` reads (its ``topic``, which
lhpipe deploys as the connector's ``topics``), written as ``to topic`` writes it. lhpipe deploys
the connector and keeps it in line with its declaration (:mod:`lhpipe.engine.connectors`), so a
pipeline can export to anything Kafka Connect has a sink for: a file, a database, a bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, TargetCheck
from lhpipe.check.names import Scope
from lhpipe.check.program import Program, TargetInfo
from lhpipe.core.planning import PlannedTarget, Planner
from lhpipe.graph.kinds import KAFKA_SETTINGS, GraphBuilder, TargetGraph
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast
from lhpipe.targets import to_topic

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    arg = target.arg
    assert isinstance(arg, ast.Ident)
    connector = ctx.reference(arg, ctx.connectors, "LHP106", "connector", ast.ConnectorDecl)
    if connector is not None and not connector.sink:
        ctx.report(
            "LHP106",
            arg.span,
            f"connector `{connector.name}` is a source connector: `to connector` writes the "
            "topic a sink connector reads",
            f'write its topic with `to topic "{connector.topic}"`, or declare a sink '
            'connector (a class such as "FileStreamSink" or "...SinkConnector")',
        )
    return to_topic.check_record_settings(ctx, target, found, scope, arg.name)


def _topic(program: Program, name: str) -> str:
    return program.connectors[name].topic


def _feeds(graph: GraphBuilder, target: TargetInfo) -> str | None:
    if target.name is None or target.name not in graph.program.connectors:
        return None
    topic_id = graph.topic(_topic(graph.program, target.name))
    graph.edge(topic_id, graph.connector(target.name))
    return topic_id


def _settings(target: TargetInfo, program: Program) -> tuple[str, ...]:
    return KAFKA_SETTINGS


def _reads(target: TargetInfo, program: Program) -> object:
    """The connector's topic: a declaration that moves it restarts the pipeline."""
    connector = program.connectors.get(target.name or "")
    return None if connector is None else ("connector", connector.name, connector.topic)


def _planner(target: PlannedTarget) -> Planner:
    assert target.info.name is not None
    return to_topic.record_planner(target, _topic(target.program, target.info.name))


TARGET = TargetDef(
    kind=ast.TargetKind("to_connector"),
    check=TargetCheck(
        spec("`to connector`", "value key schema", "headers"),
        _check,
        expect=spec("`expect to connector`", "value key", "headers"),
    ),
    graph=TargetGraph(feeds=_feeds, settings=_settings, reads=_reads),
    planner=_planner,
    compares=to_topic.RECORD_FIELDS,
    sender=to_topic.sender,
    verify=to_topic.verify,
)
