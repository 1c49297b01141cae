"""``to connector NAME``: lint, plans, `lhpipe test`, the graph, the fingerprint, `fmt`."""

from __future__ import annotations

from lhpipe.core.plans import TopicPlan
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.core.steps import compile_steps, initial_env
from lhpipe.engine.testing import run_tests
from lhpipe.kinds import compile_planner, compile_program, load_texts
from lhpipe.syntax import format_file, parse

SINK = 'connector export { class = "FileStreamSink" topic = "done" config { file = "/o" } }\n'
SOURCE = 'connector lines { class = "FileStreamSource" topic = "lines" config { file = "/i" } }\n'


def _codes(text: str) -> list[tuple[str, int, str]]:
    result = load_texts({"p.lhp": text})
    return [(d.code, d.span.line, d.message) for d in result.diagnostics]


def _pipeline(target: str) -> str:
    return f'pipeline p {{\n  from topic "in" {{ key = string }}\n  {target}\n}}\n'


def test_a_declared_sink_connector_lints_clean() -> None:
    text = SINK + _pipeline("to connector export { key = value.id  value = { id = value.id } }")
    assert _codes(text) == []


def test_an_unknown_connector_is_lhp106_with_a_suggestion() -> None:
    result = load_texts({"p.lhp": SINK + _pipeline("to connector exprot")})
    (diagnostic,) = result.diagnostics
    assert (diagnostic.code, diagnostic.span.line) == ("LHP106", 4)
    assert diagnostic.message == "unknown connector `exprot`"
    assert diagnostic.hint is not None and "export" in diagnostic.hint


def test_a_source_connector_or_another_declaration_is_refused() -> None:
    codes = _codes(SOURCE + _pipeline("to connector lines"))
    assert [(c, line) for c, line, _ in codes] == [("LHP106", 4)]
    assert "is a source connector" in codes[0][2]
    other = _codes(_pipeline("to connector p"))
    assert other == [("LHP106", 3, "`p` is a pipeline, not a connector")]


def test_its_settings_are_checked_like_to_topic() -> None:
    codes = _codes(SINK + _pipeline("to connector export { key = 3  nope = 1 }"))
    assert [(c, line) for c, line, _ in codes] == [("LHP201", 4), ("LHP107", 4)]


def test_the_plan_is_a_record_on_the_connectors_topic() -> None:
    text = SINK + _pipeline('to connector export { value = { id = value.id } headers { a = "1" } }')
    result = load_texts({"p.lhp": text})
    assert result.program is not None
    info = result.program.pipelines["p"]
    record = Record(origin=KafkaOrigin("in", 0, 7), key=b"k-1", value=b'{"id": 4}')
    env = compile_steps(info, result.program)(initial_env(record, "k-1", {"id": 4}))
    assert env is not None
    plan = compile_planner(info.targets[0], info, result.program)(env, record)
    assert plan == TopicPlan(topic="done", key="k-1", value={"id": 4}, headers={"a": "1"})


def test_lhpipe_test_compares_an_expect_to_connector_block() -> None:
    text = (
        SINK
        + _pipeline("to connector export { value = { id = value.id } }")
        + 'test "ok" { pipeline = p  given { value = { id = 1 } }\n'
        + "  expect to connector export { value = { id = 1 } } }\n"
        + 'test "wrong" { pipeline = p  given { value = { id = 1 } }\n'
        + "  expect to connector export { value = { id = 2 } } }\n"
    )
    result = load_texts({"p.lhp": text})
    assert result.program is not None
    outcomes = {o.title: o.problems for o in run_tests(result.program)}
    assert outcomes["ok"] == ()
    assert outcomes["wrong"] == ('to connector "export": value.id: expected 2 but got 1',)


def test_the_graph_draws_the_topic_then_the_connector() -> None:
    result = load_texts({"p.lhp": SINK + _pipeline("to connector export")})
    assert result.program is not None
    edges = {(e.src, e.dst) for e in compile_program(result.program).graph.edges}
    assert ("pipeline:p/target:0", "topic:done") in edges
    assert ("topic:done", "connector:export") in edges


def test_moving_the_connectors_topic_changes_the_pipelines_fingerprint() -> None:
    def fingerprint(topic: str) -> str:
        sink = SINK.replace('"done"', f'"{topic}"')
        result = load_texts({"p.lhp": sink + _pipeline("to connector export")})
        assert result.program is not None
        return compile_program(result.program).pipelines["p"].fingerprint

    assert fingerprint("done") == fingerprint("done")
    assert fingerprint("done") != fingerprint("elsewhere")


def test_fmt_writes_the_name_as_a_name() -> None:
    text = SINK + 'pipeline p {\n  from topic "in"\n  to connector export { value = value }\n}\n'
    parsed = parse(text, "p.lhp")
    assert parsed.file is not None
    assert "  to connector export { value = value }\n" in format_file(parsed.file, text)
