"""`lhpipe lint`: parse and check `.lhp` files, print the diagnostics in the chosen format."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from lhpipe.commands.formats import LintReport, formatter, wants_color
from lhpipe.commands.outcome import ExitCode, lint_exit

ONLINE_NOT_BUILT = (
    "lhpipe lint: --online is not implemented yet: the live checks against LittleHorse and the "
    "schema registry come with the engine issue. Run `lhpipe lint` without --online for the "
    "offline checks."
)


def lint_report(paths: Sequence[str]) -> LintReport:
    """Load and check ``paths``; raises ``OSError`` for a missing or unreadable path and
    ``UnicodeDecodeError`` for a file that is not UTF-8 text."""
    from lhpipe.check.load import load

    result = load(paths)
    return LintReport(result.diagnostics, result.sources, len(result.sources))


def run_lint(
    paths: Sequence[str],
    *,
    output_format: str = "text",
    strict: bool = False,
    online: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Lint ``paths`` and return the exit code (see :mod:`lhpipe.commands.outcome`)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if online:
        print(ONLINE_NOT_BUILT, file=err)
        return ExitCode.USAGE
    try:
        report = lint_report(paths)
    except OSError as exc:
        print(f"lhpipe lint: {describe_os_error(exc)}", file=err)
        return ExitCode.USAGE
    except UnicodeDecodeError as exc:
        print(f"lhpipe lint: a file is not UTF-8 text: {exc}", file=err)
        return ExitCode.USAGE
    if report.files_checked == 0:
        print(f"lhpipe lint: no .lhp files found in {', '.join(paths)}", file=err)
    render = formatter(output_format, color=wants_color(out))
    out.write(render(report))
    out.flush()
    return lint_exit(report.diagnostics, strict=strict)


def describe_os_error(exc: OSError) -> str:
    """``No such file or directory: 'x.lhp'`` rather than Python's ``[Errno 2] ...``."""
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename!s}"
    return str(exc)
