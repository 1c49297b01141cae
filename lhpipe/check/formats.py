r"""The output formats of `lhpipe lint`: text for people, json for scripts, github for CI
annotations, sarif for code-scanning tools.

Each formatter takes the diagnostics (already sorted by the loader), the source texts for caret
rendering, and the number of files checked, and returns the whole output as one string.

The text and github formats go to terminals and CI logs: control characters in file names,
messages and quoted source lines (C0 but tab, DEL, C1, and the bidirectional overrides that
reorder what a reader sees) are written escaped, ``\x1b``, ``\u202e`` (:func:`escape_control`),
so that a file cannot drive the terminal. json and sarif escape them as JSON does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TextIO
from urllib.parse import quote

from lhpipe import __version__
from lhpipe.diagnostics import CODES, Diagnostic, Severity, Span

FORMAT_NAMES = ("text", "json", "github", "sarif")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True, slots=True)
class LintReport:
    """Everything a formatter needs: what was found, in which texts, over how many files."""

    diagnostics: Sequence[Diagnostic]
    sources: Mapping[str, str]
    files_checked: int


_CONTROL = re.compile(
    r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    r"""``text`` with control characters (C0 but tab, DEL, C1) and bidirectional formatting
    characters written as escapes (``\x1b``, ``\u202e``): safe to print on a terminal."""
    return _CONTROL.sub(_escaped, text)


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------

_RESET = "\033[0m"
_BOLD = "\033[1m"
_RED = "\033[1;31m"
_YELLOW = "\033[1;33m"
_CYAN = "\033[36m"
_DIM = "\033[2m"


def _paint(text: str, style: str, color: bool) -> str:
    return f"{style}{text}{_RESET}" if color else text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _source_line(sources: Mapping[str, str], span: Span) -> str | None:
    text = sources.get(span.file)
    if text is None:
        return None
    lines = text.splitlines()
    if not 1 <= span.line <= len(lines):
        return None
    return lines[span.line - 1]


def caret_line(line: str, span: Span) -> str:
    """``^~~~`` under the span on ``line`` (to the end of the line for a multi-line span).

    Tabs before the span are repeated so that the caret lines up whatever the tab width.
    """
    start = max(span.col - 1, 0)
    # The line is shown escaped (escape_control): a character shown as `\x1b` is 4 wide.
    padding = "".join("\t" if ch == "\t" else " " * len(escape_control(ch)) for ch in line[:start])
    end = span.end_col - 1 if span.end_line == span.line else len(line)
    width = max(len(escape_control(line[start:end])), 1)
    return padding + "^" + "~" * (width - 1)


def summary_line(diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
    """``2 errors, 1 warning in 3 files`` (or ``no problems in 3 files``)."""
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    warnings = len(diagnostics) - errors
    where = _plural(files_checked, "file")
    if not diagnostics:
        return f"no problems in {where}"
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')} in {where}"


def format_diagnostic_text(
    diagnostic: Diagnostic, sources: Mapping[str, str], *, color: bool = False
) -> str:
    """One diagnostic as ``file:line:col: severity[CODE] message``, the source line with a
    caret under the span, and the hint when there is one; control characters escaped."""
    span = diagnostic.span
    style = _RED if diagnostic.severity is Severity.ERROR else _YELLOW
    head = (
        f"{_paint(escape_control(str(span)), _BOLD, color)}: "
        f"{_paint(f'{diagnostic.severity.value}[{diagnostic.code}]', style, color)} "
        f"{escape_control(diagnostic.message)}"
    )
    out = [head]
    line = _source_line(sources, span)
    if line is not None:
        gutter = str(span.line)
        out.append(f"  {_paint(gutter + ' |', _DIM, color)} {escape_control(line)}")
        marker = _paint(caret_line(line, span), style, color)
        out.append(f"  {_paint(' ' * len(gutter) + ' |', _DIM, color)} {marker}")
    if diagnostic.hint:
        out.append(f"  {_paint('hint:', _CYAN, color)} {escape_control(diagnostic.hint)}")
    return "\n".join(out)


def format_text(report: LintReport, *, color: bool = False) -> str:
    """Every diagnostic with its source excerpt, a blank line between them, then the summary."""
    blocks = [format_diagnostic_text(d, report.sources, color=color) for d in report.diagnostics]
    blocks.append(summary_line(report.diagnostics, report.files_checked))
    return "\n\n".join(blocks) + "\n"


# ---------------------------------------------------------------------------------------------
# json
# ---------------------------------------------------------------------------------------------


def diagnostic_record(diagnostic: Diagnostic) -> dict[str, object]:
    """A diagnostic as a JSON object with the keys of the json format, in order."""
    span = diagnostic.span
    return {
        "file": span.file,
        "line": span.line,
        "col": span.col,
        "end_line": span.end_line,
        "end_col": span.end_col,
        "severity": diagnostic.severity.value,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "hint": diagnostic.hint,
    }


def format_json(report: LintReport) -> str:
    """A JSON array with one object per diagnostic (``[]`` when clean)."""
    records = [diagnostic_record(d) for d in report.diagnostics]
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# github
# ---------------------------------------------------------------------------------------------


def _escape_data(text: str) -> str:
    # GitHub's workflow-command rules: these three would end or corrupt the command; the
    # other control characters would reach the log (and a terminal) as they are.
    escaped = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return escape_control(escaped)


def _escape_property(text: str) -> str:
    # Property values also cannot hold the separators of the property list.
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation_text(diagnostic: Diagnostic) -> str:
    if diagnostic.hint:
        return f"{diagnostic.message}\nhint: {diagnostic.hint}"
    return diagnostic.message


def format_github_annotation(diagnostic: Diagnostic) -> str:
    """One ``::error file=…,line=…,col=…,endLine=…,endColumn=…,title=CODE::message`` (or
    ``::warning``) workflow command, exactly cli.md's shape: every property is always there
    (GitHub uses the columns of a single-line span and ignores them otherwise) and the text is
    the message alone (the hint is in the other formats)."""
    span = diagnostic.span
    props = (
        f"file={_escape_property(span.file)},line={span.line},col={span.col},"
        f"endLine={span.end_line},endColumn={span.end_col},"
        f"title={_escape_property(diagnostic.code)}"
    )
    command = "error" if diagnostic.severity is Severity.ERROR else "warning"
    return f"::{command} {props}::{_escape_data(diagnostic.message)}"


def format_github(report: LintReport) -> str:
    """One workflow command per diagnostic, nothing else."""
    return "".join(format_github_annotation(d) + "\n" for d in report.diagnostics)


# ---------------------------------------------------------------------------------------------
# sarif
# ---------------------------------------------------------------------------------------------


def artifact_uri(path: str) -> str:
    """A SARIF artifact URI: relative paths stay relative (to the working directory, which is
    what code-scanning tools resolve against), absolute ones become ``file://`` URIs."""
    pure = PurePath(path)
    if pure.is_absolute():
        return "file://" + quote(pure.as_posix())
    return quote(pure.as_posix())


