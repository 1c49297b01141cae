"""Property: parse() never raises, and every diagnostic points inside the file; whatever parses
clean also formats to text that parses to the same tree."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lhpipe.syntax import format_file, parse
from lhpipe.syntax.canonical import structure

EXAMPLES = [
    p.read_text() for p in sorted((Path(__file__).parent.parent / "data" / "fmt").glob("*.lhp"))
]
TOKENS = [
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    ".",
    "?",
    "??",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "${",
    '"',
    "\\",
    "//",
    "#",
    "\n",
    "schema",
    "webhook",
    "pipeline",
    "connector",
    "test",
    "from",
    "registry",
    "map",
    "expect",
    "nothing",
    "topic",
    "lh_output",
    "poll",
    "where",
    "let",
    "run_wf",
    "post_event",
    "correlate",
    "to",
    "http",
    "file",
    "log",
    "on_error",
    "or",
    "and",
    "not",
    "in",
    "true",
    "false",
    "null",
    "value",
    "key",
    "body",
    "json",
    "x",
    "0",
    "42",
    "4.5",
    "1.2.3",
    "250ms",
    "5xs",
    "1MiB",
    '"s"',
    '"${x}"',
    '"\\q"',
    '"${"',
    "@",
    ";",
    "é",
    "\t",
    "\r",
]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_sound(text: str) -> None:
    result = parse(text, "fuzz.lhp")
    assert result.file is not None
    lines = text.split("\n")
    for diagnostic in result.diagnostics:
        span = diagnostic.span
        assert not diagnostic.message.startswith("internal"), diagnostic
        assert span.file == "fuzz.lhp"
        assert 1 <= span.line <= len(lines), diagnostic
        assert 1 <= span.col <= len(lines[span.line - 1]) + 1, diagnostic
        assert (span.end_line, span.end_col) >= (span.line, span.col), diagnostic
    if not result.diagnostics:
        formatted = format_file(result.file, text)
        again = parse(formatted, "fuzz.lhp")
        assert again.diagnostics == (), (formatted, again.diagnostics)
        assert again.file is not None
        assert structure(again.file.decls) == structure(result.file.decls)
        assert [c.text for c in again.file.comments] == [c.text for c in result.file.comments]
        assert format_file(again.file, formatted) == formatted


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "swap"]))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == "insert":
            token = draw(st.sampled_from(TOKENS))
            text = text[:at] + token + " " * draw(st.integers(0, 1)) + text[at:]
        else:
            other = draw(st.integers(0, len(text)))
            first, second = sorted((at, other))
            middle = draw(st.integers(first, second))
            text = text[:first] + text[middle:second] + text[first:middle] + text[second:]
    return text


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_never_raises(text: str) -> None:
    _assert_sound(text)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_random_token_soup_never_raises(text: str) -> None:
    _assert_sound(text)


@SETTINGS
@given(_mutated())
def test_mutated_examples_never_raise(text: str) -> None:
    _assert_sound(text)
