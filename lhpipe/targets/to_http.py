"""``to http "url" { method = ... body = ... headers { ... } }``: a JSON request per record
(``POST`` of the value by default); the URL may hold ``${...}`` parts. The sender is
:class:`~lhpipe.targets.to_http_sender.HttpSender` (retries by status, ``Retry-After``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lhpipe.check import rules
from lhpipe.check import types as t
from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, TargetCheck, read_target
from lhpipe.check.names import Scope
from lhpipe.check.program import Program, TargetInfo
from lhpipe.core.evaluate import compile_expr
from lhpipe.core.planning import PlannedTarget, Planner, header_texts
from lhpipe.core.plans import HttpPlan, Plan
from lhpipe.core.record import Record
from lhpipe.graph.compile import expr_text
from lhpipe.graph.kinds import GraphBuilder, TargetGraph
from lhpipe.graph.model import Node, NodeKind
from lhpipe.runtime.kind import TargetDef
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.core.senders import Sender
    from lhpipe.runtime.kind import Clients


def _rule(ctx: CheckContext, key: str, expr: ast.Expr, typ: t.Type) -> None:
    if key == "method":
        method = ctx.literal_text(expr, "an HTTP method")
        if method is not None and method not in rules.HTTP_METHODS:
            ctx.report(
                "LHP409",
                expr.span,
                f'"{method}" is not an HTTP method',
                "one of " + ", ".join(rules.HTTP_METHODS),
            )


def _check(ctx: CheckContext, target: ast.Target, found: Entries, scope: Scope) -> TargetInfo:
    name = None
    if isinstance(target.arg, ast.StringLit):
        ctx.exprs.check(target.arg, scope)
        name = ctx.url(target.arg)
    return read_target(ctx, target, found, scope, name=name, rule=_rule, http_headers=True)


def _feeds(graph: GraphBuilder, target: TargetInfo) -> str | None:
    if target.name is None:
        return None
    method = target.settings.get("method")
    if method is None:
        verb = "POST"
    elif isinstance(method, ast.StringLit) and method.is_plain:
        verb = method.text
    else:
        verb = expr_text(method)
    return graph.node(
        Node(
            f"external:http:{target.name}",
            NodeKind.EXTERNAL,
            f"{verb} {target.name}",
            attrs={"url": target.name},
        )
    )


def _settings(target: TargetInfo, program: Program) -> tuple[str, ...]:
    return ()


def _planner(target: PlannedTarget) -> Planner:
    arg = target.info.decl.arg
    assert isinstance(arg, ast.StringLit)
    url = compile_expr(arg, target.program)
    method = target.setting("method")
    body = target.setting("body")
    headers = target.map(target.info.headers)
    label = target.label

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        return HttpPlan(
            url=url(env),
            method="POST" if method is None else method(env),
            headers=header_texts(headers, env, label),
            body=env.get("value") if body is None else body(env),
        )

    return plan


def _sender(clients: Clients) -> Sender:
    from lhpipe.targets.to_http_sender import HttpSender

    return HttpSender()


TARGET = TargetDef(
    kind=ast.TargetKind("to_http"),
    check=TargetCheck(spec("`to http`", "method body", "headers"), _check),
    graph=TargetGraph(feeds=_feeds, settings=_settings),
    planner=_planner,
    compares={"method": "method", "body": "body", "headers": "headers"},
    sender=_sender,
)
