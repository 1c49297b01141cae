"""`lhpipe run` before anything connects: lint errors, bad paths."""

from __future__ import annotations

import io
from pathlib import Path

from lhpipe.commands.run import run_engine


def test_lint_errors_stop_the_run_with_exit_1_in_the_lint_text_format(tmp_path: Path) -> None:
    source = tmp_path / "bad.lhp"
    source.write_text('pipeline p {\n  from topic "t" { value = json }\n  to log\n  wher\n}\n')
    err = io.StringIO()
    assert run_engine([str(source)], stderr=err) == 1
    first = err.getvalue().splitlines()[0]
    assert first.startswith(f"{source}:4:")
    assert "error[LHP" in first


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    err = io.StringIO()
    assert run_engine([str(tmp_path / "nowhere.lhp")], stderr=err) == 2
    assert "nowhere.lhp" in err.getvalue()
