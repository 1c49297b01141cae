"""`lhpipe test`: which target an `expect` is compared with, how a difference shows the values
(as `.lhp` writes them), and the report's lines and colours."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_testing import compare, run_text

from lhpipe.engine import testing


def report(tmp_path: Path, program: str) -> list[str]:
    """The report's lines for ``program``, closing lines included."""
    _, out, _ = run_text(tmp_path, program)
    return out.splitlines()


@pytest.mark.parametrize(
    ("given", "expect", "difference"),
    [
        pytest.param(
            'value = "x"',
            'expect to topic "out" { value = { a = 1, b = "x" } }',
            'value: expected { a = 1, b = "x" } but got "x"',
            id="a record where the value is text",
        ),
        pytest.param(
            "value = 1",
            'expect to topic "out" { value = {} }',
            "value: expected {} but got 1",
            id="an empty record",
        ),
        pytest.param(
            'value = "a\\\\b\\"c\\nd\\te"',
            'expect to topic "out" { value = "abcde" }',
            'value: expected "abcde" but got "a\\\\b\\"c\\nd\\te"',
            id="text with a backslash, a quote, a newline and a tab",
        ),
        pytest.param(
            'value = { at = "2024-05-01T12:30:00Z", n = 1 }',
            'expect run_wf "w" { variables { at = 1714566600000  n = 1 } }',
            'variables.at: expected 1714566600000 but got "2024-05-01T12:30:00.000Z"',
            id="a timestamp is compared with text, never with epoch milliseconds",
        ),
    ],
)
def test_a_difference_shows_both_values_as_lhp_writes_them(
    tmp_path: Path, given: str, expect: str, difference: str
) -> None:
    label = 'run_wf "w"' if expect.startswith("expect run_wf") else 'to topic "out"'

    lines = compare(tmp_path, given, expect)

    assert lines[1:] == [f"    {label}: {difference}"]


BYTES = """\
pipeline raw {
  from topic "raw" { value = bytes }
  to log { value = value }
}
"""


@pytest.mark.parametrize(
    ("expected", "problem"),
    [
        ('"abc"', None),
        ('"abd"', 'to log: value: expected "abd" but got bytes "abc"'),
        ("5", 'to log: value: expected 5 but got bytes "abc"'),
    ],
)
def test_bytes_equal_their_utf8_text_and_show_as_bytes(
    tmp_path: Path, expected: str, problem: str | None
) -> None:
    # A test cannot write bytes: a JSON string given to a bytes source arrives as its bytes.
    test = f"""\
test "t" {{
  pipeline = raw
  given {{ value = json("\\"abc\\"") }}
  expect to log {{ value = {expected} }}
}}
"""
    lines = report(tmp_path, BYTES + test)

    if problem is None:
        assert lines == ["PASS t", "", "1 passed, 0 failed"]
    else:
        assert lines[1:] == [f"    {problem}", "", "0 passed, 1 failed"]


TARGETS = """\
pipeline fan_out {
  from topic "in"
  to log { value = "logged" }
  run_wf "w" { variables { v = value } }
  to topic "first" { value = 1 }
  to topic "second" { value = value }
  to http "https://a.example.com/hook" { body = 1 }
  to http "https://b.example.com/hook" { body = value }
}
"""


def test_each_expect_is_compared_with_the_target_it_names(tmp_path: Path) -> None:
    test = """\
test "named" {
  pipeline = fan_out
  given { value = 2 }
  expect to topic "second" { value = 2 }
  expect to http "https://b.example.com/hook" { body = 2  method = "POST" }
  expect run_wf "w" { variables { v = 2 } }
  expect to log { value = "logged" }
}
"""
    assert report(tmp_path, TARGETS + test) == ["PASS named", "", "1 passed, 0 failed"]


def test_an_expect_without_settings_passes_when_the_target_is_sent_to(tmp_path: Path) -> None:
    test = """\
test "sent" {
  pipeline = fan_out
  given { value = 2 }
  expect run_wf "w"
  expect to topic "first"
}
"""
    assert report(tmp_path, TARGETS + test) == ["PASS sent", "", "1 passed, 0 failed"]


def test_expect_nothing_names_every_target_the_record_would_go_to(tmp_path: Path) -> None:
    test = """\
test "dropped" {
  pipeline = fan_out
  given { value = 2 }
  expect nothing
}
"""
    would = (
        'to log, run_wf "w", to topic "first", to topic "second", '
        'to http "https://a.example.com/hook", to http "https://b.example.com/hook"'
    )
    assert report(tmp_path, TARGETS + test)[1] == (
        f"    expected nothing, but the record was kept: it would go to {would}"
    )


def test_given_and_expected_values_may_be_taken_from_pasted_json(tmp_path: Path) -> None:
    # A field or an item of a `json(...)` literal: the expression's static type is needed.
    test = """\
test "pasted" {
  pipeline = fan_out
  given { value = json("{\\"event\\": {\\"n\\": 2}}").event.n }
  expect run_wf "w" { variables { v = json("[2]")[0] } }
  expect to topic "second" { value = json("{\\"n\\": 2}").n }
}
"""
    assert report(tmp_path, TARGETS + test) == ["PASS pasted", "", "1 passed, 0 failed"]


OUTCOMES = [
    testing.TestOutcome("kept", "a.lhp:3", ()),
    testing.TestOutcome("dropped", "a.lhp:9", ("to log: value: expected 1 but got 2", "second")),
]


def test_the_report_has_no_colour_unless_asked() -> None:
    assert testing.format_report(OUTCOMES) == (
        "PASS kept\n"
        "FAIL dropped  (a.lhp:9)\n"
        "    to log: value: expected 1 but got 2\n"
        "    second\n"
        "\n"
        "1 passed, 1 failed\n"
    )


def test_in_colour_pass_is_green_and_fail_red_and_nothing_else_is_coloured() -> None:
    assert testing.format_report(OUTCOMES, color=True) == (
        "\033[32mPASS\033[0m kept\n"
        "\033[31mFAIL\033[0m dropped  (a.lhp:9)\n"
        "    to log: value: expected 1 but got 2\n"
        "    second\n"
        "\n"
        "1 passed, 1 failed\n"
    )


def test_an_http_expect_names_a_target_by_its_declared_url_not_a_rendered_one(
    tmp_path: Path,
) -> None:
    # The first target's URL renders to the second one's declared URL: the expect is the
    # second's all the same.
    program = """\
pipeline calls {
  from topic "in"
  to http "https://h.example.com/${value.p}" { method = "PUT"  body = 1 }
  to http "https://h.example.com/q" { body = 2 }
}

test "declared" {
  pipeline = calls
  given { value = { p = "q" } }
  expect to http "https://h.example.com/q" { method = "POST"  body = 2 }
}
"""
    assert report(tmp_path, program) == ["PASS declared", "", "1 passed, 0 failed"]
