"""`lhpipe fmt` never writes a file whose formatted text would mean something else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lhpipe.cli import main
from lhpipe.commands import fmt
from lhpipe.syntax import ast, formatter

SOURCE = """\
// keep me
pipeline p {
  from topic "t"
  where value.n > 1
  to log
}
"""


@pytest.mark.parametrize(
    "broken",
    [
        lambda text: text.replace("> 1", "> 2"),  # a different pipeline
        lambda text: text.replace("// keep me\n", ""),  # a lost comment
        lambda text: text.replace("to log", "to"),  # no longer parses
    ],
    ids=["meaning", "comment", "syntax"],
)
def test_a_formatter_that_changes_meaning_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    broken: Callable[[str], str],
) -> None:
    path = tmp_path / "p.lhp"
    path.write_text(SOURCE, encoding="utf-8")
    real = formatter.format_file

    def faulty(file: ast.File, text: str) -> str:
        return broken(real(file, text) + "\n")

    monkeypatch.setattr(formatter, "format_file", faulty)
    assert main(["fmt", str(path)]) == 1
    assert "formatter bug" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == SOURCE


def test_crlf_line_endings_are_rewritten_as_lf(tmp_path: Path) -> None:
    path = tmp_path / "p.lhp"
    path.write_bytes(SOURCE.replace("\n", "\r\n").encode())
    assert main(["fmt", "--check", str(path)]) == 1
    assert main(["fmt", str(path)]) == 0
    assert path.read_bytes() == SOURCE.encode()


def test_formatting_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "p.lhp"
    path.write_text(SOURCE.replace("  to log", "to log"), encoding="utf-8")
    path.chmod(0o640)
    assert fmt.run_fmt([str(path)]) == 0
    assert path.read_text(encoding="utf-8") == SOURCE
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["p.lhp"]


def test_a_file_that_is_not_utf8_is_named_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.lhp"
    path.write_bytes(b'pipeline a {\n  from topic "t\xff" { value = json }\n  to log\n}\n')
    assert main(["fmt", str(path)]) == 2
    assert f"{path}:2:16: byte 0xff at offset 28" in capsys.readouterr().err
