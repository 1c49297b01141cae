"""`lhpipe lint`: parse and check `.lhp` files, print the diagnostics in the chosen format."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from lhpipe.check.formats import (
    LintReport,
    describe_read_error,
    escape_control,
    formatter,
    wants_color,
)
from lhpipe.check.outcome import ExitCode, lint_exit

if TYPE_CHECKING:
    from lhpipe.check.program import Program
    from lhpipe.diagnostics import Diagnostic


class OnlineCheckFailed(Exception):
    """``--online`` could not ask LittleHorse, the registry or Kafka (or its settings are
    wrong)."""


def lint_report(
    paths: Sequence[str], *, online: bool = False, processes: int | None = None
) -> LintReport:
    """Load and check ``paths``; with ``online``, a program that checks clean offline is
    then checked against LittleHorse, the registry and Kafka (``processes``: how many
    ``lhpipe run`` processes share each consumer group, for the topics' partitions). Raises
    ``OSError`` for a missing or unreadable path or one that is not a regular file (a FIFO, a
    socket, a device), ``UnicodeDecodeError`` for a file that is not UTF-8 text, and
    :class:`OnlineCheckFailed`."""
    from lhpipe.kinds import load

    result = load(paths)
    diagnostics = result.diagnostics
    if online and result.program is not None:
        found = _online_diagnostics(result.program, paths, processes)
        diagnostics = tuple(
            sorted(
                (*diagnostics, *found),
                key=lambda d: (d.span.file, d.span.line, d.span.col, d.code),
            )
        )
    return LintReport(diagnostics, result.sources, len(result.sources))


def _online_diagnostics(
    program: Program, paths: Sequence[str], processes: int | None
) -> list[Diagnostic]:
    # Imported here: plain `lint` never loads gRPC, Avro, Kafka or the registry client.
    from lhpipe.online.lint import OnlineUnavailable, check_online
    from lhpipe.settings import SettingsError, load_settings

    try:
        return check_online(program, load_settings([Path(p) for p in paths]), processes)
    except (OnlineUnavailable, SettingsError) as exc:
        raise OnlineCheckFailed(str(exc)) from exc


def run_lint(
    paths: Sequence[str],
    *,
    output_format: str = "text",
    strict: bool = False,
    online: bool = False,
    processes: int | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Lint ``paths`` and return the exit code (see :mod:`lhpipe.check.outcome`)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        report = lint_report(paths, online=online, processes=processes)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"lhpipe lint: {describe_read_error(exc)}", file=err)
        return ExitCode.USAGE
    except OnlineCheckFailed as exc:
        print(f"lhpipe lint: --online: {exc}", file=err)
        return ExitCode.USAGE
    if report.files_checked == 0:
        where = escape_control(", ".join(paths))
        print(f"lhpipe lint: no .lhp files found in {where}", file=err)
    render = formatter(output_format, color=wants_color(out))
    out.write(render(report))
    out.flush()
    return lint_exit(report.diagnostics, strict=strict)
