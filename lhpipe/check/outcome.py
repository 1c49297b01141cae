"""Exit codes of every `lhpipe` command, decided in this one module.

0 means the command did what was asked and found nothing wrong, 1 means findings (diagnostics,
files that would be reformatted, failed tests), 2 means the command could not do its job: a
usage error, a missing or unreadable path, a missing tool, a feature that is not built yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from lhpipe.diagnostics import Diagnostic, Severity


class ExitCode(IntEnum):
    """The process exit status of an `lhpipe` command."""

    OK = 0
    FINDINGS = 1
    USAGE = 2


def lint_exit(diagnostics: Iterable[Diagnostic], *, strict: bool) -> ExitCode:
    """Errors always fail a lint; warnings fail it only with ``--strict``."""
    failing = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    if any(d.severity in failing for d in diagnostics):
        return ExitCode.FINDINGS
    return ExitCode.OK


def fmt_exit(*, unparsable: int, would_change: int, unsafe: int) -> ExitCode:
    """`fmt` fails on files it could not parse or could not format safely, and, with
    ``--check``, on files that are not in canonical layout (``would_change`` is 0 otherwise)."""
    if unparsable or would_change or unsafe:
        return ExitCode.FINDINGS
    return ExitCode.OK


def graph_exit(diagnostics: Iterable[Diagnostic]) -> ExitCode:
    """A graph is drawn unless an error stops the program from compiling."""
    return lint_exit(diagnostics, strict=False)


def tests_exit(*, has_errors: bool, failed: int) -> ExitCode:
    """`test` fails when the files have errors (no test runs then) or a test fails; no test
    at all is not a failure."""
    if has_errors or failed:
        return ExitCode.FINDINGS
    return ExitCode.OK
