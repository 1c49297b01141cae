"""The checker: resolves names and types across all files of one run.

Decisions where the spec leaves room:

* Schemas, webhooks, pipelines and connectors share one namespace: a name means one thing in a
  run (``LHP101`` for the second declaration, wherever it is). Test titles are unique among
  tests. A schema may not take the name of a built-in type (``LHP113``).
* A duplicate declaration is still checked on its own, so its other problems are reported too;
  references resolve to the first one.
* ``from topic`` decodes ``value`` as ``json`` and ``key`` as ``string`` unless told otherwise;
  a webhook's ``body`` is ``json`` unless told otherwise.
* A name that cannot be resolved (an unknown schema, webhook...) makes what depends on it
  dynamic, so one mistake gives one diagnostic.
* Settings that take text (``issuer``, ``secret``, ``group``, ``config`` values, target
  settings...) may be ``env("NAME")`` as their whole value; ``LHP303`` warns about a
  literal ``secret``.
* ``on_error``: ``dead_letter`` and ``permanent`` together are contradictory (``LHP404``):
  with a dead-letter topic nothing is stopped or skipped.
* ``partitions`` (a webhook's, or ``on_error``'s for its dead-letter topic) is a literal whole
  number from 1 to 10000 (``LHP410``): it decides the topic lhpipe creates, so it is known
  before anything runs, like a topic name. It needs a topic to apply to (``LHP411``: a
  direct-mode webhook, an ``on_error`` without ``dead_letter``), and a topic written in
  several places has one count (``LHP412``); a place that leaves it out takes the others'.
* A declaration with a syntax error inside is not in the AST, but the parser gives its kind and
  name (:class:`lhpipe.syntax.DroppedDecl`). It exists, unread: a reference to it is dynamic
  and not reported (no "unknown schema" after a typo in that schema, the syntax error is the one
  diagnostic), a reference of the wrong kind is still reported, and no direct-mode webhook is
  said to have no reader while a pipeline could not be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal, cast

from lhpipe.check import blocks, rules, scopes
from lhpipe.check import types as t
from lhpipe.check.export_schema import misfits
from lhpipe.check.expressions import ExpressionChecker
from lhpipe.check.names import EMPTY_SCOPE, Binding, Scope, did_you_mean
from lhpipe.check.program import (
    Auth,
    ConnectorInfo,
    EnvRef,
    ErrorPolicy,
    HmacAuth,
    NoAuth,
    OAuthAuth,
    PipelineInfo,
    Program,
    SchemaInfo,
    SourceInfo,
    TargetInfo,
    TestInfo,
    Text,
    WebhookInfo,
)
from lhpipe.check.schemas import (
    NO_DEFAULT,
    AvroCompiler,
    InlineField,
    JSONValue,
    SchemaFileError,
    read_avsc,
)
from lhpipe.check.types import Type
from lhpipe.check.words import a
from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.syntax import DroppedDecl, ast
from lhpipe.syntax.formatter import target_words

_KIND_NAMES = {
    ast.SchemaDecl: "schema",
    ast.WebhookDecl: "webhook",
    ast.PipelineDecl: "pipeline",
    ast.ConnectorDecl: "connector",
}

_NamedDecl = ast.SchemaDecl | ast.WebhookDecl | ast.PipelineDecl | ast.ConnectorDecl

_DECODE_VALUE = ("json", "string", "bytes")
_DECODE_KEY = ("string", "json")
_PRESETS = ("github", "stripe", "standard_webhooks")
_DEFAULT_MAX_BODY = 1024 * 1024
# Kafka Connect settings that the connector declaration itself decides, and what decides them.
_CONNECTOR_OWNED = {
    "connector.class": "it is the connector's `class`",
    "name": "the connector is named after its declaration",
}


def check(
    files: Sequence[ast.File], unreadable: Sequence[DroppedDecl] = ()
) -> tuple[Program, list[Diagnostic]]:
    """Check ``files`` together; ``unreadable`` are the declarations the parser left out
    because of a syntax error. The program is meaningful only when no diagnostic is an error
    (:func:`lhpipe.check.load.load` drops it then)."""
    return _Checker(files, unreadable).run()


class _Checker:
    def __init__(self, files: Sequence[ast.File], unreadable: Sequence[DroppedDecl]) -> None:
        self.files = tuple(files)
        # name -> kind of the declarations with a syntax error (the first of a name wins).
        self.unreadable: dict[str, str] = {}
        for dropped in unreadable:
            self.unreadable.setdefault(dropped.name.name, dropped.kind)
        self.diagnostics: list[Diagnostic] = []
        self.types: dict[int, Type] = {}
        self.exprs = ExpressionChecker(self.diagnostics, self.types)
        self.declared: dict[str, _NamedDecl] = {}
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

    def run(self) -> tuple[Program, list[Diagnostic]]:
        self._declare()
        decls = [d for f in self.files for d in f.decls]
        self._schemas([d for d in decls if isinstance(d, ast.SchemaDecl)])
        for decl in decls:
            if isinstance(decl, ast.ConnectorDecl):
                self._connector(decl)
        for decl in decls:
            if isinstance(decl, ast.WebhookDecl):
                self._webhook(decl)
        for decl in decls:
            if isinstance(decl, ast.PipelineDecl):
                self._pipeline(decl)
        self._direct_mode()
        for decl in decls:
            if isinstance(decl, ast.TestDecl):
                self._test(decl)
        program = Program(
            files=self.files,
            schemas=self.schemas,
            webhooks=self.webhooks,
            pipelines=self.pipelines,
            connectors=self.connectors,
            tests=self.tests,
            expr_types=self.types,
        )
        return program, self.diagnostics

    # --- declarations -------------------------------------------------------------------

    def _declare(self) -> None:
        titles: dict[str, ast.TestDecl] = {}
        for file in self.files:
            folder = Path(file.path).parent
            for decl in file.decls:
                self.folder[id(decl)] = folder
                if isinstance(decl, ast.TestDecl):
                    title = decl.title.text
                    if title in titles:
                        self.report(
                            "LHP101",
                            decl.title.span,
                            f'test "{title}" is declared twice',
                            f"first declared at {titles[title].title.span}",
                        )
                    else:
                        titles[title] = decl
                    continue
                name = decl.name.name
                first = self.declared.get(name)
                if first is not None:
                    self.report(
                        "LHP101",
                        decl.name.span,
                        f"`{name}` is already declared ({_KIND_NAMES[type(first)]} at "
                        f"{first.name.span})",
                        "names of schemas, webhooks, pipelines and connectors are unique "
                        "across all files of a run",
                    )
                    continue
                if isinstance(decl, ast.SchemaDecl) and name in t.PRIMITIVE_TYPES:
                    self.report("LHP113", decl.name.span, f"`{name}` is a built-in type name")
                self.declared[name] = decl

    def _is_first(self, decl: ast.Decl) -> bool:
        return not isinstance(decl, ast.TestDecl) and self.declared.get(decl.name.name) is decl

    # --- schemas ------------------------------------------------------------------------

    def _schemas(self, decls: list[ast.SchemaDecl]) -> None:
        records: dict[str, t.RecordType] = {}
        external: dict[int, Mapping[str, JSONValue]] = {}
        for decl in decls:
            name = decl.name.name
            if decl.fields is not None:
                record = t.RecordType(name)
                if self._is_first(decl):
                    records[name] = record
                    self.schema_types[name] = record
            elif decl.file is not None:
                loaded = self._read_schema_file(decl, decl.file)
                if self._is_first(decl):
                    if loaded is None:
                        self.schema_types[name] = t.UNKNOWN
                    else:
                        external[id(loaded[1])] = loaded[0]
                        self.schema_types[name] = loaded[1]
                        self.schemas[name] = SchemaInfo(
                            name,
                            decl,
                            "file",
                            loaded[1],
                            loaded[0],
                            file=self.folder[id(decl)] / decl.file.text,
                        )
            elif decl.registry is not None:
                subject = self._literal_text(decl.registry, "a registry subject")
                if self._is_first(decl):
                    self.schema_types[name] = t.Dynamic("registry")
                    self.schemas[name] = SchemaInfo(
                        name,
                        decl,
                        "registry",
                        t.Dynamic("registry"),
                        None,
                        subject=subject,
                    )
        inline: dict[int, list[InlineField]] = {}
        for decl in decls:
            if decl.fields is None:
                continue
            # A duplicate declaration is checked on a record of its own.
            first = records.get(decl.name.name)
            record = (
                first
                if first is not None and self._is_first(decl)
                else t.RecordType(decl.name.name)
            )
            inline[id(record)] = self._fields(decl, record)
        compiler = AvroCompiler(inline, external)
        for decl in decls:
            compiled = records.get(decl.name.name)
            if decl.fields is not None and compiled is not None and self._is_first(decl):
                avro = None if id(compiled) in self.registry_users else compiler.compile(compiled)
                self.schemas[decl.name.name] = SchemaInfo(
                    decl.name.name, decl, "inline", compiled, avro
                )

    def _fields(self, decl: ast.SchemaDecl, record: t.RecordType) -> list[InlineField]:
        compiled: list[InlineField] = []
        assert decl.fields is not None
        for f in decl.fields:
            name = f.name.name
            typ = self._resolve_type(f.type, record)
            if name in record.fields:
                self.report(
                    "LHP110", f.name.span, f"field `{name}` appears twice in `{decl.name.name}`"
                )
                continue
            record.fields[name] = typ
            default: JSONValue = NO_DEFAULT
            if f.default is not None:
                default = self._field_default(f, typ)
                record.defaults.add(name)
            compiled.append(InlineField(name, typ, default))
        return compiled

    def _resolve_type(self, expr: ast.TypeExpr, owner: t.RecordType) -> Type:
        if isinstance(expr, ast.ArrayType):
            return t.ArrayType(self._resolve_type(expr.item, owner))
        if isinstance(expr, ast.MapType):
            return t.MapType(self._resolve_type(expr.values, owner))
        if isinstance(expr, ast.OptionalType):
            return t.optional(self._resolve_type(expr.inner, owner))
        primitive = t.PRIMITIVE_TYPES.get(expr.name)
        if primitive is not None:
            return primitive
        found = self.schema_types.get(expr.name)
        if found is None and self._is_unreadable(expr.name, "schema"):
            return t.UNKNOWN
        if found is None:
            candidates = list(t.PRIMITIVE_TYPES) + list(self.schema_types)
            self.report(
                "LHP208",
                expr.span,
                f"unknown type `{expr.name}`",
                did_you_mean(expr.name, candidates),
            )
            return t.UNKNOWN
        if isinstance(found, t.Dynamic) and found.reason == "registry":
            self.report(
                "LHP115",
                expr.span,
                f"`{expr.name}` comes from the registry: an inline schema cannot include it",
                "declare the field as `json`, or write the schema inline or in a .avsc file",
            )
            self.registry_users.add(id(owner))
        return found

    def _field_default(self, f: ast.Field, typ: Type) -> JSONValue:
        assert f.default is not None
        value = _literal_json(f.default)
        if value is _NOT_LITERAL:
            self.report("LHP209", f.default.span, "a field default must be a literal value")
            return NO_DEFAULT
        default_type = self.exprs.check(f.default, EMPTY_SCOPE)
        if not t.assignable(default_type, typ):
            self.report(
                "LHP201",
                f.default.span,
                f"default `{default_type}` does not fit field `{f.name.name}: {typ}`",
            )
        return value

    def _read_schema_file(
        self, decl: ast.SchemaDecl, literal: ast.StringLit
    ) -> tuple[dict[str, JSONValue], t.RecordType] | None:
        relative = self._literal_text(literal, "a schema file path")
        if relative is None:
            return None
        path = self.folder[id(decl)] / relative
        try:
            return read_avsc(path, decl.name.name)
        except SchemaFileError as exc:
            self.report(
                "LHP111",
                literal.span,
                str(exc),
                "the path is relative to the folder of this .lhp file",
            )
            return None

    # --- value helpers ------------------------------------------------------------------

    def _literal_text(self, expr: ast.Expr, what: str) -> str | None:
        if isinstance(expr, ast.StringLit) and expr.is_plain:
            self.types[id(expr)] = t.STRING
            return expr.text
        self.report("LHP209", expr.span, f"expected {what} as a literal string")
        return None

    def _text(self, expr: ast.Expr, what: str) -> Text | None:
        """A literal string or ``env(...)`` as the whole value."""
        if isinstance(expr, ast.Call) and expr.func.name == "env":
            self.exprs.check(expr, EMPTY_SCOPE, allow_env=True)
            args = [a.text for a in expr.args if isinstance(a, ast.StringLit)]
            if len(args) == len(expr.args) and args:
                return EnvRef(args[0], args[1] if len(args) > 1 else None)
            return None
        return self._literal_text(expr, what)

    def _choice(self, expr: ast.Expr, options: Sequence[str], what: str, code: str) -> str | None:
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

    def _int_literal(self, expr: ast.Expr, what: str, code: str) -> int | None:
        if isinstance(expr, ast.IntLit) and expr.value >= 0:
            return expr.value
        self.report(code, expr.span, f"{what} must be a whole number, 0 or more")
        return None

    def _partitions(self, expr: ast.Expr) -> int | None:
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

    def _claim_partitions(self, topic: Text | None, count: int, span: Span, who: str) -> None:
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

    def _duration(self, expr: ast.Expr, what: str, code: str) -> int | None:
        if isinstance(expr, ast.DurationLit):
            return expr.millis
        self.report(
            code, expr.span, f"{what} must be a duration", "for example `250ms`, `5s`, `2m`"
        )
        return None

    def _topic_name(self, expr: ast.Expr, what: str) -> str | None:
        text = self._literal_text(expr, what)
        if text is not None and not rules.valid_topic(text):
            self.report(
                "LHP406",
                expr.span,
                f'"{text}" is not a valid Kafka topic name',
                "use 1 to 249 letters, digits, `.`, `_` and `-`",
            )
            return None
        return text

    def _string_list(self, expr: ast.Expr, what: str) -> list[tuple[str, ast.StringLit]]:
        if not isinstance(expr, ast.ListLit):
            self.report("LHP209", expr.span, f"{what} must be a list of strings")
            return []
        items: list[tuple[str, ast.StringLit]] = []
        for item in expr.items:
            text = self._literal_text(item, f"each of {what}")
            if text is not None and isinstance(item, ast.StringLit):
                items.append((text, item))
        return items

    def _setting(self, found: Mapping[str, ast.Entry], key: str) -> ast.Expr | None:
        entry = found.get(key)
        return entry.value if isinstance(entry, ast.Setting) else None

    def _require(
        self, found: Mapping[str, ast.Entry], keys: Sequence[str], anchor: Span, what: str
    ) -> None:
        for key in keys:
            if key not in found:
                self.report("LHP108", anchor, f"{what} needs `{key}`")

    # --- connectors ---------------------------------------------------------------------

    def _connector(self, decl: ast.ConnectorDecl) -> None:
        found = blocks.entries(decl.body, blocks.CONNECTOR, self.diagnostics)
        self._require(found, ("class", "topic"), decl.name.span, f"connector `{decl.name.name}`")
        cls_expr = self._setting(found, "class")
        connector_class = self._literal_text(cls_expr, "a connector class") if cls_expr else None
        if connector_class is not None and not rules.valid_java_class(connector_class):
            assert cls_expr is not None
            self.report(
                "LHP601",
                cls_expr.span,
                f'"{connector_class}" is not a Java class name',
                'write the class as Kafka Connect knows it, e.g. "io.debezium.connector.'
                'postgresql.PostgresConnector" or an alias such as "FileStreamSource"',
            )
            connector_class = None
        topic_expr = self._setting(found, "topic")
        topic = self._topic_name(topic_expr, "a topic") if topic_expr else None
        config: dict[str, str | int | float | bool | EnvRef] = {}
        if "config" in found:
            for pair in blocks.map_entries(found["config"], self.diagnostics) or []:
                value = self._config_value(pair.key, pair.value)
                if value is not None:
                    config[pair.key.name] = value
        if self._is_first(decl):
            self.connectors[decl.name.name] = ConnectorInfo(
                decl.name.name, decl, connector_class or "", config, topic or ""
            )

    def _config_value(
        self, key: ast.Ident, expr: ast.Expr
    ) -> str | int | float | bool | EnvRef | None:
        """One setting of a connector's ``config``: Kafka Connect takes text, and numbers and
        booleans as their text."""
        owner = _CONNECTOR_OWNED.get(key.name)
        if owner is not None:
            self.report("LHP601", key.span, f"`{key.name}` cannot be set in `config`: {owner}")
            return None
        literal = _literal_json(expr)
        if isinstance(literal, int | float):  # booleans included
            self.exprs.check(expr, EMPTY_SCOPE)
            return literal
        if isinstance(expr, ast.StringLit) or (
            isinstance(expr, ast.Call) and expr.func.name == "env"
        ):
            return self._text(expr, "a connector setting")
        hint = (
            'Kafka Connect lists are one string with commas: "a,b"'
            if isinstance(expr, ast.ListLit)
            else None
        )
        self.report(
            "LHP601",
            expr.span,
            f"`{key.name}` must be a string, a number, a boolean or `env(...)`",
            hint,
        )
        return None

    # --- webhooks -----------------------------------------------------------------------

    def _webhook(self, decl: ast.WebhookDecl) -> None:
        name = decl.name.name
        found = blocks.entries(decl.body, blocks.WEBHOOK, self.diagnostics)
        self._require(found, ("path",), decl.name.span, f"webhook `{name}`")
        if "auth" not in found:
            self.report(
                "LHP301",
                decl.name.span,
                f"webhook `{name}` has no `auth`",
                "add `auth = oauth { ... }` or `auth = hmac { ... }`; `auth = none` accepts anyone",
            )
        path = self._webhook_path(name, self._setting(found, "path"))
        methods = self._methods(self._setting(found, "methods"))
        auth_expr = self._setting(found, "auth")
        auth: Auth = self._auth(auth_expr) if auth_expr is not None else NoAuth()
        body, body_type = "json", cast(Type, t.JSON)
        body_expr = self._setting(found, "body")
        if body_expr is not None:
            body, body_type = self._body(body_expr)
        topic_expr = self._setting(found, "topic")
        topic = None
        if topic_expr is not None:
            # An invalid topic is still a topic: the webhook is not in direct mode.
            topic = self._topic_name(topic_expr, "a topic") or ""
        scope = scopes.webhook_scope(body_type, oauth=isinstance(auth, OAuthAuth))
        key = self._setting(found, "key")
        if key is not None:
            key_type = self.exprs.check(key, scope, allow_env=True)
            if not (t.is_string_like(t.unwrap(key_type)) or key_type == t.NULL):
                self.report(
                    "LHP201", key.span, f"a webhook key must be a string, found `{key_type}`"
                )
        max_body = _DEFAULT_MAX_BODY
        size = self._setting(found, "max_body")
        if size is not None:
            if isinstance(size, ast.SizeLit) and size.size > 0:
                max_body = size.size
            else:
                self.report("LHP209", size.span, "`max_body` must be a size, e.g. `1MiB`")
        partitions_expr = self._setting(found, "partitions")
        partitions = None
        if partitions_expr is not None:
            partitions = self._partitions(partitions_expr)
            if topic_expr is None:
                self.report(
                    "LHP411",
                    found["partitions"].key.span,
                    f"`partitions` is for the webhook's topic, and webhook `{name}` has none "
                    "(direct mode)",
                    "add a `topic`, or remove `partitions`",
                )
            elif partitions is not None:
                self._claim_partitions(topic, partitions, partitions_expr.span, f"webhook `{name}`")
        if self._is_first(decl) and path is not None:
            self.webhooks[name] = WebhookInfo(
                name,
                decl,
                path,
                methods,
                auth,
                body,
                body_type,
                topic,
                key,
                max_body,
                {n: b.type for n, b in scope.names.items() if b.unavailable is None},
                partitions,
            )

    def _webhook_path(self, name: str, expr: ast.Expr | None) -> str | None:
        if expr is None:
            return None
        path = self._literal_text(expr, "a path")
        if path is None:
            return None
        if not path.startswith("/") or any(c.isspace() or c in "?#" for c in path):
            self.report(
                "LHP306",
                expr.span,
                f'"{path}" is not a valid webhook path',
                'a path starts with `/` and has no spaces, `?` or `#`, e.g. "/hooks/orders"',
            )
            return None
        purpose = rules.ENGINE_PATHS.get(path)
        if purpose is not None:
            instead = "/hooks" + (path if path != "/" else "/intake")
            self.report(
                "LHP306",
                expr.span,
                f'"{path}" is served by lhpipe itself (its {purpose})',
                f"lhpipe keeps {', '.join(rules.ENGINE_PATHS)} for itself; "
                f'use another path, e.g. "{instead}"',
            )
            return None
        for other in self.webhooks.values():
            if other.path == path:
                self.report(
                    "LHP304",
                    expr.span,
                    f'path "{path}" is already used by webhook `{other.name}`',
                    f"declared at {other.decl.name.span}",
                )
                return None
        return path

    def _methods(self, expr: ast.Expr | None) -> tuple[str, ...]:
        if expr is None:
            return ("POST",)
        methods: list[str] = []
        for text, item in self._string_list(expr, "`methods`"):
            if text not in rules.HTTP_METHODS:
                hint = (
                    f'write it in capitals: "{text.upper()}"'
                    if text.upper() in rules.HTTP_METHODS
                    else "one of " + ", ".join(rules.HTTP_METHODS)
                )
                self.report("LHP306", item.span, f'"{text}" is not an HTTP method', hint)
            else:
                methods.append(text)
        return tuple(methods)

    def _auth(self, expr: ast.Expr) -> Auth:
        if isinstance(expr, ast.Name) and expr.name == "none":
            self.report(
                "LHP302",
                expr.span,
                "`auth = none`: this webhook accepts requests from anyone",
                "use `oauth { ... }` or `hmac { ... }` unless the route is meant to be public",
            )
            return NoAuth()
        if isinstance(expr, ast.Tagged) and expr.tag.name == "oauth":
            return self._oauth(expr)
        if isinstance(expr, ast.Tagged) and expr.tag.name == "hmac":
            return self._hmac(expr)
        word = (
            expr.tag.name
            if isinstance(expr, ast.Tagged)
            else (expr.name if isinstance(expr, ast.Name) else None)
        )
        hint = did_you_mean(word, ("oauth", "hmac", "none")) if word else None
        self.report(
            "LHP305",
            expr.span,
            "`auth` must be `oauth { ... }`, `hmac { ... }` or `none`",
            hint,
        )
        return NoAuth()

    def _oauth(self, expr: ast.Tagged) -> Auth:
        found = blocks.entries(expr.block, blocks.OAUTH, self.diagnostics)
        self._require(found, ("issuer", "audience"), expr.tag.span, "`oauth`")
        issuer_expr = self._setting(found, "issuer")
        issuer = self._text(issuer_expr, "an issuer URL") if issuer_expr else None
        if isinstance(issuer, str) and not issuer.startswith(("https://", "http://")):
            assert issuer_expr is not None
            self.report("LHP305", issuer_expr.span, f'issuer "{issuer}" is not an http(s) URL')
        audience_expr = self._setting(found, "audience")
        audience = self._text(audience_expr, "an audience") if audience_expr else None
        scopes_expr = self._setting(found, "scopes")
        scope_list = (
            [s for s, _ in self._string_list(scopes_expr, "`scopes`")] if scopes_expr else []
        )
        leeway_expr = self._setting(found, "leeway")
        leeway = self._duration(leeway_expr, "`leeway`", "LHP305") if leeway_expr else None
        return OAuthAuth(
            issuer or "",
            audience or "",
            tuple(scope_list),
            30_000 if leeway is None else leeway,
        )

    def _hmac(self, expr: ast.Tagged) -> Auth:
        found = blocks.entries(expr.block, blocks.HMAC, self.diagnostics)
        preset_expr = self._setting(found, "preset")
        preset = (
            self._choice(preset_expr, _PRESETS, "hmac preset", "LHP305") if preset_expr else None
        )
        if preset_expr is not None:
            for key in ("header", "algorithm", "encoding", "prefix"):
                if key in found:
                    self.report(
                        "LHP305",
                        found[key].key.span,
                        f"`{key}` cannot be combined with `preset`: the preset defines it",
                    )
            self._require(found, ("secret",), expr.tag.span, "`hmac`")
        else:
            self._require(found, ("header", "secret"), expr.tag.span, "custom `hmac`")
        secret_expr = self._setting(found, "secret")
        secret: Text | None = None
        if secret_expr is not None:
            secret = self._text(secret_expr, "a secret")
            if isinstance(secret, str):
                self.report(
                    "LHP303",
                    secret_expr.span,
                    "the hmac secret is written in the source",
                    'read it from the environment: `secret = env("WEBHOOK_SECRET")`',
                )
        header_expr = self._setting(found, "header")
        header = self._literal_text(header_expr, "a header name") if header_expr else None
        algorithm_expr = self._setting(found, "algorithm")
        algorithm = (
            self._choice(algorithm_expr, ("sha256", "sha512"), "hmac algorithm", "LHP305")
            if algorithm_expr
            else None
        )
        encoding_expr = self._setting(found, "encoding")
        encoding = (
            self._choice(encoding_expr, ("hex", "base64"), "hmac encoding", "LHP305")
            if encoding_expr
            else None
        )
        prefix_expr = self._setting(found, "prefix")
        prefix = self._literal_text(prefix_expr, "a prefix") if prefix_expr else None
        return HmacAuth(
            secret=secret or "",
            preset=preset,
            header=header,
            algorithm=cast(Literal["sha256", "sha512"], algorithm or "sha256"),
            encoding=cast(Literal["hex", "base64"], encoding or "hex"),
            prefix=prefix or "",
        )

    def _body(self, expr: ast.Expr) -> tuple[str, Type]:
        if isinstance(expr, ast.Name):
            if expr.name == "json":
                return "json", t.JSON
            if expr.name == "bytes":
                return "bytes", t.BYTES
            return expr.name, self._schema_ref(expr)
        self.report("LHP209", expr.span, "`body` must be a schema name, `json` or `bytes`")
        return "json", t.UNKNOWN

    def _schema_ref(self, expr: ast.Name) -> Type:
        found = self.schema_types.get(expr.name)
        if found is not None:
            return found
        if self._is_unreadable(expr.name, "schema"):
            return t.UNKNOWN
        hint = did_you_mean(expr.name, [*self.schema_types, "json", "bytes", "string"])
        self.report("LHP103", expr.span, f"unknown schema `{expr.name}`", hint)
        return t.UNKNOWN

    # --- pipelines ----------------------------------------------------------------------

    def _pipeline(self, decl: ast.PipelineDecl) -> None:
        source = self._source(decl.name.name, decl.source)
        is_lh_output = source.kind is ast.SourceKind.LH_OUTPUT
        webhook = self.webhooks.get(source.webhook) if source.webhook else None
        # A polled item is a record of `poll:<pipeline>` (lhpipe/sources/poll_items.py).
        has_record = not (webhook is not None and webhook.direct)
        scope = scopes.pipeline_scope(
            source.value_type,
            source.key_type,
            has_record=has_record,
            source=_source_words(source),
            lh_output=is_lh_output,
        )
        for step in decl.steps:
            if isinstance(step, ast.Where):
                self._where(step, scope)
            else:
                scope = self._let(step, scope)
        targets = tuple(self._target(target, scope) for target in decl.targets)
        policy = self._on_error(decl.on_error, decl.name.name)
        if self._is_first(decl):
            self.pipelines[decl.name.name] = PipelineInfo(
                decl.name.name,
                decl,
                source,
                decl.steps,
                targets,
                policy,
                {n: b.type for n, b in scope.names.items() if b.unavailable is None},
            )

    def _where(self, step: ast.Where, scope: Scope) -> None:
        typ = self.exprs.check(step.condition, scope)
        if typ == t.BOOLEAN or t.is_dynamic(typ):
            return
        hint = (
            "use `??` to decide what null means, e.g. `(x ?? false)`"
            if isinstance(typ, t.OptionalType)
            else "compare it, e.g. `where value.count > 0`"
        )
        self.report("LHP207", step.condition.span, f"`where` needs a boolean, found `{typ}`", hint)

    def _let(self, step: ast.Let, scope: Scope) -> Scope:
        typ = self.exprs.check(step.value, scope)
        name = step.name.name
        if name in scope.names:
            self.report(
                "LHP112",
                step.name.span,
                f"`let {name}` redefines `{name}`",
                "choose another name",
            )
            return scope
        return scope.with_name(name, typ)

    def _source(self, pipeline: str, source: ast.Source) -> SourceInfo:
        kind = source.kind
        found = blocks.entries(source.block, blocks.SOURCES[kind], self.diagnostics)
        info = SourceInfo(
            kind=kind,
            decl=source,
            topic=None,
            group=None,
            value="json",
            value_type=t.JSON,
            key="string",
            key_type=t.STRING,
            settings={k: e.value for k, e in found.items() if isinstance(e, ast.Setting)},
        )
        group_expr = self._setting(found, "group")
        group = self._text(group_expr, "a consumer group") if group_expr else None
        group_name = group if isinstance(group, str) else f"lhpipe-{pipeline}"
        if kind is ast.SourceKind.TOPIC:
            return self._topic_source(info, found, group_name)
        if kind is ast.SourceKind.WEBHOOK:
            return self._webhook_source(info, group_name)
        if kind is ast.SourceKind.CONNECTOR:
            return self._connector_source(info, group_name)
        if kind is ast.SourceKind.LH_OUTPUT:
            return self._lh_output_source(info, found, group_name)
        return self._poll_source(info, found)

    def _topic_source(
        self, info: SourceInfo, found: Mapping[str, ast.Entry], group: str
    ) -> SourceInfo:
        arg = info.decl.arg
        topic = self._topic_name(arg, "a topic") if isinstance(arg, ast.StringLit) else None
        value, value_type = "json", cast(Type, t.JSON)
        value_expr = self._setting(found, "value")
        if value_expr is not None:
            if isinstance(value_expr, ast.Name) and value_expr.name in _DECODE_VALUE:
                value = value_expr.name
                value_type = t.PRIMITIVE_TYPES[value]
            elif isinstance(value_expr, ast.Name):
                value, value_type = value_expr.name, self._schema_ref(value_expr)
            else:
                self.report(
                    "LHP209",
                    value_expr.span,
                    "`value` must be a schema name, `json`, `string` or `bytes`",
                )
                value_type = t.UNKNOWN
        key, key_type = "string", cast(Type, t.STRING)
        key_expr = self._setting(found, "key")
        if key_expr is not None:
            chosen = self._choice(key_expr, _DECODE_KEY, "key format", "LHP409")
            if chosen is not None:
                key, key_type = chosen, t.PRIMITIVE_TYPES[chosen]
            else:
                key_type = t.UNKNOWN
        return replace(
            info,
            topic=topic,
            group=group,
            value=value,
            value_type=value_type,
            key=key,
            key_type=key_type,
        )

    def _webhook_source(self, info: SourceInfo, group: str) -> SourceInfo:
        arg = info.decl.arg
        assert isinstance(arg, ast.Ident)
        webhook = self.webhooks.get(arg.name)
        if webhook is None:
            declared = self.declared.get(arg.name)
            if isinstance(declared, ast.WebhookDecl):
                # Declared but not usable (already reported): keep quiet, stay dynamic.
                return replace(info, webhook=arg.name, value_type=t.UNKNOWN)
            self._unknown_ref(arg, "LHP104", "webhook", ast.WebhookDecl)
            return replace(info, webhook=arg.name, value_type=t.UNKNOWN)
        return replace(
            info,
            webhook=webhook.name,
            topic=webhook.topic,
            group=group if webhook.topic else None,
            value=webhook.body,
            value_type=webhook.body_type,
        )

    def _connector_source(self, info: SourceInfo, group: str) -> SourceInfo:
        arg = info.decl.arg
        assert isinstance(arg, ast.Ident)
        connector = self.connectors.get(arg.name)
        if connector is None:
            if not isinstance(self.declared.get(arg.name), ast.ConnectorDecl):
                self._unknown_ref(arg, "LHP106", "connector", ast.ConnectorDecl)
            return replace(info, connector=arg.name, value_type=t.UNKNOWN)
        return replace(info, connector=connector.name, topic=connector.topic, group=group)

    def _lh_output_source(
        self, info: SourceInfo, found: Mapping[str, ast.Entry], group: str
    ) -> SourceInfo:
        kinds: list[str] = []
        kinds_expr = self._setting(found, "kinds")
        if kinds_expr is not None:
            if isinstance(kinds_expr, ast.ListLit):
                for item in kinds_expr.items:
                    kind = self._choice(item, scopes.LH_OUTPUT_KINDS, "lh_output kind", "LHP409")
                    if kind is not None:
                        kinds.append(kind)
            else:
                self.report("LHP209", kinds_expr.span, "`kinds` must be a list, e.g. `[wf_run]`")
        wf_spec_expr = self._setting(found, "wf_spec")
        wf_spec = self._lh_name(wf_spec_expr, "WfSpec") if wf_spec_expr else None
        return replace(info, group=group, kinds=tuple(kinds), wf_spec=wf_spec)

    def _poll_source(self, info: SourceInfo, found: Mapping[str, ast.Entry]) -> SourceInfo:
        arg = info.decl.arg
        url = None
        if isinstance(arg, ast.StringLit):
            cursor_scope = Scope({"cursor": Binding(t.JSON)})
            self.exprs.check(arg, cursor_scope)
            url = self._url(arg)
        if "every" not in found:
            self.report("LHP108", info.decl.span, "`from poll` needs `every`", "e.g. `every = 1m`")
        every_expr = self._setting(found, "every")
        every = self._duration(every_expr, "`every`", "LHP409") if every_expr else None
        # The answer's JSON: `response`, also `value` (the name every source's expressions
        # know) and `body` (an HTTP answer's body).
        response_scope = Scope(
            {"response": Binding(t.JSON), "value": Binding(t.JSON), "body": Binding(t.JSON)}
        )
        for key in ("items", "cursor"):
            expr = self._setting(found, key)
            if expr is not None:
                self.exprs.check(expr, response_scope)
        id_expr = self._setting(found, "id")
        if id_expr is not None:
            # One item of `items`: `item`, or `value` as the pipeline will call it.
            item_scope = Scope({"item": Binding(t.JSON), "value": Binding(t.JSON)})
            id_type = self.exprs.check(id_expr, item_scope)
            if not t.is_scalar(id_type):
                self.report(
                    "LHP201",
                    id_expr.span,
                    f"an item's `id` must be text or a number, found `{id_type}`",
                )
        headers = None
        if "headers" in found:
            headers = self._header_map(found["headers"], EMPTY_SCOPE, http=True)
        return replace(info, url=url, every_ms=every, headers=headers)

    def _url(self, literal: ast.StringLit) -> str | None:
        first = literal.parts[0] if literal.parts else ""
        if isinstance(first, str) and first.startswith(("http://", "https://")):
            self._url_credentials(literal)
            return literal.text if literal.is_plain else None
        self.report("LHP409", literal.span, "expected an http:// or https:// URL")
        return None

    def _url_credentials(self, literal: ast.StringLit) -> None:
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

    def _is_unreadable(self, name: str, kind: str) -> bool:
        """Whether ``name`` is a declaration of ``kind`` that has a syntax error (and no
        readable declaration has that name)."""
        return name not in self.declared and self.unreadable.get(name) == kind

    def _unknown_ref(self, name: ast.Ident, code: str, what: str, kind: type[ast.Decl]) -> None:
        if self._is_unreadable(name.name, what):
            return
        other = self.declared.get(name.name)
        if other is not None:
            other_kind: str | None = _KIND_NAMES[type(other)]
        else:
            other_kind = self.unreadable.get(name.name)
        if other_kind is not None:
            self.report(code, name.span, f"`{name.name}` is {a(other_kind)}, not {a(what)}")
            return
        candidates = [n for n, d in self.declared.items() if isinstance(d, kind)]
        self.report(
            code, name.span, f"unknown {what} `{name.name}`", did_you_mean(name.name, candidates)
        )

    def _lh_name(self, expr: ast.Expr, what: str) -> str | None:
        text = self._literal_text(expr, a(f"{what} name"))
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

    # --- targets ------------------------------------------------------------------------

    def _target(self, target: ast.Target, scope: Scope) -> TargetInfo:
        kind = target.kind
        found = blocks.entries(target.block, blocks.TARGETS[kind], self.diagnostics)
        settings = {k: e.value for k, e in found.items() if isinstance(e, ast.Setting)}
        schema_expr = settings.pop("schema", None)
        for key, expr in settings.items():
            self._target_setting(kind, key, expr, scope)
        schema = None
        if schema_expr is not None:
            schema = self._export_schema(schema_expr, settings.get("value"), scope)
        name = self._target_arg(target, scope)
        variables = None
        if "variables" in found:
            pairs = blocks.map_entries(found["variables"], self.diagnostics) or []
            for pair in pairs:
                self.exprs.check(pair.value, scope, allow_env=True)
            variables = {p.key.name: p.value for p in pairs}
        headers = None
        if "headers" in found:
            headers = self._header_map(found["headers"], scope, http=kind is ast.TargetKind.HTTP)
        return TargetInfo(kind, target, name, settings, variables, headers, schema)

    def _export_schema(self, expr: ast.Expr, value: ast.Expr | None, scope: Scope) -> str | None:
        """``schema = NAME`` of ``to topic``: the schema's name, with the value's static type
        checked against it (``value`` when written, else the record's value)."""
        if not isinstance(expr, ast.Name):
            self.report("LHP209", expr.span, "`schema` must be the name of a declared schema")
            return None
        name = expr.name
        schema_type = self.schema_types.get(name)
        if schema_type is None:
            self._unknown_ref(ast.Ident(name, expr.span), "LHP103", "schema", ast.SchemaDecl)
            return None
        if value is not None:
            value_type = self.types.get(id(value), t.UNKNOWN)
        else:
            binding = scope.names.get("value")
            value_type = binding.type if binding and binding.unavailable is None else t.UNKNOWN
        for misfit in misfits(value_type, schema_type):
            span = _span_at(value, misfit.path) if value is not None else expr.span
            self.report(
                "LHP202" if misfit.unknown_field else "LHP201",
                span,
                misfit.message,
                misfit.hint
                if value is not None
                else f"without `value`, the record's value (`{value_type}`) is written: "
                "write `value = { ... }` to shape it",
            )
        return name

    def _target_arg(self, target: ast.Target, scope: Scope) -> str | None:
        arg = target.arg
        if arg is None:
            return None
        kind = target.kind
        if kind in (ast.TargetKind.RUN_WF, ast.TargetKind.POST_EVENT, ast.TargetKind.CORRELATE):
            what = "WfSpec" if kind is ast.TargetKind.RUN_WF else "ExternalEventDef"
            return self._lh_name(arg, what)
        if kind is ast.TargetKind.TOPIC:
            return self._topic_name(arg, "a topic")
        if kind is ast.TargetKind.HTTP:
            self.exprs.check(arg, scope)
            return self._url(arg)
        return self._literal_text(arg, "a file path")

    def _target_setting(self, kind: ast.TargetKind, key: str, expr: ast.Expr, scope: Scope) -> None:
        typ = self.exprs.check(expr, scope, allow_env=True)
        if key in ("id", "parent", "wf_run_id", "guid"):
            self._id_setting(key, expr, typ)
        elif key in ("major_version", "revision", "thread_run_number", "node_run_position"):
            literal = _literal_json(expr)
            if isinstance(literal, int) and not isinstance(literal, bool):
                if literal < 0:
                    self.report("LHP201", expr.span, f"`{key}` cannot be negative")
            elif not (t.is_dynamic(typ) or t.unwrap(typ) in (t.INT, t.LONG)):
                self.report("LHP201", expr.span, f"`{key}` must be an int, found `{typ}`")
        elif key == "key" and kind is ast.TargetKind.CORRELATE:
            if not (t.is_string_like(t.unwrap(typ)) or typ == t.NULL):
                self.report(
                    "LHP201", expr.span, f"a correlation key must be a string, found `{typ}`"
                )
        elif key == "key" and kind is ast.TargetKind.TOPIC:
            if not (t.unwrap(typ) in (t.STRING, t.BYTES) or t.is_dynamic(typ) or typ == t.NULL):
                self.report(
                    "LHP201", expr.span, f"a Kafka key must be a string or bytes, found `{typ}`"
                )
        elif key == "method":
            method = self._literal_text(expr, "an HTTP method")
            if method is not None and method not in rules.HTTP_METHODS:
                self.report(
                    "LHP409",
                    expr.span,
                    f'"{method}" is not an HTTP method',
                    "one of " + ", ".join(rules.HTTP_METHODS),
                )

    def _id_setting(self, key: str, expr: ast.Expr, typ: Type) -> None:
        is_wf_run = key in ("id", "parent", "wf_run_id")
        if not (t.is_string_like(t.unwrap(typ)) or typ == t.NULL):
            if is_wf_run:
                self.report(
                    "LHP402",
                    expr.span,
                    f"a WfRun id must be a string, found `{typ}`",
                    "convert it with `str(...)`" if t.is_numeric(t.unwrap(typ)) else None,
                )
            else:
                self.report("LHP201", expr.span, f"`{key}` must be a string, found `{typ}`")
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
            self.report(
                "LHP401",
                expr.span,
                f"{shown} is not a valid LittleHorse id for `{key}`",
                "ids are letters, digits and inner hyphens: [A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?",
            )

    def _header_map(
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

    def _on_error(self, block: ast.Block | None, pipeline: str) -> ErrorPolicy:
        if block is None:
            return ErrorPolicy()
        found = blocks.entries(block, blocks.ON_ERROR, self.diagnostics)
        retry_expr = self._setting(found, "retry")
        retry = self._int_literal(retry_expr, "`retry`", "LHP404") if retry_expr else None
        backoff_expr = self._setting(found, "backoff")
        backoff = self._duration(backoff_expr, "`backoff`", "LHP404") if backoff_expr else None
        dead_letter_expr = self._setting(found, "dead_letter")
        dead_letter: Text | None = None
        if dead_letter_expr is not None:
            if isinstance(dead_letter_expr, ast.Call) and dead_letter_expr.func.name == "env":
                dead_letter = self._text(dead_letter_expr, "a topic")
            elif isinstance(dead_letter_expr, ast.StringLit):
                dead_letter = self._topic_name(dead_letter_expr, "a dead-letter topic")
            else:
                self.report("LHP404", dead_letter_expr.span, "`dead_letter` must be a topic name")
        permanent_expr = self._setting(found, "permanent")
        permanent = (
            self._choice(permanent_expr, ("stop", "skip"), "`permanent` policy", "LHP404")
            if permanent_expr
            else None
        )
        if permanent_expr is not None and dead_letter_expr is not None:
            self.report(
                "LHP404",
                found["permanent"].key.span,
                "`permanent` has no effect with `dead_letter`: failed records go to the "
                "dead-letter topic",
                "remove one of them",
            )
        partitions_expr = self._setting(found, "partitions")
        partitions = None
        if partitions_expr is not None:
            partitions = self._partitions(partitions_expr)
            if dead_letter_expr is None:
                self.report(
                    "LHP411",
                    found["partitions"].key.span,
                    "`partitions` is for the dead-letter topic, and this `on_error` has no "
                    "`dead_letter`",
                    'add `dead_letter = "..."`, or remove `partitions`',
                )
            elif partitions is not None:
                self._claim_partitions(
                    dead_letter, partitions, partitions_expr.span, f"pipeline `{pipeline}`"
                )
        return ErrorPolicy(
            retry=retry,
            backoff_ms=100 if backoff is None else backoff,
            dead_letter=dead_letter,
            permanent=cast(Literal["stop", "skip"], permanent or "stop"),
            partitions=partitions,
        )

    # --- direct mode --------------------------------------------------------------------

    def _direct_mode(self) -> None:
        readers: dict[str, list[PipelineInfo]] = {}
        for pipeline in self.pipelines.values():
            if pipeline.source.webhook is not None:
                readers.setdefault(pipeline.source.webhook, []).append(pipeline)
        for webhook in self.webhooks.values():
            if not webhook.direct:
                continue
            reading = readers.get(webhook.name, [])
            if not reading and "pipeline" not in self.unreadable.values():
                self.report(
                    "LHP407",
                    webhook.decl.name.span,
                    f"webhook `{webhook.name}` has no `topic` and no pipeline reads it",
                    f"add a `topic`, or a pipeline `from webhook {webhook.name}`",
                )
            for extra in reading[1:]:
                arg = extra.source.decl.arg
                assert arg is not None
                self.report(
                    "LHP408",
                    arg.span,
                    f"webhook `{webhook.name}` is in direct mode and already read by "
                    f"pipeline `{reading[0].name}`",
                    "give the webhook a `topic` so that several pipelines can read it",
                )

    # --- tests --------------------------------------------------------------------------

    def _test(self, decl: ast.TestDecl) -> None:
        title = decl.title.text
        block = ast.Block(tuple(i for i in decl.items if not isinstance(i, ast.Expect)), decl.span)
        found = blocks.entries(block, blocks.TEST, self.diagnostics)
        expects = [i for i in decl.items if isinstance(i, ast.Expect)]
        pipeline: PipelineInfo | None = None
        pipeline_expr = self._setting(found, "pipeline")
        if pipeline_expr is None:
            if "pipeline" not in found:
                self.report("LHP108", decl.title.span, f'test "{title}" needs `pipeline`')
        elif isinstance(pipeline_expr, ast.Name):
            pipeline = self.pipelines.get(pipeline_expr.name)
            if pipeline is None and not isinstance(
                self.declared.get(pipeline_expr.name), ast.PipelineDecl
            ):
                self._unknown_ref(
                    ast.Ident(pipeline_expr.name, pipeline_expr.span),
                    "LHP105",
                    "pipeline",
                    ast.PipelineDecl,
                )
        else:
            self.report("LHP209", pipeline_expr.span, "`pipeline` must be a pipeline name")
        given: dict[str, ast.Expr] = {}
        if "given" not in found:
            self.report("LHP108", decl.title.span, f'test "{title}" needs `given {{ ... }}`')
        else:
            given = self._given(found["given"], pipeline)
        if not expects:
            self.report(
                "LHP501",
                decl.title.span,
                f'test "{title}" has no `expect`',
                "add `expect TARGET { ... }` or `expect nothing`",
            )
        nothing = [e for e in expects if e.target is None]
        if nothing and len(expects) > 1:
            self.report(
                "LHP501", nothing[0].span, "`expect nothing` cannot be combined with other expects"
            )
        targets: list[ast.Target] = []
        for expect in expects:
            if expect.target is not None:
                self._expect(expect.target, pipeline)
                targets.append(expect.target)
        if pipeline is not None and title not in self.tests:
            self.tests[title] = TestInfo(title, decl, pipeline.name, given, tuple(targets))

    def _given(self, entry: ast.Entry, pipeline: PipelineInfo | None) -> dict[str, ast.Expr]:
        if not isinstance(entry, ast.NestedBlock):
            self.report("LHP114", entry.key.span, "write `given { key = ... value = ... }`")
            return {}
        found = blocks.entries(entry.block, blocks.GIVEN, self.diagnostics)
        given: dict[str, ast.Expr] = {}
        value = self._setting(found, "value")
        if value is not None:
            self.exprs.check(value, EMPTY_SCOPE)
            if pipeline is not None:
                self._fits(value, pipeline.source.value_type)
            given["value"] = value
        key = self._setting(found, "key")
        if key is not None:
            self.exprs.check(key, EMPTY_SCOPE)
            if pipeline is not None:
                self._fits(key, pipeline.source.key_type)
            given["key"] = key
        if "headers" in found:
            for name, expr in self._header_map(found["headers"], EMPTY_SCOPE).items():
                given[f"headers.{name}"] = expr
        return given

    def _fits(self, expr: ast.Expr, wanted: Type) -> None:
        """Check a test's literal input against the type the pipeline reads. A timestamp may
        be written as a record carries it on the wire, a string literal of ISO-8601 text or an
        integer of epoch milliseconds (a test has no other way to write one); the test
        encoder turns either into a timestamp."""
        typ = self.exprs.types.get(id(expr), t.UNKNOWN)
        target = wanted if isinstance(expr, ast.NullLit) else t.unwrap(wanted)
        if isinstance(expr, ast.ObjectLit) and isinstance(target, t.RecordType):
            if not isinstance(typ, t.RecordType):
                return  # the literal has an error of its own, already reported
            for entry in expr.entries:
                field_type = target.fields.get(entry.key.name)
                if field_type is None:
                    self.report(
                        "LHP202",
                        entry.key.span,
                        f"`{target.name}` has no field `{entry.key.name}`",
                        did_you_mean(entry.key.name, target.fields),
                    )
                    continue
                self._fits(entry.value, field_type)
            missing = t.missing_fields(typ, target)
            if missing:
                self.report(
                    "LHP501",
                    expr.span,
                    f"the test value lacks field{'s' if len(missing) > 1 else ''} "
                    + ", ".join(f"`{m}`" for m in missing)
                    + f" of `{target.name}`",
                )
            return
        if isinstance(expr, ast.ObjectLit) and isinstance(target, t.MapType):
            for entry in expr.entries:
                self._fits(entry.value, target.values)
            return
        if isinstance(expr, ast.ListLit) and isinstance(target, t.ArrayType):
            for item in expr.items:
                self._fits(item, target.item)
            return
        if target == t.TIMESTAMP and isinstance(expr, ast.StringLit):
            self._timestamp_text(expr)
            return
        if target == t.TIMESTAMP and typ in (t.INT, t.LONG):
            return  # epoch milliseconds
        if not t.assignable(typ, wanted):
            self.report("LHP201", expr.span, f"expected `{wanted}`, found `{typ}`")

    def _timestamp_text(self, expr: ast.StringLit) -> None:
        """A test's timestamp written as text must be ISO-8601."""
        text = expr.text if expr.is_plain else None
        if text is not None and _iso_timestamp(text):
            return
        shown = f'"{text}" is' if text is not None else "an interpolated string is"
        self.report(
            "LHP201",
            expr.span,
            f"{shown} not an ISO-8601 timestamp",
            'write e.g. "2024-05-01T12:30:00Z" (UTC when the offset is left out) or epoch '
            "milliseconds",
        )

    def _expect(self, target: ast.Target, pipeline: PipelineInfo | None) -> None:
        found = blocks.entries(target.block, blocks.EXPECTS[target.kind], self.diagnostics)
        for entry in found.values():
            if isinstance(entry, ast.Setting):
                self.exprs.check(entry.value, EMPTY_SCOPE)
            else:
                for pair in blocks.map_entries(entry, self.diagnostics) or []:
                    self.exprs.check(pair.value, EMPTY_SCOPE)
        if pipeline is None:
            return
        wanted = target.arg.text if target.arg is not None else None
        for candidate in pipeline.targets:
            if candidate.kind is target.kind and (wanted is None or candidate.name == wanted):
                return
        shown = f"`{target_words(target.kind, wanted)}`"
        have = ", ".join(f"`{target_words(c.kind, c.name)}`" for c in pipeline.targets)
        self.report(
            "LHP501",
            target.span,
            f"pipeline `{pipeline.name}` has no target {shown}",
            f"its targets: {have}" if have else None,
        )


# --- helpers ------------------------------------------------------------------------------


class _NotLiteral:
    """The marker for an expression that is not a literal value."""


_NOT_LITERAL = _NotLiteral()


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


def _iso_timestamp(text: str) -> bool:
    """Whether ``text`` is ISO-8601 as the engine reads it (``datetime.fromisoformat``)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _literal_json(expr: ast.Expr) -> JSONValue:
    """The JSON value of a literal expression, or ``_NOT_LITERAL``."""
    if isinstance(expr, ast.StringLit):
        return expr.text if expr.is_plain else _NOT_LITERAL
    if isinstance(expr, ast.IntLit | ast.FloatLit | ast.BoolLit):
        return expr.value
    if isinstance(expr, ast.NullLit):
        return None
    if isinstance(expr, ast.ListLit):
        items = [_literal_json(i) for i in expr.items]
        return _NOT_LITERAL if any(i is _NOT_LITERAL for i in items) else items
    if isinstance(expr, ast.ObjectLit):
        fields = {e.key.name: _literal_json(e.value) for e in expr.entries}
        return _NOT_LITERAL if any(v is _NOT_LITERAL for v in fields.values()) else fields
    if isinstance(expr, ast.Unary) and expr.op is ast.UnaryOp.NEG:
        inner = _literal_json(expr.operand)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner
    return _NOT_LITERAL


def _source_words(source: SourceInfo) -> str:
    if source.kind is ast.SourceKind.WEBHOOK:
        return "direct-mode webhook"
    return f"`{source.kind.value}`"


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
