"""`lhpipe test`: the record a test builds from its `given` block (docs/testing.md, "What a test
runs"): its origin and timestamp, how its value reaches the pipeline for each kind of source,
and the line a test fails with when the given record cannot be built."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_testing import run_text

from lhpipe.engine import testing
from lhpipe.kinds import load

PROGRAM = """\
schema Signup { email: string  plan: string = "free" }
webhook direct_hook { path = "/hooks/direct"  auth = none  body = Signup }
webhook queued_hook { path = "/hooks/queued"  auth = none  topic = "queued" }
pipeline direct { from webhook direct_hook  run_wf "w" }
pipeline queued { from webhook queued_hook  run_wf "w" }
pipeline signups { from topic "signups" { value = Signup }  to log }
pipeline text {
  from topic "text" { value = string }
  to log { value = "${value}, key ${key ?? "null"}" }
}
pipeline plain { from topic "plain"  run_wf "w" { variables { v = value } } }
"""

LINE = PROGRAM.count("\n") + 1  # where the test starts


def outcome(tmp_path: Path, pipeline: str, given: str, expect: str) -> list[str]:
    """The report of one test of ``PROGRAM``, without its closing lines."""
    test = f'test "t" {{\n  pipeline = {pipeline}\n  given {{ {given} }}\n  {expect}\n}}\n'
    code, out, _ = run_text(tmp_path, PROGRAM + test)
    lines = out.splitlines()
    assert lines[-1] == ("1 passed, 0 failed" if code == 0 else "0 passed, 1 failed"), out
    return lines[:-2]


def failed(tmp_path: Path, problem: str) -> list[str]:
    return [f"FAIL t  ({tmp_path / 't.lhp'}:{LINE})", f"    {problem}"]


def test_a_direct_webhook_delivery_has_the_webhook_id_test_and_its_body_defaults(
    tmp_path: Path,
) -> None:
    lines = outcome(
        tmp_path,
        "direct",
        'value = { email = "a@x" }',
        'expect run_wf "w" { id = "direct-test"  variables { email = "a@x"  plan = "free" } }',
    )
    assert lines == ["PASS t"]


def test_a_direct_webhook_body_keeps_microseconds_that_an_avro_record_cannot(
    tmp_path: Path,
) -> None:
    # The body goes from the request to the pipeline; a Kafka record went through the
    # writer's `timestamp-millis`.
    program = """\
schema Reading { at: timestamp }
webhook reading_hook { path = "/hooks/reading"  auth = none  body = Reading }
pipeline direct { from webhook reading_hook  run_wf "w" { variables { at = value.at } } }
pipeline kafka { from topic "r" { value = Reading }  run_wf "w" { variables { at = value.at } } }
"""
    tests = "".join(
        f"""\
test "{pipeline}" {{
  pipeline = {pipeline}
  given {{ value = {{ at = "2024-05-01T12:30:00.123456Z" }} }}
  expect run_wf "w" {{ variables {{ at = "2024-05-01T12:30:00.123456Z" }} }}
}}
"""
        for pipeline in ("direct", "kafka")
    )
    _, out, _ = run_text(tmp_path, program + tests)

    assert out.splitlines()[:3] == [
        "PASS direct",
        f"FAIL kafka  ({tmp_path / 't.lhp'}:10)",
        '    run_wf "w": variables.at: expected "2024-05-01T12:30:00.123456Z" but got'
        ' "2024-05-01T12:30:00.123Z"',
    ]


def test_a_webhook_in_topic_mode_is_read_from_its_topic(tmp_path: Path) -> None:
    lines = outcome(
        tmp_path, "queued", 'value = { email = "a@x" }', 'expect run_wf "w" { id = "x" }'
    )
    assert lines == failed(tmp_path, 'run_wf "w": id: expected "x" but got "queued-queued-0-0"')


def test_outside_lh_output_a_test_without_key_has_no_key(tmp_path: Path) -> None:
    # Only an lh_output event is keyed by its `wf_run_id`; here the id is generated.
    plain = outcome(
        tmp_path,
        "plain",
        'value = { wf_run_id = "w-1" }',
        'expect run_wf "w" { id = "plain-plain-0-0" }',
    )
    text = outcome(tmp_path, "text", 'value = "abc"', 'expect to log { value = "abc, key null" }')

    assert plain == text == ["PASS t"]


@pytest.mark.parametrize(
    ("pipeline", "given", "problem"),
    [
        pytest.param(
            "direct",
            'value = json("{\\"email\\": 5}")',
            "the body does not match schema Signup: email: expected a string, got 5",
            id="a direct webhook body that does not match its schema",
        ),
        pytest.param(
            "text",
            'value = json("5")',
            "the given value is an int: the source reads text or bytes",
            id="a number for a string source",
        ),
        pytest.param(
            "text",
            'value = "abc"  headers { h = json("[1]") }',
            "a given header is a list, not text",
            id="a header that is not text",
        ),
    ],
)
def test_a_given_record_that_cannot_be_built_fails_the_test(
    tmp_path: Path, pipeline: str, given: str, problem: str
) -> None:
    # `json(...)` is dynamic: the checker lets it through, the record builder does not.
    lines = outcome(tmp_path, pipeline, given, "expect nothing")

    assert lines == failed(tmp_path, f"the given record cannot be built: {problem}")


def test_a_given_value_that_does_not_fit_the_avro_schema_names_the_schema(
    tmp_path: Path,
) -> None:
    lines = outcome(tmp_path, "signups", 'value = json("{\\"email\\": 5}")', "expect to log")

    head = "    the given record cannot be built: the given value does not fit schema `Signup`: "
    assert lines[1].startswith(head), lines


def test_a_json_value_is_written_as_json_text_as_a_producer_would(tmp_path: Path) -> None:
    # JSON numbers are 64-bit here, as in the engine's JSON writer and reader.
    lines = outcome(
        tmp_path, "plain", "value = 18446744073709551616", 'expect run_wf "w" { id = "x" }'
    )
    assert lines == failed(
        tmp_path,
        "permanent error (EXPRESSION): cannot write an int as JSON: Integer exceeds 64-bit range",
    )


def test_the_record_timestamp_is_the_time_the_test_runs(tmp_path: Path) -> None:
    path = tmp_path / "stamp.lhp"
    path.write_text(
        """\
pipeline stamp { from topic "in"  to log { value = record.timestamp } }
test "now" {
  pipeline = stamp
  given { value = 1 }
  expect to log { value = "2024-05-01T12:30:00.500Z" }
}
""",
        encoding="utf-8",
    )
    program = load([str(path)]).program
    assert program is not None

    outcomes = testing.run_tests(program, clock=lambda: 1714566600.5)

    assert [(o.title, o.problems) for o in outcomes] == [("now", ())]
