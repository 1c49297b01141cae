"""``correlate "external-event-def" { key = ... content = ... }``: a
``PutCorrelatedEventRequest`` per record; the correlation key is written, else the
``correlationId`` header, else the record key. The first event with a key wins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lhpipe.check import types as t
from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, TargetCheck, read_target
from lhpipe.check.names import Scope
from lhpipe.check.program import TargetInfo
from lhpipe.core.errors import PermanentError
from lhpipe.core.planning import (
    PlannedTarget,
    Planner,
    key_text,
    routing_header,
    text_setting,
)
from lhpipe.core.plans import CorrelatePlan, Plan
from lhpipe.core.record import Record
from lhpipe.graph.kinds import TargetGraph
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast
from lhpipe.targets import _littlehorse
from lhpipe.targets.post_event import feeds_event_def

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext


def _rule(ctx: CheckContext, key: str, expr: ast.Expr, typ: t.Type) -> None:
    if key == "key" and not (t.is_string_like(t.unwrap(typ)) or typ == t.NULL):
        ctx.report("LHP201", expr.span, f"a correlation key must be a string, found `{typ}`")


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    name = _littlehorse.lh_name(ctx, target, "ExternalEventDef")
    return read_target(ctx, target, found, scope, name=name, rule=_rule)


def _correlate(target: PlannedTarget) -> Planner:
    event_def = target.info.name
    assert event_def is not None
    label = target.label
    written_key = target.setting("key")
    content = target.setting("content")

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        key = None if written_key is None else text_setting(written_key(env), label, "key")
        if not key:
            key = routing_header(record, "correlationId") or key_text(env, label)
        if not key:
            raise PermanentError(
                f"{label}: no correlation key: `key` is not written, and the record has no "
                "correlationId header and no key",
                code="BAD_ID",
            )
        return CorrelatePlan(
            external_event_def=event_def,
            key=key,
            content=env.get("value") if content is None else content(env),
        )

    return plan


TARGET = TargetDef(
    kind=ast.TargetKind("correlate"),
    check=TargetCheck(spec("`correlate`", "key content"), _check),
    graph=TargetGraph(feeds=feeds_event_def, settings=_littlehorse.settings),
    planner=_correlate,
    compares={"key": "key", "content": "content"},
    sender=_littlehorse.sender,
)