def format_sarif(report: LintReport) -> str:
    """A SARIF 2.1.0 log with one run: every registered code as a rule, one result per
    diagnostic."""
    rule_ids = sorted(CODES)
    rule_index = {code: i for i, code in enumerate(rule_ids)}
    rules = [
        {
            "id": code,
            "shortDescription": {"text": CODES[code].summary},
            "defaultConfiguration": {"level": CODES[code].severity.value},
        }
        for code in rule_ids
    ]
    results = []
    for diagnostic in report.diagnostics:
        span = diagnostic.span
        result: dict[str, object] = {
            "ruleId": diagnostic.code,
            "level": diagnostic.severity.value,
            "message": {"text": _annotation_text(diagnostic)},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": artifact_uri(span.file)},
                        "region": {
                            "startLine": span.line,
                            "startColumn": span.col,
                            "endLine": span.end_line,
                            "endColumn": span.end_col,
                        },
                    }
                }
            ],
        }
        if diagnostic.code in rule_index:
            result["ruleIndex"] = rule_index[diagnostic.code]
        results.append(result)
    log = {
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "lhpipe",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                # Columns count characters (code points), as the parser's spans do.
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def formatter(name: str, *, color: bool = False) -> Callable[[LintReport], str]:
    """The formatter called ``name`` (one of :data:`FORMAT_NAMES`)."""
    if name == "text":
        return lambda report: format_text(report, color=color)
    table: dict[str, Callable[[LintReport], str]] = {
        "json": format_json,
        "github": format_github,
        "sarif": format_sarif,
    }
    return table[name]


def describe_read_error(exc: OSError | UnicodeDecodeError) -> str:
    """Why the given files could not be read (a usage error): a missing or unreadable path, one
    that is not a regular file, or a file that is not UTF-8 text (named, with where). Control
    characters in file names are escaped."""
    if isinstance(exc, UnicodeDecodeError):
        return escape_control(f"a file is not UTF-8 text: {exc}")
    return describe_os_error(exc)


def describe_os_error(exc: OSError) -> str:
    """``No such file or directory: 'x.lhp'`` rather than Python's ``[Errno 2] ...``."""
    if exc.strerror and exc.filename is not None:
        return escape_control(f"{exc.strerror}: {exc.filename!s}")
    return escape_control(str(exc))
