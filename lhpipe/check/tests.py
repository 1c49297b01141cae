"""Checking ``test`` declarations: the pipeline, the given record, the ``expect`` blocks."""

from __future__ import annotations

from datetime import datetime

from lhpipe.check import blocks
from lhpipe.check import types as t
from lhpipe.check.context import CheckContext
from lhpipe.check.kinds import KindChecks
from lhpipe.check.names import EMPTY_SCOPE, did_you_mean
from lhpipe.check.program import (
    PipelineInfo,
    TestInfo,
)
from lhpipe.check.types import Type
from lhpipe.syntax import ast
from lhpipe.syntax.formatter import target_words


class TestChecks(CheckContext):
    #: Every kind's check (given by :func:`lhpipe.check.checker.check`).
    kinds: KindChecks

    def _test(self, decl: ast.TestDecl) -> None:
        title = decl.title.text
        block = ast.Block(tuple(i for i in decl.items if not isinstance(i, ast.Expect)), decl.span)
        found = blocks.entries(block, blocks.TEST, self.diagnostics)
        expects = [i for i in decl.items if isinstance(i, ast.Expect)]
        pipeline: PipelineInfo | None = None
        pipeline_expr = self.setting(found, "pipeline")
        if pipeline_expr is None:
            if "pipeline" not in found:
                self.report("LHP108", decl.title.span, f'test "{title}" needs `pipeline`')
        elif isinstance(pipeline_expr, ast.Name):
            pipeline = self.pipelines.get(pipeline_expr.name)
            if pipeline is None and not isinstance(
                self.declared.get(pipeline_expr.name), ast.PipelineDecl
            ):
                self.unknown_ref(
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
        value = self.setting(found, "value")
        if value is not None:
            self.exprs.check(value, EMPTY_SCOPE)
            if pipeline is not None:
                self._fits(value, pipeline.source.value_type)
            given["value"] = value
        key = self.setting(found, "key")
        if key is not None:
            self.exprs.check(key, EMPTY_SCOPE)
            if pipeline is not None:
                self._fits(key, pipeline.source.key_type)
            given["key"] = key
        if "headers" in found:
            for name, expr in self.header_map(found["headers"], EMPTY_SCOPE).items():
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
        kind = self.kinds.targets[target.kind]
        found = blocks.entries(target.block, kind.expect or kind.block, self.diagnostics)
        for entry in found.values():
            if isinstance(entry, ast.Setting):
                self.exprs.check(entry.value, EMPTY_SCOPE)
            else:
                for pair in blocks.map_entries(entry, self.diagnostics) or []:
                    self.exprs.check(pair.value, EMPTY_SCOPE)
        if pipeline is None:
            return
        wanted = target.arg_text
        for candidate in pipeline.targets:
            if candidate.kind == target.kind and (wanted is None or candidate.name == wanted):
                return
        shown = f"`{target_words(target.kind, wanted)}`"
        have = ", ".join(f"`{target_words(c.kind, c.name)}`" for c in pipeline.targets)
        self.report(
            "LHP501",
            target.span,
            f"pipeline `{pipeline.name}` has no target {shown}",
            f"its targets: {have}" if have else None,
        )


def _iso_timestamp(text: str) -> bool:
    """Whether ``text`` is ISO-8601 as the engine reads it (``datetime.fromisoformat``)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
