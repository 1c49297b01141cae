"""`lhpipe test`: load and check the files, run their ``test`` blocks, report pytest-style.

Exit codes (cli.md, decided by :func:`lhpipe.check.outcome.tests_exit`): 0 when every test
passes (or there is none), 1 when a test fails or the files have errors (printed as `lhpipe
lint` prints them), 2 for a missing or unreadable path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from lhpipe.check.formats import LintReport, describe_read_error, formatter, wants_color
from lhpipe.check.outcome import ExitCode, tests_exit


def run_test(
    paths: Sequence[str],
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the tests of ``paths`` and return the exit code."""
    from lhpipe.kinds import load

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        loaded = load(paths)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"lhpipe test: {describe_read_error(exc)}", file=err)
        return ExitCode.USAGE
    color = wants_color(out)
    if loaded.program is None:
        render = formatter("text", color=color)
        out.write(render(LintReport(loaded.diagnostics, loaded.sources, len(loaded.sources))))
        print("lhpipe test: the files have errors; no test was run", file=err)
        return tests_exit(has_errors=True, failed=0)
    if not loaded.program.tests:
        print(f"lhpipe test: no `test` blocks found in {', '.join(paths)}", file=err)

    from lhpipe.engine.testing import format_report, run_tests

    outcomes = run_tests(loaded.program)
    out.write(format_report(outcomes, color=color))
    out.flush()
    return tests_exit(has_errors=False, failed=sum(1 for o in outcomes if not o.passed))
