"""What the LittleHorse targets (``run_wf``, ``post_event``, ``correlate``) share: the rules of
their id and number settings, their argument (a LittleHorse name), the connection settings
they read, and their sender, the process's one LittleHorse client
(:class:`~lhpipe.clients.littlehorse.LittleHorseClient`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lhpipe.check import rules
from lhpipe.check import types as t
from lhpipe.check.context import literal_json
from lhpipe.check.program import Program, TargetInfo
from lhpipe.graph.kinds import LITTLEHORSE_SETTINGS
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.check.types import Type
    from lhpipe.core.senders import Sender
    from lhpipe.runtime.kind import Clients

_IDS = ("id", "parent", "wf_run_id", "guid")
_NUMBERS = ("major_version", "revision", "thread_run_number", "node_run_position")


def setting_rule(ctx: CheckContext, key: str, expr: ast.Expr, typ: Type) -> None:
    """Ids must be strings (and valid ids when literal); numbers whole and not negative."""
    if key in _IDS:
        _id_setting(ctx, key, expr, typ)
    elif key in _NUMBERS:
        literal = literal_json(expr)
        if isinstance(literal, int) and not isinstance(literal, bool):
            if literal < 0:
                ctx.report("LHP201", expr.span, f"`{key}` cannot be negative")
        elif not (t.is_dynamic(typ) or t.unwrap(typ) in (t.INT, t.LONG)):
            ctx.report("LHP201", expr.span, f"`{key}` must be an int, found `{typ}`")


def _id_setting(ctx: CheckContext, key: str, expr: ast.Expr, typ: Type) -> None:
    is_wf_run = key in ("id", "parent", "wf_run_id")
    if not (t.is_string_like(t.unwrap(typ)) or typ == t.NULL):
        if is_wf_run:
            ctx.report(
                "LHP402",
                expr.span,
                f"a WfRun id must be a string, found `{typ}`",
                "convert it with `str(...)`" if t.is_numeric(t.unwrap(typ)) else None,
            )
        else:
            ctx.report("LHP201", expr.span, f"`{key}` must be a string, found `{typ}`")
        return
    if not isinstance(expr, ast.StringLit):
        return
    allow_parent = key in ("parent", "wf_run_id")
    if expr.is_plain:
        ok = rules.valid_wf_run_id(expr.text, allow_parent=allow_parent)
    else:
        ok = rules.template_fits(expr, "-A-Za-z0-9_" if allow_parent else "-A-Za-z0-9")
    if not ok:
        shown = f'"{expr.text}"'
        ctx.report(
            "LHP401",
            expr.span,
            f"{shown} is not a valid LittleHorse id for `{key}`",
            "ids are letters, digits and inner hyphens: [A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?",
        )


def lh_name(ctx: CheckContext, target: ast.Target, what: str) -> str | None:
    """The target's argument as a LittleHorse name (a WfSpec, an ExternalEventDef)."""
    return ctx.lh_name(target.arg, what) if isinstance(target.arg, ast.StringLit) else None


def settings(target: TargetInfo, program: Program) -> tuple[str, ...]:
    return LITTLEHORSE_SETTINGS


def sender(clients: Clients) -> Sender:
    """The process's one LittleHorse client, shared by the three kinds."""
    client: Sender = clients.littlehorse()
    return client
