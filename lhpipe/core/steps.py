"""A pipeline's steps: the names a record's expressions see, then ``where`` and ``let``.

:func:`initial_env` builds the environment of one decoded record (the names of
:mod:`lhpipe.check.scopes`); :func:`compile_steps` compiles the pipeline's ``where`` and ``let``
steps once into a :class:`Steps` callable that applies them in order: a ``let`` adds its name,
a ``where`` that is false drops the record (``None``), a ``where`` that is not a boolean is an
:class:`~lhpipe.core.errors.ExpressionError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lhpipe.check.program import PipelineInfo, Program
from lhpipe.core.errors import ExpressionError
from lhpipe.core.evaluate import Evaluator, compile_expr, describe
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.syntax import ast


def initial_env(
    record: Record,
    key: Any,
    value: Any,
    *,
    event: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The names a record's expressions start with: ``value``, ``key`` (decoded),
    ``headers`` (text, last value of a name wins), ``record`` (Kafka coordinates; absent for
    a direct-mode webhook) and, when the source gives one, ``event`` (``from lh_output``'s
    structured output-topic record, :data:`lhpipe.check.scopes.EVENT`)."""
    env = record_env(record, key, value)
    if event is not None:
        env["event"] = event
    return env


def record_env(record: Record, key: Any, value: Any) -> dict[str, Any]:
    """``value``, ``key``, ``headers`` and, for a record with Kafka coordinates (a polled
    item has some too), ``record``."""
    env: dict[str, Any] = {"value": value, "key": key, "headers": record.header_text()}
    origin = record.origin
    if isinstance(origin, KafkaOrigin):
        stamp = record.timestamp_ms
        env["record"] = {
            "topic": origin.topic,
            "partition": origin.partition,
            "offset": origin.offset,
            "timestamp": None if stamp is None else datetime.fromtimestamp(stamp / 1000, UTC),
        }
    return env


@dataclass(frozen=True, slots=True)
class _Step:
    step: ast.Step
    evaluate: Evaluator
    let_name: str | None  # None for a `where`


class Steps:
    """A pipeline's ``where`` and ``let`` steps, compiled. Calling it applies them to an
    environment (adding the ``let`` names to it) and returns it, or ``None`` when the source's
    own filter (``lh_output``'s ``kinds`` and ``wf_spec``) or a ``where`` drops the record."""

    def __init__(
        self,
        steps: tuple[_Step, ...],
        source_filter: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self._steps = steps
        self._source_filter = source_filter

    def __call__(self, env: dict[str, Any]) -> dict[str, Any] | None:
        if not self.kept_by_source(env):
            return None
        return env if self.dropped_by(env) is None else None

    def kept_by_source(self, env: Mapping[str, Any]) -> bool:
        """Whether the source's own filter keeps the record (always, for most sources)."""
        return self._source_filter is None or self._source_filter(env)

    def dropped_by(self, env: dict[str, Any]) -> ast.Where | None:
        """Like calling it, but says which ``where`` dropped the record (for `lhpipe test`)."""
        for step in self._steps:
            result = step.evaluate(env)
            if step.let_name is not None:
                env[step.let_name] = result
            elif result is not True:
                if result is False:
                    assert isinstance(step.step, ast.Where)
                    return step.step
                raise _not_boolean(step.step, result)
        return None


def compile_steps(
    pipeline: PipelineInfo,
    program: Program,
    source_filter: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Steps:
    """Compile ``pipeline``'s steps once (see :class:`Steps`); ``source_filter`` is the
    source kind's own test of a record's names, if it has one (``lh_output``'s)."""
    compiled = []
    for step in pipeline.steps:
        if isinstance(step, ast.Where):
            compiled.append(_Step(step, compile_expr(step.condition, program), None))
        else:
            compiled.append(_Step(step, compile_expr(step.value, program), step.name.name))
    return Steps(tuple(compiled), source_filter)


def _not_boolean(step: ast.Step, result: Any) -> ExpressionError:
    from lhpipe.syntax.formatter import format_expr

    assert isinstance(step, ast.Where)
    return ExpressionError(
        f"{format_expr(step.condition)}: `where` needs a boolean, found {describe(result)}"
    )
