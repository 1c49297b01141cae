"""What the checker asks of each source and target kind.

The checker never names a kind: it reads a source's or target's block with the keys the kind
declares (:class:`~lhpipe.check.blocks.BlockSpec`) and hands the entries to the kind's own
check, which reports what is wrong (through the :class:`~lhpipe.check.context.CheckContext`'s
helpers) and returns what it resolved. The kinds live in ``lhpipe/sources/`` and
``lhpipe/targets/``, above this layer; the registry (:mod:`lhpipe.kinds`) hands their check
parts to :func:`lhpipe.check.checker.check` as a :class:`KindChecks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lhpipe.check.blocks import BlockSpec, map_entries
from lhpipe.check.names import Scope
from lhpipe.check.program import SourceInfo, TargetInfo
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.check.types import Type

Entries = Mapping[str, ast.Entry]


def _always(ctx: CheckContext, info: SourceInfo) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """A source kind's part of the checker.

    ``check`` is given the source with the kind, the written settings and the default
    decodings filled in (``value`` as ``json``, ``key`` as ``string``) and returns it
    resolved (topic, group, value and key types...). ``has_record`` says whether its records
    have Kafka coordinates (``record``); ``event``, whether they carry ``event``."""

    block: BlockSpec
    check: Callable[[CheckContext, SourceInfo, Entries], SourceInfo]
    has_record: Callable[[CheckContext, SourceInfo], bool] = _always
    event: bool = False
    #: How messages name the source when it has no record ("a `poll` source...").
    words: Callable[[SourceInfo], str] | None = None


@dataclass(frozen=True, slots=True)
class TargetCheck:
    """A target kind's part of the checker.

    ``check`` is given the target, its known entries and the names the pipeline's expressions
    see at that point, and returns the :class:`~lhpipe.check.program.TargetInfo`. ``expect``
    is the keys an ``expect`` block of a test may write (by default ``block``'s)."""

    block: BlockSpec
    check: Callable[[CheckContext, ast.Target, Entries, Scope], TargetInfo]
    expect: BlockSpec | None = None


@dataclass(frozen=True, slots=True)
class KindChecks:
    """The check part of every kind, by kind (the registry gives it)."""

    sources: Mapping[ast.SourceKind, SourceCheck]
    targets: Mapping[ast.TargetKind, TargetCheck]


#: A target kind's rule for one written setting, given its static type.
SettingRule = Callable[["CheckContext", str, ast.Expr, "Type"], None]


def read_target(
    ctx: CheckContext,
    target: ast.Target,
    found: Entries,
    scope: Scope,
    *,
    name: str | None,
    rule: SettingRule | None = None,
    http_headers: bool = False,
    not_expressions: tuple[str, ...] = (),
) -> TargetInfo:
    """What most targets' checks share: every written setting typed in ``scope`` and given
    to the kind's ``rule``, the ``variables`` and ``headers`` maps (header names checked as
    HTTP's when ``http_headers``). Keys in ``not_expressions`` (``to topic``'s
    ``schema = NAME``) are left to the kind and out of the settings."""
    settings = {
        key: entry.value
        for key, entry in found.items()
        if isinstance(entry, ast.Setting) and key not in not_expressions
    }
    for key, expr in settings.items():
        typ = ctx.exprs.check(expr, scope, allow_env=True)
        if rule is not None:
            rule(ctx, key, expr, typ)
    variables = None
    if "variables" in found:
        pairs = map_entries(found["variables"], ctx.diagnostics) or []
        for pair in pairs:
            ctx.exprs.check(pair.value, scope, allow_env=True)
        variables = {p.key.name: p.value for p in pairs}
    headers = None
    if "headers" in found:
        headers = ctx.header_map(found["headers"], scope, http=http_headers)
    return TargetInfo(target.kind, target, name, settings, variables, headers)
