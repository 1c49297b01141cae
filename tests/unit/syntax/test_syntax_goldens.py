"""The parse-error goldens (`tests/data/lint/syntax_*.lhp`) checked against parse() alone, so a
syntax regression shows here even when the checker also reports something."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lhpipe.diagnostics import CODES
from lhpipe.syntax import parse

GOLDENS = sorted((Path(__file__).parents[2] / "data" / "lint").glob("syntax_*.lhp"))
_EXPECT = re.compile(r"expect\s+(LHP\d{3})\s+(?:col\s+(\d+)|at\s+(\d+):(\d+))")
_COMMENT = re.compile(r"(?://|#)\s*expect\b.*$")


def _expected(text: str) -> set[tuple[str, int, int]]:
    found: set[tuple[str, int, int]] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        comment = _COMMENT.search(line)
        for match in _EXPECT.finditer(comment.group(0) if comment else ""):
            code, col, at_line, at_col = match.groups()
            if col is not None:
                found.add((code, number, int(col)))
            else:
                found.add((code, int(at_line), int(at_col)))
    return found


def test_there_is_a_golden_for_every_kind_of_syntax_error() -> None:
    assert len(GOLDENS) >= 18
    codes = {code for path in GOLDENS for code, _, _ in _expected(path.read_text())}
    assert codes == {code for code in CODES if code.startswith("LHP0")}


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: p.name)
def test_parse_reports_exactly_the_expected_syntax_errors(path: Path) -> None:
    text = path.read_text()
    result = parse(text, str(path))
    actual = {(d.code, d.span.line, d.span.col) for d in result.diagnostics}
    assert actual == _expected(text)
    lines = text.splitlines()
    for diagnostic in result.diagnostics:
        assert diagnostic.span.file == str(path)
        assert 1 <= diagnostic.span.line <= len(lines)
        assert 1 <= diagnostic.span.col <= len(lines[diagnostic.span.line - 1]) + 1
