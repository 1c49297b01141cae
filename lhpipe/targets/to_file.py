"""``to file "path.jsonl" { value = ... }``: one JSON line per record, appended to a file
(the value by default). The sender is :class:`~lhpipe.targets.to_file_sender.FileSender`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, TargetCheck, read_target
from lhpipe.check.names import Scope
from lhpipe.check.program import Program, TargetInfo
from lhpipe.core.planning import PlannedTarget, Planner
from lhpipe.core.plans import FilePlan, Plan
from lhpipe.core.record import Record
from lhpipe.graph.kinds import GraphBuilder, TargetGraph
from lhpipe.graph.model import Node, NodeKind
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.core.senders import Sender
    from lhpipe.runtime.kind import Clients


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    arg = target.arg
    name = ctx.literal_text(arg, "a file path") if isinstance(arg, ast.StringLit) else None
    return read_target(ctx, target, found, scope, name=name)


def _feeds(graph: GraphBuilder, target: TargetInfo) -> str | None:
    if target.name is None:
        return None
    return graph.node(
        Node(
            f"external:file:{target.name}",
            NodeKind.EXTERNAL,
            f"file {target.name}",
            attrs={"path": target.name},
        )
    )


def _settings(target: TargetInfo, program: Program) -> tuple[str, ...]:
    return ()


def _planner(target: PlannedTarget) -> Planner:
    path = target.info.name
    assert path is not None
    value = target.setting("value")

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        return FilePlan(path=path, line=env.get("value") if value is None else value(env))

    return plan


def _sender(clients: Clients) -> Sender:
    from lhpipe.targets.to_file_sender import FileSender

    return FileSender()


TARGET = TargetDef(
    kind=ast.TargetKind("to_file"),
    check=TargetCheck(spec("`to file`", "value"), _check),
    graph=TargetGraph(feeds=_feeds, settings=_settings),
    planner=_planner,
    compares={"value": "line"},
    sender=_sender,
)
