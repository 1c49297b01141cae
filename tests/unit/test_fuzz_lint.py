"""Property: whatever the text, `lint` reports diagnostics and never raises.

Random texts and mutations of real files (the example pipelines and the test data: tokens and
lines deleted, inserted, duplicated, swapped) go through the whole front end and every lint
output format; programs that still check clean are compiled and drawn too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lhpipe.check.formats import (
    LintReport,
    format_github,
    format_json,
    format_sarif,
    format_text,
)
from lhpipe.diagnostics import CODES
from lhpipe.graph.render import to_dot, to_mermaid
from lhpipe.kinds import compile_program, load_texts

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted([*(ROOT / "pipelines").rglob("*.lhp"), *(ROOT / "tests" / "data").rglob("*.lhp")])
TEXTS = {str(path): path.read_text(encoding="utf-8") for path in CORPUS}

# Words, strings, numbers with units, operators, single characters, whitespace runs.
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|[A-Za-z_][A-Za-z0-9_]*|[0-9][A-Za-z0-9_.]*|\s+|.')
VOCABULARY = sorted({tok for text in TEXTS.values() for tok in TOKEN.findall(text)})
ODD_PIECES = ["${", "}", '"', "\\", "\\u{", "\ufeff", "\t", "\r\n", "\x00", "é", "//", "#", "??"]


def _edit(items: list[str], op: str, i: int, j: int, piece: str) -> list[str]:
    if not items:
        return [piece]
    i %= len(items)
    j %= len(items)
    if op == "delete":
        return items[:i] + items[i + 1 :]
    if op == "insert":
        return [*items[:i], piece, *items[i:]]
    if op == "duplicate":
        return [*items[: i + 1], items[i], *items[i + 1 :]]
    swapped = list(items)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return swapped


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, str]:
    path = draw(st.sampled_from(sorted(TEXTS)))
    text = TEXTS[path]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "swap"]))
        i, j = draw(st.integers(0, 10_000)), draw(st.integers(0, 10_000))
        piece = draw(st.sampled_from(VOCABULARY) | st.sampled_from(ODD_PIECES))
        if draw(st.booleans()):
            text = "".join(_edit(TOKEN.findall(text), op, i, j, piece))
        else:
            text = "\n".join(_edit(text.split("\n"), op, i, j, piece))
    # The original path, so that `schema X from "y.avsc"` still finds its file.
    return path, text


# Random sequences of real tokens and stray characters.
random_files = st.tuples(
    st.just("random.lhp"),
    st.lists(
        st.sampled_from(VOCABULARY) | st.sampled_from(ODD_PIECES) | st.characters(),
        max_size=80,
    ).map("".join),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files() | random_files)
def test_lint_never_raises(case: tuple[str, str]) -> None:
    path, text = case
    result = load_texts({path: text})
    for diagnostic in result.diagnostics:
        assert diagnostic.code in CODES
        assert diagnostic.span.file == path
        assert 1 <= diagnostic.span.line <= diagnostic.span.end_line
        assert diagnostic.message
    report = LintReport(result.diagnostics, result.sources, 1)
    assert format_text(report, color=True).endswith("file\n")
    assert len(json.loads(format_json(report))) == len(result.diagnostics)
    assert format_github(report).count("\n") == len(result.diagnostics)
    assert len(json.loads(format_sarif(report))["runs"][0]["results"]) == len(result.diagnostics)
    if result.program is not None:
        graph = compile_program(result.program).graph
        assert to_dot(graph).startswith("digraph")
        assert to_mermaid(graph).startswith("flowchart")


# Each wraps an expression in one more level (parentheses keep the grouping, and add none).
NESTING = [
    "not ({})",
    "-({})",
    "({}) and true",
    "1 + ({})",
    "null ?? ({})",
    "({}).a",
    "({})[0]",
    "lower({})",
    "[{}]",
    "{{ a = {} }}",
    '"${{ {} }}"',
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 300).flatmap(
        lambda n: st.lists(st.sampled_from(NESTING), min_size=n, max_size=n)
    ),
    st.sampled_from(["value", "((value))", "1"]),
)
def test_nesting_of_any_depth_is_a_diagnostic_past_the_limit(
    wrappers: list[str], leaf: str
) -> None:
    from lhpipe.syntax._builder import MAX_NESTING

    expr = leaf
    for wrapper in wrappers:
        if wrapper.startswith('"') and ('"' in expr or "{" in expr):
            wrapper = "str({})"  # `${...}` holds no braces, and strings only one level deep
        expr = wrapper.format(expr)
    text = f'pipeline p {{\n  from topic "t"\n  let x = {expr}\n  to log\n}}\n'
    result = load_texts({"deep.lhp": text})
    codes = [d.code for d in result.diagnostics]
    assert ("LHP010" in codes) == (len(wrappers) > MAX_NESTING), codes
    assert format_text(LintReport(result.diagnostics, result.sources, 1))
