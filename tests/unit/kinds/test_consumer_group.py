"""``group`` of a Kafka-reading source: a literal, ``env("NAME", "default")`` read when the
pipeline runs, or ``lhpipe-<pipeline>`` when not written."""

from __future__ import annotations

from typing import Any

import pytest

from lhpipe.check.program import EnvRef
from lhpipe.engine.supervisor import Supervisor
from lhpipe.kinds import SOURCES, compile_program, load_texts
from lhpipe.runtime.kind import PipelineNotRunnable
from lhpipe.runtime.status import State
from lhpipe.settings import Settings


class _NoClients:
    settings = Settings(environ={})

    def kafka_producer(self) -> Any:
        raise AssertionError("not needed")

    def schema_registry(self) -> Any:
        raise AssertionError("not needed")

    def littlehorse(self) -> Any:
        raise AssertionError("not needed")

    def sender(self, kind: str) -> Any:
        raise AssertionError("not needed")


def _group(source: str, environ: dict[str, str]) -> str:
    """The group the pipeline's consumer would join with these settings."""
    result = load_texts({"p.lhp": f"pipeline p {{\n  {source}\n  to log\n}}\n"})
    assert result.diagnostics == ()
    assert result.program is not None
    compiled = compile_program(result.program)
    spec = compiled.pipelines["p"]
    kind = SOURCES[spec.pipeline.source.kind]
    settings = Settings(environ=environ)
    parts = kind.parts(spec, result.program, settings, _NoClients())
    consumer = parts.make_source(None)  # type: ignore[arg-type]  # not started
    group: str = consumer.group  # type: ignore[attr-defined]
    return group


@pytest.mark.parametrize(
    "source",
    ['from topic "t" { group = env("G", "g1") }', 'from lh_output { group = env("G", "g1") }'],
)
def test_an_env_group_lints_clean_and_is_read_when_the_pipeline_runs(source: str) -> None:
    result = load_texts({"p.lhp": f"pipeline p {{\n  {source}\n  to log\n}}\n"})
    assert result.diagnostics == ()
    assert result.program is not None
    assert result.program.pipelines["p"].source.group == EnvRef("G", "g1")
    assert _group(source, {}) == "g1"
    assert _group(source, {"G": "g2"}) == "g2"


def test_a_literal_group_and_the_default() -> None:
    assert _group('from topic "t" { group = "billing" }', {"G": "g2"}) == "billing"
    assert _group('from topic "t"', {}) == "lhpipe-p"
    assert _group("from lh_output", {}) == "lhpipe-p"


def test_an_env_group_without_a_default_and_unset_does_not_run_the_pipeline() -> None:
    with pytest.raises(PipelineNotRunnable, match="G"):
        _group('from topic "t" { group = env("G") }', {})
    text = 'pipeline p {\n  from topic "t" { group = env("G") }\n  to log\n}\n'
    result = load_texts({"p.lhp": text})
    assert result.program is not None
    compiled = compile_program(result.program)
    supervisor = Supervisor(compiled, result.program, Settings(environ={}))
    assert supervisor._build_reported(compiled.pipelines["p"]) is None
    (status,) = supervisor.statuses()
    assert status.state is State.FAILED
    assert "G" in status.detail


def test_the_graph_describes_an_env_group_as_written() -> None:
    text = 'pipeline p {\n  from topic "t" { group = env("G", "g1") }\n  to log\n}\n'
    result = load_texts({"p.lhp": text})
    assert result.program is not None
    description = compile_program(result.program).pipelines["p"].description
    assert description["source"]["group"] == 'env("G", "g1")'  # type: ignore[index,call-overload]
