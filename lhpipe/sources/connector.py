"""``from connector NAME``: the topic a declared Kafka Connect source connector writes (its
``topic``), read like ``from topic``; values decode as JSON when they are JSON (a
JsonConverter envelope gives its payload) and as UTF-8 text otherwise. lhpipe deploys the
connector itself (:mod:`lhpipe.engine.connectors`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from lhpipe.check import types as t
from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, SourceCheck
from lhpipe.check.program import Program, SourceInfo
from lhpipe.core.decode import Decoder
from lhpipe.core.errors import DecodeError
from lhpipe.graph.compile import env_names_in
from lhpipe.graph.kinds import CONNECT_SETTINGS, KAFKA_SETTINGS, GraphBuilder, SourceGraph
from lhpipe.runtime.kind import SourceDef
from lhpipe.sources._kafka import kafka_parts
from lhpipe.syntax import ast
from lhpipe.syntax.canonical import structure

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext


def _check(ctx: CheckContext, info: SourceInfo, found: Entries) -> SourceInfo:
    arg = info.decl.arg
    assert isinstance(arg, ast.Ident)
    connector = ctx.reference(arg, ctx.connectors, "LHP106", "connector", ast.ConnectorDecl)
    if connector is None:
        return replace(info, connector=arg.name, value_type=t.UNKNOWN)
    if connector.sink:
        ctx.report(
            "LHP106",
            arg.span,
            f"connector `{connector.name}` is a sink connector: it reads its topic, and "
            "`from connector` reads what a source connector writes",
            f'read its topic with `from topic "{connector.topic}"`',
        )
    return replace(info, connector=connector.name, topic=connector.topic)


def _upstream(graph: GraphBuilder, source: SourceInfo) -> str | None:
    if source.connector is None:
        return None
    connector_id = graph.connector(source.connector)
    topic_id = graph.topic(graph.program.connectors[source.connector].topic)
    graph.edge(connector_id, topic_id)
    return topic_id


def _settings(source: SourceInfo, program: Program) -> set[str]:
    names = set(CONNECT_SETTINGS)
    if source.topic is not None:
        names.update(KAFKA_SETTINGS)
    connector = program.connectors.get(source.connector or "")
    if connector is not None:
        names.update(env_names_in(connector.config))
    return names


def _reads(source: SourceInfo, program: Program) -> object:
    connector = program.connectors.get(source.connector or "")
    if connector is None:
        return None
    return ("connector", structure(connector.decl))


class ConnectorValueDecoder(Decoder):
    """Values of a connector's topic: JSON when the record is JSON text (the payload of a
    JsonConverter ``{"schema", "payload"}`` envelope), else the record's UTF-8 text, so a
    FileStreamSource line is its JSON when it holds JSON and its text otherwise."""

    def decode_value(self, raw: bytes | None, writer_schema: Any = None) -> Any:
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(
                    f"the value is neither JSON nor UTF-8 text: byte 0x{raw[exc.start]:02x} "
                    f"at offset {exc.start}"
                ) from exc
        if (
            isinstance(value, dict)
            and value.keys() == {"schema", "payload"}
            and isinstance(value["schema"], dict | None)
        ):
            return value["payload"]
        return value


SOURCE = SourceDef(
    kind=ast.SourceKind("connector"),
    check=SourceCheck(spec("`from connector`", "group"), _check),
    graph=SourceGraph(
        label=lambda source: f"from connector {source.connector}",
        upstream=_upstream,
        settings=_settings,
        reads=_reads,
    ),
    parts=lambda spec_, program, settings, clients: kafka_parts(
        spec_, program, settings, ConnectorValueDecoder(spec_.pipeline.source, program)
    ),
)
