"""``to log { value = ... }``: one structured log line per record (the value by default), for
trying a pipeline out. The sender is :class:`~lhpipe.targets.to_log_sender.LogSender`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, TargetCheck, read_target
from lhpipe.check.names import Scope
from lhpipe.check.program import Program, TargetInfo
from lhpipe.core.planning import PlannedTarget, Planner
from lhpipe.core.plans import LogPlan, Plan
from lhpipe.core.record import Record
from lhpipe.graph.kinds import GraphBuilder, TargetGraph
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.core.senders import Sender
    from lhpipe.runtime.kind import Clients


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    return read_target(ctx, target, found, scope, name=None)


def _feeds(graph: GraphBuilder, target: TargetInfo) -> str | None:
    return None


def _settings(target: TargetInfo, program: Program) -> tuple[str, ...]:
    return ()


def _planner(target: PlannedTarget) -> Planner:
    value = target.setting("value")

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        return LogPlan(value=env.get("value") if value is None else value(env))

    return plan


def _sender(clients: Clients) -> Sender:
    from lhpipe.targets.to_log_sender import LogSender

    return LogSender()


TARGET = TargetDef(
    kind=ast.TargetKind("to_log"),
    check=TargetCheck(spec("`to log`", "value"), _check),
    graph=TargetGraph(feeds=_feeds, settings=_settings),
    planner=_planner,
    compares={"value": "value"},
    sender=_sender,
)
