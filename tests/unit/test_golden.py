"""Golden files of the language: each `tests/data/lint/*.lhp` is linted alone, and the set of
(code, line, col) of its diagnostics must equal the `expect` comments written in it:

    where value.agee > 1   // expect LHP202 col 13
    // expect LHP004 at 7:3            (anywhere: line 7, col 3)
    let x = y + z          // expect LHP102 col 9; expect LHP102 col 13

A file without `expect` comments must lint clean. `pytest --update-goldens` rewrites the
comments from the actual diagnostics (then review the diff).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from lhpipe.diagnostics import Diagnostic
from lhpipe.kinds import load

LINT_DIR = Path(__file__).parent.parent / "data" / "lint"
GOLDEN_FILES = sorted(LINT_DIR.glob("*.lhp"))

_COMMENT = re.compile(r"(//|#)\s*expect\b.*$")
_ONE = re.compile(r"expect\s+(LHP\d{3})\s+(?:col\s+(\d+)|at\s+(\d+):(\d+))")

Key = tuple[str, int, int]


@dataclass(frozen=True)
class Expectation:
    """One expected diagnostic and where its comment is written (for rewriting)."""

    key: Key
    written_on: int
    form: str  # "col" or "at"


def parse_expectations(text: str) -> list[Expectation]:
    """The `expect` comments of a golden file."""
    found: list[Expectation] = []
    for number, line in enumerate(text.splitlines(), start=1):
        comment = _COMMENT.search(line)
        if comment is None:
            continue
        for match in _ONE.finditer(comment.group(0)):
            code, col, at_line, at_col = match.groups()
            if col is not None:
                found.append(Expectation((code, number, int(col)), number, "col"))
            else:
                found.append(Expectation((code, int(at_line), int(at_col)), number, "at"))
    return found


def rewrite(text: str, actual: list[Key]) -> str:
    """``text`` with its `expect` comments replaced by ``actual``: an expectation that was
    already written stays where it was and in its form; a new one goes at the end of its line
    (`col` form), or on the last line (`at` form) when its line does not exist."""
    lines = text.splitlines()
    old = {e.key: e for e in parse_expectations(text)}
    marker = "#" if re.search(r"#\s*expect\b", text) and "// expect" not in text else "//"
    stripped = [_COMMENT.sub("", line).rstrip() for line in lines]
    additions: dict[int, list[str]] = {}
    for key in sorted(set(actual), key=lambda k: (k[1], k[2], k[0])):
        code, line, col = key
        previous = old.get(key)
        if previous is not None and previous.form == "at":
            additions.setdefault(previous.written_on, []).append(f"expect {code} at {line}:{col}")
        elif previous is not None or 1 <= line <= len(lines):
            additions.setdefault(line, []).append(f"expect {code} col {col}")
        else:
            additions.setdefault(len(lines), []).append(f"expect {code} at {line}:{col}")
    out: list[str] = []
    for number, kept in enumerate(stripped, start=1):
        original = _COMMENT.search(lines[number - 1])
        if original is not None and _ONE.findall(original.group(0)) == _ONE.findall(
            "; ".join(additions.get(number, []))
        ):
            out.append(lines[number - 1])  # unchanged: keep the author's layout
            continue
        if number in additions:
            comment = f"{marker} " + "; ".join(additions[number])
            kept = f"{kept}   {comment}" if kept.strip() else kept + comment
        elif not kept.strip() and lines[number - 1].strip():
            continue  # a line that only held expect comments that are gone
        out.append(kept)
    return "\n".join(out) + "\n"


def _describe(diagnostics: list[Diagnostic], keys: set[Key]) -> str:
    chosen = [d for d in diagnostics if (d.code, d.span.line, d.span.col) in keys]
    return "\n".join(
        f"  {d.code} at {d.span.line}:{d.span.col} {d.severity}: {d.message}" for d in chosen
    )


def test_there_are_golden_files() -> None:
    assert len(GOLDEN_FILES) >= 45


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_golden(path: Path, update_goldens: bool) -> None:
    text = path.read_text(encoding="utf-8")
    result = load([path])
    diagnostics = list(result.diagnostics)
    assert all(d.span.file == str(path) for d in diagnostics), "diagnostic in another file"
    actual = {(d.code, d.span.line, d.span.col) for d in diagnostics}
    expected = {e.key for e in parse_expectations(text)}
    if update_goldens:
        new_text = rewrite(text, sorted(actual))
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
        return
    missing = expected - actual
    unexpected = actual - expected
    message = []
    if missing:
        message.append("expected but not reported: " + ", ".join(map(str, sorted(missing))))
    if unexpected:
        message.append("reported but not expected:\n" + _describe(diagnostics, unexpected))
    assert not message, f"{path.name}:\n" + "\n".join(message)


def test_expectations_are_read_from_comments_only() -> None:
    text = (
        'pipeline p { from topic "t"   // expect LHP101 col 10; expect LHP406 col 19\n'
        "  to log }  # expect LHP004 at 7:3\n"
        'let x = "expect LHP999 col 1"\n'
    )
    keys = {e.key for e in parse_expectations(text)}
    assert keys == {("LHP101", 1, 10), ("LHP406", 1, 19), ("LHP004", 7, 3)}


def test_rewrite_moves_comments_to_the_actual_diagnostics() -> None:
    text = "schema A {\n  x: strng   // expect LHP208 col 3\n}\n// expect LHP004 at 9:1\n"
    new = rewrite(text, [("LHP208", 2, 6), ("LHP004", 9, 1)])
    assert new == ("schema A {\n  x: strng   // expect LHP208 col 6\n}\n// expect LHP004 at 9:1\n")
    assert rewrite(new, []) == "schema A {\n  x: strng\n}\n"
