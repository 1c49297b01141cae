"""``from topic "name" { value = ... key = ... group = ... }``: a Kafka topic, decoded as the
block says (``value`` a schema, ``json``, ``string`` or ``bytes``; ``key`` ``string`` or
``json``), read in the consumer group ``group`` (default ``lhpipe-<pipeline>``)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

from lhpipe.check import types as t
from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, SourceCheck
from lhpipe.check.program import Program, SourceInfo
from lhpipe.check.types import Type
from lhpipe.graph.kinds import KAFKA_SETTINGS, GraphBuilder, SourceGraph
from lhpipe.runtime.kind import SourceDef
from lhpipe.sources._kafka import kafka_parts
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext

#: How values and keys of a topic decode, besides a schema.
VALUE_FORMATS = ("json", "string", "bytes")
KEY_FORMATS = ("string", "json")


def _check(ctx: CheckContext, info: SourceInfo, found: Entries) -> SourceInfo:
    arg = info.decl.arg
    topic = ctx.topic_name(arg, "a topic") if isinstance(arg, ast.StringLit) else None
    value, value_type = "json", cast(Type, t.JSON)
    value_expr = ctx.setting(found, "value")
    if value_expr is not None:
        if isinstance(value_expr, ast.Name) and value_expr.name in VALUE_FORMATS:
            value = value_expr.name
            value_type = t.PRIMITIVE_TYPES[value]
        elif isinstance(value_expr, ast.Name):
            value, value_type = value_expr.name, ctx.schema_ref(value_expr)
        else:
            ctx.report(
                "LHP209",
                value_expr.span,
                "`value` must be a schema name, `json`, `string` or `bytes`",
            )
            value_type = t.UNKNOWN
    key, key_type = "string", cast(Type, t.STRING)
    key_expr = ctx.setting(found, "key")
    if key_expr is not None:
        chosen = ctx.choice(key_expr, KEY_FORMATS, "key format", "LHP409")
        if chosen is not None:
            key, key_type = chosen, t.PRIMITIVE_TYPES[chosen]
        else:
            key_type = t.UNKNOWN
    return replace(
        info, topic=topic, value=value, value_type=value_type, key=key, key_type=key_type
    )


def _label(source: SourceInfo) -> str:
    return f'from topic "{source.topic}"\nvalue {source.value}'


def _upstream(graph: GraphBuilder, source: SourceInfo) -> str | None:
    return graph.topic(source.topic) if source.topic is not None else None


def _settings(source: SourceInfo, program: Program) -> tuple[str, ...]:
    return KAFKA_SETTINGS if source.topic is not None else ()


SOURCE = SourceDef(
    kind=ast.SourceKind("topic"),
    check=SourceCheck(spec("`from topic`", "value key group"), _check),
    graph=SourceGraph(label=_label, upstream=_upstream, settings=_settings),
    parts=lambda spec_, program, settings, clients: kafka_parts(spec_, program, settings),
)
