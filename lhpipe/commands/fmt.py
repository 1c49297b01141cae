"""`lhpipe fmt`: rewrite `.lhp` files in the one canonical layout, keeping comments.

A file is written only when its formatted text parses back to the same tree (spans aside) with
the same comments; otherwise it is left untouched and reported, because a formatter that changes
what a pipeline means is worse than none.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TextIO

from lhpipe.check.formats import describe_read_error, format_diagnostic_text, wants_color
from lhpipe.check.outcome import ExitCode, fmt_exit
from lhpipe.diagnostics import Diagnostic
from lhpipe.syntax import ast


class FileOutcome(Enum):
    """What `fmt` did, or would do, with one file."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"  # reformatted, or would be with --check
    UNPARSABLE = "unparsable"  # has syntax errors: left as it is
    UNSAFE = "unsafe"  # the formatted text would mean something else: left as it is


@dataclass(frozen=True, slots=True)
class Formatted:
    """The result of formatting one file's text."""

    outcome: FileOutcome
    text: str  # the canonical text when CHANGED, else the original
    diagnostics: tuple[Diagnostic, ...] = ()


def _meaning(file: ast.File) -> object:
    from lhpipe.syntax.canonical import structure

    comments = tuple(c.text.rstrip() for c in file.comments)
    return structure(file.decls), comments


def format_text(text: str, path: str) -> Formatted:
    """Format one file's text; never raises on bad input (syntax errors are reported)."""
    from lhpipe.syntax import parse
    from lhpipe.syntax.formatter import format_file

    parsed = parse(text, path)
    if parsed.file is None or any(d.is_error for d in parsed.diagnostics):
        return Formatted(FileOutcome.UNPARSABLE, text, tuple(parsed.diagnostics))
    canonical = format_file(parsed.file, text)
    if canonical == text:
        return Formatted(FileOutcome.UNCHANGED, text)
    reparsed = parse(canonical, path)
    if (
        reparsed.file is None
        or any(d.is_error for d in reparsed.diagnostics)
        or _meaning(reparsed.file) != _meaning(parsed.file)
    ):
        return Formatted(FileOutcome.UNSAFE, text)
    return Formatted(FileOutcome.CHANGED, canonical)


def _write_atomically(path: Path, text: str) -> None:
    # A crash mid-write must not leave a half-written pipeline behind: write beside, then rename.
    mode = path.stat().st_mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def fmt_summary(counts: dict[FileOutcome, int], *, check: bool) -> str:
    """``2 files would be reformatted, 5 already formatted`` and the failures, if any."""
    changed = counts[FileOutcome.CHANGED]
    verb = "would be reformatted" if check else "reformatted"
    parts = [
        f"{changed} {'file' if changed == 1 else 'files'} {verb}",
        f"{counts[FileOutcome.UNCHANGED]} already formatted",
    ]
    if counts[FileOutcome.UNPARSABLE]:
        parts.append(f"{counts[FileOutcome.UNPARSABLE]} with syntax errors")
    if counts[FileOutcome.UNSAFE]:
        parts.append(f"{counts[FileOutcome.UNSAFE]} left unformatted")
    return ", ".join(parts)


def run_fmt(
    paths: Sequence[str],
    *,
    check: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Format ``paths`` in place (or only report with ``check``); return the exit code."""
    from lhpipe.check.files import read_text
    from lhpipe.check.load import discover

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    color = wants_color(err)
    counts = dict.fromkeys(FileOutcome, 0)
    try:
        for path in discover(paths):
            raw = read_text(path)  # a regular file's UTF-8 text, or an error naming the file
            # Line endings are layout too: CRLF files come out with LF.
            text = raw.replace("\r\n", "\n")
            result = format_text(text, str(path))
            outcome = result.outcome
            if outcome is FileOutcome.UNCHANGED and raw != text:
                outcome = FileOutcome.CHANGED
            counts[outcome] += 1
            if outcome is FileOutcome.UNPARSABLE:
                sources = {str(path): text}
                for diagnostic in result.diagnostics:
                    print(format_diagnostic_text(diagnostic, sources, color=color), file=err)
                print(f"lhpipe fmt: {path}: not formatted, it does not parse", file=err)
            elif outcome is FileOutcome.UNSAFE:
                print(
                    f"lhpipe fmt: {path}: not formatted: the formatted text would not parse to "
                    "the same pipeline (a formatter bug, please report it)",
                    file=err,
                )
            elif outcome is FileOutcome.CHANGED:
                if check:
                    print(f"would reformat {path}", file=out)
                else:
                    _write_atomically(path, result.text)
                    print(f"reformatted {path}", file=out)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"lhpipe fmt: {describe_read_error(exc)}", file=err)
        return ExitCode.USAGE
    print(fmt_summary(counts, check=check), file=err)
    return fmt_exit(
        unparsable=counts[FileOutcome.UNPARSABLE],
        would_change=counts[FileOutcome.CHANGED] if check else 0,
        unsafe=counts[FileOutcome.UNSAFE],
    )
