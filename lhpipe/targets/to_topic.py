"""``to topic "name" { key = ... value = ... headers { ... } schema = NAME }``: a Kafka record
per record, its value JSON, or Avro in the registry wire format with ``schema = NAME``; without
``key`` the record's own key is kept (and with it the per-key order downstream). The sender is
:class:`~lhpipe.targets.to_topic_sender.TopicSender`, on the process's idempotent producer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lhpipe.check import types as t
from lhpipe.check.blocks import spec
from lhpipe.check.export_schema import misfits
from lhpipe.check.kinds import Entries, TargetCheck, read_target
from lhpipe.check.names import Scope
from lhpipe.check.program import Program, TargetInfo
from lhpipe.core.errors import ExpressionError
from lhpipe.core.evaluate import describe, to_text
from lhpipe.core.planning import PlannedTarget, Planner, header_texts
from lhpipe.core.plans import Plan, TopicPlan, TopicSchema
from lhpipe.core.record import Record
from lhpipe.diagnostics import Span
from lhpipe.graph.kinds import KAFKA_SETTINGS, GraphBuilder, TargetGraph
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.core.senders import Sender
    from lhpipe.runtime.kind import Clients


def _rule(ctx: CheckContext, key: str, expr: ast.Expr, typ: t.Type) -> None:
    if key == "key" and not (
        t.unwrap(typ) in (t.STRING, t.BYTES) or t.is_dynamic(typ) or typ == t.NULL
    ):
        ctx.report("LHP201", expr.span, f"a Kafka key must be a string or bytes, found `{typ}`")


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    arg = target.arg
    name = ctx.topic_name(arg, "a topic") if isinstance(arg, ast.StringLit) else None
    return check_record_settings(ctx, target, found, scope, name)


def check_record_settings(
    ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope, name: str | None
) -> TargetInfo:
    """The settings of a target that writes Kafka records (``key``, ``value``, ``headers``,
    ``schema = NAME``), ``name`` being what the target is called by."""
    info = read_target(
        ctx, target, found, scope, name=name, rule=_rule, not_expressions=("schema",)
    )
    schema_expr = ctx.setting(found, "schema")
    if schema_expr is None:
        return info
    schema = _export_schema(ctx, schema_expr, info.settings.get("value"), scope)
    return replace(info, schema=schema)


def _export_schema(
    ctx: CheckContext, expr: ast.Expr, value: ast.Expr | None, scope: Scope
) -> str | None:
    """``schema = NAME``: the schema's name, with the value's static type checked against it
    (``value`` when written, else the record's value)."""
    if not isinstance(expr, ast.Name):
        ctx.report("LHP209", expr.span, "`schema` must be the name of a declared schema")
        return None
    name = expr.name
    schema_type = ctx.schema_types.get(name)
    if schema_type is None:
        ctx.unknown_ref(ast.Ident(name, expr.span), "LHP103", "schema", ast.SchemaDecl)
        return None
    if value is not None:
        value_type = ctx.types.get(id(value), t.UNKNOWN)
    else:
        binding = scope.names.get("value")
        value_type = binding.type if binding and binding.unavailable is None else t.UNKNOWN
    for misfit in misfits(value_type, schema_type):
        span = _span_at(value, misfit.path) if value is not None else expr.span
        ctx.report(
            "LHP202" if misfit.unknown_field else "LHP201",
            span,
            misfit.message,
            misfit.hint
            if value is not None
            else f"without `value`, the record's value (`{value_type}`) is written: "
            "write `value = { ... }` to shape it",
        )
    return name


def _span_at(expr: ast.Expr, path: tuple[str, ...]) -> Span:
    """The span of the part of an object literal ``path`` names (field by field), as deep as
    the literal goes; else the span of ``expr``."""
    for segment in path:
        if not isinstance(expr, ast.ObjectLit):
            break
        entry = next((e for e in expr.entries if e.key.name == segment), None)
        if entry is None:
            break
        expr = entry.value
    return expr.span


def _feeds(graph: GraphBuilder, target: TargetInfo) -> str | None:
    return graph.topic(target.name) if target.name is not None else None


def _settings(target: TargetInfo, program: Program) -> tuple[str, ...]:
    return KAFKA_SETTINGS


def _planner(target: PlannedTarget) -> Planner:
    topic = target.info.name
    assert topic is not None
    return record_planner(target, topic)


def record_planner(target: PlannedTarget, topic: str) -> Planner:
    """A :class:`~lhpipe.core.plans.TopicPlan` per record, to ``topic``: the written ``key``
    (else the record's own), ``value`` (else the record's), ``headers`` and schema."""
    label = target.label
    written_key = target.setting("key")
    value = target.setting("value")
    headers = target.map(target.info.headers)
    schema = _topic_schema(target)

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        if written_key is not None:
            key = _topic_key(written_key(env), label)
        else:
            key = _forwarded_key(env.get("key"))
        return TopicPlan(
            topic=topic,
            key=key,
            value=env.get("value") if value is None else value(env),
            headers=header_texts(headers, env, label),
            schema=schema,
        )

    return plan


def _topic_schema(target: PlannedTarget) -> TopicSchema | None:
    """The Avro schema of ``schema = NAME``: its Avro JSON, or its registry subject."""
    name = target.info.schema
    if name is None:
        return None
    info = target.program.schemas[name]
    return TopicSchema(name=name, avro=info.avro, subject=info.subject)


def _topic_key(key: Any, label: str) -> str | None:
    if key is None or isinstance(key, str):
        return key
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise ExpressionError(f"{label}: `key` must be text, found {describe(key)}")


def _forwarded_key(key: Any) -> str | None:
    """Without ``key``, the record's own key is kept (so is its per-key order downstream);
    a ``json`` key as its JSON text."""
    if key is None or isinstance(key, str):
        return key
    return to_text(key)


def sender(clients: Clients) -> Sender:
    from lhpipe.targets.to_topic_sender import TopicSender

    return TopicSender(clients.kafka_producer(), clients.schema_registry)


def verify(plan: Plan) -> None:
    """The value must fit its inline or ``.avsc`` schema, as it must when sent (a registry
    schema is not known offline); raises the sender's ``ENCODE`` error."""
    if not isinstance(plan, TopicPlan) or plan.schema is None or plan.value is None:
        return
    if plan.schema.avro is not None:
        from lhpipe.core.avro.encode import AvroValueEncoder

        AvroValueEncoder(plan.schema.name, plan.schema.avro).to_avro(plan.value)


#: What ``expect`` compares of a record: its key, value and headers.
RECORD_FIELDS = {"key": "key", "value": "value", "headers": "headers"}

TARGET = TargetDef(
    kind=ast.TargetKind("to_topic"),
    check=TargetCheck(
        spec("`to topic`", "value key schema", "headers"),
        _check,
        # What a target sends: a topic's ``schema`` is how, not what.
        expect=spec("`expect to topic`", "value key", "headers"),
    ),
    graph=TargetGraph(feeds=_feeds, settings=_settings),
    planner=_planner,
    compares=RECORD_FIELDS,
    sender=sender,
    verify=verify,
)
