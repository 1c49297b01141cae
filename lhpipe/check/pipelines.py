"""Checking ``pipeline`` declarations: the source and the targets (each by its kind's own
check, :mod:`lhpipe.check.kinds`), the steps, ``on_error``, and which pipeline reads each
direct-mode webhook."""

from __future__ import annotations

from typing import Literal, cast

from lhpipe.check import blocks, scopes
from lhpipe.check import types as t
from lhpipe.check.context import CheckContext
from lhpipe.check.kinds import KindChecks
from lhpipe.check.names import Scope
from lhpipe.check.program import (
    ErrorPolicy,
    PipelineInfo,
    SourceInfo,
    TargetInfo,
    Text,
    default_group,
)
from lhpipe.syntax import ast


class PipelineChecks(CheckContext):
    #: Every kind's check (given by :func:`lhpipe.check.checker.check`).
    kinds: KindChecks

    def _pipeline(self, decl: ast.PipelineDecl) -> None:
        source = self._source(decl.name.name, decl.source)
        kind = self.kinds.sources[source.kind]
        words = kind.words(source) if kind.words is not None else f"`{source.kind.value}`"
        scope = scopes.pipeline_scope(
            source.value_type,
            source.key_type,
            has_record=kind.has_record(self, source),
            source=words,
            event=kind.event,
        )
        for step in decl.steps:
            if isinstance(step, ast.Where):
                self._where(step, scope)
            else:
                scope = self._let(step, scope)
        targets = tuple(self._target(target, scope) for target in decl.targets)
        policy = self._on_error(decl.on_error, decl.name.name)
        if self.is_first(decl):
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
        """The source, read by its kind's check; a consumer group (for the kinds that read
        Kafka) is ``lhpipe-<pipeline>`` unless written, literally or as ``env(...)``."""
        kind = self.kinds.sources[source.kind]
        found = blocks.entries(source.block, kind.block, self.diagnostics)
        group_expr = self.setting(found, "group")
        group = self.text(group_expr, "a consumer group") if group_expr else None
        info = SourceInfo(
            kind=source.kind,
            decl=source,
            topic=None,
            group=group if group is not None else default_group(pipeline),
            value="json",
            value_type=t.JSON,
            key="string",
            key_type=t.STRING,
            settings={k: e.value for k, e in found.items() if isinstance(e, ast.Setting)},
        )
        return kind.check(self, info, found)

    def _target(self, target: ast.Target, scope: Scope) -> TargetInfo:
        kind = self.kinds.targets[target.kind]
        found = blocks.entries(target.block, kind.block, self.diagnostics)
        return kind.check(self, target, found, scope)

    def _on_error(self, block: ast.Block | None, pipeline: str) -> ErrorPolicy:
        if block is None:
            return ErrorPolicy()
        found = blocks.entries(block, blocks.ON_ERROR, self.diagnostics)
        retry_expr = self.setting(found, "retry")
        retry = self.int_literal(retry_expr, "`retry`", "LHP404") if retry_expr else None
        backoff_expr = self.setting(found, "backoff")
        backoff = self.duration(backoff_expr, "`backoff`", "LHP404") if backoff_expr else None
        dead_letter_expr = self.setting(found, "dead_letter")
        dead_letter: Text | None = None
        if dead_letter_expr is not None:
            if isinstance(dead_letter_expr, ast.Call) and dead_letter_expr.func.name == "env":
                dead_letter = self.text(dead_letter_expr, "a topic")
            elif isinstance(dead_letter_expr, ast.StringLit):
                dead_letter = self.topic_name(dead_letter_expr, "a dead-letter topic")
            else:
                self.report("LHP404", dead_letter_expr.span, "`dead_letter` must be a topic name")
        permanent_expr = self.setting(found, "permanent")
        permanent = (
            self.choice(permanent_expr, ("stop", "skip"), "`permanent` policy", "LHP404")
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
        partitions_expr = self.setting(found, "partitions")
        partitions = None
        if partitions_expr is not None:
            partitions = self.partitions(partitions_expr)
            if dead_letter_expr is None:
                self.report(
                    "LHP411",
                    found["partitions"].key.span,
                    "`partitions` is for the dead-letter topic, and this `on_error` has no "
                    "`dead_letter`",
                    'add `dead_letter = "..."`, or remove `partitions`',
                )
            elif partitions is not None:
                self.claim_partitions(
                    dead_letter, partitions, partitions_expr.span, f"pipeline `{pipeline}`"
                )
        return ErrorPolicy(
            retry=retry,
            backoff_ms=100 if backoff is None else backoff,
            dead_letter=dead_letter,
            permanent=cast(Literal["stop", "skip"], permanent or "stop"),
            partitions=partitions,
        )

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
