"""The checker's state and the helpers every part of it shares.

:class:`CheckContext` holds what the checker knows while it reads a run's files (the
declarations by name, the schemas, webhooks, pipelines and connectors checked so far, the type
of every expression, the diagnostics) and the helpers that read a value and report what is
wrong with it: a literal string, a topic name, a LittleHorse name, a URL, a duration, a header
map, a reference to another declaration. The declaration checkers (:mod:`.schema_decls`,
:mod:`.connectors`, :mod:`.webhooks`, :mod:`.pipelines`, :mod:`.tests`) are parts of one
checker built on it, and the kinds (``lhpipe/sources/``, ``lhpipe/targets/``) are given it to
check their own blocks (:mod:`lhpipe.check.kinds`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from lhpipe.check import blocks, rules
from lhpipe.check import types as t
from lhpipe.check.expressions import ExpressionChecker
from lhpipe.check.names import EMPTY_SCOPE, Scope, did_you_mean
from lhpipe.check.program import (
    ConnectorInfo,
    EnvRef,
    PipelineInfo,
    SchemaInfo,
    TestInfo,
    Text,
    WebhookInfo,
)
from lhpipe.check.schemas import JSONValue
from lhpipe.check.types import Type
from lhpipe.check.words import a
from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.syntax import DroppedDecl, ast

KIND_NAMES = {
    ast.SchemaDecl: "schema",
    ast.WebhookDecl: "webhook",
    ast.PipelineDecl: "pipeline",
    ast.ConnectorDecl: "connector",
}

T = TypeVar("T")

NamedDecl = ast.SchemaDecl | ast.WebhookDecl | ast.PipelineDecl | ast.ConnectorDecl


class CheckContext:
    """What the checker knows so far, and the helpers that read values (see the module
    docstring)."""

    def __init__(self, files: Sequence[ast.File], unreadable: Sequence[DroppedDecl]) -> None:
        self.files = tuple(files)
        # name -> kind of the declarations with a syntax error (the first of a name wins).
        self.unreadable: dict[str, str] = {}
        for dropped in unreadable:
            self.unreadable.setdefault(dropped.name.name, dropped.kind)
        self.diagnostics: list[Diagnostic] = []
        self.types: dict[int, Type] = {}
        self.exprs = ExpressionChecker(self.diagnostics, self.types)
        self.declared: dict[str, NamedDecl] = {}
        self.folder: dict[int, Path] = {}
        self.schema_types: dict[str, Type] = {}
        self.schemas: dict[str, SchemaInfo] = {}
        self.webhooks: dict[str, WebhookInfo] = {}
        self.pipelines: dict[str, PipelineInfo] = {}
        self.connectors: dict[str, ConnectorInfo] = {}
        self.tests: dict[str, TestInfo] = {}
        # Inline schemas (by id of their record type) with a field of a registry schema.
        self.registry_users: set[int] = set()
        # Literal topic -> the first `partitions` written for it, where, and by what.
        self.partition_claims: dict[str, tuple[int, Span, str]] = {}

    def report(self, code: str, span: Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(make(code, span, message, hint))

    def is_first(self, decl: ast.Decl) -> bool:
        return not isinstance(decl, ast.TestDecl) and self.declared.get(decl.name.name) is decl

    # --- value helpers ------------------------------------------------------------------

    def literal_text(self, expr: ast.Expr, what: str) -> str | None:
        if isinstance(expr, ast.StringLit) and expr.is_plain:
            self.types[id(expr)] = t.STRING
            return expr.text
        self.report("LHP209", expr.span, f"expected {what} as a literal string")
        return None

    def text(self, expr: ast.Expr, what: str) -> Text | None:
        """A literal string or ``env(...)`` as the whole value."""
        if isinstance(expr, ast.Call) and expr.func.name == "env":
            self.exprs.check(expr, EMPTY_SCOPE, allow_env=True)
            args = [a.text for a in expr.args if isinstance(a, ast.StringLit)]
            if len(args) == len(expr.args) and args:
                return EnvRef(args[0], args[1] if len(args) > 1 else None)
            return None
        return self.literal_text(expr, what)

    def choice(self, expr: ast.Expr, options: Sequence[str], what: str, code: str) -> str | None:
        """One of ``options``, written as a bare name (``preset = github``) or a string."""
        if isinstance(expr, ast.Name):
            word = expr.name
        elif isinstance(expr, ast.StringLit) and expr.is_plain:
            word = expr.text
        else:
            word = None
        if word in options:
            return word
        listed = ", ".join(f"`{o}`" for o in options)
        hint = (did_you_mean(word, options) if word else None) or f"one of {listed}"
        shown = f"`{word}`" if word is not None else "this"
        self.report(code, expr.span, f"{shown} is not a valid {what}", hint)
        return None

    def int_literal(self, expr: ast.Expr, what: str, code: str) -> int | None:
        if isinstance(expr, ast.IntLit) and expr.value >= 0:
            return expr.value
        self.report(code, expr.span, f"{what} must be a whole number, 0 or more")
        return None

    def partitions(self, expr: ast.Expr) -> int | None:
        """A partition count: a whole number literal from 1 to ``MAX_PARTITIONS``."""
        if isinstance(expr, ast.IntLit) and 1 <= expr.value <= rules.MAX_PARTITIONS:
            return expr.value
        if isinstance(expr, ast.IntLit) and expr.value > rules.MAX_PARTITIONS:
            hint = "a topic rarely needs more than a few hundred partitions"
        elif isinstance(expr, ast.IntLit) or (
            isinstance(expr, ast.Unary) and expr.op is ast.UnaryOp.NEG
        ):
            hint = "a topic has at least one partition"
        else:
            hint = (
                "write a whole number, e.g. `partitions = 6`: like a topic's name, it is known "
                "before anything runs"
            )
        self.report(
            "LHP410",
            expr.span,
            f"`partitions` must be a whole number from 1 to {rules.MAX_PARTITIONS}",
            hint,
        )
        return None

    def claim_partitions(self, topic: Text | None, count: int, span: Span, who: str) -> None:
        """``count`` partitions for the literal ``topic``, written at ``span`` by ``who``;
        another count written for the same topic elsewhere is ``LHP412``."""
        if not isinstance(topic, str) or not topic:
            return
        first = self.partition_claims.get(topic)
        if first is None:
            self.partition_claims[topic] = (count, span, who)
            return
        if first[0] != count:
            where = f"line {first[1].line}" if first[1].file == span.file else str(first[1])
            self.report(
                "LHP412",
                span,
                f'topic "{topic}" is given {count} partitions here and {first[0]} by {first[2]} '
                f"(at {where})",
                "a topic has one partition count: write the same number in both places, or "
                "leave one out",
            )

    def duration(self, expr: ast.Expr, what: str, code: str) -> int | None:
        if isinstance(expr, ast.DurationLit):
            return expr.millis
        self.report(
            code, expr.span, f"{what} must be a duration", "for example `250ms`, `5s`, `2m`"
        )
        return None

    def topic_name(self, expr: ast.Expr, what: str) -> str | None:
        text = self.literal_text(expr, what)
        if text is not None and not rules.valid_topic(text):
            self.report(
                "LHP406",
                expr.span,
                f'"{text}" is not a valid Kafka topic name',
                "use 1 to 249 letters, digits, `.`, `_` and `-`",
            )
            return None
        return text

    def string_list(self, expr: ast.Expr, what: str) -> list[tuple[str, ast.StringLit]]:
        if not isinstance(expr, ast.ListLit):
            self.report("LHP209", expr.span, f"{what} must be a list of strings")
            return []
        items: list[tuple[str, ast.StringLit]] = []
        for item in expr.items:
            text = self.literal_text(item, f"each of {what}")
            if text is not None and isinstance(item, ast.StringLit):
                items.append((text, item))
        return items

    def setting(self, found: Mapping[str, ast.Entry], key: str) -> ast.Expr | None:
        entry = found.get(key)
        return entry.value if isinstance(entry, ast.Setting) else None

    def require(
        self, found: Mapping[str, ast.Entry], keys: Sequence[str], anchor: Span, what: str
    ) -> None:
        for key in keys:
            if key not in found:
                self.report("LHP108", anchor, f"{what} needs `{key}`")

    def url(self, literal: ast.StringLit) -> str | None:
        first = literal.parts[0] if literal.parts else ""
        if isinstance(first, str) and first.startswith(("http://", "https://")):
            self.url_credentials(literal)
            return literal.text if literal.is_plain else None
        self.report("LHP409", literal.span, "expected an http:// or https:// URL")
        return None

    def url_credentials(self, literal: ast.StringLit) -> None:
        """LHP413 for each credential written out in a URL (rules.url_credentials)."""
        span = literal.span
        for start, end, what in rules.url_credentials(literal.text):
            where = _span_in_string(literal, start, end) or span
            if what.startswith("the password"):
                hint = (
                    "drop `user:password@` and send a header read from the environment: "
                    '`headers { authorization = "Basic ${env("BASIC_AUTH")}" }` '
                    "(BASIC_AUTH: the base64 of user:password)"
                )
            else:
                hint = (
                    "send it in a header read from the environment if the endpoint takes "
                    'one: `headers { "X-Api-Key" = env("API_KEY") }` or `headers { '
                    'authorization = "Bearer ${env("API_TOKEN")}" }`'
                )
            self.report("LHP413", where, f"a credential is written in the URL: {what}", hint)

    def is_unreadable(self, name: str, kind: str) -> bool:
        """Whether ``name`` is a declaration of ``kind`` that has a syntax error (and no
        readable declaration has that name)."""
        return name not in self.declared and self.unreadable.get(name) == kind

    def reference(
        self,
        name: ast.Ident,
        checked: Mapping[str, T],
        code: str,
        what: str,
        kind: type[ast.Decl],
    ) -> T | None:
        """The checked declaration ``name`` refers to in ``checked`` (the webhooks, the
        connectors...), or ``None``: reported as unknown (``code``) unless it is declared
        as ``kind`` but not usable, whose own problem is reported already."""
        found = checked.get(name.name)
        if found is None and not isinstance(self.declared.get(name.name), kind):
            self.unknown_ref(name, code, what, kind)
        return found

    def unknown_ref(self, name: ast.Ident, code: str, what: str, kind: type[ast.Decl]) -> None:
        if self.is_unreadable(name.name, what):
            return
        other = self.declared.get(name.name)
        if other is not None:
            other_kind: str | None = KIND_NAMES[type(other)]
        else:
            other_kind = self.unreadable.get(name.name)
        if other_kind is not None:
            self.report(code, name.span, f"`{name.name}` is {a(other_kind)}, not {a(what)}")
            return
        candidates = [n for n, d in self.declared.items() if isinstance(d, kind)]
        self.report(
            code, name.span, f"unknown {what} `{name.name}`", did_you_mean(name.name, candidates)
        )

    def lh_name(self, expr: ast.Expr, what: str) -> str | None:
        text = self.literal_text(expr, a(f"{what} name"))
        if text is not None and not rules.valid_lh_name(text):
            suggestion = _to_lh_name(text)
            self.report(
                "LHP403",
                expr.span,
                f'"{text}" is not a valid {what} name',
                "LittleHorse names are lower-case letters, digits and inner hyphens"
                + (f': "{suggestion}"' if suggestion else ""),
            )
            return None
        return text

    def schema_ref(self, expr: ast.Name) -> Type:
        found = self.schema_types.get(expr.name)
        if found is not None:
            return found
        if self.is_unreadable(expr.name, "schema"):
            return t.UNKNOWN
        hint = did_you_mean(expr.name, [*self.schema_types, "json", "bytes", "string"])
        self.report("LHP103", expr.span, f"unknown schema `{expr.name}`", hint)
        return t.UNKNOWN

    def header_map(
        self, entry: ast.Entry, scope: Scope, *, http: bool = False
    ) -> dict[str, ast.Expr]:
        """The headers of a map-form key; ``http`` headers must have valid HTTP names (Kafka
        header names are any text)."""
        headers: dict[str, ast.Expr] = {}
        for pair in blocks.map_entries(entry, self.diagnostics) or []:
            if http and not rules.valid_http_header(pair.key.name):
                self.report(
                    "LHP409",
                    pair.key.span,
                    f'"{pair.key.name}" is not a valid HTTP header name',
                    "header names are letters, digits and ! # $ % & ' * + - . ^ _ ` | ~",
                )
            typ = self.exprs.check(pair.value, scope, allow_env=True)
            if not (t.is_scalar(typ) or typ == t.NULL):
                self.report(
                    "LHP201",
                    pair.value.span,
                    f"a header value must be text, found `{typ}`",
                )
            headers[pair.key.name] = pair.value
        return headers


# --- helpers ------------------------------------------------------------------------------


class _NotLiteral:
    """The marker for an expression that is not a literal value."""


NOT_LITERAL = _NotLiteral()


def literal_json(expr: ast.Expr) -> JSONValue:
    """The JSON value of a literal expression, or ``NOT_LITERAL``."""
    if isinstance(expr, ast.StringLit):
        return expr.text if expr.is_plain else NOT_LITERAL
    if isinstance(expr, ast.IntLit | ast.FloatLit | ast.BoolLit):
        return expr.value
    if isinstance(expr, ast.NullLit):
        return None
    if isinstance(expr, ast.ListLit):
        items = [literal_json(i) for i in expr.items]
        return NOT_LITERAL if any(i is NOT_LITERAL for i in items) else items
    if isinstance(expr, ast.ObjectLit):
        fields = {e.key.name: literal_json(e.value) for e in expr.entries}
        return NOT_LITERAL if any(v is NOT_LITERAL for v in fields.values()) else fields
    if isinstance(expr, ast.Unary) and expr.op is ast.UnaryOp.NEG:
        inner = literal_json(expr.operand)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner
    return NOT_LITERAL


def _to_lh_name(text: str) -> str | None:
    """What LittleHorse's own ``toLHName`` would make of ``text``, if that is valid."""
    name = re.sub(r"[. _\n]", "-", text.lower())
    name = re.sub(r"[^0-9a-z-]", "", name)
    name = re.sub(r"-{2,}", "-", name).strip("-")
    return name if rules.valid_lh_name(name) else None


def _span_in_string(literal: ast.StringLit, start: int, end: int) -> Span | None:
    """The source span of ``literal.text[start:end]`` when it lies in one literal part whose
    columns are certain (one line, no escape in that part); else None."""
    span = literal.span
    if span.line != span.end_line:
        return None
    offset = 0  # where the part begins in ``literal.text`` (an interpolation counts 6)
    source = span.col + 1  # where the part begins in the line
    parts = literal.parts
    for index, part in enumerate(parts):
        if not isinstance(part, str):
            offset += len("${...}")
            source = part.span.end_col + 1  # after `}`, when written without spaces
            continue
        following = parts[index + 1] if index + 1 < len(parts) else None
        if following is None:
            part_end = span.end_col - 1  # before the closing quote
        elif isinstance(following, str):
            return None
        else:
            part_end = following.span.col - 2  # before `${`
        if offset <= start and end <= offset + len(part):
            if part_end - source != len(part):
                return None  # an escape or spaces inside `${ }`: columns not certain
            return replace(span, col=source + start - offset, end_col=source + end - offset)
        offset += len(part)
    return None
