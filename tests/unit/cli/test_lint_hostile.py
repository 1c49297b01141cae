"""`lhpipe lint` on hostile files, as a user runs it (the console script in a subprocess, with a
timeout): no traceback for deep nesting, no hang on a FIFO, the file named when it is not
UTF-8, control characters from file names and contents escaped on the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lhpipe.check.formats import (
    LintReport,
    caret_line,
    escape_control,
    format_github,
    format_text,
)
from lhpipe.diagnostics import Span, make

LHPIPE = Path(sys.executable).with_name("lhpipe")
ESC, BEL = "\x1b", "\x07"


def _lint(*args: str | Path, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LHPIPE), "lint", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def _pipeline(steps: str) -> str:
    return f'pipeline p {{\n  from topic "t"\n{steps}\n  to log\n}}\n'


@pytest.mark.parametrize(
    "text",
    [
        _pipeline("  where " + " and ".join(["value.ok"] * 500)),
        _pipeline("  where value" + ".a" * 100_000 + " == 1"),
        "schema S {\n  f: " + "map<" * 20_000 + "string" + ">" * 20_000 + "\n}\n",
        "".join(f"schema S{i} {{\n  f: S{i + 1}?\n}}\n" for i in range(1000))
        + "schema S1000 {\n  x: string\n}\n",
    ],
    ids=["500 ands", "a .a chain 100,000 long", "map< 20,000 deep", "schemas 1,000 deep"],
)
def test_deep_nesting_is_a_diagnostic_not_a_traceback(tmp_path: Path, text: str) -> None:
    (tmp_path / "deep.lhp").write_text(text, encoding="utf-8")
    done = _lint("deep.lhp", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "RecursionError" not in done.stdout + done.stderr
    assert "error[LHP010] too deeply nested" in done.stdout
    assert done.stdout.startswith("deep.lhp:")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_given_by_path_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.lhp")
    done = _lint("pipe.lhp", cwd=tmp_path, timeout=20)  # a hang fails with TimeoutExpired
    assert done.returncode == 2
    assert done.stderr == "lhpipe lint: not a regular file (a FIFO): pipe.lhp\n"
    assert done.stdout == ""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_a_folder_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "a.lhp").write_text(_pipeline("  where true"), encoding="utf-8")
    os.mkfifo(folder / "b.lhp")
    done = _lint("pipelines", cwd=tmp_path, timeout=20)
    assert done.returncode == 2
    assert "not a regular file (a FIFO): pipelines/b.lhp" in done.stderr


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "good.lhp").write_text(_pipeline("  where true"), encoding="utf-8")
    (tmp_path / "bad.lhp").write_bytes(b'pipeline p {\n  from topic "t"\n  where "\xff"\n}\n')
    done = _lint("good.lhp", "bad.lhp", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "lhpipe lint: a file is not UTF-8 text: bad.lhp:3:10: byte 0xff at offset 39 cannot "
        "be decoded (invalid start byte)\n"
    )


def test_control_characters_from_names_and_contents_are_escaped(tmp_path: Path) -> None:
    name = f"evil{ESC}[31m{BEL}.lhp"
    (tmp_path / name).write_text(
        _pipeline(f"  where value.x{ESC}]0;title{BEL} == 1"), encoding="utf-8"
    )
    for output_format in ("text", "github"):
        done = _lint("--format", output_format, name, cwd=tmp_path)
        assert done.returncode == 1
        out = done.stdout + done.stderr
        assert ESC not in out and BEL not in out, output_format
        assert "evil\\x1b[31m\\x07.lhp:3:16" in out or "evil\\x1b[31m\\x07.lhp,line=3" in out
    text = _lint(name, cwd=tmp_path).stdout
    assert "  3 |   where value.x\\x1b]0;title\\x07 == 1\n    |                ^~~~\n" in text


def test_escape_control_covers_c0_del_c1_and_bidi_but_not_tabs_or_text() -> None:
    assert escape_control("a\tb é 日本") == "a\tb é 日本"
    assert escape_control("\x00\x1b\x7f\x85\u202e\u2066\n") == (
        "\\x00\\x1b\\x7f\\x85\\u202e\\u2066\\x0a"
    )


def test_the_caret_stays_under_the_span_after_escapes() -> None:
    line = "\t\x1b\u202ewhere x"
    span = Span("f.lhp", 1, 4, 1, 9)  # `where`
    assert caret_line(line, span) == "\t" + " " * 4 + " " * 6 + "^~~~~"
    report = LintReport([make("LHP001", span, "unexpected `where`")], {"f.lhp": line}, 1)
    assert "  1 | \t\\x1b\\u202ewhere x\n    | \t          ^~~~~\n" in format_text(report)


def test_github_annotations_escape_control_characters() -> None:
    span = Span(f"a{ESC}.lhp", 1, 1, 1, 2)
    report = LintReport([make("LHP001", span, f"unexpected `{BEL}`")], {}, 1)
    assert format_github(report) == (
        "::error file=a\\x1b.lhp,line=1,col=1,endLine=1,endColumn=2,title=LHP001::"
        "unexpected `\\x07`\n"
    )
