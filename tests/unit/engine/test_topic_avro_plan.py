"""``to topic { schema = NAME }`` through the checker, the planner and the graph: the plan
carries the schema (Avro JSON or registry subject), the value stays as the expressions made it,
and the pipeline's fingerprint follows the schema's content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lhpipe.check import types as t
from lhpipe.check.export_schema import misfits, path_text
from lhpipe.core.plans import TopicPlan, TopicSchema
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.steps import compile_steps, initial_env
from lhpipe.kinds import compile_planner, compile_program, load_texts

SCHEMAS = """
schema Summary {
  id: string
  count: long
  at: timestamp
  note: string?
}
schema Remote from registry "shared-summary"
"""


def plans(targets: str, value: Any, schemas: str = SCHEMAS) -> list[TopicPlan]:
    text = f'{schemas}\npipeline p {{\n  from topic "in"\n  {targets}\n}}\n'
    result = load_texts({"p.lhp": text})
    assert result.program is not None, [d.message for d in result.diagnostics]
    info = result.program.pipelines["p"]
    record = Record(
        origin=KafkaOrigin("in", 0, 1), key=b"k-1", value=None, headers=(), timestamp_ms=0
    )
    env = compile_steps(info, result.program)(initial_env(record, "k-1", value))
    assert env is not None
    found = []
    for target in info.targets:
        plan = compile_planner(target, info, result.program)(env, record)
        assert isinstance(plan, TopicPlan)
        found.append(plan)
    return found


def test_an_inline_schema_travels_with_the_plan_as_avro_json() -> None:
    (plan,) = plans('to topic "out" { schema = Summary }', {"id": "a", "count": 1, "at": 0})
    assert plan.topic == "out"
    assert plan.key == "k-1"
    assert plan.value == {"id": "a", "count": 1, "at": 0}
    assert isinstance(plan.schema, TopicSchema)
    assert plan.schema.name == "Summary"
    assert plan.schema.subject is None
    assert plan.schema.avro is not None
    assert plan.schema.avro["name"] == "Summary"
    assert [f["name"] for f in plan.schema.avro["fields"]] == ["id", "count", "at", "note"]


def test_a_registry_schema_travels_as_its_subject_and_json_stays_json() -> None:
    remote, plain = plans(
        'to topic "out" { schema = Remote  value = { id = value.id } }\n  to topic "plain"',
        {"id": "a"},
    )
    assert remote.schema == TopicSchema("Remote", None, "shared-summary")
    assert remote.value == {"id": "a"}
    assert plain.schema is None


def test_static_fit_rules() -> None:
    summary = t.RecordType("Summary", {"id": t.STRING, "n": t.LONG, "at": t.TIMESTAMP})
    fits = t.RecordType(None, {"id": t.STRING, "n": t.INT, "at": t.STRING})
    assert misfits(fits, summary) == []
    assert misfits(t.JSON, summary) == []
    assert misfits(fits, t.Dynamic("registry")) == []
    narrow = t.RecordType(None, {"id": t.STRING, "n": t.DOUBLE, "at": t.LONG})
    assert [m.path for m in misfits(narrow, summary)] == [("n",)]
    # Whole numbers fit any numeric field, ranges are the run time's; fractions need a float.
    assert misfits(t.LONG, t.INT) == [] and misfits(t.DOUBLE, t.FLOAT) == []
    assert misfits(t.INT, t.DOUBLE) == []
    assert len(misfits(t.FLOAT, t.LONG)) == 1
    missing = misfits(t.RecordType(None, {"id": t.STRING}), summary)
    assert [m.message for m in missing] == [
        "`value` lacks field `n` (`long`), which schema `Summary` requires",
        "`value` lacks field `at` (`timestamp`), which schema `Summary` requires",
    ]
    extra = misfits(t.RecordType(None, {**fits.fields, "x": t.INT}), summary)
    assert [(m.path, m.unknown_field) for m in extra] == [(("x",), True)]
    optional = misfits(t.optional(t.STRING), t.STRING)
    assert "may be null" in optional[0].message
    assert misfits(t.NULL, t.optional(t.STRING)) == []
    assert path_text(("a", "[]", "b")) == "value.a[].b"


def write(folder: Path, summary_count: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "p.lhp").write_text(
        f"schema Summary {{\n  id: string\n  count: {summary_count}\n}}\n"
        'pipeline p {\n  from topic "in"\n  to topic "out" { schema = Summary }\n}\n'
        'pipeline q {\n  from topic "in"\n  to topic "out2"\n}\n',
        encoding="utf-8",
    )
    return folder


def compiled(folder: Path) -> Any:
    from lhpipe.kinds import load

    result = load([folder])
    assert result.program is not None, [d.message for d in result.diagnostics]
    return compile_program(result.program)


def test_the_fingerprint_follows_the_written_schema(tmp_path: Path) -> None:
    before = compiled(write(tmp_path / "a", "long"))
    same = compiled(write(tmp_path / "b", "long"))
    after = compiled(write(tmp_path / "c", "int"))
    assert before.pipelines["p"].fingerprint == same.pipelines["p"].fingerprint
    assert before.pipelines["p"].fingerprint != after.pipelines["p"].fingerprint
    assert before.pipelines["q"].fingerprint == after.pipelines["q"].fingerprint
    spec = before.pipelines["p"]
    assert spec.schemas == ("Summary",)
    assert "LHPIPE_REGISTRY_URL" in spec.settings
    assert spec.description["targets"][0]["schema"] == "Summary"
    assert "schema" not in spec.description["targets"][0]["settings"]


def test_lhpipe_test_reports_a_value_that_does_not_fit_the_schema() -> None:
    from lhpipe.engine.testing import run_tests

    text = (
        SCHEMAS
        + 'pipeline p {\n  from topic "in"\n  to topic "out" { schema = Summary }\n}\n'
        + 'test "fits" {\n  pipeline = p\n'
        + '  given { value = { id = "a", count = 1, at = "2024-05-01T12:00:00Z" } }\n'
        + '  expect to topic "out" {\n'
        + '    value = { id = "a", count = 1, at = "2024-05-01T12:00:00Z" }\n  }\n'
        + "}\n"
        + 'test "does not fit" {\n  pipeline = p\n'
        + '  given { value = { id = "a", count = "many", at = 0 } }\n'
        + '  expect to topic "out"\n}\n'
    )
    result = load_texts({"p.lhp": text})
    assert result.program is not None, [d.message for d in result.diagnostics]
    fits, misfit = run_tests(result.program)
    assert fits.problems == ()
    assert misfit.problems == (
        "permanent error (ENCODE): the value does not fit schema Summary: value.count: "
        'expected a long, got "many"',
    )
